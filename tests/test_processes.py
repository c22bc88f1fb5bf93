"""The process model end to end: workers, signals, recycling, reload
(docs/guide.md section 8)."""

import os
import signal
import socket
import threading
import time

import pytest

from conftest import EMIT, recv_exactly, recv_until_eof, wait_until

ECHO = """
server.on("receive", lambda s, fd, rid, data: s.send(fd, data))
server.on("workerStart", lambda s, wid: emit("WORKERSTART", wid, os.getpid()))
"""


def _title(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read().replace(b"\0", b" ").strip().decode()


def _echo_once(srv, payload=b"ping"):
    with srv.connect(timeout=5) as sock:
        sock.sendall(payload)
        return recv_exactly(sock, len(payload), timeout=5)


class ClientLoop:
    """Connects, echoes and closes in a loop; records every failure."""

    def __init__(self, srv):
        self.srv = srv
        self.done = 0
        self.failures = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                assert _echo_once(self.srv, b"loop") == b"loop"
                self.done += 1
            except Exception as exc:
                self.failures.append(repr(exc))

    def stop(self):
        self._stop.set()
        self._thread.join(20)


def test_process_titles_and_worker_ids(serve):
    srv = serve(ECHO, workers=2, settings="process_name='gsw-test'")
    srv.wait_line(r"^WORKERSTART 1", count=1)
    srv.wait_line(r"^WORKERSTART 0", count=1)
    assert _title(srv.master_pid) == "gsw-test: master process"
    titles = sorted(_title(pid) for pid in srv.children())
    assert titles == ["gsw-test: worker process #0", "gsw-test: worker process #1"]


def test_sigkill_of_worker_brings_replacement_and_worker_error(serve):
    srv = serve(ECHO + """
server.on("workerError", lambda s, wid, pid, code, sig: emit("WORKERERROR", wid, pid, code, sig))
""", workers=2)
    srv.wait_line(r"^WORKERSTART", count=2)
    victim_id, victim = [(int(m.group(1)), int(m.group(2)))
                         for m in srv.matching(r"^WORKERSTART (\d+) (\d+)")][0]
    os.kill(victim, signal.SIGKILL)
    line = srv.wait_line(r"^WORKERERROR .*").string
    assert line == "WORKERERROR %d %d 0 %d" % (victim_id, victim, signal.SIGKILL)
    match = srv.wait_line(r"^WORKERSTART %d (\d+)" % victim_id, count=2)
    assert int(match.group(1)) != victim
    assert _echo_once(srv) == b"ping"


def test_term_waits_for_in_flight_callback(serve):
    srv = serve("""
import gevent
def on_receive(s, fd, rid, data):
    emit("BEGIN")
    gevent.sleep(1.0)
    s.send(fd, b"finished")
server.on("receive", on_receive)
server.on("workerStop", lambda s, wid: emit("WORKERSTOP", wid))
server.on("shutdown", lambda s: emit("SHUTDOWN"))
""")
    with srv.connect() as sock:
        sock.sendall(b"go")
        srv.wait_line(r"^BEGIN")
        srv.signal(signal.SIGTERM)
        assert recv_exactly(sock, 8) == b"finished"
    assert srv.wait_exit(15) == 0
    srv.wait_line(r"^WORKERSTOP 0")
    srv.wait_line(r"^SHUTDOWN")
    srv.wait_line(r"^STOPPED")


def test_graceful_stop_cuts_connections_after_max_wait_time(serve):
    srv = serve("""
server.on("receive", lambda s, fd, rid, data: s.send(fd, data))
server.on("close", lambda s, fd, rid: emit("CLOSE", fd, rid))
""", settings="max_wait_time=0.5")
    with srv.connect() as sock:
        sock.sendall(b"x")
        recv_exactly(sock, 1)
        srv.signal(signal.SIGTERM)
        assert recv_until_eof(sock, timeout=10) == b""
    srv.wait_line(r"^CLOSE \d+ -1")
    assert srv.wait_exit(10) == 0
    srv.wait_line(r"max_wait_time .* closing them \(error 9101\)", stream="err")


def test_quit_is_fast(serve):
    srv = serve("""
import gevent
def on_receive(s, fd, rid, data):
    emit("BEGIN")
    gevent.sleep(30)
server.on("receive", on_receive)
""", settings="max_wait_time=30")
    with srv.connect() as sock:
        sock.sendall(b"x")
        srv.wait_line(r"^BEGIN")
        started = time.monotonic()
        srv.signal(signal.SIGQUIT)
        assert srv.wait_exit(10) == 0
        assert time.monotonic() - started < 5
        try:   # fast means no waiting: the socket is just closed
            assert recv_until_eof(sock) == b""
        except ConnectionResetError:
            pass


def test_sigint_is_graceful(serve):
    srv = serve(ECHO)
    srv.wait_line(r"^WORKERSTART")
    srv.signal(signal.SIGINT)
    assert srv.wait_exit(10) == 0
    srv.wait_line(r"^STOPPED")


def test_max_request_recycles_without_refusing_connections(serve):
    srv = serve(ECHO, workers=2, settings="max_request=20, max_request_grace=0")
    loop = ClientLoop(srv)
    try:
        srv.wait_line(r"^WORKERSTART", count=8, timeout=30)
    finally:
        loop.stop()
    assert not loop.failures, loop.failures[:5]
    assert loop.done >= 60
    srv.wait_line(r"retiring after 20 requests", stream="err")
    assert len(srv.children()) >= 2


def test_usr1_reload_replaces_every_worker_without_refusals(serve):
    srv = serve(ECHO, workers=2)
    srv.wait_line(r"^WORKERSTART", count=2)
    old = {int(m.group(2)) for m in srv.matching(r"^WORKERSTART (\d+) (\d+)")}
    loop = ClientLoop(srv)
    try:
        wait_until(lambda: loop.done > 20, message="client loop running")
        srv.signal(signal.SIGUSR1)
        srv.wait_line(r"^WORKERSTART", count=4, timeout=20)
        wait_until(lambda: not (set(srv.children()) & old), message="old workers gone")
        done_at_reload = loop.done
        wait_until(lambda: loop.done > done_at_reload + 20, message="serving after reload")
    finally:
        loop.stop()
    assert not loop.failures, loop.failures[:5]
    new = set(srv.children())
    assert len(new) == 2 and not new & old


def test_ttin_ttou_add_and_remove_workers(serve):
    srv = serve(ECHO, workers=1)
    srv.wait_line(r"^WORKERSTART 0")
    srv.signal(signal.SIGTTIN)
    srv.wait_line(r"^WORKERSTART 1")
    wait_until(lambda: len(srv.children()) == 2, message="two workers")
    srv.signal(signal.SIGTTOU)
    wait_until(lambda: len(srv.children()) == 1, message="back to one worker")
    assert _echo_once(srv) == b"ping"


def test_workers_exit_when_master_dies(serve):
    srv = serve(ECHO, workers=2)
    srv.wait_line(r"^WORKERSTART", count=2)
    workers = srv.children()
    os.kill(srv.master_pid, signal.SIGKILL)
    wait_until(lambda: not any(_alive(pid) for pid in workers), timeout=10,
               message="orphaned workers to exit")


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_crash_loop_backs_off(serve):
    srv = serve("""
server.on("receive", lambda s, fd, rid, data: None)
def on_start(s, wid):
    emit("BOOT", wid)
    os._exit(3)
server.on("workerStart", on_start)
""", ready=False)   # no worker ever accepts, so the start event never runs
    srv.wait_line(r"^BOOT", count=4, timeout=10)
    srv.wait_line(r"keeps dying at start; respawning in", stream="err")
    # with back-off the count grows slowly: nowhere near a spin
    time.sleep(1.0)
    assert len(srv.matching(r"^BOOT")) < 20


def test_pid_file_written_and_removed(serve, tmp_path):
    pid_file = tmp_path / "server.pid"
    srv = serve(ECHO, settings="pid_file=%r" % str(pid_file))
    assert int(pid_file.read_text()) == srv.master_pid
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(10) == 0
    assert not pid_file.exists()


def test_daemonize_detaches_and_logs_to_file(serve, tmp_path):
    pid_file = tmp_path / "daemon.pid"
    log_file = tmp_path / "daemon.log"
    srv = serve(ECHO, ready=False, settings="daemonize=True, pid_file=%r, log_file=%r"
                % (str(pid_file), str(log_file)))
    assert srv.wait_exit(10) == 0   # the launching process returns at once
    pid = wait_until(lambda: pid_file.exists() and pid_file.read_text().strip()
                     and int(pid_file.read_text()), message="daemon pid file")
    try:
        wait_until(lambda: "listening on" in log_file.read_text(), message="daemon log")
        port = int(log_file.read_text().split("listening on 127.0.0.1:")[1].split()[0])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"daemon")
            assert recv_exactly(sock, 6) == b"daemon"
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not _alive(pid), message="daemon to exit")
    assert not pid_file.exists()


def test_stop_from_a_worker_gets_replaced(serve):
    srv = serve("""
def on_receive(s, fd, rid, data):
    if data == b"stop":
        s.stop()
    s.send(fd, data)
server.on("receive", on_receive)
server.on("workerStart", lambda s, wid: emit("WORKERSTART", wid, os.getpid()))
""")
    srv.wait_line(r"^WORKERSTART 0")
    assert _echo_once(srv, b"stop") == b"stop"
    srv.wait_line(r"^WORKERSTART 0", count=2)
    assert _echo_once(srv) == b"ping"


def test_timers_in_worker_and_cleared_on_stop(serve):
    srv = serve("""
def on_start(s, wid):
    ticks = []
    def tick(timer_id, label):
        ticks.append(timer_id)
        emit("TICK", label, len(ticks))
        if len(ticks) == 3:
            s.clear_timer(timer_id)
            s.after(10, lambda word: emit("AFTER", word), "done")
    s.tick(10, tick, "t")
    s.tick(60000, lambda tid: None)   # must not keep the worker alive on TERM
server.on("workerStart", on_start)
server.on("receive", lambda s, fd, rid, data: None)
""", settings="max_wait_time=30")
    srv.wait_line(r"^TICK t 3")
    srv.wait_line(r"^AFTER done")
    time.sleep(0.1)
    assert not srv.matching(r"^TICK t 4")
    started = time.monotonic()
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(10) == 0
    assert time.monotonic() - started < 5


def test_stats(serve):
    srv = serve("""
import json
def on_receive(s, fd, rid, data):
    st = s.stats()
    s.send(fd, json.dumps({k: st[k] for k in ("connection_num", "accept_count", "worker_num")}).encode())
server.on("receive", on_receive)
""")
    import json
    with srv.connect() as sock:
        sock.sendall(b"x")
        stats = json.loads(sock.recv(1000))
    assert stats == {"connection_num": 1, "accept_count": 1, "worker_num": 1}


@pytest.mark.parametrize("reuse_port", [False, True])
def test_reuse_port_and_shared_socket_both_serve(serve, reuse_port):
    srv = serve(ECHO, workers=2, settings="enable_reuse_port=%r" % reuse_port)
    srv.wait_line(r"^WORKERSTART", count=2)
    for _ in range(20):
        assert _echo_once(srv) == b"ping"


def test_unix_stream_socket(serve, tmp_path):
    path = str(tmp_path / "gsw.sock")
    serve(ECHO, host=path, sock_type="gswoole.SOCK_UNIX_STREAM")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(b"unix")
        assert recv_exactly(sock, 4) == b"unix"


def test_tcp6(serve):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    srv = serve(ECHO, host="::1", sock_type="gswoole.SOCK_TCP6")
    with socket.create_connection(("::1", srv.port), timeout=5) as sock:
        sock.sendall(b"six")
        assert recv_exactly(sock, 3) == b"six"


def test_patched_master_reaps_a_dead_worker_at_once(serve):
    # Under gevent.monkey.patch_all() signal.signal is gevent's, which keeps
    # SIGCHLD for itself; the master must still wake when a worker dies.
    srv = serve(raw=True, body=EMIT + """
import gswoole, os, signal, time
gswoole.patch_all()
server = gswoole.Server("127.0.0.1", 0)
server.set(worker_num=1)
server.on("receive", lambda s, fd, rid, data: None)
server.on("start", lambda s: emit("READY", s.port, s.master_pid))
server.on("workerStart", lambda s, wid: emit("WORKERSTART", os.getpid(), time.time()))
server.start()
""")
    first = srv.wait_line(r"^WORKERSTART (\d+) ")
    killed_at = time.time()
    os.kill(int(first.group(1)), signal.SIGKILL)
    second = srv.wait_line(r"^WORKERSTART (\d+) ([\d.]+)", count=2)
    assert float(second.group(2)) - killed_at < 0.5


def test_reload_keeps_the_old_worker_when_its_replacement_cannot_start(serve, tmp_path):
    broken = tmp_path / "broken"
    srv = serve(ECHO + """
def boot(s, wid):
    if os.path.exists(%r):
        os._exit(3)   # e.g. a dependency down at boot
    emit("BOOTED", wid, os.getpid())
server.on("workerStart", boot)
""" % str(broken))
    old = int(srv.wait_line(r"^BOOTED 0 (\d+)").group(1))
    broken.write_text("")
    srv.signal(signal.SIGUSR1)
    srv.wait_line(r"replacement of worker #0 died before it was ready; keeping pid %d" % old,
                  stream="err")
    assert _echo_once(srv) == b"ping"
    assert old in srv.children()


@pytest.mark.parametrize("reuse_port", [False, True])
def test_retiring_worker_accepts_until_its_replacement_is_ready(serve, reuse_port):
    srv = serve("""
import time
server.on("receive", lambda s, fd, rid, data: s.send(fd, data))
def boot(s, wid):
    emit("WORKERSTART", wid)
    time.sleep(0.5)   # a slow workerStart: the old worker must cover for it
server.on("workerStart", boot)
""", settings="max_request=5, max_request_grace=0, enable_reuse_port=%r" % reuse_port)
    srv.wait_line(r"^WORKERSTART")   # with reuse_port nothing listens before the first worker
    loop = ClientLoop(srv)
    try:
        srv.wait_line(r"^WORKERSTART", count=3, timeout=30)
    finally:
        loop.stop()
    assert not loop.failures, loop.failures[:5]


def test_master_runs_no_gevent_loop(serve):
    srv = serve("""
from gevent._hub_local import get_hub_if_exists
server.on("receive", lambda s, fd, rid, data: None)
server.on("start", lambda s: (emit("HUB", get_hub_if_exists()),
                              emit("READY", s.port, s.master_pid)))
""")
    assert srv.wait_line(r"^HUB ").string == "HUB None"


def test_start_event_waits_for_every_worker_to_accept(serve):
    srv = serve("""
import gevent
def boot(s, wid):
    gevent.sleep(0.2 * (wid + 1))
    emit("BOOTED", wid)
server.on("workerStart", boot)
server.on("receive", lambda s, fd, rid, data: s.send(fd, data))
""", workers=3)
    # READY is printed by the start event; each worker wrote BOOTED before it
    # told the master it accepts, so the pipe holds them in causal order
    lines = list(srv.lines)
    ready_at = next(i for i, line in enumerate(lines) if line.startswith("READY"))
    booted = [i for i, line in enumerate(lines) if line.startswith("BOOTED")]
    assert len(booted) == 3 and max(booted) < ready_at

"""The stuck-worker watchdog (``timeout``) and memory recycling (``max_worker_memory``)."""

import signal
import socket
import time

import pytest

from conftest import children_of, wait_until

STUCK = """
import gevent.monkey
def cpu_loop_forever():
    while True:
        pass
def sleep_unpatched():
    gevent.monkey.get_original("time", "sleep")(3600)
def on_receive(s, fd, rid, data):
    if data.startswith(b"cpu"):
        cpu_loop_forever()
    elif data.startswith(b"sleep"):
        sleep_unpatched()
    s.send(fd, b"pong " + str(os.getpid()).encode())
server.on("receive", on_receive)
server.on("workerStart", lambda s, wid: emit("WORKERSTART", wid, os.getpid()))
server.on("workerError", lambda s, wid, pid, code, sig: emit("WORKERERROR", wid, pid, code, sig))
"""


def _ping(srv):
    with srv.connect(timeout=5) as sock:
        sock.sendall(b"ping")
        return sock.recv(100)


@pytest.mark.parametrize("command, function", [(b"cpu", "cpu_loop_forever"),
                                               (b"sleep", "sleep_unpatched")])
def test_stuck_worker_is_dumped_killed_and_replaced(serve, command, function):
    timeout = 2.0
    srv = serve(STUCK, workers=1, settings="timeout=%r" % timeout)
    first = int(srv.wait_line(r"^WORKERSTART 0 (\d+)").group(1))
    assert _ping(srv).startswith(b"pong")
    stuck_at = time.monotonic()
    blocker = srv.connect()
    blocker.sendall(command)
    srv.wait_line(r"^WORKERERROR 0 %d 0 %d" % (first, signal.SIGKILL), timeout=timeout + 5)
    assert time.monotonic() - stuck_at < timeout + 2.0
    # the master said why, and the worker's own stack names the stuck function
    srv.wait_line(r"worker #0 \(pid %d\): event loop stuck" % first, stream="err")
    srv.wait_line(r'line \d+ in %s' % function, stream="err")
    second = int(srv.wait_line(r"^WORKERSTART 0 (\d+)", count=2).group(1))
    assert second != first
    assert _ping(srv) == b"pong %d" % second
    blocker.close()


def test_task_worker_exempt_while_running_a_task(serve):
    srv = serve("""
import gevent.monkey
server.on("receive", lambda s, fd, rid, data: s.task(data))
def on_task(s, task_id, src, data):
    gevent.monkey.get_original("time", "sleep")(float(data))
    emit("TASKDONE", task_id)
server.on("task", on_task)
server.on("workerError", lambda s, wid, pid, code, sig: emit("WORKERERROR", wid, pid, code, sig))
""", settings="task_worker_num=1, timeout=1.0")
    with srv.connect() as sock:
        sock.sendall(b"3.0")      # three times the timeout, inside a task
        srv.wait_line(r"^TASKDONE", timeout=10)
    with srv.connect() as sock:   # and the idle task worker is healthy afterwards
        sock.sendall(b"0")
        srv.wait_line(r"^TASKDONE", count=2, timeout=10)
    assert not srv.matching(r"^WORKERERROR")


def test_timeout_zero_turns_the_watchdog_off(serve):
    srv = serve(STUCK, settings="timeout=0")
    first = int(srv.wait_line(r"^WORKERSTART 0 (\d+)").group(1))
    blocker = srv.connect()
    blocker.sendall(b"sleep")
    # four times the default heartbeat interval: nobody kills it
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:
        assert first in children_of(srv.master_pid)
        time.sleep(0.2)
    assert not srv.matching(r"event loop stuck", stream="err")
    blocker.close()


MEMORY_HOG = """
hoard = []
def on_receive(s, fd, rid, data):
    if data == b"grow":
        hoard.append(bytearray(64 * 1024 * 1024))
    s.send(fd, data)
server.on("receive", on_receive)
server.on("workerStart", lambda s, wid: emit("WORKERSTART", wid, os.getpid()))
server.on("workerError", lambda s, wid, pid, code, sig: emit("WORKERERROR", wid, pid, code, sig))
"""


def test_memory_recycling_refuses_nothing(serve):
    srv = serve(MEMORY_HOG, workers=2, settings="max_worker_memory=50")
    srv.wait_line(r"^WORKERSTART", count=2)
    failures, done = [], 0
    with srv.connect() as grower:
        grower.sendall(b"grow")
        assert grower.recv(10) == b"grow"
    deadline = time.monotonic() + 15
    while len(srv.matching(r"^WORKERSTART")) < 3 and time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
                sock.sendall(b"x")
                if sock.recv(10) != b"x":
                    failures.append("bad answer")
            done += 1
        except OSError as exc:
            failures.append(repr(exc))
    srv.wait_line(r"retiring with \d+ MiB RSS, past max_worker_memory 50 MiB", stream="err")
    assert len(srv.matching(r"^WORKERSTART")) >= 3
    assert not failures, failures[:5]
    assert done > 0
    assert not srv.matching(r"^WORKERERROR")
    wait_until(lambda: len(children_of(srv.master_pid)) == 2, message="the old worker to exit")


def test_user_processes_are_not_watched(serve):
    # A user process has no heartbeat (its code may block, as in Swoole): a
    # watchdog that looked at it would kill it every `timeout` seconds.
    srv = serve(STUCK + """
import gswoole
def side(process):
    emit("USER", os.getpid())
    while True:
        gevent.sleep(0.1)
server.add_process(gswoole.Process(side))
""", workers=1, settings="timeout=1.0")
    user = int(srv.wait_line(r"^USER (\d+)").group(1))
    first = int(srv.wait_line(r"^WORKERSTART 0 (\d+)").group(1))
    blocker = srv.connect()
    blocker.sendall(b"cpu")     # the watchdog at work: it kills the stuck worker ...
    srv.wait_line(r"^WORKERERROR 0 %d 0 %d" % (first, signal.SIGKILL), timeout=10)
    srv.wait_line(r"^WORKERSTART 0 (\d+)", count=2)
    # ... by then the user process (older, no heartbeat) was past the timeout too
    assert user in children_of(srv.master_pid)
    assert not srv.matching(r"^USER (\d+)", stream="out")[1:]
    assert not srv.matching(r"user process .* killed", stream="err")
    blocker.close()


def test_a_process_before_its_first_beat_counts_from_its_fork():
    # The master may read a fresh slot just before the worker's first beat
    # writes it: heartbeat 0 is "not beaten yet", not "stuck since boot".
    from types import SimpleNamespace
    from gswoole.watchdog import Watchdog

    now = time.monotonic()
    fresh = SimpleNamespace(pid=7, slot=0, cause=None, started=now - 0.1)
    old = SimpleNamespace(pid=8, slot=1, cause=None, started=now - 5.0)
    slots = {0: {"pid": 7, "task_src_pid": 0, "heartbeat_ms": 0},
             1: {"pid": 8, "task_src_pid": 0, "heartbeat_ms": 0}}
    shared = SimpleNamespace(read_slot=slots.__getitem__)
    found = Watchdog(1.0).stuck([fresh, old], shared, now)
    assert [proc for proc, _ in found] == [old]

"""Swoole's connection controls and process queries across two workers, on
real servers: pause/resume, confirm with enable_delay_receive, protect and
heartbeat(), bind, sendfile, sendwait, connections, the worker pids and
status, defer (gswoole/controls.py, docs/porting_from_swoole.md)."""

import ast
import os
import socket
import time

from conftest import recv_exactly, recv_until_eof, wait_until

# A client drives the server one line at a time: "name arg ..." runs
# cmd_<name>(server, fd, *args) and answers repr(result); a line starting
# with "!" is data: logged as RECV and echoed back.
BODY = """
import ast, gevent

def on_receive(s, fd, rid, data):
    session = s.session(fd)
    buf = session.get("buf", b"") + data
    *lines, session["buf"] = buf.split(b"\\n")
    for line in lines:
        text = line.decode()
        if text.startswith("!"):
            emit("RECV", fd, text[1:])
            s.send(fd, "echo:%s\\n" % text[1:])
            continue
        name, *args = text.split()
        try:
            result = globals()["cmd_" + name](s, fd, *[ast.literal_eval(a) for a in args])
        except Exception as exc:
            result = ["EXC", type(exc).__name__, str(exc)]
        s.send(fd, (repr(result) + "\\n").encode())

server.on("receive", on_receive)
server.on("close", lambda s, fd, rid: emit("CLOSE", fd, rid, s.worker_id))

def cmd_me(s, fd):
    return [s.worker_id, fd, os.getpid()]

def cmd_call(s, fd, method, *args):
    return getattr(s, method)(*args)

def cmd_fail(s, fd, method, *args):
    return [getattr(s, method)(*args), s.get_last_error()]

def cmd_info(s, fd, target):
    return s.getClientInfo(target)

def cmd_conns(s, fd):
    return [list(s.connections), len(s.connections), fd in s.connections,
            987654 in s.connections]

def cmd_pids(s, fd):
    return [s.getWorkerId(), s.getWorkerPid(), s.getMasterPid(), s.getManagerPid(),
            s.master_pid, os.getpid()]

def cmd_nap(s, fd, seconds):
    gevent.sleep(seconds)
    return "rested"

def cmd_defer(s, fd):
    s.defer(lambda: s.send(fd, "deferred\\n"))
    return "asked"

def cmd_aliases(s, fd):
    return [s.sendMessage == s.send_message, s.getClientInfo == s.get_client_info,
            s.exists == s.exist, s.taskWaitMulti == s.taskwait_multi,
            s.getClientList == s.get_client_list]
"""


class Conn:
    def __init__(self, srv, sock=None):
        self.sock = sock or srv.connect(timeout=20)
        self.sock.settimeout(20)
        self.file = self.sock.makefile("rb")

    def ask(self, *words):
        self.order(*words)
        return self.answer()

    def order(self, *words):
        """Send a command without waiting for its answer."""
        name, *args = words
        self.sock.sendall((" ".join([name] + [repr(a).replace(" ", "") for a in args])
                           + "\n").encode())

    def answer(self):
        line = self.file.readline()
        assert line.endswith(b"\n"), "connection ended: %r" % line
        return ast.literal_eval(line.decode())

    def line(self):
        return self.file.readline()

    def close(self):
        self.file.close()
        self.sock.close()


def one_on_each_worker(srv, opened):
    """Connections until each of the two workers owns one: {worker_id: (Conn, fd, pid)}."""
    by_worker = {}
    deadline = time.monotonic() + 10
    while len(by_worker) < 2 and time.monotonic() < deadline:
        conn = Conn(srv)
        wid, fd, pid = conn.ask("me")
        if wid in by_worker:
            conn.close()          # the kernel picks the worker: try again
        else:
            opened.append(conn)
            by_worker[wid] = (conn, fd, pid)
    assert len(by_worker) == 2, "every connection landed on one worker"
    return by_worker


def on_worker(srv, worker_id, opened):
    """A new connection owned by ``worker_id``."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        conn = Conn(srv)
        wid, fd, pid = conn.ask("me")
        if wid == worker_id:
            opened.append(conn)
            return conn, fd
        conn.close()
    raise AssertionError("no connection landed on worker %d" % worker_id)


def test_pause_stops_receive_until_resume_from_another_worker(serve):
    srv = serve(BODY, workers=2)
    opened = []
    try:
        workers = one_on_each_worker(srv, opened)
        (caller, _, _), (target, fd, _) = workers[0], workers[1]
        probe, _ = on_worker(srv, 1, opened)
        assert caller.ask("call", "pause", fd) is True
        assert caller.ask("call", "pause", fd) is False          # already paused
        target.sock.sendall(b"!while-paused\n")
        # the owning worker's loop turns (twice) after that data is in its socket
        assert probe.ask("me")[0] == 1
        assert caller.ask("info", fd)["worker_id"] == 1
        assert not srv.matching(r"^RECV %d " % fd)
        assert caller.ask("call", "exist", fd) is True
        assert caller.ask("call", "resume", fd) is True
        assert target.line() == b"echo:while-paused\n"
        srv.wait_line(r"^RECV %d while-paused$" % fd)
        assert caller.ask("call", "resume", fd) is False         # not paused
        assert caller.ask("fail", "pause", 987654) == [False, 1005]
    finally:
        for conn in opened:
            conn.close()


CONFIRMING = BODY + """
def on_connect(s, fd, rid):
    info = s.get_client_info(fd)
    with open(os.environ["HOLD_FILE"]) as f:
        held = str(info["remote_port"]) in f.read().split()
    if held:
        emit("HELD", info["remote_port"], fd, s.worker_id)
    else:
        s.confirm(fd)
server.on("connect", on_connect)
"""


def test_confirm_with_enable_delay_receive_from_another_worker(serve, tmp_path):
    hold_file = tmp_path / "held_ports"
    hold_file.write_text("")
    srv = serve(CONFIRMING, workers=2, settings="enable_delay_receive=1",
                env={"HOLD_FILE": str(hold_file)})
    opened = []
    try:
        caller = one_on_each_worker(srv, opened)[0][0]
        caller_worker = 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            with open(hold_file, "a") as f:
                f.write("%d\n" % port)
            sock.connect(("127.0.0.1", srv.port))
            held = Conn(srv, sock)
            opened.append(held)
            match = srv.wait_line(r"^HELD %d (\d+) (\d+)$" % port)
            fd, worker = int(match.group(1)), int(match.group(2))
            if worker != caller_worker:
                break
        else:
            raise AssertionError("every held connection landed on the caller's worker")
        held.sock.sendall(b"!early\n")
        assert caller.ask("info", fd)["worker_id"] == worker    # its worker's loop turned
        assert not srv.matching(r"^RECV %d " % fd)
        assert caller.ask("call", "confirm", fd) is True
        assert held.line() == b"echo:early\n"
        assert caller.ask("call", "confirm", fd) is False       # read already
        assert caller.ask("call", "confirm", caller.ask("me")[1]) is False
    finally:
        for conn in opened:
            conn.close()


def test_enable_delay_receive_without_connect_callback_fails_at_start(serve):
    srv = serve("""
server.on("receive", lambda s, fd, rid, data: None)
""", settings="enable_delay_receive=True", ready=False)
    srv.wait_line(r"enable_delay_receive: .*needs a 'connect' callback", stream="err")
    assert srv.wait_exit(10) != 0


def test_heartbeat_closes_idle_ones_on_both_workers_but_not_protected(serve):
    srv = serve(BODY, workers=2, settings="heartbeat_idle_time=1")
    opened = []
    try:
        workers = one_on_each_worker(srv, opened)
        (caller, caller_fd, _), (protected, protected_fd, _) = workers[0], workers[1]
        assert caller.ask("call", "protect", protected_fd) is True
        idle = {wid: on_worker(srv, wid, opened) for wid in (0, 1)}
        idle_fds = sorted(fd for _, fd in idle.values())
        closed = []

        def idle_ones_closed():
            found = caller.ask("call", "heartbeat")
            assert found is not False and caller_fd not in found
            closed.extend(found)
            return set(idle_fds) <= set(closed)
        wait_until(idle_ones_closed, timeout=10, interval=0.2,
                   message="heartbeat() closing the idle connections")
        assert protected_fd not in closed
        for conn, fd in idle.values():
            assert recv_until_eof(conn.sock, timeout=5) == b""
            srv.wait_line(r"^CLOSE %d -1 " % fd)
        assert protected.ask("me")[1] == protected_fd            # still served
        assert caller.ask("call", "protect", protected_fd, False) is True
        wait_until(lambda: protected_fd in caller.ask("call", "heartbeat", False),
                   timeout=10, interval=0.2, message="the unprotected fd found idle")
        assert caller.ask("call", "exist", protected_fd) is True  # found, not closed
    finally:
        for conn in opened:
            conn.close()


def test_heartbeat_without_an_idle_time_is_false(serve):
    srv = serve(BODY)
    conn = Conn(srv)
    try:
        assert conn.ask("call", "heartbeat") is False
    finally:
        conn.close()


def test_the_heartbeat_check_honours_protect(serve):
    srv = serve(BODY, settings="heartbeat_check_interval=1, heartbeat_idle_time=1")
    protected, unprotected = Conn(srv), Conn(srv)
    try:
        fd = protected.ask("me")[1]
        assert protected.ask("call", "protect", fd) is True
        unprotected.ask("me")            # younger than the protected one
        assert recv_until_eof(unprotected.sock, timeout=10) == b""
        assert protected.ask("me")[1] == fd
    finally:
        protected.close()
        unprotected.close()


def test_connections_bind_and_client_info_across_workers(serve):
    srv = serve(BODY, workers=2)
    opened = []
    try:
        workers = one_on_each_worker(srv, opened)
        (caller, fd0, _), (other, fd1, _) = workers[0], workers[1]
        fds, count, own, unknown = caller.ask("conns")
        assert fd0 in fds and fd1 in fds and fds == sorted(fds)
        assert count == len(fds) and own is True and unknown is False
        assert other.ask("conns")[0] == fds
        assert "uid" not in caller.ask("info", fd1)
        assert caller.ask("call", "bind", fd1, 42) is True
        assert caller.ask("info", fd1)["uid"] == 42 == other.ask("info", fd1)["uid"]
        assert caller.ask("call", "bind", fd1, 43) is False     # once, as in Swoole
        assert caller.ask("call", "bind", fd1, 0)[:2] == ["EXC", "ValueError"]
        assert caller.ask("fail", "bind", 987654, 7) == [False, 1005]
    finally:
        for conn in opened:
            conn.close()


def test_sendfile_and_sendwait_to_another_workers_connection(serve, tmp_path):
    srv = serve(BODY, workers=2)
    payload = os.urandom(3 * 1024 * 1024)
    path = tmp_path / "payload.bin"
    path.write_bytes(payload)
    opened = []
    try:
        workers = one_on_each_worker(srv, opened)
        (caller, _, _), (target, fd, _) = workers[0], workers[1]
        assert caller.ask("call", "sendwait", fd, "waited\n") is True
        assert target.line() == b"waited\n"
        # the owner waits for the peer to take the file: read it meanwhile
        caller.order("call", "sendfile", fd, str(path))
        assert recv_exactly(target.sock, len(payload)) == payload
        assert caller.answer() is True
        assert caller.ask("call", "sendfile", fd, str(path), 10, 5) is True
        assert recv_exactly(target.sock, 5) == payload[10:15]
        assert caller.ask("call", "sendfile", fd, str(path), len(payload) + 1) is False
        assert caller.ask("call", "sendfile", fd, str(tmp_path / "missing")) is False
        assert target.ask("me")[1] == fd                         # nothing else arrived
    finally:
        for conn in opened:
            conn.close()


def test_worker_ids_pids_status_and_defer(serve):
    srv = serve(BODY + """
server.on("task", lambda s, task_id, src_worker_id, data: data)
""", workers=2, settings="task_worker_num=1")
    opened = []
    try:
        workers = one_on_each_worker(srv, opened)
        (caller, _, pid0), (other, _, pid1) = workers[0], workers[1]
        wid, own_pid, master, manager, master_attr, getpid = caller.ask("pids")
        assert (wid, own_pid, getpid) == (0, pid0, pid0)
        assert master == manager == master_attr == srv.master_pid
        assert caller.ask("call", "getWorkerPid", 1) == pid1
        assert caller.ask("call", "getWorkerPid", 9) is False
        assert caller.ask("call", "getWorkerStatus") == 1         # busy: it runs this
        assert caller.ask("call", "getWorkerStatus", 1) == 2      # idle
        assert caller.ask("call", "getWorkerStatus", 2) == 2      # the idle task worker
        assert caller.ask("call", "getWorkerStatus", 7) is False
        other.order("nap", 2)
        wait_until(lambda: caller.ask("call", "getWorkerStatus", 1) == 1, timeout=5,
                   message="worker 1 busy in its callback")
        assert other.answer() == "rested"
        assert caller.ask("defer") == "asked"
        assert caller.line() == b"deferred\n"
        assert caller.ask("aliases") == [True] * 5
    finally:
        for conn in opened:
            conn.close()

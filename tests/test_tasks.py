"""Task workers, pipe messages and cross-worker calls end to end on real
servers (docs/tasks.md)."""

import ast
import os
import signal
import time

import pytest

import gswoole
from conftest import recv_until_eof, wait_until

# The servers import the gswoole this test process imported (the working
# tree), not whatever copy happens to be installed.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(gswoole.__file__)))


@pytest.fixture
def serve(serve):
    def start(body, env=None, **kwargs):
        env = dict(env or {})
        env.setdefault("PYTHONPATH", os.pathsep.join(
            p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
        return serve(body, env=env, **kwargs)
    return start

# A server body shared by most tests. The client drives it with one command
# per line ("name arg ..."); the worker runs cmd_<name>(server, fd, *args) and
# answers with repr(result) on one line.
COMMON = """
import ast, gevent
from gswoole import TaskError

def on_task(s, task_id, src_worker_id, data):
    op, *args = data
    if op == "echo":
        return args[0]
    if op == "sleep":
        time.sleep(args[0])
        return args[1]
    if op == "raise":
        raise ValueError(args[0])
    if op == "finish":
        s.finish(args[0])
        return "returned after finish"
    if op == "hang":
        emit("TASKSTART", os.getpid(), s.worker_id, task_id)
        time.sleep(60)
        return "not reached"
    if op == "work":
        emit("WORK", args[0], os.getpid(), s.worker_id)
        time.sleep(args[1])
        return args[0]
    if op == "ids":
        emit("TASK", task_id, src_worker_id, s.worker_id, args[0])
        return args[0]
    if op == "reverse":
        return args[0][::-1]
    if op == "nested":
        return [s.task(("echo", 1)), s.taskwait(("echo", 1)),
                s.taskwait_multi([("echo", 1)]), s.taskworker]
    if op == "message":
        return s.send_message(("from task worker", s.worker_id), args[0])
    raise RuntimeError("unknown op %r" % (op,))

server.on("task", on_task)
server.on("finish", lambda s, task_id, data: emit("FINISH", s.worker_id, task_id, repr(data)))
server.on("workerStart", lambda s, wid: emit("WORKERSTART", wid, os.getpid(), s.taskworker))
server.on("workerError", lambda s, wid, pid, code, sig: emit("WORKERERROR", wid, pid, code, sig))
server.on("pipeMessage", lambda s, src, msg: emit("PIPE", s.worker_id, src, repr(msg)))
server.on("connect", lambda s, fd, rid: emit("CONNECT", fd, s.worker_id))
server.on("close", lambda s, fd, rid: emit("CLOSE", fd, rid, s.worker_id))

def on_receive(s, fd, rid, data):
    session = s.session(fd)
    buf = session.get("buf", b"") + data
    *lines, session["buf"] = buf.split(b"\\n")
    for line in lines:
        name, *args = line.decode().split()
        try:
            result = globals()["cmd_" + name](s, fd, *args)
        except Exception as exc:
            result = ["EXC", type(exc).__name__, str(exc)]
        s.send(fd, (repr(result) + "\\n").encode())

server.on("receive", on_receive)

def cmd_whoami(s, fd):
    return s.worker_id

def cmd_taskwait(s, fd, value):
    return s.taskwait(("echo", value), timeout=5)
"""


class Conn:
    """A command connection: one line out, one repr()'d line back."""

    def __init__(self, srv, timeout=20):
        self.sock = srv.connect(timeout=timeout)
        self.file = self.sock.makefile("rb")

    def ask(self, *words):
        self.sock.sendall((" ".join(map(str, words)) + "\n").encode())
        line = self.file.readline()
        assert line.endswith(b"\n"), "connection ended: %r" % line
        return ast.literal_eval(line.decode())

    def close(self):
        self.file.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- task, finish, ids ----------------------------------------------------

def test_task_and_finish_with_ids_per_sending_worker(serve):
    srv = serve(COMMON + """
def start_tasks(s, wid):
    if s.taskworker:
        return
    for i in range(3):
        emit("SENT", wid, s.task(("ids", "w%d-%d" % (wid, i))))
def on_start(s, wid):
    emit("WORKERSTART", wid, os.getpid(), s.taskworker)
    start_tasks(s, wid)
server.on("workerStart", on_start)
""", workers=2, settings="task_worker_num=2")
    srv.wait_line(r"^FINISH", count=6)
    sent = sorted(m.string for m in srv.matching(r"^SENT "))
    # ids count from 0 per sending worker: (task_id, src_worker_id) is unique
    assert sent == ["SENT 0 0", "SENT 0 1", "SENT 0 2", "SENT 1 0", "SENT 1 1", "SENT 1 2"]
    tasks = sorted(m.string.split()[1:] for m in srv.matching(r"^TASK "))
    assert [(t[0], t[1], t[3]) for t in tasks] == [
        (str(i), str(w), "w%d-%d" % (w, i)) for i in range(3) for w in range(2)]
    assert {t[2] for t in tasks} <= {"2", "3"}       # run by the task workers
    finishes = sorted(m.string for m in srv.matching(r"^FINISH "))
    # the finish event runs in the worker that sent the task: (server, task_id, data)
    assert finishes == sorted("FINISH %d %d 'w%d-%d'" % (w, i, w, i)
                              for w in range(2) for i in range(3))


def test_finish_called_in_task_sends_that_result_once(serve):
    srv = serve(COMMON + """
def cmd_go(s, fd):
    return s.task(("finish", "explicit"))
""", settings="task_worker_num=1")
    with Conn(srv) as conn:
        assert conn.ask("go") == 0
        srv.wait_line(r"^FINISH 0 0 'explicit'$")
        # a later task's finish proves the ignored return value was not sent
        assert conn.ask("go") == 1
        srv.wait_line(r"^FINISH 0 1 'explicit'$")
    assert len(srv.matching(r"^FINISH ")) == 2


def test_task_callback_replaces_finish(serve):
    srv = serve(COMMON + """
def cmd_go(s, fd):
    def done(s2, task_id, data):
        emit("CALLBACK", s2.worker_id, task_id, repr(data))
    first = s.task(("echo", "with callback"), callback=done)
    second = s.task(("echo", "no callback"))
    return [first, second]
""", settings="task_worker_num=2")
    with Conn(srv) as conn:
        assert conn.ask("go") == [0, 1]
    srv.wait_line(r"^CALLBACK 0 0 'with callback'$")
    srv.wait_line(r"^FINISH 0 1 'no callback'$")
    # the callback's task does not also reach finish
    assert [m.string for m in srv.matching(r"^FINISH ")] == ["FINISH 0 1 'no callback'"]


def test_task_to_a_named_task_worker(serve):
    srv = serve(COMMON + """
def cmd_go(s, fd, dst):
    return [s.taskwait(("ids", "to %s" % dst), timeout=5, dst_worker_id=int(dst))
            for _ in range(4)]
def cmd_bad(s, fd):
    return s.task(("echo", 1), dst_worker_id=0)
""", settings="task_worker_num=2")
    with Conn(srv) as conn:
        assert conn.ask("go", 2) == ["to 2"] * 4
        assert conn.ask("go", 1) == ["to 1"] * 4
        assert conn.ask("bad")[:2] == ["EXC", "ValueError"]
    ran_by = {m.string.split()[3] for m in srv.matching(r"^TASK .* to 2$")}
    assert ran_by == {"2"}
    ran_by = {m.string.split()[3] for m in srv.matching(r"^TASK .* to 1$")}
    assert ran_by == {"1"}


# -- taskwait -----------------------------------------------------------------

def test_taskwait_returns_the_result(serve):
    srv = serve(COMMON, settings="task_worker_num=2")
    with Conn(srv) as conn:
        assert conn.ask("taskwait", "hello") == "hello"
        assert conn.ask("taskwait", "again") == "again"
    assert not srv.matching(r"^FINISH ")   # a taskwait result is not a finish event


def test_taskwait_timeout_and_the_late_result_does_not_leak(serve):
    srv = serve(COMMON + """
def cmd_go(s, fd):
    t0 = time.monotonic()
    # both go to task worker #1, so the late "late" result arrives while
    # the second taskwait is waiting
    first = s.taskwait(("sleep", 1.0, "late"), timeout=0.3, dst_worker_id=1)
    error = s.get_last_error()
    waited = time.monotonic() - t0
    second = s.taskwait(("echo", "mine"), timeout=5, dst_worker_id=1)
    third = s.taskwait(("echo", "third"), timeout=5)
    return [first, error, waited, second, third, time.monotonic() - t0]
""", settings="task_worker_num=1")
    with Conn(srv) as conn:
        first, error, waited, second, third, total = conn.ask("go")
    assert first is False
    assert error == 2003
    assert 0.25 <= waited < 0.8
    assert second == "mine"
    assert third == "third"
    assert total >= 0.9           # "mine" really queued behind the late task
    assert not srv.matching(r"^FINISH ")   # nor does it reach the finish callback


def test_taskwait_multi(serve):
    srv = serve(COMMON + """
def cmd_go(s, fd):
    t0 = time.monotonic()
    results = s.taskwait_multi([("echo", "a"), ("sleep", 1.0, "slow"), ("echo", "c"),
                                ("sleep", 0.05, "d")], timeout=0.5)
    error = s.get_last_error()
    return [results, error, time.monotonic() - t0]

def cmd_all(s, fd):
    results = s.taskwait_multi([("echo", i) for i in range(10)] + [("raise", "bad one")],
                               timeout=5)
    last = results.pop(10)
    return [results, type(last).__name__, "bad one" in str(last)]
""", settings="task_worker_num=2")
    with Conn(srv) as conn:
        results, error, took = conn.ask("go")
        assert results == {0: "a", 2: "c", 3: "d"}
        assert error == 2003
        assert 0.4 <= took < 1.5
        results, kind, named = conn.ask("all")
        assert results == {i: i for i in range(10)}
        assert kind == "TaskError" and named


def test_100_concurrent_taskwaits_each_get_their_own_result(serve):
    srv = serve(COMMON + """
import random
def cmd_many(s, fd, n):
    def one(i):
        return s.taskwait(("sleep", random.random() * 0.01, ("r", i)), timeout=15)
    greenlets = [gevent.spawn(one, i) for i in range(int(n))]
    gevent.joinall(greenlets, timeout=20)
    wrong = [i for i, g in enumerate(greenlets) if g.value != ("r", i)]
    return [len(greenlets), wrong]
""", settings="task_worker_num=2")
    with Conn(srv) as conn:
        assert conn.ask("many", 100) == [100, []]


def test_5_mib_payload_round_trip(serve):
    srv = serve(COMMON + """
def cmd_big(s, fd):
    data = os.urandom(5 * 1024 * 1024)
    back = s.taskwait(("reverse", data), timeout=10)
    ok_wait = back == data[::-1]
    got = []
    done = gevent.event.Event()
    s.task(("echo", data), callback=lambda s2, tid, value: (got.append(value), done.set()))
    done.wait(10)
    return [ok_wait, bool(got) and got[0] == data]
""", settings="task_worker_num=2")
    with Conn(srv) as conn:
        assert conn.ask("big") == [True, True]


# -- failures: TaskError --------------------------------------------------------

def test_raising_task_raises_task_error_with_remote_traceback(serve):
    srv = serve(COMMON + """
def cmd_go(s, fd):
    t0 = time.monotonic()
    try:
        s.taskwait(("raise", "kaboom"), timeout=5)
    except TaskError as exc:
        return ["TaskError", str(exc), exc.remote_traceback, time.monotonic() - t0]
    return "no exception"

def cmd_async(s, fd):
    return s.task(("raise", "async kaboom"))
""", settings="task_worker_num=2")
    with Conn(srv) as conn:
        kind, text, remote, took = conn.ask("go")
        assert kind == "TaskError"
        assert "kaboom" in text and "ValueError" in text
        assert "Traceback (most recent call last)" in remote
        assert "in on_task" in remote and "ValueError: kaboom" in remote
        assert took < 2
        # an async task's failure is passed to finish as a TaskError
        assert conn.ask("async") == 1
        line = srv.wait_line(r"^FINISH 0 1 ").string
        assert "TaskError" in line and "async kaboom" in line
        # the task worker carries on
        assert conn.ask("taskwait", "still-fine") == "still-fine"
    srv.wait_line(r"raised in task worker", stream="err")


def test_sigkill_of_task_worker_mid_task_fails_the_task_at_once(serve):
    srv = serve(COMMON + """
def cmd_hang(s, fd):
    t0 = time.monotonic()
    try:
        s.taskwait(("hang",), timeout=30)
    except TaskError as exc:
        return ["TaskError", str(exc), time.monotonic() - t0]
    return "no exception"

def cmd_hang_async(s, fd):
    return s.task(("hang",))
""", settings="task_worker_num=1")
    srv.wait_line(r"^WORKERSTART 1 \d+ True")
    with Conn(srv, timeout=40) as conn:
        conn.sock.sendall(b"hang\n")
        match = srv.wait_line(r"^TASKSTART (\d+) 1 0")
        victim = int(match.group(1))
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        line = conn.file.readline()
        reported_after = time.monotonic() - killed_at
        kind, text, took = ast.literal_eval(line.decode())
        assert kind == "TaskError"
        assert "task worker #1" in text and "SIGKILL" in text
        assert reported_after < 5, "TaskError came only after %.1f s" % reported_after
        assert took < 10      # well before the 30 s timeout
        srv.wait_line(r"^WORKERERROR 1 %d 0 %d$" % (victim, signal.SIGKILL))
        # respawned with the same id, and the next task is fine
        match = srv.wait_line(r"^WORKERSTART 1 (\d+) True", count=2)
        assert int(match.group(1)) != victim
        assert conn.ask("taskwait", "after") == "after"
        # an async task's sender gets the TaskError in finish
        assert conn.ask("hang_async") == 2
        victim = int(srv.wait_line(r"^TASKSTART (\d+) 1 2").group(1))
        os.kill(victim, signal.SIGKILL)
        line = srv.wait_line(r"^FINISH 0 2 ", timeout=5).string
        assert "TaskError" in line and "SIGKILL" in line


# -- reloads and recycling ---------------------------------------------------

def test_usr2_reload_with_tasks_queued_runs_each_exactly_once(serve):
    srv = serve(COMMON + """
def cmd_burst(s, fd, n, delay):
    return [s.task(("work", i, float(delay))) for i in range(int(n))]
""", workers=2, settings="task_worker_num=2")
    srv.wait_line(r"^WORKERSTART \d \d+ True", count=2)
    old = {int(m.group(1)) for m in srv.matching(r"^WORKERSTART \d (\d+) True")}
    with Conn(srv) as conn:
        worker = conn.ask("whoami")
        assert conn.ask("burst", 50, 0.05) == list(range(50))
    srv.wait_line(r"^WORK ", count=3)
    srv.signal(signal.SIGUSR2)
    srv.wait_line(r"^FINISH ", count=50, timeout=30)
    srv.wait_line(r"^WORKERSTART \d \d+ True", count=4, timeout=15)
    # every task ran once and finished once, in the worker that sent it
    work = sorted(int(m.string.split()[1]) for m in srv.matching(r"^WORK "))
    assert work == list(range(50))
    finishes = sorted(m.string for m in srv.matching(r"^FINISH "))
    assert finishes == sorted("FINISH %d %d %d" % (worker, i, i) for i in range(50))
    ran_in = {int(m.string.split()[2]) for m in srv.matching(r"^WORK ")}
    assert ran_in - old, "no queued task ran in a new task worker"
    # only the task workers were reloaded
    assert len(srv.matching(r"^WORKERSTART \d \d+ False")) == 2
    wait_until(lambda: not (set(srv.children()) & old), message="old task workers gone")


def test_task_max_request_recycles_a_task_worker(serve):
    srv = serve(COMMON + """
def cmd_burst(s, fd, n, delay):
    return [s.task(("work", i, float(delay))) for i in range(int(n))]
""", settings="task_worker_num=1, task_max_request=3")
    with Conn(srv) as conn:
        assert conn.ask("burst", 10, 0) == list(range(10))
        srv.wait_line(r"^FINISH ", count=10, timeout=20)
        # 10 tasks at 3 per process: 4 processes, each ran at most 3
        srv.wait_line(r"^WORKERSTART 1 \d+ True", count=4, timeout=10)
        by_pid = {}
        for m in srv.matching(r"^WORK "):
            _, i, pid, wid = m.string.split()
            assert wid == "1"
            by_pid.setdefault(pid, []).append(int(i))
        assert sorted(sum(by_pid.values(), [])) == list(range(10))
        assert len(by_pid) == 4 and max(map(len, by_pid.values())) == 3
        srv.wait_line(r"task worker #1 retiring after 3 tasks", stream="err")
        assert not srv.matching(r"^WORKERERROR")
        assert conn.ask("taskwait", "later") == "later"


# -- pipe messages --------------------------------------------------------------

def test_send_message_between_workers_and_to_a_task_worker(serve):
    srv = serve(COMMON + """
def cmd_msg(s, fd):
    other = 1 - s.worker_id
    return [s.worker_id, s.send_message(("hi", s.worker_id), other),
            s.send_message({"to": "task"}, 2)]

def cmd_self(s, fd):
    return s.send_message("me", s.worker_id)

def cmd_from_task(s, fd, dst):
    return s.taskwait(("message", int(dst)), timeout=5)
""", workers=2, settings="task_worker_num=1")
    with Conn(srv) as conn:
        sender, to_worker, to_task = conn.ask("msg")
        assert to_worker is True and to_task is True
        other = 1 - sender
        # pipeMessage(server, src_worker_id, message) in the destination
        srv.wait_line(r"^PIPE %d %d \('hi', %d\)$" % (other, sender, sender))
        srv.wait_line(r"^PIPE 2 %d \{'to': 'task'\}$" % sender)
        assert conn.ask("self")[:2] == ["EXC", "ValueError"]
        # and from a task worker to an event worker
        assert conn.ask("from_task", other) is True
        srv.wait_line(r"^PIPE %d 2 \('from task worker', 2\)$" % other)


# -- cross-worker calls on fds ---------------------------------------------------

CROSS = COMMON + """
def cmd_me(s, fd):
    return [s.worker_id, fd]

def cmd_send(s, fd, target, text):
    return [s.send(int(target), (text + "\\n").encode()), s.get_last_error()]

def cmd_closefd(s, fd, target):
    return [s.close(int(target)), s.get_last_error()]

def cmd_exist(s, fd, target):
    return s.exist(int(target))

def cmd_info(s, fd, target):
    info = s.get_client_info(int(target))
    return info and info["worker_id"]

def cmd_list(s, fd):
    return s.get_client_list()
"""


def _connections_on_both_workers(srv):
    """Connect until the two workers each own one of our connections."""
    by_worker = {}
    spare = []
    for _ in range(200):
        conn = Conn(srv)
        wid, fd = conn.ask("me")
        if wid in by_worker:
            spare.append(conn)
        else:
            by_worker[wid] = (conn, fd)
        if len(by_worker) == 2:
            break
    for conn in spare:
        conn.close()
    assert len(by_worker) == 2, "every connection landed on one worker"
    return by_worker[0], by_worker[1]


def test_send_close_exist_info_for_another_workers_fd(serve):
    srv = serve(CROSS, workers=2)
    (conn0, fd0), (conn1, fd1) = _connections_on_both_workers(srv)
    try:
        # worker 0 sends to worker 1's connection: it reaches that client
        assert conn0.ask("send", fd1, "hello-from-0") == [True, 0]
        assert conn1.file.readline() == b"hello-from-0\n"
        assert conn1.ask("send", fd0, "hello-from-1") == [True, 0]
        assert conn0.file.readline() == b"hello-from-1\n"
        assert conn0.ask("exist", fd1) is True
        assert conn0.ask("info", fd1) == 1
        assert conn1.ask("info", fd0) == 0
        # get_client_list covers both workers
        listed = conn0.ask("list")
        assert fd0 in listed and fd1 in listed and listed == sorted(listed)
        assert conn1.ask("list") == listed
        # close of the other worker's fd runs close in the owning worker
        assert conn0.ask("closefd", fd1) == [True, 0]
        assert recv_until_eof(conn1.sock, timeout=10) == b""
        srv.wait_line(r"^CLOSE %d -1 1$" % fd1)
        assert conn0.ask("exist", fd1) is False
        ok, error = conn0.ask("send", fd1, "too-late")
        assert ok is False and error in (1004, 1005)
        assert conn0.ask("closefd", fd1)[0] is False
        assert fd1 not in conn0.ask("list")
        assert conn0.ask("info", fd1) is None
    finally:
        conn0.close()
        conn1.close()


def test_5_mib_cross_worker_send_and_pipe_message(serve):
    srv = serve(CROSS + """
def cmd_bigsend(s, fd, target):
    return [s.send(int(target), b"B" * (5 * 1024 * 1024) + b"\\n"), s.get_last_error()]

def cmd_bigmsg(s, fd):
    return s.send_message(os.urandom(5 * 1024 * 1024), 1 - s.worker_id)

def on_pipe(s, src, msg):
    emit("BIGPIPE", s.worker_id, src, len(msg), hashlib.sha256(msg).hexdigest()[:16])
import hashlib
server.on("pipeMessage", on_pipe)
""", workers=2, settings="buffer_output_size=8 * 1024 * 1024")
    (conn0, fd0), (conn1, fd1) = _connections_on_both_workers(srv)
    try:
        assert conn0.ask("bigsend", fd1) == [True, 0]
        assert conn1.file.readline() == b"B" * (5 * 1024 * 1024) + b"\n"
        assert conn0.ask("bigmsg") is True
        srv.wait_line(r"^BIGPIPE 1 0 %d [0-9a-f]{16}$" % (5 * 1024 * 1024))
    finally:
        conn0.close()
        conn1.close()


def test_send_to_an_unknown_fd_fails_with_1005(serve):
    srv = serve(CROSS, workers=2)
    with Conn(srv) as conn:
        assert conn.ask("send", 987654, "x") == [False, 1005]
        assert conn.ask("exist", 987654) is False


# -- odds and ends -----------------------------------------------------------

def test_task_in_a_task_worker_returns_false(serve):
    srv = serve(COMMON + """
def cmd_go(s, fd):
    return s.taskwait(("nested",), timeout=5)
""", settings="task_worker_num=1")
    with Conn(srv) as conn:
        assert conn.ask("go") == [False, False, False, True]


def test_stats_tasking_queue_and_request_counts(serve):
    srv = serve(COMMON + """
def cmd_busy(s, fd):
    ids = [s.task(("sleep", 1.5, "long")) for _ in range(2)]
    ids += [s.task(("echo", i)) for i in range(5)]
    deadline = time.monotonic() + 5
    stats = s.stats()
    while (stats["tasking_num"], stats["task_queue_num"]) != (2, 5) \
            and time.monotonic() < deadline:
        gevent.sleep(0.01)
        stats = s.stats()
    return [ids, stats["tasking_num"], stats["task_queue_num"], stats["task_worker_num"]]

def cmd_stats(s, fd):
    stats = s.stats()
    return [s.worker_id, stats["worker_request_count"], stats["request_count"],
            {w: v["request_count"] for w, v in stats["workers"].items()},
            stats["tasking_num"], stats["task_queue_num"], stats["connection_num"]]

def cmd_ping(s, fd):
    return "pong"
""", workers=2, settings="task_worker_num=2")
    with Conn(srv) as conn:
        for _ in range(3):
            assert conn.ask("ping") == "pong"
        wid, own, total, per_worker, tasking, queued, conns = conn.ask("stats")
        assert own == 3 and per_worker[wid] == 3 and per_worker[1 - wid] == 0
        assert total == 3 and conns == 1
        assert per_worker[2] == 0 and per_worker[3] == 0
        assert (tasking, queued) == (0, 0)
        ids, tasking, queued, task_workers = conn.ask("busy")
        assert ids == list(range(7))
        assert (tasking, queued, task_workers) == (2, 5, 2)
        srv.wait_line(r"^FINISH ", count=7, timeout=10)
        wait_until(lambda: conn.ask("stats")[4:6] == [0, 0], timeout=5,
                   message="idle task workers and an empty queue")


# -- draining workers -----------------------------------------------------------

def test_draining_worker_still_receives_its_taskwait_result(serve):
    srv = serve(COMMON + """
def cmd_slowwait(s, fd):
    emit("WAITING", os.getpid())
    t0 = time.monotonic()
    return [s.taskwait(("sleep", 1.0, "done"), timeout=5), os.getpid(),
            time.monotonic() - t0]
""", settings="task_worker_num=1")
    with Conn(srv) as conn:
        conn.sock.sendall(b"slowwait\n")
        waiting = int(srv.wait_line(r"^WAITING (\d+)").group(1))
        srv.signal(signal.SIGUSR1)          # reload everything, task worker included
        srv.wait_line(r"^WORKERSTART 0 \d+ False", count=2)
        result, pid, took = ast.literal_eval(conn.file.readline().decode())
        assert (result, pid) == ("done", waiting)
        assert took < 3


# -- known bugs, documented -------------------------------------------------------

BAD_RESULTS = COMMON + """
class NeedsTwo(Exception):
    # pickles fine, but unpickling calls NeedsTwo(*args) with one argument
    def __init__(self, a, b):
        super().__init__(a)
        self.b = b

_plain_task = on_task
def on_task_bad(s, task_id, src, data):
    if data[0] == "unpicklable":
        return lambda: "no pickle for me"
    if data[0] == "unloadable":
        return NeedsTwo("x", "y")
    return _plain_task(s, task_id, src, data)
server.on("task", on_task_bad)

def cmd_bad(s, fd, op):
    t0 = time.monotonic()
    try:
        value = ["returned", repr(s.taskwait((op,), timeout=2)), s.get_last_error()]
    except TaskError as exc:
        value = ["TaskError", str(exc).splitlines()[0], 0]
    return value + [time.monotonic() - t0]

def cmd_quick(s, fd, value):
    return s.taskwait(("echo", value), timeout=1)
"""


def test_unpicklable_result_fails_the_task_not_the_task_worker(serve):
    srv = serve(BAD_RESULTS, settings="task_worker_num=1")
    with Conn(srv) as conn:
        kind, text, error, took = conn.ask("bad", "unpicklable")
        assert kind == "TaskError", (kind, text, error, took)
        assert took < 1
        assert conn.ask("quick", "next") == "next"
    assert not srv.matching(r"^WORKERERROR")


def test_result_that_cannot_be_unpickled_does_not_kill_the_inbox(serve):
    srv = serve(BAD_RESULTS, settings="task_worker_num=1")
    with Conn(srv) as conn:
        conn.ask("bad", "unloadable")
        # the worker must still get later results
        assert conn.ask("quick", "next") == "next"
        kind, text, error, took = conn.ask("bad", "unloadable")
        assert kind == "TaskError" and took < 1, (kind, text, error, took)


def test_results_of_a_retiring_worker_are_not_lost(serve):
    srv = serve(COMMON + """
def cmd_burst(s, fd, n, delay):
    return [s.task(("work", i, float(delay))) for i in range(int(n))]
def cmd_retire(s, fd):
    return s.stop()
""", settings="task_worker_num=1")
    with Conn(srv) as conn:
        assert conn.ask("burst", 20, 0.02) == list(range(20))
        assert conn.ask("retire") is True
    srv.wait_line(r"^WORK ", count=20, timeout=10)
    srv.wait_line(r"^FINISH ", count=20, timeout=3)
    finished = sorted(int(m.string.split()[3]) for m in srv.matching(r"^FINISH "))
    assert finished == list(range(20))


def test_task_worker_with_high_descriptor_numbers(serve):
    # 1100 descriptors open in the master before start(): the socketpairs the
    # master makes for the workers get numbers above 1024 (as they do with
    # worker_num + task_worker_num above ~500)
    srv = serve(COMMON + """
import resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < 2048:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(2048, hard), hard))
_spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]

def cmd_quick(s, fd, value):
    return s.taskwait(("echo", value), timeout=2)
""", settings="task_worker_num=1")
    with Conn(srv) as conn:
        assert conn.ask("quick", "through") == "through"
    assert not srv.matching(r"^WORKERERROR")


def test_timers_run_in_a_task_worker(serve):
    srv = serve("""
def boot(s, wid):
    if s.taskworker:
        s.tick(20, lambda tid: emit("TICK", wid))
server.on("workerStart", boot)
server.on("task", lambda s, tid, src, data: data)
server.on("receive", lambda s, fd, rid, data: None)
""", settings="task_worker_num=1")
    srv.wait_line(r"^TICK 1", count=3)

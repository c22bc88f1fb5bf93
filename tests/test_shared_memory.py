"""Tables, Atomics, Locks and user processes in a running server
(DESIGN section 9)."""

import os
import signal

import pytest

import gswoole
from gswoole import shm

from conftest import children_of, wait_until

# The fastest CPU atomics available (default), and the fcntl fallback.
MODES = (["cpu"] if shm._compiled() or shm._libatomic() else []) + ["fcntl"]


def _ask(srv, line, timeout=15):
    with srv.connect(timeout=timeout) as sock:
        sock.sendall(line.encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(4096)
            assert chunk, "connection closed before a full answer"
            reply += chunk
        return reply.decode().strip()


def _title(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read().replace(b"\0", b" ").strip().decode()


TABLE_ACROSS_PROCESSES = """
table = gswoole.Table(64)
table.column("text", gswoole.Table.TYPE_STRING, 32)
table.column("writer", gswoole.Table.TYPE_INT)
table.create()

def on_receive(s, fd, rid, data):
    other = 1 - s.worker_id
    table.set("greeting", {"text": "hello", "writer": s.worker_id})
    s.send_message("read it", other)
    seen_by_task = s.taskwait("read it", 5)
    s.send(fd, ("%d %s\\n" % (s.worker_id, seen_by_task)).encode())

def on_message(s, src, message):
    row = table.get("greeting")
    emit("PIPE", s.worker_id, row["text"], row["writer"])

server.on("receive", on_receive)
server.on("pipeMessage", on_message)
server.on("task", lambda s, task_id, src, data: "%s/%d" % (table.get("greeting", "text"),
                                                          table.get("greeting", "writer")))
"""


def test_a_row_written_in_one_worker_is_read_in_another_and_in_a_task_worker(serve):
    srv = serve(TABLE_ACROSS_PROCESSES, workers=2, settings="task_worker_num=1")
    writer, seen_by_task = _ask(srv, "go").split()
    assert seen_by_task == "hello/%s" % writer
    pipe = srv.wait_line(r"^PIPE (\d) (\w+) (\d)")
    assert pipe.groups() == (str(1 - int(writer)), "hello", writer)


CONTENTION = """
import gevent
table = gswoole.Table(16)
table.column("n", gswoole.Table.TYPE_INT)
table.create()
atomic = gswoole.Atomic()
finished = gswoole.Atomic()

def hammer():
    for i in range(5000):
        table.incr("counter", "n")
        atomic.add()
        if i % 50 == 0:
            gevent.sleep(0)            # interleave the greenlets of this worker too
    if finished.add() == 16:
        emit("TOTAL", table.get("counter", "n"), atomic.get())

def on_start(s, worker_id):
    for _ in range(8):
        gevent.spawn(hammer)

server.on("workerStart", on_start)
server.on("receive", lambda s, fd, rid, data: s.send(fd, data))
"""


@pytest.mark.parametrize("mode", MODES)
def test_no_lost_updates_two_workers_eight_greenlets_each(serve, mode):
    srv = serve(CONTENTION, workers=2, env={shm.FORCE_FALLBACK_ENV: mode})
    total = srv.wait_line(r"^TOTAL (\d+) (\d+)", timeout=60)
    assert total.groups() == ("80000", "80000")


ATOMIC_WAIT = """
import gevent
ping = gswoole.Atomic()
gate = gswoole.Atomic()

def on_start(s, worker_id):
    def waiter():
        emit("WORKER_WAITING")
        while not gate.wait(1.0):
            pass
        emit("WORKER_WOKEN")
    gevent.spawn(waiter)

def on_receive(s, fd, rid, data):
    if data.strip() == b"wake":
        ping.wakeup()
    s.send(fd, data)

def side(process):
    woken = 0
    while True:
        if ping.wait(1.0):
            woken += 1
            emit("USER_WOKEN", woken)
            if woken == 3:
                gate.wakeup()

server.on("workerStart", on_start)
server.on("receive", on_receive)
server.add_process(gswoole.Process(side))
"""


def test_atomic_wait_and_wakeup_across_processes(serve):
    srv = serve(ATOMIC_WAIT, workers=1)
    srv.wait_line(r"^WORKER_WAITING")
    # The worker has a greenlet waiting on an Atomic and still serves.
    assert _ask(srv, "echo") == "echo"
    for n in (1, 2, 3):
        assert _ask(srv, "wake") == "wake"
        srv.wait_line(r"^USER_WOKEN %d$" % n)
        assert len(srv.matching(r"^USER_WOKEN")) == n      # one wakeup, one wait
    srv.wait_line(r"^WORKER_WOKEN")


LOCK_HOLDER = """
import gevent
lock = gswoole.Lock()
runs = gswoole.Atomic()

def side(process):
    if runs.add() == 1:            # only the first run takes the lock
        lock.lock()
        emit("HOLDING", os.getpid())
    else:
        emit("RESTARTED", os.getpid())
    while True:
        gevent.sleep(1)

def on_receive(s, fd, rid, data):
    command = data.strip()
    if command == b"try":
        answer = "free" if lock.trylock() else "busy"
        if answer == "free":
            lock.unlock()
    else:
        answer = "locked" if lock.lock(timeout=10) else "timeout"
        lock.unlock()
    s.send(fd, (answer + "\\n").encode())

server.on("receive", on_receive)
server.add_process(gswoole.Process(side))
"""


def test_lock_holder_sigkilled_user_process_restarted_and_gone_after_shutdown(serve):
    srv = serve(LOCK_HOLDER, workers=1)
    holder = int(srv.wait_line(r"^HOLDING (\d+)").group(1))
    assert _title(holder) == "gswoole: user process #0"
    assert holder in srv.children()
    assert _ask(srv, "try") == "busy"
    os.kill(holder, signal.SIGKILL)
    assert _ask(srv, "lock") == "locked"          # the kernel released the dead holder's lock
    again = int(srv.wait_line(r"^RESTARTED (\d+)").group(1))
    assert again != holder and _title(again) == "gswoole: user process #0"
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(20) == 0
    wait_until(lambda: not os.path.exists("/proc/%d" % again)
               or open("/proc/%d/stat" % again).read().rsplit(")", 1)[1].split()[0] == "Z",
               message="the user process to be gone")
    assert children_of(srv.master_pid) == []


USER_PROCESS_SENDS = """
clients = gswoole.Table(8)
clients.column("fd", gswoole.Table.TYPE_INT)
clients.create()

def on_receive(s, fd, rid, data):
    clients.set("subscriber", {"fd": fd})
    s.send(fd, b"registered\\n")

def push(timer_id, process):
    fd = clients.get("subscriber", "fd")
    if fd:
        clients.delete("subscriber")
        ok = process.server.send(fd, b"pushed by user process\\n")
        process.server.send_message("sent %s" % ok, 0)

def side(process):
    emit("USER", process.index, process.worker_id, os.getpid())
    gswoole.Timer.tick(20, push, process)     # returns: the timer keeps the process alive

server.on("receive", on_receive)
server.on("pipeMessage", lambda s, src, message: emit("PIPE", src, message))
server.on("task", lambda s, task_id, src, data: data)
server.add_process(gswoole.Process(side))
"""


def test_user_process_sends_to_a_worker_connection_with_timers_and_messages(serve):
    srv = serve(USER_PROCESS_SENDS, workers=2, settings="task_worker_num=1")
    index, worker_id, pid = srv.wait_line(r"^USER (\d+) (\d+) (\d+)").groups()
    assert (index, worker_id) == ("0", "3")      # after 2 workers and 1 task worker
    with srv.connect() as sock:
        sock.sendall(b"subscribe\n")
        reader = sock.makefile("rb")
        assert reader.readline() == b"registered\n"
        assert reader.readline() == b"pushed by user process\n"
    assert srv.wait_line(r"^PIPE (\d+) (.*)").groups() == ("3", "sent True")
    assert int(pid) in srv.children()


def test_add_process_checks_its_argument():
    server = gswoole.Server("127.0.0.1", 0)
    try:
        with pytest.raises(TypeError):
            server.add_process(lambda process: None)
        with pytest.raises(gswoole.CallbackError):
            gswoole.Process(42)
        process = gswoole.Process(lambda process: None)
        assert server.add_process(process) == 0
        assert server.add_process(gswoole.Process(lambda process: None)) == 1
        with pytest.raises(ValueError):
            server.add_process(process)
    finally:
        for listener in server._listeners:
            listener.close()


RELOAD = """
import gevent
server.on("receive", lambda s, fd, rid, data: s.send(fd, data))
server.on("workerStart", lambda s, wid: emit("WORKERSTART", wid, os.getpid()))

def side(process):
    emit("USER", os.getpid(), process.server.stats()["user_process_num"])
    while True:
        gevent.sleep(1)

server.add_process(gswoole.Process(side))
"""


def test_reload_restarts_workers_but_not_user_processes(serve):
    srv = serve(RELOAD, workers=1)
    user_pid, counted = srv.wait_line(r"^USER (\d+) (\d+)").groups()
    assert counted == "1"
    srv.wait_line(r"^WORKERSTART 0")
    srv.signal(signal.SIGUSR1)
    srv.wait_line(r"^WORKERSTART 0", count=2)
    wait_until(lambda: len(srv.children()) == 2, message="the old worker to exit")
    assert int(user_pid) in srv.children()
    assert len(srv.matching(r"^USER")) == 1

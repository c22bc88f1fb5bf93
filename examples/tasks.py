"""Offloading blocking work to task workers: task() + finish, and taskwait().

    python examples/tasks.py [port]           # the server (default port 9501)
    python examples/tasks.py client [port]    # the demonstration client

A password hash (PBKDF2, ITERATIONS rounds of SHA-256) holds the CPU for a
good fraction of a second. Run in an event worker's callback it would stall
every connection of that worker; the server hands it to a task worker
instead, in one of two ways chosen by the client:

    client: ASYNC <password>\\n     ->  task(job); the reply is sent from the
                                       finish event when the result comes back
    client: WAIT <password>\\n      ->  taskwait(job): this connection's callback
                                       waits (only its own greenlet), then replies
    client: PING\\n                 ->  PONG at once, even while hashes run
    server: <MODE> <hex digest> task-worker #<id> <ms>\\n

With ASYNC the receive callback returns at once; the worker remembers which
fd each task id belongs to, so the finish event (which runs in the worker
that sent the task) knows where the answer goes. With WAIT the code reads
top to bottom; a task that raises comes back as gswoole.TaskError, a
timeout as False (get_last_error() 2003).
"""
import hashlib
import socket
import sys
import threading
import time

ITERATIONS = 300_000
SALT = b"gswoole-example"


def hash_password(password):
    return hashlib.pbkdf2_hmac("sha256", password, SALT, ITERATIONS).hex()


def serve(port):
    import gswoole

    server = gswoole.Server("127.0.0.1", port)
    server.set(worker_num=1, task_worker_num=2)

    # -- task worker side: a plain blocking function --------------------------
    def on_task(server, task_id, src_worker_id, data):
        started = time.monotonic()
        digest = hash_password(data)
        return {"digest": digest, "by": server.worker_id,
                "ms": (time.monotonic() - started) * 1000}

    # -- event worker side -----------------------------------------------------
    waiting = {}    # task id -> fd, per worker process (task ids are per worker)

    def reply(server, fd, mode, result):
        if isinstance(result, gswoole.TaskError):
            server.send(fd, b"%s ERROR %s\n" % (mode, str(result).splitlines()[0].encode()))
        elif result is False:
            server.send(fd, b"%s TIMEOUT (error %d)\n" % (mode, server.get_last_error()))
        else:
            server.send(fd, b"%s %s task-worker #%d %.0f\n" % (
                mode, result["digest"].encode(), result["by"], result["ms"]))

    def on_finish(server, task_id, result):
        # result is what on_task returned, or a gswoole.TaskError
        fd = waiting.pop(task_id)
        reply(server, fd, b"ASYNC", result)

    def on_receive(server, fd, reactor_id, data):
        session = server.session(fd)
        *lines, session["buf"] = (session.get("buf", b"") + data).split(b"\n")
        for line in lines:
            command, _, password = line.strip().partition(b" ")
            if command == b"PING":
                server.send(fd, b"PONG\n")
            elif command == b"ASYNC":
                task_id = server.task(password)
                if task_id is False:
                    server.send(fd, b"ASYNC ERROR task queue full\n")
                else:
                    waiting[task_id] = fd
            elif command == b"WAIT":
                try:
                    result = server.taskwait(password, timeout=10)
                except gswoole.TaskError as exc:
                    result = exc
                reply(server, fd, b"WAIT", result)
            else:
                server.send(fd, b"ERROR unknown command\n")

    server.on("task", on_task)
    server.on("finish", on_finish)
    server.on("receive", on_receive)
    server.on("start", lambda server: print(
        "tasks listening on 127.0.0.1:%d (master pid %d)" % (server.port, server.master_pid),
        flush=True))
    server.start()


def client(port):
    passwords = [b"correct horse", b"battery staple", b"hunter2", b"swordfish"]
    expected = {pw: hash_password(pw) for pw in passwords}   # computed here to compare
    ok = True

    def connect():
        conn = socket.create_connection(("127.0.0.1", port), timeout=30)
        return conn, conn.makefile("rb")

    # Ping on a connection of its own all along: the event worker stays responsive.
    pings = []
    stop = threading.Event()

    def pinger():
        conn, f = connect()
        with conn, f:
            while not stop.is_set():
                started = time.monotonic()
                conn.sendall(b"PING\n")
                if f.readline() != b"PONG\n":
                    pings.append(float("inf"))
                    return
                pings.append(time.monotonic() - started)
                time.sleep(0.01)

    ping_thread = threading.Thread(target=pinger)
    ping_thread.start()
    try:
        for mode in (b"ASYNC", b"WAIT"):
            conn, f = connect()
            with conn, f:
                started = time.monotonic()
                conn.sendall(b"".join(b"%s %s\n" % (mode, pw) for pw in passwords))
                answers = [f.readline().split() for _ in passwords]
                took = time.monotonic() - started
            for answer in answers:
                print("  %s" % b" ".join(answer).decode())
            right = sorted(a[1].decode() for a in answers if len(a) > 1) == \
                sorted(expected.values())
            ok &= right and all(a[0] == mode for a in answers)
            print("%s: %d hashes in %.2f s, %s" % (mode.decode(), len(passwords), took,
                                                   "all correct" if right else "WRONG"))
    finally:
        stop.set()
        ping_thread.join(30)
    worst = max(pings) if pings else float("inf")
    print("PING meanwhile: %d answered, slowest %.1f ms" % (len(pings), worst * 1000))
    ok &= worst < 0.1   # a hash in the event worker would have held it far longer
    print("OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    args = sys.argv[1:]
    mode = args.pop(0) if args and not args[0].isdigit() else "server"
    port = int(args[0]) if args else 9501
    {"server": serve, "client": client}[mode](port)

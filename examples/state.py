"""Reaching outer state from callbacks, and why it is per process.

    python examples/state.py [port]           # the server (default port 9501)
    python examples/state.py client [port]    # the demonstration client

Each request bumps five counters, one of each kind:

* a variable captured by a closure (``nonlocal``),
* a module global,
* a class attribute,
* an attribute on the server object (``server.requests``),
* a row in an SQLite file: the only one of the five that all workers share.

The reply shows all five. With two workers, the first four count only the
requests that reached *that* worker process; the SQLite count is the total.
"""
import os
import socket
import sqlite3
import sys
import tempfile

DB_PATH = os.path.join(tempfile.gettempdir(), "gswoole-state-example-%d.sqlite" % os.getuid())

hits = 0                      # a module global: one copy per process after fork


class Stats:
    hits = 0                  # a class attribute: also one copy per process


def make_receive_handler():
    count = 0                 # captured by the closure below

    def on_receive(server, fd, reactor_id, data):
        nonlocal count
        global hits
        count += 1
        hits += 1
        Stats.hits += 1
        server.requests += 1
        with server.db:       # shared storage: a transaction in the SQLite file
            server.db.execute("UPDATE counter SET n = n + 1")
        (total,) = server.db.execute("SELECT n FROM counter").fetchone()
        server.send(fd, "worker=%d pid=%d closure=%d global=%d class=%d server_attr=%d "
                        "shared_total=%d\n" % (server.worker_id, os.getpid(), count, hits,
                                               Stats.hits, server.requests, total))
    return on_receive


def serve(port):
    import gswoole

    # The master sets the shared counter up once, before the workers exist.
    with sqlite3.connect(DB_PATH) as db:
        db.execute("CREATE TABLE IF NOT EXISTS counter (n INTEGER)")
        db.execute("DELETE FROM counter")
        db.execute("INSERT INTO counter VALUES (0)")
    db.close()

    server = gswoole.Server("127.0.0.1", port)
    server.set(worker_num=2)
    server.requests = 0       # copied into every worker at fork; each then counts alone

    def on_worker_start(server, worker_id):
        # A connection per process, made after the fork (see examples/per_process.py).
        server.db = sqlite3.connect(DB_PATH, timeout=5)

    server.on("workerStart", on_worker_start)
    server.on("receive", make_receive_handler())
    server.on("start", lambda server: print(
        "state listening on 127.0.0.1:%d (master pid %d)" % (server.port, server.master_pid),
        flush=True))
    server.start()


def client(port):
    # Keep several connections open at once so that both workers get some.
    conns = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(8)]
    files = [c.makefile("rb") for c in conns]
    last = {}
    requests = 0
    for _ in range(5):
        for conn, f in zip(conns, files):
            conn.sendall(b"hit\n")
            line = f.readline().decode().strip()
            requests += 1
            fields = dict(item.split("=") for item in line.split())
            last[fields["pid"]] = fields
            if requests <= 4:
                print(line)
    for conn in conns:
        conn.close()
    print("...")
    per_worker = {pid: int(f["global"]) for pid, f in last.items()}
    for pid, fields in sorted(last.items()):
        print("pid %s saw %s requests (closure, global, class and server attribute agree)"
              % (pid, fields["global"]))
    shared = max(int(f["shared_total"]) for f in last.values())
    print("sum over workers = %d, shared SQLite total = %d, requests sent = %d"
          % (sum(per_worker.values()), shared, requests))
    same = all(len({f["closure"], f["global"], f["class"], f["server_attr"]}) == 1
               for f in last.values())
    sys.exit(0 if same and sum(per_worker.values()) == shared == requests else 1)


if __name__ == "__main__":
    args = sys.argv[1:]
    mode = args.pop(0) if args and not args[0].isdigit() else "server"
    port = int(args[0]) if args else 9501
    {"server": serve, "client": client}[mode](port)

"""Shared memory and a user process: a tiny chat-room roster.

    python examples/shared_memory.py [port]           # the server (default port 9501)
    python examples/shared_memory.py client [port]    # the demonstration client

Commands (one per line):

    join NAME      put this connection in the roster (a Table row: fd -> name)
    who            list the roster, whatever worker each member is on
    stats          messages counted by every worker together (an Atomic)

What it shows:

* ``roster`` is a ``gswoole.Table`` made before ``start()``: every worker sees
  the same rows, so ``who`` answers for the whole server, and a worker can
  tell which fd belongs to whom without asking the others.
* ``messages`` is a ``gswoole.Atomic``: one counter for all workers, exact
  under any concurrency.
* ``announce`` is a ``gswoole.Lock``: the two workers' join announcements
  go out one at a time.
* The user process (``server.add_process``) greets newcomers: it waits on
  the ``joined`` Atomic (``wait``/``wakeup``), then sends to the newcomer's
  fd with ``server.send``, which gswoole routes to the worker that owns the
  connection. The master restarts it if it dies and stops it at shutdown.
"""
import socket
import sys


def serve(port):
    import gswoole

    roster = gswoole.Table(1024)
    roster.column("name", gswoole.Table.TYPE_STRING, 32)
    roster.column("worker", gswoole.Table.TYPE_INT)
    roster.column("greeted", gswoole.Table.TYPE_INT)
    roster.create()
    messages = gswoole.Atomic()
    joined = gswoole.Atomic()
    announce = gswoole.Lock()

    server = gswoole.Server("127.0.0.1", port)
    server.set(worker_num=2)

    def on_receive(server, fd, reactor_id, data):
        for line in data.decode(errors="replace").splitlines():
            messages.add()
            command, _, arg = line.strip().partition(" ")
            if command == "join":
                try:
                    roster.set(fd, {"name": arg, "worker": server.worker_id, "greeted": 0})
                except ValueError as exc:              # a name over 32 bytes: never truncated
                    server.send(fd, ("error: %s\n" % exc).encode())
                    continue
                with announce:
                    server.send(fd, ("joined as %s (worker #%d)\n"
                                     % (arg, server.worker_id)).encode())
                joined.wakeup()                        # tell the greeter
            elif command == "who":
                names = sorted("%s@%d" % (row["name"], row["worker"]) for _, row in roster)
                server.send(fd, ("who %s\n" % " ".join(names)).encode())
            elif command == "stats":
                server.send(fd, ("messages %d rows %d/%d\n"
                                 % (messages.get(), roster.count(), roster.size)).encode())
            else:
                server.send(fd, b"unknown command\n")

    def on_close(server, fd, reactor_id):
        roster.delete(fd)

    def greeter(process):
        # A user process: waits (cooperatively, one second at a time) for a
        # join, then greets every member not greeted yet.
        while True:
            if not joined.wait(1.0):
                continue
            for fd, row in roster:
                if not row["greeted"]:
                    roster.set(fd, {"greeted": 1})
                    process.server.send(int(fd), ("welcome, %s, from the user process\n"
                                                  % row["name"]).encode())

    server.on("receive", on_receive)
    server.on("close", on_close)
    server.add_process(gswoole.Process(greeter))
    server.on("start", lambda server: print(
        "shared_memory listening on 127.0.0.1:%d (master pid %d)" % (server.port,
                                                                    server.master_pid),
        flush=True))
    server.start()


def client(port):
    def ask(conn, reader, line):
        conn.sendall(line.encode() + b"\n")
        return reader.readline().decode().strip()

    ok = True
    conns = []
    for name in ("ann", "bob", "cyd"):
        conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        reader = conn.makefile("rb")
        conns.append((conn, reader))
        print(ask(conn, reader, "join " + name))
        greeting = reader.readline().decode().strip()
        print("  " + greeting)
        ok = ok and greeting == "welcome, %s, from the user process" % name
    conn, reader = conns[0]
    who = ask(conn, reader, "who")
    print(who)
    ok = ok and sorted(item.split("@")[0] for item in who.split()[1:]) == ["ann", "bob", "cyd"]
    print(ask(conn, reader, "join " + "x" * 40))          # too long: refused, not truncated
    stats = ask(conn, reader, "stats")
    print(stats)
    ok = ok and stats.startswith("messages 6 rows 3/1024")
    for conn, reader in conns:
        conn.close()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "client":
        client(int(args[1]) if len(args) > 1 else 9501)
    else:
        serve(int(args[0]) if args else 9501)

"""Timers: server.tick / server.after / server.clear_timer, and gswoole.Timer
outside a server.

    python examples/timers.py [port]           # the server (default port 9501)
    python examples/timers.py client [port]    # the demonstration client
    python examples/timers.py standalone       # gswoole.Timer in a plain script

Commands (one per line):

    after MS       reply "after fired" MS milliseconds later
    tick MS N      reply "tick 1" .. "tick N" every MS milliseconds, then "done"

A tick callback gets (timer_id, *args); an after callback gets (*args).
Timers belong to the worker process that created them, not to a connection:
the close callback clears this connection's timers, or a tick would keep
firing (and its sends would fail with 1004) after the client has gone.
"""
import socket
import sys
import time


def serve(port):
    import gswoole

    server = gswoole.Server("127.0.0.1", port)
    server.set(worker_num=2)

    def report(timer_id, worker_id):                      # tick: (timer_id, *args)
        if server.stats()["connection_num"]:
            print("worker #%d: timer %d sees open connections" % (worker_id, timer_id),
                  flush=True)

    def on_worker_start(server, worker_id):
        # A per-worker housekeeping timer. A stopping worker cancels all of its
        # timers itself, so this does not hold up a reload or a shutdown.
        server.tick(5000, report, worker_id)

    def reply_later(fd, text):                             # after: (*args)
        server.send(fd, text)

    def tick_to(timer_id, fd, limit):
        session = server.session(fd)
        session["ticks"] += 1
        server.send(fd, "tick %d\n" % session["ticks"])
        if session["ticks"] == limit:
            server.clear_timer(timer_id)
            session["timers"].discard(timer_id)
            server.send(fd, b"done\n")

    def on_receive(server, fd, reactor_id, data):
        session = server.session(fd)
        session.setdefault("timers", set())
        for line in data.decode().splitlines():
            words = line.split()
            if words[:1] == ["after"]:
                session["timers"].add(server.after(int(words[1]), reply_later, fd,
                                                   "after fired\n"))
            elif words[:1] == ["tick"]:
                session["ticks"] = 0
                session["timers"].add(server.tick(int(words[1]), tick_to, fd, int(words[2])))

    def on_close(server, fd, reactor_id):
        for timer_id in server.session(fd).get("timers", ()):
            server.clear_timer(timer_id)     # False if it already fired: harmless

    server.on("workerStart", on_worker_start)
    server.on("receive", on_receive)
    server.on("close", on_close)
    server.on("start", lambda server: print(
        "timers listening on 127.0.0.1:%d (master pid %d)" % (server.port, server.master_pid),
        flush=True))
    server.start()


def standalone():
    """gswoole.Timer needs no server, only a gevent loop that runs."""
    import gevent

    import gswoole

    fired = []
    tick_id = gswoole.Timer.tick(100, lambda timer_id, name: fired.append((name, timer_id)),
                                 "tick")
    gswoole.Timer.after(350, lambda: gswoole.Timer.clear(tick_id))
    gswoole.Timer.after(50, fired.append, ("after", None))
    gevent.sleep(0.5)          # the timers fire while this greenlet waits
    print(fired)
    print("timers left:", len(gswoole.Timer))


def client(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        f = conn.makefile("rb")
        t = time.monotonic()
        conn.sendall(b"after 300\n")
        line = f.readline().decode().strip()
        waited = time.monotonic() - t
        print("%s after %.2f s" % (line, waited))
        ok = line == "after fired" and 0.25 < waited < 1.0
        t = time.monotonic()
        conn.sendall(b"tick 100 3\n")
        lines = [f.readline().decode().strip() for _ in range(4)]
        waited = time.monotonic() - t
        print("%s in %.2f s" % (lines, waited))
        ok = ok and lines == ["tick 1", "tick 2", "tick 3", "done"] and 0.25 < waited < 1.0
        conn.sendall(b"tick 100 1000\n")      # then hang up: on_close clears the timer
        f.readline()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    args = sys.argv[1:]
    mode = args.pop(0) if args and not args[0].isdigit() else "server"
    if mode == "standalone":
        standalone()
    else:
        port = int(args[0]) if args else 9501
        {"server": serve, "client": client}[mode](port)

"""gswoole.EventLoopError: what triggers it and the fix.

    python examples/event_loop_error.py [port]           # the server (default port 9501)
    python examples/event_loop_error.py client [port]    # the demonstration client

Server(...) refuses to be created in a process that already runs async I/O,
because the workers are forked from this process and would each inherit a
copy of the running loop's greenlets and timers. The script:

1. patches with gevent.monkey (fine: patching starts nothing);
2. starts a timer and a greenlet *before* Server(...): EventLoopError;
3. cancels them, creates the server, and starts the same timer and greenlet
   in workerStart instead, where each worker gets its own.

The client asks "ticks": how often this worker's timer has fired so far.
"""
import os
import socket
import sys
import time


def serve(port):
    import gevent

    import gswoole

    gswoole.patch_all()            # monkey patching alone is fine

    state = {"ticks": 0, "greenlet": None}

    def on_tick(timer_id):
        state["ticks"] += 1

    def background_job():
        while True:                # e.g. a cache refresher
            gevent.sleep(1)

    # -- the mistake ----------------------------------------------------------
    timer_id = gswoole.Timer.tick(100, on_tick)
    job = gevent.spawn(background_job)
    try:
        gswoole.Server("127.0.0.1", port)
    except gswoole.EventLoopError as exc:
        print("EventLoopError: %s\n" % exc, flush=True)
    else:
        raise SystemExit("expected EventLoopError")
    gswoole.Timer.clear(timer_id)
    job.kill()
    gevent.sleep(0)     # let the loop run the killed greenlet's last callback

    # -- the fix: create them in workerStart, in each worker ------------------
    server = gswoole.Server("127.0.0.1", port)
    server.set(worker_num=2)

    def on_worker_start(server, worker_id):
        server.tick(100, on_tick)
        state["greenlet"] = gevent.spawn(background_job)

    def on_receive(server, fd, reactor_id, data):
        server.send(fd, "worker=%d pid=%d ticks=%d\n"
                    % (server.worker_id, os.getpid(), state["ticks"]))

    server.on("workerStart", on_worker_start)
    server.on("receive", on_receive)
    server.on("start", lambda server: print(
        "event_loop_error listening on 127.0.0.1:%d (master pid %d)"
        % (server.port, server.master_pid), flush=True))
    server.start()


def client(port):
    time.sleep(0.5)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"ticks\n")
        line = conn.makefile("rb").readline().decode().strip()
    print(line)
    ticks = int(line.rsplit("=", 1)[1])
    sys.exit(0 if ticks >= 3 else 1)


if __name__ == "__main__":
    args = sys.argv[1:]
    mode = args.pop(0) if args and not args[0].isdigit() else "server"
    port = int(args[0]) if args else 9501
    {"server": serve, "client": client}[mode](port)

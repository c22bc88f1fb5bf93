"""Per-connection state with server.session(fd), a leak it avoids, and
max_request as the cure for slow leaks.

    python examples/sessions.py [port]           # the server (default port 9501)
    python examples/sessions.py client [port]    # the demonstration client

A line protocol. Until a line is complete its bytes wait in a per-connection
buffer, kept twice here to compare the two ways of doing it:

* ``LEAKY_BUFFERS[fd]``: a module-level dict keyed by fd, the pattern common in
  Swoole code. Nothing removes an entry when its connection goes away (a close
  callback could, but one forgotten branch or one exception is enough), so it
  grows for ever.
* ``server.session(fd)``: a dict gswoole frees after the close callback.

Commands:  ``stats`` -> "pid=.. requests=.. leaky_entries=.. open_sessions=.."

The worker is recycled after max_request receive events (here 40, no
jitter), which also throws away whatever it leaked.
"""
import os
import socket
import sys
import time

LEAKY_BUFFERS = {}            # the anti-pattern; do not copy


def serve(port):
    import gswoole

    server = gswoole.Server("127.0.0.1", port)
    server.set(worker_num=1, max_request=40, max_request_grace=0)
    requests = 0

    def on_receive(server, fd, reactor_id, data):
        nonlocal requests
        requests += 1
        LEAKY_BUFFERS[fd] = LEAKY_BUFFERS.get(fd, b"") + data      # leaks on every close
        session = server.session(fd)                                 # freed after close
        buf = session.get("buf", b"") + data
        *lines, session["buf"] = buf.split(b"\n")
        for line in lines:
            if line.strip() == b"stats":
                server.send(fd, "pid=%d requests=%d leaky_entries=%d open_sessions=%d\n"
                            % (os.getpid(), requests, len(LEAKY_BUFFERS),
                               len(server.get_client_list())))
            else:
                server.send(fd, b"echo: " + line + b"\n")
        # ``buf``, ``lines`` and ``data`` are locals: they are freed when this
        # callback returns. Only what you store somewhere outlives it.

    server.on("receive", on_receive)
    server.on("workerStart", lambda server, worker_id: print(
        "worker #%d started, pid %d" % (worker_id, os.getpid()), flush=True))
    server.on("start", lambda server: print(
        "sessions listening on 127.0.0.1:%d (master pid %d)" % (server.port, server.master_pid),
        flush=True))
    server.start()


def stats(port):
    for attempt in range(50):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(b"stats\n")
                line = conn.makefile("rb").readline().decode().strip()
            if line:
                return dict(item.split("=") for item in line.split())
        except OSError:
            pass
        time.sleep(0.1)     # a recycled worker's replacement is still starting
    raise SystemExit("no answer to stats")


def client(port):
    first = stats(port)
    pids = [first["pid"]]
    leaky_seen = []
    for round_ in range(6):
        # Ten clients that send half a line and go away.
        for _ in range(10):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(b"half a line, never fini")
        time.sleep(0.1)  # let the worker see the closes
        s = stats(port)
        leaky_seen.append(int(s["leaky_entries"]))
        print("round %d: pid=%s requests=%s leaky_entries=%s open_sessions=%s"
              % (round_, s["pid"], s["requests"], s["leaky_entries"], s["open_sessions"]))
        if s["pid"] != pids[-1]:
            pids.append(s["pid"])
            print("         -> a new worker (max_request=40 recycled the old one); "
                  "its leaked entries are gone with it")
    grew = any(b > a for a, b in zip(leaky_seen, leaky_seen[1:]))
    sys.exit(0 if grew and len(pids) > 1 else 1)


if __name__ == "__main__":
    args = sys.argv[1:]
    mode = args.pop(0) if args and not args[0].isdigit() else "server"
    port = int(args[0]) if args else 9501
    {"server": serve, "client": client}[mode](port)

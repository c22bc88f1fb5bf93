"""Every way of giving on() a callback, and the mistakes on() rejects.

    python examples/callback_styles.py [port]           # the server (default port 9501)
    python examples/callback_styles.py client [port]    # the demonstration client

Before starting, the script shows four registrations that on() refuses (an
unknown event, a string that does not resolve, something not callable, a
function with the wrong number of arguments), each with the error message
you would get. Then it registers one event in each of the eight styles.

Commands: any line is echoed by the bound method; "crash" makes the worker
exit abnormally, so the master runs workerError and starts a replacement.
"""
import functools
import os
import socket
import sys
import time


class EchoApp:
    """Handlers as methods of an object that holds their state."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.lines = 0

    def on_receive(self, server, fd, reactor_id, data):     # style: bound method
        for line in data.splitlines():
            if line == b"crash":
                os._exit(3)                                 # simulate a crashing worker
            self.lines += 1
            server.send(fd, self.prefix + line + b"\n")

    def on_close(self, server, fd, reactor_id):             # style: (object, "method_name")
        print("close fd=%d after %d line(s) in this worker" % (fd, self.lines), flush=True)


class WorkerStopped:
    """A callable object: an instance with __call__."""

    def __call__(self, server, worker_id):
        print("workerStop: worker #%d (pid %d) is exiting" % (worker_id, os.getpid()),
              flush=True)


def announce(server):                                       # style: plain function
    print("callback_styles listening on 127.0.0.1:%d (master pid %d)"
          % (server.port, server.master_pid), flush=True)


def worker_started(label, server, worker_id):               # used through functools.partial
    print("%s: worker #%d started (pid %d)" % (label, worker_id, os.getpid()), flush=True)


def show_rejections(server):
    def wrong_arity(server, fd):            # receive takes (server, fd, reactor_id, data)
        pass

    attempts = [
        ("recieve", lambda server, fd, reactor_id, data: None),   # unknown event (typo)
        ("connect", "handlers:no_such_function"),                 # string that does not resolve
        ("connect", "no_such_module:on_connect"),
        ("close", 42),                                            # not callable
        ("receive", wrong_arity),                                 # wrong arity
    ]
    for event, callback in attempts:
        try:
            server.on(event, callback)
        except gswoole.CallbackError as exc:
            print("on(%r, ...) rejected: %s" % (event, exc), flush=True)
        else:
            raise AssertionError("on(%r) should have failed" % event)


def serve(port):
    server = gswoole.Server("127.0.0.1", port)
    server.set(worker_num=2, log_level="warning")
    show_rejections(server)
    app = EchoApp(prefix=b"echo: ")
    server.on("start", announce)                                        # function
    server.on("shutdown", lambda server: print("shutdown: all workers gone", flush=True))
    server.on("WorkerStart", functools.partial(worker_started, "partial"))  # functools.partial
    server.on("onWorkerStop", WorkerStopped())                          # callable object
    server.on("worker_error", "handlers:log_worker_error")              # "module:function"
    server.on("connect", "handlers:Greeter.on_connect")                 # "module:Class.method"
    server.on("receive", app.on_receive)                                # bound method
    server.on("close", (app, "on_close"))                               # (object, "method")
    server.start()


def client(port):
    def talk(lines):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            f = conn.makefile("rb")
            greeting = f.readline().decode().strip()
            replies = []
            for line in lines:
                conn.sendall(line + b"\n")
                replies.append(f.readline().decode().strip())
            return greeting, replies

    greeting, replies = talk([b"one", b"two"])
    print(greeting)
    print(replies)
    ok = greeting.startswith("welcome, fd") and replies == ["echo: one", "echo: two"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.makefile("rb").readline()
        conn.sendall(b"crash\n")
        crashed = conn.recv(100) == b""
    print("worker crashed on purpose, connection closed:", crashed)
    time.sleep(0.5)
    greeting, replies = talk([b"still serving"])
    print(greeting, replies)
    ok = ok and crashed and replies == ["echo: still serving"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    args = sys.argv[1:]
    mode = args.pop(0) if args and not args[0].isdigit() else "server"
    port = int(args[0]) if args else 9501
    if mode == "server":
        import gswoole
        serve(port)
    else:
        client(port)

"""gswoole.AsyncClient (callbacks) and gswoole.Client (blocking style) against a line server.

    python examples/async_client.py [port]          # the server (default port 9501)
    python examples/async_client.py client [port]   # the clients, in a plain script

Server commands, one per line: "sleep S" (answers "slept S" after S seconds,
waiting in its own connection's greenlet), "bye" (answers, then closes).
Every connection is greeted with "welcome".
"""
import socket
import sys
import time

import gevent

import gswoole

FRAMING = dict(open_eof_split=True, package_eof=b"\n")


def on_connect(server, fd, reactor_id):
    server.send(fd, b"welcome\n")


def on_receive(server, fd, reactor_id, line):
    command, _, arg = line.strip().decode().partition(" ")
    if command == "sleep":
        gevent.sleep(float(arg))
        server.send(fd, b"slept %s\n" % arg.encode())
    elif command == "bye":
        server.send(fd, b"bye\n")
        server.close(fd)
    else:
        server.send(fd, b"unknown command\n")


def serve(port):
    server = gswoole.Server("127.0.0.1", port)
    server.set(worker_num=2, **FRAMING)
    server.on("connect", on_connect)
    server.on("receive", on_receive)
    server.on("start", lambda s: print("async_client server listening on 127.0.0.1:%d "
                                       "(master pid %d)" % (s.port, s.master_pid), flush=True))
    server.start()


# -- clients ----------------------------------------------------------------

def async_clients(port):
    """Three AsyncClients, no references kept, and one whose connect fails."""
    from gswoole.client import live_async_clients

    logs = {}

    def start(name, target_port):
        log = logs[name] = []
        client = gswoole.AsyncClient(gswoole.SOCK_TCP)
        client.set(FRAMING)                      # one receive per line, as on the server
        client.on("connect", lambda c: (log.append("connect"), c.send(b"sleep 0.2\nbye\n")))
        client.on("receive", lambda c, line: log.append(line.strip().decode()))
        client.on("error", lambda c: log.append("error %d (%s)" % (c.errCode, c.errMsg)))
        client.on("close", lambda c: log.append("close"))
        client.connect("127.0.0.1", target_port, timeout=2.0)   # returns True at once
        # `client` goes out of scope here: gswoole keeps it alive until it closes.

    # A bound socket that does not listen: connecting to it is refused.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    started = time.monotonic()
    for i in range(3):
        start("client %d" % i, port)
    start("refused", closed.getsockname()[1])
    print("AsyncClients alive after connect():", live_async_clients())
    gevent.wait(timeout=10)        # run the hub until every client has finished
    closed.close()
    for name, log in logs.items():
        print("  %-9s %s" % (name, " -> ".join(log)))
    print("AsyncClients alive at the end: %d (all done in %.2f s)"
          % (live_async_clients(), time.monotonic() - started))
    return all(log[-1] == "close" for name, log in logs.items() if name != "refused") \
        and logs["refused"][0].startswith("error")


def blocking_clients(port):
    """gswoole.Client waits cooperatively: five clients in greenlets run at once."""
    def one(n):
        client = gswoole.Client(gswoole.SOCK_TCP)
        client.set(FRAMING, timeout=2.0)
        if not client.connect("127.0.0.1", port):
            return "connect failed: %s" % client.errMsg
        with client:
            assert client.recv() == b"welcome\n"
            client.send(b"sleep 0.3\n")
            return client.recv().strip().decode()

    started = time.monotonic()
    jobs = [gevent.spawn(one, n) for n in range(5)]
    gevent.joinall(jobs, timeout=10)
    print("5 Clients in greenlets, each 'sleep 0.3': %s in %.2f s"
          % ([job.value for job in jobs], time.monotonic() - started))

    # The default timeout is Swoole's 0.5 s. A recv() that times out returns
    # False (ETIMEDOUT) and leaves the connection usable.
    client = gswoole.Client(gswoole.SOCK_TCP)
    client.set(FRAMING)
    client.connect("127.0.0.1", port)
    client.recv()                            # welcome
    client.send(b"sleep 0.8\n")
    started = time.monotonic()
    first = client.recv()
    print("recv() with the default timeout: %r after %.1f s, errCode %d (%s)"
          % (first, time.monotonic() - started, client.errCode, client.errMsg))
    late = client.recv(timeout=2.0)
    print("recv(timeout=2.0) on the same connection: %r" % late)
    client.close()
    return first is False and late == b"slept 0.8\n"


def run_client(port):
    ok = async_clients(port)
    ok = blocking_clients(port) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    args = sys.argv[1:]
    port = int(args[-1]) if args and args[-1].isdigit() else 9501
    if args[:1] == ["client"]:
        sys.exit(run_client(port))
    serve(port)

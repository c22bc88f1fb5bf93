"""The order of connect / receive / close, and what blocking in a callback does.

    python examples/ordering.py [port]           # the server (default port 9501)
    python examples/ordering.py client [port]    # the demonstration client

A line protocol, one worker (so all the concurrency you see is gevent's,
inside one process):

    sleep S    wait S seconds cooperatively (gevent.sleep), then "slept S"
    ping       "pong"
    seq N      "ok N"  (the client checks the numbers come back in order)
    quit       "bye", then the server closes the connection
    closes     the last close events this worker saw: fd and who closed

Every callback checks that no other callback of the same connection is
running at the same time and prints OVERLAP if it ever finds one (it never
should).
"""
import collections
import socket
import sys
import time


def serve(port):
    import gevent

    import gswoole

    server = gswoole.Server("127.0.0.1", port)
    server.set(worker_num=1)
    recent_closes = collections.deque(maxlen=20)   # per worker process

    def enter(server, fd, event):
        session = server.session(fd)
        if session.get("in_callback"):
            print("OVERLAP: %s while %s runs for fd %d" % (event, session["in_callback"], fd),
                  flush=True)
        session["in_callback"] = event
        session.setdefault("events", []).append(event)

    def leave(server, fd):
        server.session(fd)["in_callback"] = None

    def on_connect(server, fd, reactor_id):
        enter(server, fd, "connect")
        try:
            server.send(fd, b"hello fd=%d\n" % fd)
        finally:
            leave(server, fd)

    def on_receive(server, fd, reactor_id, data):
        enter(server, fd, "receive")
        try:
            session = server.session(fd)
            # TCP is a byte stream: one receive may hold half a line or many lines.
            buf = session.get("buf", b"") + data
            *lines, session["buf"] = buf.split(b"\n")
            for line in lines:
                handle(server, fd, line.decode().split())
        finally:
            leave(server, fd)

    def handle(server, fd, words):
        if not words:
            return
        command, args = words[0], words[1:]
        if command == "sleep":
            gevent.sleep(float(args[0]))   # only this connection waits
            server.send(fd, "slept %s\n" % args[0])
        elif command == "ping":
            server.send(fd, b"pong\n")
        elif command == "seq":
            server.send(fd, "ok %s\n" % args[0])
        elif command == "quit":
            server.send(fd, b"bye\n")
            server.close(fd)   # no receive for this fd after this; close comes last
        elif command == "closes":
            server.send(fd, "".join("closed fd=%d by %s after %s\n" % c
                                    for c in recent_closes) + "end\n")
        else:
            server.send(fd, "unknown command %r\n" % command)

    def on_close(server, fd, reactor_id):
        enter(server, fd, "close")
        # reactor_id is -1 when the server called close(fd), else the worker id.
        who = "server" if reactor_id == -1 else "client"
        events = server.session(fd)["events"]
        summary = "%s,%dxreceive,%s" % (events[0], events.count("receive"), events[-1])
        recent_closes.append((fd, who, summary))
        print("close fd=%d by %s; events: %s" % (fd, who, summary), flush=True)
        # The session is freed after this callback returns; no leave() needed.

    server.on("connect", on_connect)
    server.on("receive", on_receive)
    server.on("close", on_close)
    server.on("start", lambda server: print(
        "ordering listening on 127.0.0.1:%d (master pid %d)" % (server.port, server.master_pid),
        flush=True))
    server.start()


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")
        self.hello = self.line()

    def send(self, text):
        self.sock.sendall(text.encode())

    def line(self):
        return self.file.readline().decode().rstrip("\n")

    def close(self):
        self.file.close()
        self.sock.close()


def client(port):
    import random
    failures = []

    def check(ok, message):
        print(("ok    " if ok else "FAIL  ") + message)
        if not ok:
            failures.append(message)

    # 1. A callback that waits delays only its own connection.
    a = Conn(port)
    started = time.monotonic()
    a.send("sleep 2\nping\n")
    b = Conn(port)
    worst = 0.0
    for _ in range(5):
        t = time.monotonic()
        b.send("ping\n")
        assert b.line() == "pong"
        worst = max(worst, time.monotonic() - t)
    check(worst < 0.5, "B's pings answered while A's callback sleeps (slowest %.3f s)" % worst)
    first, second = a.line(), a.line()
    took = time.monotonic() - started
    check((first, second) == ("slept 2", "pong") and took >= 2.0,
          "A got %r then %r after %.1f s: its ping waited behind its sleep" % (first, second, took))

    # 2. Receive in byte order, whatever the chunking.
    c = Conn(port)
    payload = "".join("seq %d\n" % i for i in range(2000)).encode()
    pos = 0
    while pos < len(payload):
        step = random.randint(1, 700)
        c.sock.sendall(payload[pos:pos + step])
        pos += step
    numbers = [int(c.line().split()[1]) for _ in range(2000)]
    check(numbers == list(range(2000)), "2000 lines sent in random chunks came back in order")

    # 3. Server close: "bye", then EOF; the close callback sees reactor_id -1.
    a.send("quit\n")
    check(a.line() == "bye" and a.file.read() == b"", "after quit: bye, then EOF")
    a.close()
    b.close()   # client closes: reactor_id is the worker id
    c.close()
    d = Conn(port)
    for _ in range(50):     # the worker sees B's and C's FIN a moment later
        d.send("closes\n")
        closes = []
        while True:
            line = d.line()
            if line == "end":
                break
            closes.append(line)
        if len(closes) >= 3:
            break
        time.sleep(0.05)
    d.close()
    for line in closes:
        print("      " + line)
    by_server = [l for l in closes if "by server" in l]
    check(len(by_server) == 1 and len(closes) >= 3,
          "exactly one close by the server (the quit), the rest by the client")
    check(all("connect," in l and l.endswith(",close") for l in closes),
          "every connection's events began with connect and ended with close")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    args = sys.argv[1:]
    mode = args.pop(0) if args and not args[0].isdigit() else "server"
    port = int(args[0]) if args else 9501
    {"server": serve, "client": client}[mode](port)

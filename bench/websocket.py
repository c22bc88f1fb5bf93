"""WebSocket benchmark: gswoole.websocket against the websockets package's
asyncio server on uvloop and gevent-websocket on gevent.pywsgi, in one run.

    python bench/websocket.py [--seconds 5] [--turns 1] [--only echo|broadcast]

echo: 64 connections, each sending a 64-byte binary message and waiting for
its echo before the next; round trips per second. broadcast: 1,000
connections; one of them asks for a broadcast, the server sends one 64-byte
binary message to all 1,000; up to 8 broadcasts are in flight; delivered
messages per second. Each server runs with one worker (one process), pinned
to CPU 0; the load generator (one process, epoll on raw sockets, frames
masked as a client must) is pinned to CPU 1. With --turns N each server
takes N turns and the medians are printed. Missing peers (uvloop,
gevent-websocket) are installed with pip first.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# bench/http.py would stand in for the standard library's http package (which
# websockets imports) with this folder first on sys.path.
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != os.path.realpath(HERE)]

import argparse  # noqa: E402
import base64  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

HOST = "127.0.0.1"
ROOT = os.path.dirname(HERE)
SERVERS = ("gswoole", "websockets", "geventwebsocket")
LABELS = {"gswoole": "gswoole.websocket", "websockets": "websockets asyncio + uvloop",
          "geventwebsocket": "gevent-websocket on pywsgi"}
PAYLOAD = b"m" * 64
MASK = b"\x11\x22\x33\x44"
ECHO_CONNS = 64
FANOUT_CONNS = 1000
WINDOW = 8          # broadcasts in flight
TRIGGER = "fanout"


# -- the servers (run as `websocket.py serve KIND`) -------------------------------

def serve_gswoole():
    import gswoole.websocket
    server = gswoole.websocket.Server(HOST, 0)
    server.set(worker_num=1, log_level="warning", max_conn=4096)

    def on_message(server, frame):
        if frame.data == TRIGGER:
            server.broadcast(PAYLOAD)
        else:
            server.push(frame.fd, frame.data)
    server.on("message", on_message)
    server.on("start", lambda s: print("PORT", s.port, flush=True))
    server.start()


def serve_websockets():
    import asyncio
    import logging

    import uvloop
    from websockets import broadcast
    from websockets.asyncio.server import serve

    logging.getLogger("websockets").setLevel(logging.CRITICAL)   # abrupt closes at the end
    clients = set()

    async def handler(ws):
        clients.add(ws)
        try:
            async for message in ws:
                if message == TRIGGER:
                    broadcast(clients, PAYLOAD)
                else:
                    await ws.send(message)
        finally:
            clients.discard(ws)

    async def main():
        async with serve(handler, HOST, 0, compression=None, max_queue=None,
                         ping_interval=None) as server:
            print("PORT", server.sockets[0].getsockname()[1], flush=True)
            await asyncio.Future()
    uvloop.run(main())


def serve_geventwebsocket():
    from gevent import pywsgi
    from geventwebsocket.handler import WebSocketHandler

    clients = set()

    def app(environ, start_response):
        ws = environ["wsgi.websocket"]
        clients.add(ws)
        try:
            while True:
                message = ws.receive()
                if message is None:
                    break
                if message == TRIGGER:
                    for other in list(clients):
                        try:
                            other.send(PAYLOAD, binary=True)
                        except Exception:
                            clients.discard(other)
                else:
                    ws.send(message, binary=True)
        finally:
            clients.discard(ws)
        return []
    server = pywsgi.WSGIServer((HOST, 0), app, handler_class=WebSocketHandler, log=None)
    server.start()
    print("PORT", server.server_port, flush=True)
    server.serve_forever()


# -- the load generator --------------------------------------------------------------

def client_frame(opcode, payload):
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + MASK + masked


ECHO_FRAME = client_frame(2, PAYLOAD)
TRIGGER_FRAME = client_frame(1, TRIGGER.encode())
REPLY_SIZE = 2 + len(PAYLOAD)       # an unmasked server frame of 64 bytes


def open_connection(port):
    sock = socket.create_connection((HOST, port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16))
    sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
                 b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("handshake: EOF")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError("handshake refused: %r" % head[:80])
    if head.split(b"\r\n\r\n", 1)[1]:
        raise RuntimeError("data before the first message")
    sock.setblocking(False)
    return sock


def run_echo(port, seconds, warmup):
    socks = [open_connection(port) for _ in range(ECHO_CONNS)]
    ep = select.epoll()
    by_fd = {}
    for s in socks:
        ep.register(s.fileno(), select.EPOLLIN)
        by_fd[s.fileno()] = [s.fileno(), 0]
        os.write(s.fileno(), ECHO_FRAME)
    count = 0
    start = time.perf_counter()
    measure_from = start + warmup
    end = measure_from + seconds
    counted_from = None
    read = os.read
    write = os.write
    while True:
        events = ep.poll(0)
        for fd, _ in events:
            data = read(fd, 65536)
            if not data:
                raise RuntimeError("server closed a connection")
            state = by_fd[fd]
            state[1] += len(data)
            while state[1] >= REPLY_SIZE:
                state[1] -= REPLY_SIZE
                count += 1
                write(fd, ECHO_FRAME)
        now = time.perf_counter()
        if counted_from is None and now >= measure_from:
            counted_from, base = now, count
        if now >= end:
            break
    for s in socks:
        s.close()
    return (count - base) / (now - counted_from)


def run_broadcast(port, seconds, warmup):
    socks = [open_connection(port) for _ in range(FANOUT_CONNS)]
    ep = select.epoll()
    received = {}
    for s in socks:
        ep.register(s.fileno(), select.EPOLLIN)
        received[s.fileno()] = 0
    trigger = socks[0].fileno()
    sent = 0
    done = 0            # broadcasts every connection has received
    total = 0           # messages delivered
    start = time.perf_counter()
    measure_from = start + warmup
    end = measure_from + seconds
    counted_from = None
    low = {fd: 0 for fd in received}     # connections at the lowest count
    while True:
        while sent - done < WINDOW:
            os.write(trigger, TRIGGER_FRAME)
            sent += 1
        for fd, _ in ep.poll(0.01):
            data = os.read(fd, 1 << 20)
            if not data:
                raise RuntimeError("server closed a connection")
            received[fd] += len(data)
            total += len(data)
            if fd in low and received[fd] // REPLY_SIZE > done:
                del low[fd]
        if not low:
            done = min(received.values()) // REPLY_SIZE
            low = {fd: 0 for fd, n in received.items() if n // REPLY_SIZE <= done}
        now = time.perf_counter()
        if counted_from is None and now >= measure_from:
            counted_from, base = now, total
        if now >= end:
            break
    for s in socks:
        s.close()
    return (total - base) / REPLY_SIZE / (now - counted_from)


# -- the driver ------------------------------------------------------------------------

def ensure_peers():
    missing = []
    for module, package in (("uvloop", "uvloop"), ("geventwebsocket", "gevent-websocket"),
                            ("websockets", "websockets")):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    if missing:
        print("installing", ", ".join(missing), flush=True)
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", *missing])


def start_server(kind):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "serve", kind],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=env)
    line = proc.stdout.readline().decode()
    if not line.startswith("PORT"):
        stop_server(proc)
        raise RuntimeError("%s did not start" % kind)
    return proc, int(line.split()[1])


def stop_server(proc):
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(5)


def measure(kind, test, seconds, warmup):
    proc, port = start_server(kind)
    try:
        load = subprocess.run([sys.executable, os.path.abspath(__file__), "load", test,
                               str(port), str(seconds), str(warmup)],
                              capture_output=True, text=True, timeout=seconds + warmup + 120)
        if load.returncode:
            raise RuntimeError("%s %s: %s" % (kind, test, load.stderr.strip()[-400:]))
        return json.loads(load.stdout)["rate"]
    finally:
        stop_server(proc)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--turns", type=int, default=1)
    parser.add_argument("--only", choices=("echo", "broadcast"))
    args = parser.parse_args()
    ensure_peers()
    cpus = os.cpu_count() or 1
    print("WebSocket benchmark: %d CPUs; servers on CPU 0, load generator on CPU 1; "
          "%.0f s per measurement after %.0f s warm-up, %d turn(s)"
          % (cpus, args.seconds, args.warmup, args.turns))
    tests = [t for t in ("echo", "broadcast") if args.only in (None, t)]
    targets = {"echo": 1.5, "broadcast": 2.0}
    units = {"echo": "round trips/s (64 conns, 64-byte binary)",
             "broadcast": "messages delivered/s (1,000 conns, 64-byte binary)"}
    for test in tests:
        rates = {kind: [] for kind in SERVERS}
        for _ in range(args.turns):
            for kind in SERVERS:
                rates[kind].append(measure(kind, test, args.seconds, args.warmup))
        median = {kind: statistics.median(r) for kind, r in rates.items()}
        print("\n%s: %s" % (test, units[test]))
        for kind in SERVERS:
            print("  %-30s %12s" % (LABELS[kind], "{:,.0f}".format(median[kind])))
        for peer in SERVERS[1:]:
            ratio = median["gswoole"] / median[peer]
            line = "  gswoole / %-24s %6.2fx" % (LABELS[peer], ratio)
            if peer == "websockets":
                line += "   (target >= %.1fx: %s)" % (
                    targets[test], "met" if ratio >= targets[test] else "NOT met")
            print(line)


def pin(core):
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > core:
        os.sched_setaffinity(0, {core})


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        pin(0)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        {"gswoole": serve_gswoole, "websockets": serve_websockets,
         "geventwebsocket": serve_geventwebsocket}[sys.argv[2]]()
    elif sys.argv[1:2] == ["load"]:
        pin(1)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        test, port, seconds, warmup = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), \
            float(sys.argv[5])
        rate = (run_echo if test == "echo" else run_broadcast)(port, seconds, warmup)
        print(json.dumps({"rate": rate}))
    else:
        main()

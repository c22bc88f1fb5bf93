"""The load generator: run as its own process, prints one JSON line.

    python bench/_load.py rt PORT[,PORT...] [--conns 64 --seconds 5 --warmup 1]
    python bench/_load.py frt PORT[,PORT...] [--pipeline 1 --check --conns 64 --seconds 5 ...]
    python bench/_load.py bulk PORT[,PORT...] [--mib 256 --rounds 10]
    python bench/_load.py idle PORT [--conns 10000]   (then holds them until stdin closes)

Several ports are measured in turns (short slices, or whole transfers, in
rotation) rather than one after the other: on a shared or virtual machine the
speed of the same code drifts by tens of percent from one second to the next,
and taking turns puts that drift on every server alike.

The round-trip loop is epoll on raw fds (os.read/os.write, no socket objects):
at 64 bytes the kernel's loopback path costs more than the Python around it.
Given a CPU of its own, it polls with a zero timeout so it never sleeps: a
sleeping generator would make each echo pay for a cross-CPU wake-up, charged
to the server under test. Its busy time counts only polls that returned
something, so ``rate / busy`` estimates its own ceiling.

``frt`` is the same loop over a length-framed echo: each connection writes
``--pipeline`` packets (4-byte big-endian body length, 64-byte body) in one
write and waits for all of them to come back. ``--check`` first streams a
varied set of packets, cut at awkward places, through each server and
compares the echo with what was sent.
"""

import argparse
import json
import os
import random
import resource
import select
import socket
import statistics
import sys
import threading
import time

MSG = b"m" * 64
HEADER = 4           # framed packets: uint32 big-endian body length, then the body
MiB = 1 << 20
SLICE = 0.5      # seconds per turn in the round-trip rotation


def connect(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def cpu_ticks(core):
    """(busy, total) clock ticks of CPU ``core`` so far; None if ``core`` is None.

    Per CPU rather than per process: the softirq time in which most of
    loopback TCP happens is not charged to any process."""
    if core is None:
        return None
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu%d " % core):
                ticks = [int(x) for x in line.split()[1:9]]
                return sum(ticks) - ticks[3] - ticks[4], sum(ticks)
    return None


class Usage:
    """Busy and total ticks of one CPU, summed over the intervals measured."""

    def __init__(self, core):
        self.core = core
        self.busy = self.total = 0

    def measure(self, fn, *args):
        start = cpu_ticks(self.core)
        result = fn(*args)
        end = cpu_ticks(self.core)
        if start is not None:
            self.busy += end[0] - start[0]
            self.total += end[1] - start[1]
        return result

    def fraction(self):
        return self.busy / self.total if self.total else None


def frame(body):
    return len(body).to_bytes(HEADER, "big") + body


class EchoClients:
    """``conns`` connections to one server, each with one message (``msg``,
    written at once) in flight."""

    def __init__(self, port, conns, spin, msg=MSG):
        self.spin = spin
        self.msg = msg
        self.socks = [connect(port) for _ in range(conns)]
        self.fds = [sock.fileno() for sock in self.socks]
        self.epoll = select.epoll()
        for sock in self.socks:
            sock.setblocking(False)
            self.epoll.register(sock.fileno(), select.EPOLLIN)
        self.count = 0
        self.busy = self.elapsed = 0.0

    def run(self, seconds):
        """Round trips for ``seconds``; then the echoes in flight are collected."""
        for fd in self.fds:
            os.write(fd, self.msg)
        count, busy, elapsed = _pump(self.epoll.poll, self.fds, seconds, self.spin, self.msg)
        self.count += count
        self.busy += busy
        self.elapsed += elapsed

    def reset(self):
        self.count = 0
        self.busy = self.elapsed = 0.0

    def close(self):
        for sock in self.socks:
            sock.close()
        self.epoll.close()


def _pump(poll, fds, seconds, spin, msg):
    """Returns (round trips, busy seconds, elapsed seconds)."""
    read, write, now = os.read, os.write, time.perf_counter
    size = len(msg)
    short = {}     # fd -> bytes of its echo received so far, when it came in pieces
    count = 0
    busy = 0.0
    start = t = now()
    end = start + seconds
    timeout = 0 if spin else 0.1
    while t < end:
        events = poll(timeout)
        if not events:
            t = now()
            continue
        if not spin:
            t = now()  # the wait inside poll was idle time
        for fd, _ in events:
            got = len(read(fd, 65536))
            if got != size:
                if not got:
                    raise ConnectionError("the server closed a connection")
                got += short.pop(fd, 0)
                if got < size:
                    short[fd] = got
                    continue
            count += 1
            write(fd, msg)
        t2 = now()
        busy += t2 - t
        t = t2
    elapsed = t - start
    # Collect what is still in flight, so the next turn starts clean and no
    # close ever finds unread data (that would be an RST, not a FIN).
    pending = {fd: size - short.get(fd, 0) for fd in fds}
    while pending:
        events = poll(10)
        if not events:
            raise TimeoutError("%d echo(es) never came back" % len(pending))
        for fd, _ in events:
            got = len(read(fd, 65536))
            if not got:
                raise ConnectionError("the server closed a connection")
            pending[fd] -= got
            if pending[fd] <= 0:
                del pending[fd]
    return count, busy, elapsed


def round_trips(ports, conns, seconds, warmup, server_core, spin, msg=MSG):
    clients = [EchoClients(port, conns, spin, msg) for port in ports]
    usage = [Usage(server_core) for _ in ports]
    for client in clients:
        client.run(warmup)
        client.reset()
    turns = max(1, round(seconds / SLICE))
    for _ in range(turns):
        for client, use in zip(clients, usage):
            use.measure(client.run, seconds / turns)
    for client in clients:
        client.close()
    return [{"rate": c.count / c.elapsed, "busy": c.busy / c.elapsed,
             "server_cpu": u.fraction()} for c, u in zip(clients, usage)]


def stream(port, chunks, echo=None):
    """Send ``chunks`` (from a thread) while reading the echo here; returns
    the seconds taken. The echo is appended to ``echo`` if one is given.
    A float among the chunks is a pause, in seconds, before the next one.

    Raises ConnectionError when the echo stops short: at these speeds three
    seconds without a byte means the rest is not coming."""
    sock = connect(port)
    sock.settimeout(3)
    total = sum(len(chunk) for chunk in chunks if not isinstance(chunk, float))
    failure = []

    def send():
        try:
            for chunk in chunks:
                if isinstance(chunk, float):
                    time.sleep(chunk)
                else:
                    sock.sendall(chunk)
        except OSError as exc:
            failure.append(exc)

    buf = bytearray(MiB)
    view = memoryview(buf)
    got = 0
    start = time.perf_counter()
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        while got < total:
            n = sock.recv_into(buf)
            if not n:
                raise ConnectionError("the server closed the connection")
            if echo is not None:
                echo += view[:n]
            got += n
        elapsed = time.perf_counter() - start
    except OSError as exc:
        raise ConnectionError("%s: %s of %s bytes never came back"
                              % (exc or type(exc).__name__, format(total - got, ","),
                                 format(total, ","))) from None
    finally:
        # Wakes a sender still blocked in sendall, so the join cannot hang.
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sender.join()
        sock.close()
    if failure:
        raise ConnectionError("sending failed: %s" % failure[0])
    return elapsed


def check_stream(port, mib=16):
    """Random bytes must come back unchanged and in order."""
    data = os.urandom(mib * MiB)
    echo = bytearray()
    stream(port, [data[i:i + MiB] for i in range(0, len(data), MiB)], echo)
    if echo != data:
        first = next(i for i, (a, b) in enumerate(zip(echo, data)) if a != b)
        raise ConnectionError("the echo differs from what was sent at byte %d" % first)


def check_framed(port, seed=1):
    """Framed packets of many sizes, cut at awkward places, must come back
    unchanged and in order. Returns an error message, or None.

    The pieces go out with a pause after each, so that the server reads them
    apart: headers split in two, a header without its body, a body in
    pieces, and many packets (the last one cut short) in one read. Whether
    each delivery is one whole packet only the server can tell: the gswoole
    echo checks that itself and hangs up when it is not."""
    rng = random.Random(seed)
    # 451 packets (echo.py says so when they pass)
    sizes = [0, 1, 63, 64, 65, 4092, 4096, 65532, 65536, 262144, 1 << 20]
    sizes += [rng.randrange(0, 300) for _ in range(400)] + [rng.randrange(300, 20000)
                                                          for _ in range(40)]
    rng.shuffle(sizes)
    packets = [frame(rng.randbytes(n)) for n in sizes]
    data = b"".join(packets)
    starts = [0]
    for packet in packets[:-1]:
        starts.append(starts[-1] + len(packet))
    cuts = set()
    for start in rng.sample(starts[1:], 60):
        cuts.add(start + rng.choice((1, 2, 3, HEADER, HEADER + 1)))
    cuts.update(rng.randrange(1, len(data)) for _ in range(30))
    chunks, prev = [], 0
    for cut in sorted(cuts) + [len(data)]:
        chunks += [data[prev:cut], 0.002]
        prev = cut
    echo = bytearray()
    try:
        stream(port, chunks, echo)
    except ConnectionError as exc:
        return "framed check: %s" % exc
    if echo != data:
        first = next(i for i, (a, b) in enumerate(zip(echo, data)) if a != b)
        return "framed check: the echo differs from what was sent at byte %d" % first
    return None


def framed_round_trips(ports, pipeline, check, **rt):
    errors = [[] for _ in ports]
    if check:
        for port, errs in zip(ports, errors):
            error = check_framed(port)
            if error:
                errs.append(error)
    results = round_trips(ports, msg=frame(MSG) * pipeline, **rt)
    for result, errs in zip(results, errors):
        result.update(packets=result["rate"] * pipeline, errors=errs)
    return results


class Bulk:
    """One server's bulk turns: MB/s of those that completed, errors of the rest."""

    def __init__(self, port, server_core, load_core):
        self.port = port
        self.runs = []
        self.errors = []
        self.server = Usage(server_core)
        self.load = Usage(load_core)

    def check(self):
        try:
            check_stream(self.port)
        except ConnectionError as exc:
            self.errors.append("random-data check: %s" % exc)

    def turn(self, chunks):
        try:
            seconds = self.load.measure(self.server.measure, stream, self.port, chunks)
        except ConnectionError as exc:
            self.errors.append(str(exc))
            return
        self.runs.append(sum(map(len, chunks)) / seconds / 1e6)

    def result(self):
        return {"mbps": statistics.median(self.runs) if self.runs else None, "runs": self.runs,
                "errors": self.errors, "server_cpu": self.server.fraction(),
                "busy": self.load.fraction()}


def bulk(ports, mib, rounds, server_core, load_core):
    chunks = [b"b" * MiB] * mib
    servers = [Bulk(port, server_core, load_core) for port in ports]
    for server in servers:
        server.check()
    for _ in range(rounds):
        for server in servers:
            server.turn(chunks)
    return [server.result() for server in servers]


def idle(port, conns, batch=256):
    """Open ``conns`` connections, echo once on each, hold them until stdin closes.

    Batches stay under the listen backlog so no SYN is dropped (a dropped SYN
    costs a one-second retransmit and would measure the backlog instead)."""
    socks = []
    start = time.perf_counter()
    while len(socks) < conns:
        opened = [connect(port) for _ in range(min(batch, conns - len(socks)))]
        for sock in opened:
            sock.sendall(MSG)
        for sock in opened:
            echo = b""
            while len(echo) < len(MSG):
                data = sock.recv(len(MSG) - len(echo))
                if not data:
                    raise ConnectionError("EOF on connection %d" % len(socks))
                echo += data
            if echo != MSG:
                raise ConnectionError("wrong echo on connection %d" % len(socks))
        socks.extend(opened)
    print(json.dumps({"open": len(socks), "seconds": time.perf_counter() - start}), flush=True)
    sys.stdin.read()
    for sock in socks:
        sock.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("rt", "frt", "bulk", "idle"))
    parser.add_argument("ports", type=lambda s: [int(p) for p in s.split(",")])
    parser.add_argument("--core", type=int, help="CPU to pin this process to")
    parser.add_argument("--server-core", type=int, help="CPU whose busy time to report")
    parser.add_argument("--conns", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--pipeline", type=int, default=1,
                        help="frt: packets per write, all echoed before the next write")
    parser.add_argument("--check", action="store_true",
                        help="frt: check each server's framed echo before measuring")
    args = parser.parse_args()
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.mode == "rt":
        # Spinning is only harmless on a CPU of our own.
        result = round_trips(args.ports, args.conns, args.seconds, args.warmup,
                             args.server_core, spin=args.core is not None)
    elif args.mode == "frt":
        result = framed_round_trips(args.ports, args.pipeline, args.check, conns=args.conns,
                                    seconds=args.seconds, warmup=args.warmup,
                                    server_core=args.server_core, spin=args.core is not None)
    elif args.mode == "bulk":
        result = bulk(args.ports, args.mib, args.rounds, args.server_core, args.core)
    else:
        idle(args.ports[0], args.conns)
        return
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

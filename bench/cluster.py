"""Cross-node sends: messages/s from node A to connections on node B, and the
latency a cross-node send adds over a send within one node.

    python bench/cluster.py [--messages 20000] [--rounds 500] [--senders 32]

Starts its own redis-server (loopback, no persistence) and two nodes (two
workers each). Figures:

* latency: a client (the asker) tells a worker of node A to send one line
  to a connection, and times from its request until that connection's
  client has the line; the median over ``--rounds``. Three targets, their
  rounds interleaved so they share the machine's noise: a connection of the
  asker's own worker (a send within one node: the peer the target is
  measured against), one of node A's other worker (a cross-worker send,
  for reference) and one of node B. The added latency is node B's minus
  the own worker's; the target is below one Redis round trip plus 100 us,
  the round trip being the median of a PING on a plain socket from this
  process (redis-py's PING, slower by its client code, is shown too).
* messages/s, one sender: one callback on node A sends ``--messages``
  messages to a client of node B in a loop (each send returns once Redis
  said node B heard it) and the client counts them until the last arrives.
* messages/s, ``--senders`` greenlets: the same messages sent by that many
  greenlets of one callback at once (many connections' callbacks sending
  at the same time, as in a chat).
"""

import argparse
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NODE = r"""
import os, sys, time
import gevent
import gswoole
server = gswoole.Server("127.0.0.1", 0)
server.set(worker_num=2, log_level="warning", open_eof_split=True, package_eof=b"\n",
           cluster_redis=sys.argv[1], cluster_secret="bench", node_id=sys.argv[2])
server.on("start", lambda s: os.write(1, b"READY %d\n" % s.port))

def receive(server, fd, reactor_id, data):
    cmd, _, rest = data.strip().partition(b" ")
    if cmd == b"fd":
        server.send(fd, b"%d %d\n" % (fd, server.worker_id))
    elif cmd == b"send":
        target, _, text = rest.partition(b" ")
        server.send(int(target), text + b"\n")
    elif cmd == b"blast":
        count, _, target = rest.partition(b" ")
        target = int(target)
        start = time.perf_counter()
        ok = sum(1 for i in range(int(count)) if server.send(target, b"m\n"))
        server.send(fd, b"%d %f\n" % (ok, time.perf_counter() - start))
    elif cmd == b"blastc":
        count, senders, target = (int(x) for x in rest.split())
        start = time.perf_counter()
        def sender(n):
            return sum(1 for i in range(n) if server.send(target, b"m\n"))
        jobs = [gevent.spawn(sender, count // senders + (i < count % senders))
                for i in range(senders)]
        gevent.joinall(jobs)
        ok = sum(job.value for job in jobs)
        server.send(fd, b"%d %f\n" % (ok, time.perf_counter() - start))
server.on("receive", receive)
server.start()
"""


class Line:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def ask(self, text):
        self.sock.sendall(text + b"\n")
        return self.line()


def start_redis(tmp):
    for _ in range(20):
        port = random.randint(20000, 60000)
        proc = subprocess.Popen([shutil.which("redis-server"), "--bind", "127.0.0.1", "--port",
                                 str(port), "--save", "", "--appendonly", "no", "--dir", tmp],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return proc, port
            except OSError:
                time.sleep(0.02)
        proc.kill()
        proc.wait()
    raise SystemExit("redis-server did not start")


def start_node(path, url, name):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, path, url, name], stdout=subprocess.PIPE,
                            start_new_session=True, env=env)
    line = proc.stdout.readline().split()
    return proc, int(line[1])


def latencies(asker, targets, rounds):
    """Median microseconds per target ((client, fd) each), rounds interleaved."""
    times = [[] for _ in targets]
    for i in range(rounds):
        for (client, fd), sink in zip(targets, times):
            start = time.perf_counter()
            asker.sock.sendall(b"send %d x%d\n" % (fd, i))
            assert client.line() == b"x%d" % i
            sink.append(time.perf_counter() - start)
    return [statistics.median(sink) * 1e6 for sink in times]


def connect_on(port, worker_id, others=()):
    """A connection of node ``port`` held by worker ``worker_id`` (and its fd):
    connections land on workers as the kernel spreads them, so try a few."""
    spare = []
    try:
        for _ in range(64):
            line = Line(port)
            fd, held_by = (int(x) for x in line.ask(b"fd").split())
            if held_by == worker_id:
                return line, fd
            spare.append(line)
        raise SystemExit("no connection landed on worker #%d" % worker_id)
    finally:
        for line in spare:
            line.sock.close()


def redis_rtt(port, rounds):
    """Median PING round trip, on a plain socket and through redis-py (us)."""
    import redis
    plain = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(rounds):
            start = time.perf_counter()
            sock.sendall(b"PING\r\n")
            assert sock.recv(64) == b"+PONG\r\n"
            plain.append(time.perf_counter() - start)
    client = redis.Redis(port=port)
    through = []
    for _ in range(rounds):
        start = time.perf_counter()
        client.ping()
        through.append(time.perf_counter() - start)
    client.close()
    return statistics.median(plain) * 1e6, statistics.median(through) * 1e6


def throughput(asker, remote, command, messages):
    start = time.perf_counter()
    asker.sock.sendall(command)
    for _ in range(messages):
        assert remote.line() == b"m"
    elapsed = time.perf_counter() - start
    ok, sender_time = asker.line().split()
    return messages / elapsed, elapsed, int(ok), float(sender_time)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--senders", type=int, default=32)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="gswoole-bench-cluster-")
    path = os.path.join(tmp, "node.py")
    with open(path, "w") as f:
        f.write(NODE)
    redis_proc, port = start_redis(tmp)
    url = "redis://127.0.0.1:%d/0" % port
    nodes, lines = [], []
    try:
        nodes = [start_node(path, url, name) for name in ("a", "b")]
        (_, port_a), (_, port_b) = nodes
        asker, _ = connect_on(port_a, 0)
        own, own_fd = connect_on(port_a, 0)
        other, other_fd = connect_on(port_a, 1)
        remote = Line(port_b)
        remote_fd = int(remote.ask(b"fd").split()[0])
        lines = [asker, own, other, remote]
        deadline = time.monotonic() + 10   # B's cluster process subscribes after READY
        while True:
            asker.sock.sendall(b"send %d hello\n" % remote_fd)
            remote.sock.settimeout(0.5)
            try:
                if remote.line() == b"hello":
                    break
            except socket.timeout:
                if time.monotonic() > deadline:
                    raise SystemExit("node b never got node a's sends")
            finally:
                remote.sock.settimeout(30)
        latencies(asker, [(own, own_fd), (other, other_fd), (remote, remote_fd)], 50)  # warm
        rtt, rtt_redis_py = redis_rtt(port, args.rounds)
        within, across_workers, across = latencies(
            asker, [(own, own_fd), (other, other_fd), (remote, remote_fd)], args.rounds)
        one = throughput(asker, remote, b"blast %d %d\n" % (args.messages, remote_fd),
                         args.messages)
        many = throughput(asker, remote, b"blastc %d %d %d\n" % (args.messages, args.senders,
                                                                remote_fd), args.messages)
        for name, (rate, elapsed, ok, sender_time) in (("1 sender", one),
                                                        ("%d senders" % args.senders, many)):
            print("messages/s node A -> node B, %-10s %6.0f (%d messages in %.2f s; %d sent "
                  "ok; the senders took %.2f s)" % (name + ":", rate, args.messages, elapsed,
                                                    ok, sender_time))
        print("send latency, median of %d rounds (interleaved):" % args.rounds)
        print("  within node A, same worker:   %4.0f us" % within)
        print("  within node A, other worker:  %4.0f us" % across_workers)
        print("  node A -> node B:             %4.0f us" % across)
        print("added by crossing nodes:        %4.0f us (vs the same worker)" % (across - within))
        print("Redis round trip (PING):        %4.0f us on a plain socket (%.0f us through "
              "redis-py)" % (rtt, rtt_redis_py))
        print("target: added < round trip + 100 us = %.0f us: %s"
              % (rtt + 100, "met" if across - within < rtt + 100 else "NOT met"))
    finally:
        for line in lines:
            line.sock.close()
        for proc, _ in nodes:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
        redis_proc.kill()
        redis_proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

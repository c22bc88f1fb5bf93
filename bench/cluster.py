"""Cross-node sends: messages/s from node A to connections on node B, and the
latency a cross-node send adds over a send within one node.

    python bench/cluster.py [--messages 20000] [--rounds 300]

Starts its own redis-server (loopback, no persistence) and two nodes (two
workers each). Figures:

* messages/s: one callback on node A sends ``--messages`` messages to a
  client of node B (each send is one PUBLISH round trip: the greenlet waits
  for Redis's answer) and the client counts them until the last arrives.
* latency: a client asks node A to send one line to a connection, and times
  until that connection's client has it; the median over ``--rounds``, for
  a connection of node A (the peer: within one node) and of node B. The
  added latency is the difference; the target is below one Redis round trip
  (PING from this process, median) plus 100 us.
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
import gswoole
server = gswoole.Server("127.0.0.1", 0)
server.set(worker_num=2, log_level="warning", open_eof_split=True, package_eof=b"\n",
           cluster_redis=sys.argv[1], cluster_secret="bench", node_id=sys.argv[2])
server.on("start", lambda s: os.write(1, b"READY %d\n" % s.port))

def receive(server, fd, reactor_id, data):
    cmd, _, rest = data.strip().partition(b" ")
    if cmd == b"fd":
        server.send(fd, b"%d\n" % fd)
    elif cmd == b"send":
        target, _, text = rest.partition(b" ")
        server.send(int(target), text + b"\n")
    elif cmd == b"blast":
        count, _, target = rest.partition(b" ")
        target = int(target)
        start = time.perf_counter()
        ok = sum(1 for i in range(int(count)) if server.send(target, b"m\n"))
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


def latency(asker, target_client, target_fd, rounds):
    times = []
    for i in range(rounds):
        start = time.perf_counter()
        asker.sock.sendall(b"send %d x%d\n" % (target_fd, i))
        assert target_client.line() == b"x%d" % i
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    import redis
    tmp = tempfile.mkdtemp(prefix="gswoole-bench-cluster-")
    path = os.path.join(tmp, "node.py")
    with open(path, "w") as f:
        f.write(NODE)
    redis_proc, port = start_redis(tmp)
    url = "redis://127.0.0.1:%d/0" % port
    nodes = []
    try:
        nodes = [start_node(path, url, name) for name in ("a", "b")]
        (_, port_a), (_, port_b) = nodes
        asker, local, remote = Line(port_a), Line(port_a), Line(port_b)
        local_fd, remote_fd = int(local.ask(b"fd")), int(remote.ask(b"fd"))
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
        client = redis.Redis(port=port)
        pings = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            client.ping()
            pings.append(time.perf_counter() - start)
        rtt = statistics.median(pings) * 1e6
        within = latency(asker, local, local_fd, args.rounds)
        across = latency(asker, remote, remote_fd, args.rounds)
        start = time.perf_counter()
        asker.sock.sendall(b"blast %d %d\n" % (args.messages, remote_fd))
        for _ in range(args.messages):
            assert remote.line() == b"m"
        elapsed = time.perf_counter() - start
        ok, sender_time = asker.line().split()
        print("messages/s node A -> node B: %.0f (%d messages in %.2f s; %s sent ok; "
              "the sender's loop took %.2f s)" % (args.messages / elapsed, args.messages,
                                                  elapsed, ok.decode(), float(sender_time)))
        print("send latency within node A:  %.0f us (median of %d)" % (within, args.rounds))
        print("send latency node A -> B:    %.0f us" % across)
        print("added by crossing nodes:     %.0f us; Redis round trip (PING) %.0f us; "
              "target < %.0f us: %s" % (across - within, rtt, rtt + 100,
                                        "met" if across - within < rtt + 100 else "NOT met"))
    finally:
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

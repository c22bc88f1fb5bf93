"""Tasks through Redis (task_backend="redis") against local tasks.

    python bench/cluster_tasks.py [--rounds 500] [--tasks 5000] [--in-flight 100]

Starts its own redis-server (loopback, no persistence) and three nodes with
one event worker each:

* L: task_backend="local", two task workers (the peer: socketpairs);
* R: task_backend="redis", two task workers;
* S: task_backend="redis", no task workers: its tasks run on R's.

For each sender (L; R, whose tasks go through Redis to its own task
workers; S, whose tasks cross to node R), measured inside the sender's
event worker, in the greenlet of a receive callback:

* taskwait round trip: median and p99 over --rounds sequential taskwaits;
* tasks/s: --tasks tasks sent with task(callback=...), --in-flight at a
  time (each callback sends the next), until the last result is back.

The task is trivial (echo a small dict), so the figures are the cost of the
path, not of work.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cluster import Line, start_redis  # noqa: E402  (bench/cluster.py's helpers)

NODE = r"""
import json, os, sys, time
import gevent.event
import gswoole
url, name, backend, task_workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
server = gswoole.Server("127.0.0.1", 0)
server.set(worker_num=1, task_worker_num=task_workers, log_level="warning",
           open_eof_split=True, package_eof=b"\n", task_backend=backend,
           **(dict(cluster_redis=url, cluster_secret="bench", node_id=name)
              if backend == "redis" else {}))
server.on("start", lambda s: os.write(1, b"READY %d\n" % s.port))
server.on("task", lambda server, task_id, src, data: data)

def seq(rounds):
    times = []
    for i in range(rounds):
        start = time.perf_counter()
        assert server.taskwait({"i": i, "p": "x" * 32}, timeout=10)["i"] == i
        times.append(time.perf_counter() - start)
    times.sort()
    return {"median_us": times[len(times) // 2] * 1e6,
            "p99_us": times[min(len(times) - 1, int(len(times) * 0.99))] * 1e6}

def flight(total, in_flight):
    done = gevent.event.Event()
    state = {"sent": 0, "back": 0}
    def send_one():
        state["sent"] += 1
        server.task({"p": "x" * 32}, callback=back)
    def back(server, task_id, result):
        state["back"] += 1
        if state["sent"] < total:
            send_one()
        elif state["back"] == total:
            done.set()
    start = time.perf_counter()
    for _ in range(min(in_flight, total)):
        send_one()
    if not done.wait(120):
        return {"error": "only %d of %d results" % (state["back"], total)}
    return {"tasks_per_s": total / (time.perf_counter() - start)}

def receive(server, fd, reactor_id, data):
    cmd, *args = data.split()
    if cmd == b"ping":
        reply = server.taskwait({"p": "x"}, timeout=1) is not False
    elif cmd == b"seq":
        reply = seq(int(args[0]))
    else:
        reply = flight(int(args[0]), int(args[1]))
    server.send(fd, json.dumps(reply).encode() + b"\n")
server.on("receive", receive)
server.start()
"""


def start_node(path, url, name, backend, task_workers):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, path, url, name, backend, str(task_workers)],
                            stdout=subprocess.PIPE, start_new_session=True, env=env)
    line = proc.stdout.readline().split()
    if not line:
        raise SystemExit("node %s did not start" % name)
    return proc, int(line[1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, default=100)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="gswoole-bench-cluster-tasks-")
    path = os.path.join(tmp, "node.py")
    with open(path, "w") as f:
        f.write(NODE)
    redis_proc, port = start_redis(tmp)
    url = "redis://127.0.0.1:%d/0" % port
    nodes = []
    try:
        for name, backend, task_workers in (("L", "local", 2), ("R", "redis", 2),
                                            ("S", "redis", 0)):
            nodes.append((name, start_node(path, url, name, backend, task_workers)))
        figures = {}
        for name, (_, node_port) in nodes:
            line = Line(node_port)
            for _ in range(100):   # until the node's cluster process hears results
                if json.loads(line.ask(b"ping")):
                    break
            else:
                raise SystemExit("node %s never got a task result" % name)
            figures[name] = dict(json.loads(line.ask(b"seq %d" % args.rounds)),
                                 **json.loads(line.ask(b"flight %d %d"
                                                       % (args.tasks, args.in_flight))))
            line.sock.close()
        labels = {"L": "local (socketpairs)", "R": "redis, same node",
                  "S": "redis, node S -> R"}
        for name in "LRS":
            fig = figures[name]
            print("%-22s taskwait median %6.0f us  p99 %6.0f us   tasks/s %7.0f"
                  % (labels[name], fig["median_us"], fig["p99_us"], fig.get("tasks_per_s", 0)))
        local = figures["L"]
        for name in "RS":
            print("%s / local: round trip x%.1f, tasks/s x%.2f"
                  % (labels[name], figures[name]["median_us"] / local["median_us"],
                     figures[name].get("tasks_per_s", 0) / local["tasks_per_s"]))
    finally:
        for _, (proc, _) in nodes:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        redis_proc.kill()
        redis_proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

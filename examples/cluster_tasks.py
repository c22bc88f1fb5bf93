"""Tasks that any node of a cluster runs (task_backend="redis").

    redis-server --port 6379 --save '' &
    python examples/cluster_tasks.py web 9501 0 &    # node "web": no task workers
    python examples/cluster_tasks.py jobs 9502 2 &   # node "jobs": two task workers
    python examples/cluster_tasks.py client 9501

Node "web" has no task workers of its own: each line a client sends
becomes a task in the cluster's Redis stream, a task worker of node "jobs"
(or of any node with task workers and task_backend="redis") runs it, and
the result comes back to the worker of "web" that waits for it. Task data
and results cross Redis as signed JSON: str, int, float, bool, None, lists,
dicts with str keys, and bytes. CLUSTER_REDIS and CLUSTER_SECRET in the
environment override the defaults below.
"""

import json
import os
import socket
import sys

import gswoole

REDIS = os.environ.get("CLUSTER_REDIS", "redis://127.0.0.1:6379/0")
SECRET = os.environ.get("CLUSTER_SECRET", "change me: the same on every node")


def serve(node_id, port, task_workers):
    server = gswoole.Server("127.0.0.1", port)
    server.set(worker_num=1, task_worker_num=task_workers, open_eof_split=True,
               package_eof=b"\n", cluster_redis=REDIS, cluster_secret=SECRET,
               node_id=node_id, task_backend="redis", task_reclaim_time=30)

    def on_task(server, task_id, src_worker_id, data):
        # At-least-once: a task whose node dies mid-task runs again
        # elsewhere, so a task must be safe to run twice (this one is).
        a, b = 0, 1
        for _ in range(data["n"]):
            a, b = b, a + b
        return {"n": data["n"], "fib": a, "node": node_id, "pid": os.getpid()}

    def on_receive(server, fd, reactor_id, data):
        numbers = [int(word) for word in data.split()]
        if len(numbers) == 1:
            results = [server.taskwait({"n": numbers[0]}, timeout=10)]
        else:
            found = server.taskwait_multi([{"n": n} for n in numbers], timeout=10)
            results = [found.get(i) for i in range(len(numbers))]
        server.send(fd, json.dumps(results).encode() + b"\n")

    server.on("receive", on_receive)
    if task_workers:
        server.on("task", on_task)
    server.on("start", lambda s: print("node %s: master %d on 127.0.0.1:%d"
                                       % (node_id, s.master_pid, s.port), flush=True))
    server.start()


def client(port):
    with socket.create_connection(("127.0.0.1", port), timeout=15) as conn:
        reader = conn.makefile("rb")
        for line in (b"30\n", b"10 20 90\n"):
            conn.sendall(line)
            for result in json.loads(reader.readline()):
                print("fib(%(n)d) = %(fib)d, run by node %(node)s (pid %(pid)d)" % result)


if __name__ == "__main__":
    if sys.argv[1] == "client":
        client(int(sys.argv[2]))
    else:
        serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))

"""task_backend = "redis": tasks in one Redis stream that the task workers
of every node read (gswoole/cluster/tasks.py). Real nodes on one machine
joined through a real redis-server, and the sans-IO pieces on their own."""

import json
import os
import signal

import pytest

import gswoole
from conftest import wait_until
from gswoole.cluster import tasks as cluster_tasks, wire
from gswoole.errors import SettingError
from redis_server import RedisServer
from test_cluster import Client

SECRET = "test-secret"

# A node whose clients send one JSON command per line and get one JSON
# line back. The task callback says which node and process ran it.
NODE = """
import json, os, time
server.set(open_eof_split=True, package_eof=b"\\n")
NAME = {name!r}

def on_task(server, task_id, src_worker_id, data):
    op = data["op"]
    if op == "who":
        time.sleep(data.get("sleep", 0))
        return {{"node": NAME, "pid": os.getpid(), "echo": data.get("echo")}}
    if op == "raise":
        raise ValueError("boom %s" % data.get("echo"))
    if op == "finish":
        server.finish({{"finished_by": NAME}})
        return "ignored"
    if op == "once":
        # The first run blocks (its node is killed meanwhile); a later run answers.
        try:
            fd = os.open(data["path"], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return {{"node": NAME, "pid": os.getpid()}}
        os.write(fd, NAME.encode())
        os.close(fd)
        while True:
            time.sleep(1)
    if op == "mark":
        open(data["path"], "w").close()
        return True

def on_finish(server, task_id, result):
    fd = PENDING.pop(task_id, None)
    if fd is not None:
        server.send(fd, json.dumps(["finish", task_id, result]).encode() + b"\\n")

PENDING = {{}}

def receive(server, fd, reactor_id, data):
    cmd, _, arg = data.decode().strip().partition(" ")
    arg = json.loads(arg) if arg else None
    if cmd == "wait":
        try:
            reply = server.taskwait(arg, timeout=20)
        except gswoole.TaskError as exc:
            reply = ["TaskError", str(exc)]
    elif cmd == "multi":
        found = server.taskwait_multi(arg, timeout=20)
        reply = [found.get(i) for i in range(len(arg))]
    elif cmd == "task":
        task_id = server.task(arg)
        PENDING[task_id] = fd
        return
    elif cmd == "callback":
        def done(server, task_id, result):
            server.send(fd, json.dumps(["callback", task_id, str(result)]).encode() + b"\\n")
        server.task(arg, callback=done)
        return
    elif cmd == "bad":
        try:
            server.task({{"op": "who", "echo": object()}})
            reply = "sent"
        except TypeError as exc:
            reply = ["TypeError", str(exc)]
    elif cmd == "dst":
        try:
            server.task({{"op": "who"}}, dst_worker_id=3)
            reply = "sent"
        except ValueError as exc:
            reply = ["ValueError", str(exc)]
    elif cmd == "try":
        reply = [server.task(arg), server.get_last_error()]
    else:
        reply = "unknown"
    server.send(fd, json.dumps(reply).encode() + b"\\n")

server.on("receive", receive)
server.on("finish", on_finish)
if {tasks}:
    server.on("task", on_task)
"""


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def start_node(serve, redis_server, name, tasks=1, reclaim=30):
    settings = ("cluster_redis=%r, cluster_secret=%r, node_id=%r, task_backend='redis', "
                "task_worker_num=%d, task_reclaim_time=%r"
                % (redis_server.url, SECRET, name, tasks, float(reclaim)))
    return serve(NODE.format(name=name, tasks=bool(tasks)), workers=1, settings=settings)


def ask(client, command, arg=None):
    client.sock.sendall(("%s %s\n" % (command, json.dumps(arg) if arg is not None else ""))
                        .encode())
    return json.loads(client.line(timeout=30))


def test_tasks_run_on_the_task_workers_of_every_node(serve, redis_server):
    a = start_node(serve, redis_server, "a")
    b = start_node(serve, redis_server, "b")
    ca, cb = Client(a), Client(b)
    seen = set()

    def both_nodes_took_tasks():
        batch = [{"op": "who", "sleep": 0.05, "echo": [i, "x"]} for i in range(6)]
        results = ask(ca, "multi", batch)
        assert [r["echo"] for r in results] == [[i, "x"] for i in range(6)]
        seen.update(r["node"] for r in results)
        return seen == {"a", "b"}
    wait_until(both_nodes_took_tasks, timeout=20, interval=0.1,
               message="tasks from node a run by the task workers of a and b")
    assert ask(cb, "wait", {"op": "who", "echo": {"k": [1, 2.5, None, True]}})["echo"] == \
        {"k": [1, 2.5, None, True]}
    ca.close()
    cb.close()

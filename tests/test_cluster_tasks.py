"""task_backend = "redis": tasks in one Redis stream that the task workers
of every node read (gswoole/cluster/tasks.py). Real nodes on one machine
joined through a real redis-server, and the sans-IO pieces on their own."""

import json
import os
import signal
import time

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
import gswoole
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
    if op == "slow":
        open(data["path"], "w").close()
        time.sleep(data["sleep"])
        return {{"node": NAME, "pid": os.getpid()}}
    if op == "mark":
        open(data["path"], "w").close()
        return True

def on_finish(server, task_id, result):
    fd = PENDING.pop(task_id, None)
    if isinstance(result, gswoole.TaskError):
        result = ["TaskError", str(result)]
    if fd is not None:
        server.send(fd, json.dumps(["finish", task_id, result]).encode() + b"\\n")

PENDING = {{}}

def receive(server, fd, reactor_id, data):
    cmd, _, arg = data.decode().strip().partition(" ")
    arg = json.loads(arg) if arg else None
    if cmd == "wait":
        try:
            reply = server.taskwait(arg, timeout=arg.get("timeout", 20))
        except gswoole.TaskError as exc:
            reply = ["TaskError", str(exc)]
    elif cmd == "multi":
        found = server.taskwait_multi(arg, timeout=20)
        reply = [found.get(i) for i in range(len(arg))]
    elif cmd == "burst":
        import gevent
        jobs = [gevent.spawn(server.taskwait, {{"op": "who", "echo": i}}, 20) for i in range(arg)]
        gevent.joinall(jobs, timeout=30)
        reply = sorted(job.value["echo"] for job in jobs if isinstance(job.value, dict))
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
    # More greenlets at once than redis-py's default pool allows (100).
    assert ask(ca, "burst", 150) == list(range(150))
    ca.close()
    cb.close()


def test_results_errors_and_callbacks_come_back_to_the_sender(serve, redis_server):
    a = start_node(serve, redis_server, "a", tasks=0)   # no task workers: its tasks run on b
    b = start_node(serve, redis_server, "b")
    ca = Client(a)
    assert ask(ca, "wait", {"op": "who", "echo": "hi"})["node"] == "b"
    ca.sock.sendall(b'task {"op": "finish"}\n')
    kind, _, result = json.loads(ca.line())
    assert (kind, result) == ("finish", {"finished_by": "b"})
    ca.sock.sendall(b'task {"op": "who", "echo": "to finish"}\n')
    kind, _, result = json.loads(ca.line())
    assert (kind, result["node"], result["echo"]) == ("finish", "b", "to finish")
    ca.sock.sendall(b'callback {"op": "who", "echo": "cb"}\n')
    kind, _, text = json.loads(ca.line())
    assert kind == "callback" and "'echo': 'cb'" in text
    error = ask(ca, "wait", {"op": "raise", "echo": "x"})
    assert error[0] == "TaskError" and "raised ValueError: boom x" in error[1]
    ca.sock.sendall(b'task {"op": "raise", "echo": "y"}\n')
    kind, _, result = json.loads(ca.line())
    assert kind == "finish" and result[0] == "TaskError" and "boom y" in result[1]
    bad = ask(ca, "bad")
    assert bad[0] == "TypeError" and "cannot cross to another node" in bad[1]
    dst = ask(ca, "dst")
    assert dst[0] == "ValueError" and "task_backend='redis'" in dst[1]
    # Redis away: task() returns False with 2002 at once; back: tasks run again.
    redis_server.stop()
    assert ask(ca, "try", {"op": "who"}) == [False, 2002]
    redis_server.start(redis_server.port)
    wait_until(lambda: isinstance(ask(ca, "wait", {"op": "who", "timeout": 1}), dict),
               timeout=20, interval=0.2, message="tasks after Redis restarted")
    ca.close()


def test_a_task_whose_node_died_is_run_by_another_node(serve, redis_server, tmp_path):
    import redis
    a = start_node(serve, redis_server, "a", tasks=0)
    b = start_node(serve, redis_server, "b", reclaim=1)
    c = start_node(serve, redis_server, "c", reclaim=1)
    ca = Client(a)
    path = str(tmp_path / "taken")
    ca.sock.sendall(("task %s\n" % json.dumps({"op": "once", "path": path})).encode())
    wait_until(lambda: os.path.exists(path) and open(path).read(), message="the task taken")
    first = open(path).read()
    # While its task worker lives, the task stays with it however long it
    # runs (its cluster process keeps the entry from looking abandoned).
    client = redis.Redis(port=redis_server.port)
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        pending = client.xpending_range(cluster_tasks.STREAM, cluster_tasks.GROUP, "-", "+", 10)
        assert [p["times_delivered"] for p in pending] == [1]
        assert pending[0]["time_since_delivered"] < 1000
        time.sleep(0.2)   # sampling the entry over time, not waiting for something
    dying, survivor = (b, c) if first == "b" else (c, b)
    os.killpg(dying.pgid, signal.SIGKILL)
    kind, _, result = json.loads(ca.line(timeout=30))
    assert (kind, result["node"]) == ("finish", "c" if first == "b" else "b")
    survivor.wait_line("took over task entry .* abandoned", stream="err")
    wait_until(lambda: client.xlen(cluster_tasks.STREAM) == 0, message="the task acknowledged")
    client.close()
    ca.close()


def test_a_reload_lets_the_task_in_hand_finish(serve, redis_server, tmp_path):
    import redis
    a = start_node(serve, redis_server, "a")
    ca = Client(a)
    path = tmp_path / "started"
    ca.sock.sendall(("task %s\n" % json.dumps({"op": "slow", "path": str(path), "sleep": 1.0}))
                    .encode())
    wait_until(path.exists, message="the task running")
    a.signal(signal.SIGUSR2)               # reload the task workers
    kind, _, result = json.loads(ca.line(timeout=20))
    assert kind == "finish" and result["node"] == "a"
    # The replacement takes tasks too.
    assert ask(ca, "wait", {"op": "who"})["pid"] != result["pid"]
    client = redis.Redis(port=redis_server.port)
    wait_until(lambda: client.xlen(cluster_tasks.STREAM) == 0, message="the tasks acknowledged")
    client.close()
    ca.close()


def test_a_forged_task_is_never_run(serve, redis_server, tmp_path):
    import redis
    a = start_node(serve, redis_server, "a")
    ca = Client(a)
    assert ask(ca, "wait", {"op": "who"})["node"] == "a"   # its task worker reads the stream
    forged_path, good_path = tmp_path / "forged", tmp_path / "good"
    client = redis.Redis(port=redis_server.port)
    forged = cluster_tasks.encode_task(b"wrong secret", 1, 1, 0, 99,
                                       {"op": "mark", "path": str(forged_path)})
    client.xadd(cluster_tasks.STREAM, {"m": forged})
    client.xadd(cluster_tasks.STREAM, {"junk": b"not a task"})
    # One task worker reads in order: once the good task ran, the others were read.
    assert ask(ca, "wait", {"op": "mark", "path": str(good_path)}) is True
    assert good_path.exists() and not forged_path.exists()
    a.wait_line("dropped task entry .* without running it: bad signature", stream="err")
    a.wait_line("dropped task entry .* without running it: not a task entry", stream="err")
    wait_until(lambda: client.xlen(cluster_tasks.STREAM) == 0, message="forged entries deleted")
    client.close()
    ca.close()


def test_task_backend_settings():
    server = gswoole.Server("127.0.0.1", 0)
    with pytest.raises(SettingError, match="task_backend.*must be one of 'local', 'redis'"):
        server.set(task_backend="kafka")
    with pytest.raises(SettingError, match="task_reclaim_time.*must be >= 1"):
        server.set(task_reclaim_time=0.5)
    server.set(task_backend="redis", task_worker_num=1)
    server.on("receive", lambda *args: None)
    server.on("task", lambda *args: None)
    with pytest.raises(SettingError, match="task_backend='redis' needs cluster_redis"):
        server.start()
    assert server.setting["task_reclaim_time"] == 30.0


# -- the sans-IO pieces ---------------------------------------------------------

KEY = wire.key(SECRET)


def test_a_task_entry_round_trip():
    message = cluster_tasks.encode_task(KEY, 3, 1234, 1, 7, {"b": b"\x00\xff", "t": (1, 2)})
    task = cluster_tasks.decode_task(KEY, b"1700000000000-4", {b"m": message})
    assert (task.node, task.src_pid, task.src_worker, task.id) == (3, 1234, 1, 7)
    assert task.value() == {"b": b"\x00\xff", "t": [1, 2]}   # a tuple arrives as a list
    assert task.entry == b"1700000000000-4"
    result = wire.decode(KEY, cluster_tasks.encode_result(KEY, task, 2, {1: "x"}))
    assert result == {"k": "result", "kind": 2, "id": 7, "value": {"1": "x"}, "pid": 1234,
                      "w": 1}


def test_what_is_not_a_signed_task_is_refused():
    signed = cluster_tasks.encode_task(KEY, 3, 1, 0, 1, "x")
    with pytest.raises(wire.BadSignature, match="bad signature"):
        cluster_tasks.decode_task(wire.key("other"), b"1-0", {b"m": signed})
    with pytest.raises(wire.BadSignature, match="not a task entry"):
        cluster_tasks.decode_task(KEY, b"1-0", {b"junk": b"x"})
    not_a_task = wire.encode(KEY, {"k": "cast", "op": "send", "args": [1, "x"]})
    with pytest.raises(wire.BadSignature, match="signed but not a task"):
        cluster_tasks.decode_task(KEY, b"1-0", {b"m": not_a_task})
    odd = wire.encode(KEY, {"k": "task", "node": "3", "pid": 1, "w": 0, "id": 1, "data": 1})
    with pytest.raises(wire.BadSignature, match="signed but not a task"):
        cluster_tasks.decode_task(KEY, b"1-0", {b"m": odd})


def test_data_json_cannot_carry_fails_when_the_task_is_made():
    with pytest.raises(TypeError, match="a object cannot cross to another node"):
        cluster_tasks.encode_task(KEY, 1, 1, 0, 0, {"x": object()})


def test_entry_ids_and_consumer_names():
    assert cluster_tasks.split_entry_id(b"1700000000000-12") == (1700000000000, 12)
    assert cluster_tasks.join_entry_id(1700000000000, 12) == "1700000000000-12"
    assert cluster_tasks.consumer_name(4, 2) == "node4.task2"

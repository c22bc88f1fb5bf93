"""Several gswoole nodes on one machine, joined through a real redis-server:
cluster-unique fds, send/close/exist/get_client_info across nodes, a dead
node forgotten, Redis restarted under a running cluster, bad signatures
dropped, and nothing of Redis imported without the settings."""

import json
import os
import signal

import pytest

from conftest import EMIT, wait_until
from redis_server import RedisServer
from test_websocket import RawClient

SECRET = "test-secret"

NODE = """
import json
server.set(open_eof_split=True, package_eof=b"\\n")

def receive(server, fd, reactor_id, data):
    parts = data.decode().strip().split(" ", 2)
    cmd = parts[0]
    if cmd == "fd":
        reply = fd
    elif cmd == "send":
        reply = [server.send(int(parts[1]), parts[2].encode() + b"\\n"),
                 server.get_last_error()]
    elif cmd == "close":
        reply = [server.close(int(parts[1])), server.get_last_error()]
    elif cmd == "exist":
        reply = [server.exist(int(parts[1])), server.get_last_error()]
    elif cmd == "info":
        reply = server.get_client_info(int(parts[1]))
    elif cmd == "list":
        reply = server.get_client_list(cluster=True)
    else:
        reply = "unknown"
    server.send(fd, json.dumps(reply).encode() + b"\\n")

server.on("receive", receive)
"""


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def node_settings(redis_server, node_id, timeout=10, secret=SECRET, workers=2):
    return ("cluster_redis=%r, cluster_secret=%r, node_id=%r, cluster_node_timeout=%r"
            % (redis_server.url, secret, node_id, float(timeout)))


def start_node(serve, redis_server, node_id, body=NODE, workers=2, **kw):
    return serve(body, workers=workers, settings=node_settings(redis_server, node_id, **kw))


def wait_joined(client, fd):
    """Wait until a node's sends reach ``fd``'s node (its cluster process
    subscribes a moment after the node reports ready)."""
    wait_until(lambda: client.ask("exist %d" % fd) == [True, 0], message="the nodes joined")


class Client:
    def __init__(self, node):
        self.sock = node.connect()
        self.file = self.sock.makefile("rb")

    def line(self, timeout=10.0):
        self.sock.settimeout(timeout)
        return self.file.readline().decode().rstrip("\n")

    def ask(self, command):
        self.sock.sendall(command.encode() + b"\n")
        return json.loads(self.line())

    def close(self):
        self.file.close()
        self.sock.close()


def test_nodes_reach_each_others_connections(serve, redis_server):
    a = start_node(serve, redis_server, "a")
    b = start_node(serve, redis_server, "b")
    ca, cb = Client(a), Client(b)
    fd_a, fd_b = ca.ask("fd"), cb.ask("fd")
    wait_joined(ca, fd_b)
    wait_joined(cb, fd_a)
    assert fd_a >> 32 and fd_b >> 32 and fd_a >> 32 != fd_b >> 32   # unique node numbers
    assert ca.ask("send %d hello from a" % fd_b) == [True, 0]
    assert cb.line() == "hello from a"
    assert cb.ask("send %d hello from b" % fd_a) == [True, 0]
    assert ca.line() == "hello from b"
    assert ca.ask("exist %d" % fd_b) == [True, 0]
    info = ca.ask("info %d" % fd_b)
    assert info["server_port"] == b.port
    assert sorted(ca.ask("list")) == sorted([fd_a, fd_b])
    assert ca.ask("exist %d" % (fd_b + 1000)) == [False, 1005]
    assert ca.ask("close %d" % fd_b) == [True, 0]
    cb.sock.settimeout(10)
    assert cb.sock.recv(10) == b""
    wait_until(lambda: ca.ask("exist %d" % fd_b)[0] is False, message="fd gone")
    ca.close()
    cb.close()


def test_dead_node_is_forgotten_after_its_timeout(serve, redis_server):
    a = start_node(serve, redis_server, "a", timeout=1)
    b = start_node(serve, redis_server, "b", timeout=1)
    ca, cb = Client(a), Client(b)
    fd_b = cb.ask("fd")
    wait_joined(ca, fd_b)
    os.killpg(b.pgid, signal.SIGKILL)       # the whole node, no goodbye
    wait_until(lambda: ca.ask("send %d x" % fd_b) == [False, 1005], timeout=10,
               message="the dead node's fds failing with 1005")
    assert ca.ask("exist %d" % fd_b) == [False, 1005]
    ca.close()


def test_redis_restarted_under_a_running_cluster(serve, redis_server):
    a = start_node(serve, redis_server, "a", timeout=2)
    b = start_node(serve, redis_server, "b", timeout=2)
    ca, cb = Client(a), Client(b)
    fd_a, fd_b = ca.ask("fd"), cb.ask("fd")
    wait_joined(ca, fd_b)
    redis_server.stop()
    # Own connections are served while Redis is away.
    assert ca.ask("fd") == fd_a
    assert ca.ask("send %d lost" % fd_b) == [False, 1005]
    redis_server.start(redis_server.port)
    counter = [0]

    def crosses():
        counter[0] += 1
        if ca.ask("send %d again %d" % (fd_b, counter[0]))[0] is not True:
            return False
        return cb.line(timeout=5).startswith("again")
    try:
        wait_until(crosses, timeout=20, interval=0.2, message="cross-node sends after the restart")
    except AssertionError:
        print("A:", "\n".join(a.errlines), "\nB:", "\n".join(b.errlines))
        raise
    assert a.matching("Redis .* is unreachable", stream="err")
    wait_until(lambda: a.matching("answers again", stream="err"), message="recovery logged")
    ca.close()
    cb.close()


def test_a_message_with_a_bad_signature_is_dropped(serve, redis_server):
    import redis
    a = start_node(serve, redis_server, "a")
    ca = Client(a)
    fd_a = ca.ask("fd")
    client = redis.Redis(port=redis_server.port)
    from gswoole.cluster import node_channel, wire
    forged = wire.encode(b"wrong secret", {"k": "cast", "op": "send", "args": [fd_a, "evil"]})
    # (the node's cluster process subscribes a moment after the node is ready)
    wait_until(lambda: client.publish(node_channel(fd_a >> 32), forged) == 1,
               message="the node's subscriber")
    a.wait_line("dropped a message from Redis: bad signature", stream="err")
    assert ca.ask("fd") == fd_a     # nothing else came to the client
    client.close()
    ca.close()


def test_cluster_redis_without_a_secret_is_refused(serve, redis_server):
    node = serve(NODE, settings="cluster_redis=%r" % redis_server.url, ready=False)
    assert node.wait_exit() != 0
    node.wait_output_closed()
    assert any("cluster_redis needs cluster_secret" in line for line in node.errlines)


def test_unreachable_redis_at_start_is_a_clear_error(serve, redis_server):
    port = redis_server.port
    redis_server.stop()
    node = serve(NODE, settings="cluster_redis='redis://127.0.0.1:%d/0', cluster_secret='s'"
                 % port, ready=False)
    assert node.wait_exit() != 0
    node.wait_output_closed()
    assert any("Redis is unreachable at start" in line for line in node.errlines)


def test_the_same_node_id_twice_is_refused(serve, redis_server):
    start_node(serve, redis_server, "twin")
    again = serve(NODE, settings=node_settings(redis_server, "twin"), ready=False)
    assert again.wait_exit() != 0
    again.wait_output_closed()
    assert any("already a live node" in line for line in again.errlines)


def test_nothing_of_redis_is_imported_without_cluster_settings(serve):
    node = serve("""
def receive(server, fd, reactor_id, data):
    server.send(fd, str(sorted(m for m in sys.modules if m == "redis" or m.startswith("redis.")
                               or m.startswith("gswoole.cluster."))).encode())
server.on("receive", receive)
""")
    with node.connect() as sock:
        sock.sendall(b"?")
        sock.settimeout(10)
        assert sock.recv(1000) == b"[]"


WS_NODE = """
import json
import gswoole, gswoole.websocket
""" + EMIT + """
server = gswoole.websocket.Server("127.0.0.1", 0)
server.set(worker_num=2, log_level="info", {settings})
server.on("start", lambda s: emit("READY", s.port, s.master_pid))

def on_message(server, frame):
    cmd, _, rest = frame.data.partition(" ")
    if cmd == "fd":
        server.push(frame.fd, str(frame.fd))
    elif cmd == "push":
        fd, _, text = rest.partition(" ")
        server.push(frame.fd, json.dumps(server.push(int(fd), text)))
    elif cmd == "all":
        server.broadcast(rest)
    elif cmd == "some":
        fds, _, text = rest.partition(" ")
        server.broadcast(text, [int(fd) for fd in fds.split(",")])
server.on("message", on_message)
server.start()
"""


def test_websocket_push_and_broadcast_across_nodes(serve, redis_server):
    nodes = [serve(WS_NODE.replace("{settings}", node_settings(redis_server, name)), raw=True)
             for name in ("a", "b", "c")]
    clients = [RawClient(node.port) for node in nodes for _ in range(2)]
    fds = []
    for client in clients:
        client.send_text("fd")
        fds.append(int(client.recv_message()[1]))
    assert len({fd >> 32 for fd in fds}) == 3

    def pushed(i, j, text):
        clients[i].send_text("push %d %s" % (fds[j], text))
        return clients[i].recv_message()[1] == b"true"
    for j in (2, 4):
        wait_until(lambda: pushed(0, j, "hi"), message="node a reaching fd %d" % fds[j])
        assert clients[j].recv_message() == (1, b"hi")
    clients[0].send_text("all hello everyone")
    for client in clients:
        assert client.recv_message() == (1, b"hello everyone")
    clients[3].send_text("some %d,%d,%d only some" % (fds[0], fds[3], fds[5]))
    for i in (0, 3, 5):
        assert clients[i].recv_message() == (1, b"only some")
    clients[0].send_text("all last")     # the others got nothing in between
    for client in clients:
        assert client.recv_message() == (1, b"last")
        client.close()


def test_publisher_pipelines_and_the_subscriber_reads_in_order(redis_server):
    # The hot path's own sockets (cluster/pubsub.py), in this process: many
    # greenlets publishing at once share round trips and each gets its own
    # receiver count; Redis gone is a ConnectionError, and the next publish
    # after it is back connects again.
    import gevent
    from gevent.event import Event
    from gswoole.cluster.pubsub import Publisher, Subscriber

    port = redis_server.port
    publisher = Publisher("127.0.0.1", port)
    assert publisher.publish("nobody", b"x") == 0
    subscriber = Subscriber("127.0.0.1", port, ["c1", "c2"])
    subscriber.subscribe()
    got, done = [], Event()

    def on_message(data):
        got.append(data)
        if len(got) == 200:
            done.set()
    listener = gevent.spawn(subscriber.listen, on_message)
    try:
        senders = [gevent.spawn(lambda n=n: [publisher.publish("c%d" % (1 + i % 2), b"%d-%d" % (n, i))
                                             for i in range(10)]) for n in range(20)]
        gevent.joinall(senders, timeout=10, raise_error=True)
        assert [s.value for s in senders] == [[1] * 10] * 20
        assert done.wait(10)
        for n in range(20):     # each greenlet's messages arrive in its order
            assert [m for m in got if m.startswith(b"%d-" % n)] == [b"%d-%d" % (n, i)
                                                                    for i in range(10)]
        redis_server.stop()
        with pytest.raises(OSError):
            publisher.publish("c1", b"lost")
        listener.join(10)
        assert isinstance(listener.exception, OSError)   # the subscriber knows too
        redis_server.start(port)
        assert publisher.publish("c1", b"back") == 0
    finally:
        listener.kill()
        subscriber.close()
        publisher.close()


def test_a_redis_that_stops_answering_fails_publish_and_subscriber(redis_server, monkeypatch):
    # A Redis host that vanishes without a reset (here: a stopped process)
    # must not leave senders waiting or the subscriber deaf for good.
    import gevent
    from gswoole.cluster import pubsub

    monkeypatch.setattr(pubsub, "REPLY_TIMEOUT", 0.3)
    monkeypatch.setattr(pubsub, "KEEPALIVE", 0.3)
    publisher = pubsub.Publisher("127.0.0.1", redis_server.port)
    subscriber = pubsub.Subscriber("127.0.0.1", redis_server.port, ["c"])
    assert publisher.publish("c", b"x") == 0
    subscriber.subscribe()
    listener = gevent.spawn(subscriber.listen, lambda data: None)
    os.kill(redis_server.proc.pid, signal.SIGSTOP)
    try:
        with gevent.Timeout(5):
            with pytest.raises(OSError, match="no reply"):
                publisher.publish("c", b"y")
            listener.join()
        assert isinstance(listener.exception, OSError)
        assert "PING" in str(listener.exception)
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
        listener.kill()
        subscriber.close()
        publisher.close()

"""A line chat on two (or more) gswoole nodes joined through Redis.

    redis-server --port 6379 --save '' &
    python examples/cluster_chat.py a 9501 &     # node "a" on port 9501
    python examples/cluster_chat.py b 9502 &     # node "b" on port 9502
    python examples/cluster_chat.py client 9501 9502

Every line a client sends goes to every client of every node: the node
lists the cluster's connections with get_client_list(cluster=True) and
sends to each fd; an fd of the other node is reached through Redis. Behind
one port (nginx or HAProxy in front of both nodes, see docs/cluster.md),
clients do not know which node they talk to. CLUSTER_REDIS and
CLUSTER_SECRET in the environment override the defaults below.
"""

import os
import socket
import sys

import gswoole

REDIS = os.environ.get("CLUSTER_REDIS", "redis://127.0.0.1:6379/0")
SECRET = os.environ.get("CLUSTER_SECRET", "change me: the same on every node")


def serve(node_id, port):
    server = gswoole.Server("127.0.0.1", port)
    server.set(worker_num=2, open_eof_split=True, package_eof=b"\n",
               cluster_redis=REDIS, cluster_secret=SECRET, node_id=node_id)

    def on_receive(server, fd, reactor_id, data):
        line = b"%s> %s" % (node_id.encode(), data)
        for other in server.get_client_list(cluster=True):
            if other != fd:
                server.send(other, line)

    server.on("receive", on_receive)
    server.on("start", lambda s: print("node %s: master %d on 127.0.0.1:%d"
                                       % (node_id, s.master_pid, s.port), flush=True))
    server.start()


def client(port_a, port_b):
    alice = socket.create_connection(("127.0.0.1", port_a), timeout=5)
    bob = socket.create_connection(("127.0.0.1", port_b), timeout=5)
    alice.sendall(b"hello from node a's side\n")
    print("bob (on node b) got:", bob.recv(100).decode().strip())
    bob.sendall(b"hi alice\n")
    print("alice (on node a) got:", alice.recv(100).decode().strip())


if __name__ == "__main__":
    if sys.argv[1] == "client":
        client(int(sys.argv[2]), int(sys.argv[3]))
    else:
        serve(sys.argv[1], int(sys.argv[2]))

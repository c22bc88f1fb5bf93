"""Many machines: gswoole servers (nodes) that form one cluster on Redis.

See docs/cluster.md. The modules: wire.py (the signed JSON that crosses
Redis, sans-IO), link.py (a process's Redis client, outages, the node
registry), routing.py (an event worker's calls for other nodes' fds),
node.py (the node's one subscriber, the cluster process), and the hot
path's own Redis sockets: pubsub.py (pipelined PUBLISH, the subscription)
over resp.py (Redis's wire protocol, sans-IO).

Cluster-unique fds: each node takes a *node number* from a Redis counter
(INCR) when its master starts, and its fds are ``number << NODE_SHIFT``
plus the node's own count, so the node of an fd is ``fd >> NODE_SHIFT``
with no lookup, and a restarted node (a new number) never reuses an fd.
This module imports nothing of Redis: without ``cluster_redis`` nothing of
it is ever imported.
"""

NODE_SHIFT = 32
PREFIX = "gswoole:"
NODE_SEQ = PREFIX + "node_seq"        # the counter node numbers come from
NODES = PREFIX + "nodes"              # hash: node number -> node_id (for listings)
ALL_CHANNEL = PREFIX + "all"          # what every node's cluster process hears


def node_of(fd):
    """The node number in a cluster fd (0: not a cluster fd)."""
    return fd >> NODE_SHIFT if isinstance(fd, int) and fd > 0 else 0


def first_fd(number):
    """The first fd of node ``number``."""
    return (number << NODE_SHIFT) + 1


def node_key(number):
    """The node's registration (its TTL is cluster_node_timeout)."""
    return "%snode:%d" % (PREFIX, number)


def node_channel(number):
    return "%schannel:%d" % (PREFIX, number)

"""One process's way to Redis: a client that cooperates with gevent, the
outage rule, and the node registry.

Outages. Redis may go away under a running cluster. A node then keeps
serving its own connections (they never touch Redis); what needs Redis
fails at once (``send`` to another node's fd returns False with 1005) and
the process logs the outage once, tries again at most every RETRY_PAUSE
seconds, and logs once more when Redis answers again. redis-py's own
retries are off: a retry with back-off would stall the greenlet that asked.
"""

import logging
import os
import socket
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import ALL_CHANNEL, NODE_SEQ, NODES, node_key
from .pubsub import Publisher
from ..errors import ClusterError
from ..settings import parse_redis_url

log = logging.getLogger("gswoole")

RETRY_PAUSE = 1.0       # seconds between attempts while Redis is unreachable
ALIVE_CACHE = 1.0       # seconds a node's liveness is believed without asking again
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)
MAX_CONNECTIONS = 2 ** 31   # a process's pool: unbounded (see _client)

# Refresh a node's registration; after a Redis restart (the counter is gone
# with the rest), also raise the node counter past this node's number, so a
# node starting later does not take it again.
_REFRESH = """
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local seq = tonumber(redis.call('GET', KEYS[3]) or '0')
if seq < tonumber(ARGV[1]) then redis.call('SET', KEYS[3], ARGV[1]) end
return 1
"""


class Unreachable(Exception):
    """Redis did not answer (the outage is logged once by the Link)."""


class _GeventConnection(redis.connection.Connection):
    """redis-py's connection on a gevent socket: waiting for Redis blocks
    the greenlet that asked, never the worker's hub (gswoole does not
    monkey-patch)."""

    def _connect(self):
        from gevent import socket as gsocket
        sock = gsocket.create_connection((self.host, self.port),
                                         timeout=self.socket_connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.socket_timeout)
        return sock


def _client(setting, cooperative):
    host, port, db = parse_redis_url(setting["cluster_redis"])
    # max_connections: redis-py 8 caps a pool at 100 and raises past it, and
    # each greenlet waiting on Redis holds a connection, so a burst of
    # concurrent calls (taskwait in 100 requests at once) looked like an
    # outage. The pool keeps what the busiest moment needed, for reuse.
    kwargs = dict(host=host, port=port, db=db, socket_timeout=5.0,
                  socket_connect_timeout=2.0, retry=Retry(NoBackoff(), 0),
                  max_connections=MAX_CONNECTIONS)
    if cooperative:
        kwargs["connection_class"] = _GeventConnection
    return redis.Redis(connection_pool=redis.ConnectionPool(**kwargs))


def node_name(setting):
    return setting["node_id"] or "%s-%d" % (socket.gethostname(), os.getpid())


def register_node(setting):
    """Master, at start (blocking): join the cluster; returns this node's
    number. ClusterError when Redis does not answer or ``node_id`` is live."""
    name = node_name(setting)
    ttl = max(1, int(round(setting["cluster_node_timeout"])))
    client = _client(setting, cooperative=False)
    try:
        client.ping()
        for number, other in client.hgetall(NODES).items():
            if client.exists(node_key(int(number))):
                if other.decode("utf-8", "replace") == name:
                    raise ClusterError("node_id %r is already a live node of the cluster on "
                                       "%s (node %d)" % (name, setting["cluster_redis"],
                                                         int(number)))
            else:
                client.hdel(NODES, number)   # dead and past its timeout: forget it
        for _ in range(100):
            number = client.incr(NODE_SEQ)
            if client.set(node_key(number), name, nx=True, ex=ttl):
                client.hset(NODES, number, name)
                return number
        raise ClusterError("no free node number on %s" % setting["cluster_redis"])
    except REDIS_ERRORS as exc:
        raise ClusterError("cluster_redis %s: Redis is unreachable at start: %s"
                           % (setting["cluster_redis"], exc)) from None
    finally:
        client.close()


class Link:
    """A process's Redis client, with the outage rule (see the module doc)."""

    def __init__(self, setting):
        self.url = setting["cluster_redis"]
        self.host, self.port, _ = parse_redis_url(self.url)
        self.client = _client(setting, cooperative=True)
        self.publisher = Publisher(self.host, self.port)   # the hot path: pubsub.py
        self._down_since = None
        self._retry_at = 0.0
        self._alive = {}          # node number -> (alive, checked at)

    def run(self, fn):
        """``fn(client)``'s value; Unreachable while Redis does not answer."""
        now = time.monotonic()
        if self._down_since is not None and now < self._retry_at:
            raise Unreachable()
        try:
            value = fn(self.client)
        except REDIS_ERRORS as exc:
            self.lost(exc)
            raise Unreachable() from None
        self.recovered()
        return value

    def lost(self, exc):
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            log.warning("cluster: Redis %s is unreachable (%s); this node keeps serving its "
                        "own connections and reconnects", self.url, exc)
        self._retry_at = now + RETRY_PAUSE

    def recovered(self):
        if self._down_since is not None:
            log.warning("cluster: Redis %s answers again (after %.1f s)", self.url,
                        time.monotonic() - self._down_since)
            self._down_since = None

    # -- the registry -------------------------------------------------------

    def node_alive(self, number):
        """Is node ``number`` registered (not past cluster_node_timeout)?"""
        now = time.monotonic()
        known = self._alive.get(number)
        if known is not None and now - known[1] < ALIVE_CACHE:
            return known[0]
        alive = bool(self.run(lambda c: c.exists(node_key(number))))
        self._alive[number] = (alive, now)
        return alive

    def live_nodes(self):
        """The numbers of every registered node."""
        def ask(client):
            numbers = [int(n) for n in client.hkeys(NODES)]
            pipe = client.pipeline(transaction=False)
            for number in numbers:
                pipe.exists(node_key(number))
            return [n for n, alive in zip(numbers, pipe.execute()) if alive]
        return sorted(self.run(ask))

    def refresh(self, number, name, ttl):
        self.run(lambda c: c.eval(_REFRESH, 3, node_key(number), NODES, NODE_SEQ,
                                  number, name, max(1, int(round(ttl)))))

    def unregister(self, number):
        self.run(lambda c: c.delete(node_key(number)))

    def publish(self, channel, message):
        """Publish; the number of nodes that heard it. Pipelined with the
        other greenlets' publishes (pubsub.Publisher)."""
        return self.run(lambda _: self.publisher.publish(channel, message))

    def publish_all(self, message):
        return self.publish(ALL_CHANNEL, message)


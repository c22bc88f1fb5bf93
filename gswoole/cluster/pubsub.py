"""The cluster's hot path to Redis: PUBLISH out, pub/sub messages in, on
sockets of their own that speak RESP directly (resp.py).

Why not redis-py here. A cross-node ``send`` is one PUBLISH, and the
receiving node reads one pub/sub message per send. Profiled (py-spy, see
docs/cluster.md#speed), redis-py's per-call machinery (connection pool,
retry wrapper, command packing, its Python reply parser, ``can_read``
polling in ``get_message``) was most of the time both processes spent per
message; here a PUBLISH is one ``bytes`` join and one ``send``, and a
buffer of replies is parsed in one pass.

``Publisher``: one per process, its commands pipelined. A ``publish``
with nothing else in flight writes its command at once (the lowest
latency); one made while other replies are outstanding joins a buffer
flushed once the hub next runs, so the commands of many greenlets leave in
one ``send`` (a send per PUBLISH was most of a busy sender's time). Each
caller then waits for its own reply: replies come back in order and a read
watcher hands each to its waiter, so greenlets publishing at the same time
share round trips instead of taking turns. Any failure (connection
refused, reset, no reply within REPLY_TIMEOUT) drops the connection and
fails every waiter with ConnectionError; the next ``publish`` connects
again (Link.run paces that and logs the outage once).

``Subscriber``: the cluster process's subscription. It reads in the
greenlet that calls ``listen`` and hands each message to a callback; when
Redis says nothing for KEEPALIVE seconds it sends a PING, and a PING left
unanswered for as long means the connection is dead (a Redis host that
vanished without a reset would otherwise leave the node deaf for good).
"""

import socket
from collections import deque

import gevent
from gevent import socket as gsocket
from gevent.event import AsyncResult

from . import resp

CONNECT_TIMEOUT = 2.0
REPLY_TIMEOUT = 5.0      # seconds a PUBLISH may wait for its reply
KEEPALIVE = 5.0          # a silent subscription is pinged after this long
READ_SIZE = 256 * 1024


def _connect(host, port):
    """A connected socket (cooperative connect, then a plain non-blocking
    socket for the watchers)."""
    sock = gsocket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    plain = socket.socket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    plain.setblocking(False)
    return plain


class Publisher:
    """PUBLISH with pipelined replies (see the module doc)."""

    def __init__(self, host, port):
        self.host = host
        self.port = port
        self._sock = None
        self._parser = None
        self._waiting = deque()       # (AsyncResult, sent at) per command, in order
        self._out = bytearray()       # commands not written yet (a flush is due)
        self._loop = None
        self._reader = None
        self._writer = None
        self._overdue = None          # the timer that finds a reply overdue
        self._connecting = None

    def publish(self, channel, message):
        """The number of subscribers that got ``message``; ConnectionError
        (an OSError) when Redis cannot be reached or does not answer."""
        if self._sock is None:
            self._connect()
        waiter = AsyncResult()
        self._waiting.append((waiter, self._loop.now()))
        self._write(resp.command(b"PUBLISH", channel, message))
        value = waiter.get()      # set or failed by a watcher (or the overdue timer)
        if isinstance(value, resp.RespError):
            raise ConnectionError("Redis refused PUBLISH: %s" % value)
        return value

    def close(self):
        self._drop(ConnectionError("publisher closed"))

    # -- the connection -----------------------------------------------------

    def _connect(self):
        if self._connecting is not None:      # another greenlet is connecting: wait for it
            self._connecting.get()
            if self._sock is None:
                raise ConnectionError("Redis %s:%d is unreachable" % (self.host, self.port))
            return
        self._connecting = AsyncResult()
        try:
            sock = _connect(self.host, self.port)
            loop = self._loop = gevent.get_hub().loop
            self._sock = sock
            self._parser = resp.Parser()
            self._reader = loop.io(sock.fileno(), 1)
            self._writer = loop.io(sock.fileno(), 2)
            self._reader.start(self._on_readable)
            # One timer, not a Timeout per publish (that was a few % of a
            # busy sender's time): the oldest reply is the one that is late.
            self._overdue = loop.timer(1.0, 1.0)
            self._overdue.start(self._check_overdue)
        finally:
            connecting, self._connecting = self._connecting, None
            connecting.set(None)

    def _write(self, data):
        if self._out:                 # a flush is due: join it (and keep the order)
            self._out += data
            return
        if len(self._waiting) > 1:    # others are publishing too: one send for all
            self._out += data
            self._loop.run_callback(self._flush)
            return
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._drop(exc)
            return
        if sent < len(data):
            self._out += data[sent:]
            self._writer.start(self._flush)

    def _flush(self):
        if self._sock is None or not self._out:
            return
        try:
            sent = self._sock.send(self._out)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._drop(exc)
            return
        del self._out[:sent]
        if not self._out:
            self._writer.stop()
        elif not self._writer.active:
            self._writer.start(self._flush)

    def _check_overdue(self):
        if self._waiting and self._loop.now() - self._waiting[0][1] > REPLY_TIMEOUT:
            self._drop(ConnectionError("no reply from Redis within %g s" % REPLY_TIMEOUT))

    def _on_readable(self):
        try:
            data = self._sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            self._drop(exc)
            return
        if not data:
            self._drop(ConnectionError("Redis closed the connection"))
            return
        try:
            replies = self._parser.feed(data)
        except resp.ProtocolError as exc:
            self._drop(ConnectionError("Redis sent bad bytes: %s" % exc))
            return
        waiting = self._waiting
        for reply in replies:
            if not waiting:
                self._drop(ConnectionError("a reply from Redis nobody asked for"))
                return
            waiting.popleft()[0].set(reply)

    def _drop(self, exc):
        """Close the connection and fail every command still waiting."""
        if self._sock is not None:
            self._reader.stop()
            self._writer.stop()
            self._overdue.stop()
            self._sock.close()
            self._sock = None
        self._out = bytearray()
        waiting, self._waiting = self._waiting, deque()
        for waiter, _ in waiting:
            waiter.set_exception(ConnectionError(str(exc)))


class Subscriber:
    """A subscription to ``channels``; ``listen(on_message)`` hands every
    message's bytes to ``on_message`` until the connection fails (it then
    raises ConnectionError or another OSError)."""

    def __init__(self, host, port, channels):
        self.host = host
        self.port = port
        self.channels = list(channels)
        self._sock = None

    def subscribe(self):
        """Connect and subscribe; returns once Redis confirmed every channel."""
        sock = gsocket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(KEEPALIVE)
        self._sock = sock
        self._parser = resp.Parser()
        sock.sendall(resp.command(b"SUBSCRIBE", *self.channels))
        confirmed = 0
        self._early = []
        while confirmed < len(self.channels):
            for reply in self._read():
                if isinstance(reply, list) and reply and reply[0] == b"subscribe":
                    confirmed += 1
                else:
                    self._early.append(reply)

    def listen(self, on_message):
        for reply in self._early:
            self._handle(reply, on_message)
        self._early = []
        while True:
            for reply in self._read():
                self._handle(reply, on_message)
            # A socket that always has more to read never makes the greenlet
            # wait, so the hub would not turn (timers, the workers' datagrams,
            # the spawned calls): let it, once per batch.
            gevent.sleep(0)

    def _handle(self, reply, on_message):
        if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
            on_message(reply[2])
        elif isinstance(reply, resp.RespError):
            raise ConnectionError("Redis: %s" % reply)

    def _read(self):
        pinged = False
        while True:
            try:
                data = self._sock.recv(READ_SIZE)
            except socket.timeout:
                if pinged:
                    raise ConnectionError("Redis did not answer a PING within %g s"
                                          % KEEPALIVE) from None
                self._sock.sendall(resp.command(b"PING"))
                pinged = True
                continue
            if not data:
                raise ConnectionError("Redis closed the connection")
            try:
                return self._parser.feed(data)
            except resp.ProtocolError as exc:
                raise ConnectionError("Redis sent bad bytes: %s" % exc) from None

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None

"""The seam between the reactor and the protocols that run on a connection.

A protocol (the raw-TCP callbacks, HTTP, WSGI; later TLS and WebSocket)
sees a connection only through a ``Transport``: write, write a file, close,
abort, pause and resume reading, and a few facts about the connection. It
never touches the reactor's tables or a socket. So a protocol can be tested
in-process against a fake transport (tests/test_http_protocol.py), a TLS
layer can be a transport that wraps another, and WebSocket a protocol that
takes a connection over from HTTP.

``Transport`` here is the reactor's implementation: a small object per
connection that forwards to the reactor, made once when the connection is
accepted (not per message).
"""

from .connection import HOLD_PROTOCOL, OPEN

__all__ = ["Transport"]


class Transport:
    """A connection as a protocol sees it.

    ``fd`` is the session id. ``write`` never drops part of the data: it
    waits, in the calling greenlet, for room in the connection's output
    buffer (up to ``send_timeout``); False means the connection is gone or
    its peer stopped reading, and the caller should stop writing."""

    __slots__ = ("fd", "tls", "context", "_reactor", "_conn")

    def __init__(self, reactor, conn):
        self.fd = conn.fd
        self.tls = conn.listener.is_ssl   # the connection is TLS (HTTPS, wss)
        self.context = None   # the protocol's own per-connection state (WSGI: its environ part)
        self._reactor = reactor
        self._conn = conn

    # -- output -----------------------------------------------------------

    def write(self, data):
        """Queue ``data`` (bytes) behind what is queued; True or False."""
        reactor = self._reactor
        if self._conn.out_size + len(data) <= reactor.buffer_limit:
            return reactor.send(self.fd, data)    # room for it: send_wait's first step
        return reactor.send_wait(self.fd, data)

    def send(self, data):
        """Queue ``data`` without ever waiting (for the hub's own timeouts):
        False, with get_last_error(), when the output buffer is full."""
        return self._reactor.send(self.fd, data)

    def write_file(self, file, offset, count):
        """Send ``count`` bytes of ``file`` from ``offset`` (zero-copy where
        the connection allows it); True when all were sent."""
        return self._reactor.send_file(self.fd, file, offset, count)

    # -- ending -----------------------------------------------------------

    def close(self):
        """Close after everything queued is delivered (then linger)."""
        return self._reactor.close(self.fd)

    def abort(self):
        """Reset at once: queued output is dropped, the peer sees an RST."""
        return self._reactor.close(self.fd, reset=True)

    def is_closing(self):
        """True once the connection is closing or closed, by either side."""
        return self._conn.state != OPEN

    # -- input ------------------------------------------------------------

    def pause_reading(self):
        self._reactor.hold_reading(self._conn, HOLD_PROTOCOL)

    def resume_reading(self):
        self._reactor.release_reading(self._conn, HOLD_PROTOCOL)

    # -- handing over -------------------------------------------------------

    def switch_protocol(self, splitter, on_receive, data=b""):
        """Hand the connection to another protocol (an HTTP Upgrade): its
        input goes to ``splitter`` (``feed(bytes)`` -> events, run in the
        hub) and the events to ``on_receive(server, fd, reactor_id, event)``,
        in order as before. ``data``: input already read past the last
        message of the old protocol, fed to the new splitter first."""
        self._reactor.switch_protocol(self._conn, splitter, on_receive, data)

    def detach(self, timeout=10.0):
        """Take the socket over: queued output is flushed first, then the
        reactor stops reading it. Returns a cooperative (gevent) socket on a
        duplicate descriptor, which the caller closes; ``close()`` on this
        transport still ends the connection. None if the output would not
        drain within ``timeout``."""
        return self._reactor.detach(self._conn, timeout)

    # -- facts --------------------------------------------------------------

    @property
    def parser(self):
        """The connection's framing (for HTTP, its request parser)."""
        return self._conn.splitter

    @property
    def idle(self):
        """Nothing queued for the protocol, nothing queued for the peer, and
        the peer has not finished sending: a timeout may act on it."""
        conn = self._conn
        return not (conn.busy or conn.out_size or conn.eof)

    @property
    def last_activity(self):
        """The reactor clock when the peer last sent something, or when the
        protocol last said it finished a message (``touch``)."""
        return self._conn.last_time

    def touch(self):
        """A message was answered: idle timeouts count from now. Returns
        False (and does nothing) if the connection is already closing."""
        conn = self._conn
        if conn.state != OPEN:
            return False
        conn.last_time = self._reactor.clock
        return True

    def get_extra_info(self, name, default=None):
        """'peername' (the remote address), 'server_port', 'socket' (the
        socket object, for protocols that take it over), 'ssl_object' (TLS:
        the ssl.SSLObject, for its version, cipher, peer certificate, ALPN)."""
        conn = self._conn
        if name == "peername":
            return conn.remote
        if name == "server_port":
            return conn.listener.port
        if name == "ssl_object":
            return conn.tls.ssl_object if conn.tls is not None else default
        if name == "socket":
            return conn.sock
        return default

    def __repr__(self):
        return "<Transport fd=%d>" % self.fd

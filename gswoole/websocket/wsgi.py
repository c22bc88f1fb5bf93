"""``environ["wsgi.websocket"]`` for WSGI apps: gevent-websocket's API.

A WSGI app holds its request's greenlet for as long as the WebSocket lives
and reads it with blocking calls (``ws.receive()``), the way gevent-websocket
and python-engineio's gevent driver expect. So for an upgrade request the
WSGI protocol takes the connection's socket out of the reactor
(``Transport.detach``) and this object reads and writes it directly, with
gevent's cooperative socket, through the same sans-IO core as the Swoole-style
server (``negotiate`` and ``MessageReader`` in protocol.py).

The handshake is made on first use (``receive``, ``send``, ``close`` or
``protocol``), not before the app runs: an app that takes the socket over
itself (simple-websocket, through ``gunicorn.socket``) makes its own, and an
app that answers the request with plain HTTP never upgrades.
"""

import time
from collections import deque

from gevent.lock import RLock

from ..http.writer import ResponseWriter, date_header, status_line
from .protocol import CLOSE_NORMAL, Closing, Frame, MessageReader, negotiate

__all__ = ["WebSocket", "WebSocketError"]

RECV_SIZE = 65536


class WebSocketError(OSError):
    """The WebSocket is closed, or its handshake was refused (as
    gevent-websocket's ``WebSocketError``, an ``OSError``)."""


class WebSocket:
    """gevent-websocket's ``WebSocket``: ``receive()`` (str or bytes, None
    once closed), ``send(message, binary=None)``, ``close(code, message)``,
    ``closed``, ``path``, ``origin``, ``protocol``, ``version``, ``environ``."""

    def __init__(self, sock, environ, parsed, setting, rest=b""):
        self.environ = environ
        self.path = environ.get("PATH_INFO", "/")
        self.origin = environ.get("HTTP_ORIGIN")
        self.version = environ.get("HTTP_SEC_WEBSOCKET_VERSION")
        self.closed = False
        self._sock = sock
        self._parsed = parsed
        self._setting = setting
        self._rest = rest
        self._reader = None
        self._messages = deque()
        self._lock = RLock()          # one writer at a time (receive sends pongs)
        self.handshake_done = False   # a 101 went out: the server sends no response

    @property
    def protocol(self):
        """The subprotocol agreed in the handshake, or None."""
        self._ensure_open()
        return self._reader.protocol.subprotocol if self._reader is not None else None

    def _ensure_open(self):
        if self.handshake_done or self.closed:
            return
        parsed = self._parsed
        s = self._setting
        status, reason, headers, body, protocol = negotiate(
            parsed.method, parsed.raw_uri, parsed.headers, s["package_max_length"],
            s["websocket_compression"], s["websocket_subprotocols"])
        writer = ResponseWriter(parsed.method, parsed.version, protocol is not None)
        if protocol is None:
            headers = [h for h in headers if h[0].lower() != "upgrade"]
            headers.append(("Content-Type", "text/plain; charset=utf-8"))
        head = writer.start(status, status_line(parsed.version, status), headers,
                            date_header(int(time.time())), None if protocol else len(body))
        self.handshake_done = True
        if protocol is None:
            self.closed = True
            self._sendall(head + writer.end(body))
            raise WebSocketError("WebSocket handshake refused: %d %s" % (status, reason))
        self._reader = MessageReader(protocol)
        self._sendall(head)
        if self._rest:
            rest, self._rest = self._rest, b""
            self._feed(rest)

    def _sendall(self, data):
        with self._lock:
            try:
                self._sock.sendall(data)
            except OSError as exc:
                self.closed = True
                raise WebSocketError("WebSocket connection lost: %s" % exc) from None

    def _feed(self, data):
        for event in self._reader.feed(data):
            cls = event.__class__
            if cls is Frame:
                self._messages.append(event.data)
            elif cls is Closing:
                self.closed = True
                if event.data:
                    try:
                        self._sendall(event.data)
                    except WebSocketError:
                        pass
            else:
                self._sendall(event.data)

    def receive(self):
        """The next message (str for text, bytes for binary), or None once
        the connection is closed."""
        self._ensure_open()
        messages = self._messages
        while not messages:
            if self.closed:
                return None
            try:
                data = self._sock.recv(RECV_SIZE)
            except OSError:
                data = b""
            if not data:
                self.closed = True
                return None
            self._feed(data)
        return messages.popleft()

    read_message = receive

    def send(self, message, binary=None):
        """Send a message: bytes as binary and str as text, unless ``binary``
        says otherwise."""
        self._ensure_open()
        if self.closed:
            raise WebSocketError("the WebSocket is closed")
        if binary is None:
            binary = not isinstance(message, str)
        if binary:
            opcode = 2
            if isinstance(message, str):
                message = message.encode("utf-8")
        else:
            opcode = 1
            if not isinstance(message, str):
                message = bytes(message).decode("utf-8")
            message = message.encode("utf-8")
        with self._lock:
            try:
                frame = self._reader.send_message(opcode, bytes(message))
            except Exception as exc:    # websockets' InvalidState: closing
                self.closed = True
                raise WebSocketError("the WebSocket is closing: %s" % exc) from None
            self._sendall(frame)

    send_frame = send

    def close(self, code=CLOSE_NORMAL, message=b""):
        """Send a close frame (the server closes the connection once the app
        returns)."""
        if not self.handshake_done or self._reader is None or self.closed:
            self.closed = True
            return
        self.closed = True
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        with self._lock:
            frame = self._reader.send_close(code, message)
            if frame:
                try:
                    self._sendall(frame)
                except WebSocketError:
                    pass

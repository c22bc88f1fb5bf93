"""``gswoole.websocket.Server``: Swoole's WebSocket server on the HTTP layer.

How this works. A WebSocket port is an HTTP port whose request parser stops
at a WebSocket upgrade request (parser.py). That request reaches this
protocol like any other, in the connection's greenlet, and is answered here:
by the built-in handshake (``negotiate`` in protocol.py, on the request the
HTTP parser already read) or by the user's ``handshake`` callback. On a 101
the connection switches protocol (``Transport.switch_protocol``): its
framing becomes a ``MessageReader``, fed by the reactor in the hub like the
HTTP parser was (with the bytes that parser had already read past the
request), and its events come to ``handle_frame``. ``open`` runs before the
first of them, in the same greenlet, so a connection's callbacks keep the
order and never overlap: ``open``, then ``message`` in order, ``close`` last.

Pongs and the close handshake go out from the same greenlet, in order with
what the callbacks push. A protocol error (1002), bad UTF-8 (1007) or a
message past ``package_max_length`` (1009) sends the close frame and closes.

Pushing. ``push`` to a connection of this worker writes a frame made here
(``encode``; through the connection's protocol when it compresses); to a
connection of another worker it is a cross-worker call, as ``send`` is.
``broadcast`` makes the frame once and sends it to this worker's
connections, and one message per other worker carrying the frame, which
that worker sends to its own (in a cluster, one more message, published to
every other node, whose cluster process passes it to its workers) (a frame without compression is valid on a
connection that negotiated it: RFC 7692 lets each message choose).

Every second the sweep pings connections idle for ``websocket_ping_interval``
and closes those that did not answer the previous ping, and ends server-side
close handshakes the peer does not finish. A stopping worker says goodbye
(close 1001) to its WebSocket connections, so clients reconnect elsewhere.
"""

import logging
import time

from ..errors import ServerStateError, SESSION_NOT_EXIST, set_last_error
from ..http.request import Request
from ..http.response import Response
from ..http.server import ClientGone
from ..http.server import Server as _HttpServer
from ..http.server import _HttpProtocol
from ..http.writer import ResponseWriter, status_line
from ..sockets import SOCK_TCP
from ..swoole_names import BASE
from .protocol import (CLOSE_GOING_AWAY, CLOSE_NORMAL, OPCODE_BINARY, OPCODE_CONTINUATION,
                       OPCODE_TEXT, Closing, Frame, MessageReader, encode, negotiate,
                       open_protocol)

log = logging.getLogger("gswoole")

CLOSE_TIMEOUT = 5     # seconds a peer has to answer our close frame


def _payload(data, opcode):
    """(opcode, bytes) for what push/broadcast were given."""
    if isinstance(data, str):
        return (OPCODE_TEXT if opcode is None else opcode), data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return (OPCODE_BINARY if opcode is None else opcode), bytes(data)
    raise TypeError("push() takes str or bytes, not %s" % type(data).__name__)


class _WebSocketProtocol(_HttpProtocol):
    """One worker's WebSocket (and plain HTTP) protocol over transports."""

    reads_upgrades = True

    def __init__(self, host, setting, server, callbacks):
        super().__init__(host, setting, callbacks.get("request"))
        self.server = server
        self.on_handshake = callbacks.get("handshake")
        self.on_open = callbacks.get("open")
        self.on_message = callbacks.get("message")
        self.max_size = setting["package_max_length"]
        self._ws = {}          # fd -> (transport, MessageReader), established connections
        self._pinged = {}      # fd -> (clock of the ping, pongs counted then)
        self._closing = {}     # fd -> clock our close frame went out
        host.remote_ops["websocket_push"] = self.push
        host.remote_ops["websocket_frame_to"] = self._send_frame_local
        host.remote_ops["websocket_disconnect"] = self.disconnect
        host.remote_ops["websocket_is_established"] = self.is_established

    # -- HTTP side: the upgrade -------------------------------------------

    def respond(self, transport, parsed, writer):
        if self.on_request is not None:
            return super().respond(transport, parsed, writer)
        body = b"This is a WebSocket server: connect with a WebSocket client.\n"
        head = self.start(writer, 426, status_line(parsed.version, 426),
                          [("Content-Type", "text/plain")], len(body))
        if not transport.write(head + writer.end(body)):
            raise ClientGone()

    def _request(self, transport, parsed):
        remote = transport.get_extra_info("peername")
        client = (remote[0], remote[1], transport.get_extra_info("server_port")) \
            if isinstance(remote, tuple) else (remote or "", 0, 0)
        return Request(parsed, transport.fd, client, self.upload_dir)

    def handle_upgrade(self, transport, parsed):
        """A WebSocket upgrade request: answer it, and on a 101 switch the
        connection over and run ``open``. A refused upgrade closes the
        connection (what the client sent after the request is not HTTP)."""
        transport.pause_reading()
        writer = ResponseWriter(parsed.method, parsed.version, True)
        started = time.time()
        request = self._request(transport, parsed)
        reader = None
        try:
            if self.host.stopping:
                self._refuse(transport, writer, parsed, 503, "this worker is stopping\n")
            elif self.on_handshake is not None:
                reader = self._custom_handshake(transport, request, writer)
            else:
                reader = self._handshake(transport, parsed, writer)
        except ClientGone:
            transport.abort()
        except BaseException:
            self._respond_failed(transport, parsed, writer)
        finally:
            request.cleanup()
        if self.access:
            self.log_request(transport, parsed, writer, started)
        if reader is None or transport.is_closing():
            transport.close()
            return
        fd = transport.fd
        reader.fd = fd
        self._ws[fd] = (transport, reader)
        transport.touch()
        transport.switch_protocol(reader, self.handle_frame, transport.parser.take_rest())
        transport.resume_reading()
        if self.on_open is not None:
            try:
                self.on_open(self.server, request)
            except BaseException:
                log.exception("error in open callback (fd=%d, worker #%d)", fd,
                              self.host.worker_id)

    def _reader(self, protocol):
        s = self.setting
        return MessageReader(protocol, 0, s["open_websocket_ping_frame"],
                             s["open_websocket_pong_frame"], s["open_websocket_close_frame"])

    def _handshake(self, transport, parsed, writer):
        s = self.setting
        status, reason, headers, body, protocol = negotiate(
            parsed.method, parsed.raw_uri, parsed.headers, self.max_size,
            s["websocket_compression"], s["websocket_subprotocols"])
        if protocol is None:
            self._refuse(transport, writer, parsed, status, body, headers)
            return None
        head = self.start(writer, 101, status_line(parsed.version, 101), headers)
        if not transport.write(head + writer.end()):
            raise ClientGone()
        return self._reader(protocol)

    def _custom_handshake(self, transport, request, writer):
        response = Response(self, transport, request, writer)
        accepted = self.on_handshake(request, response)
        if not writer.started and accepted is False:
            self._refuse(transport, writer, request, 403, "WebSocket upgrade refused\n")
            return None
        if not response.finished:
            response.end()
        if writer.code != 101 or accepted is False:
            return None
        return self._reader(open_protocol(self.max_size))

    def _refuse(self, transport, writer, parsed, status, body, headers=()):
        writer.keep_alive = False
        if isinstance(body, str):
            body = body.encode("utf-8")
        headers = [h for h in headers if h[0].lower() != "upgrade"]
        head = self.start(writer, status, status_line(parsed.version, status),
                          headers + [("Content-Type", "text/plain; charset=utf-8")], len(body))
        if not transport.write(head + writer.end(body)):
            raise ClientGone()

    # -- WebSocket side ---------------------------------------------------

    def handle_frame(self, server, fd, reactor_id, event):
        """The receive callback of an upgraded connection: one reader event."""
        if event.__class__ is Frame:
            self.on_message(server, event)
            return
        transport = self._ws[fd][0] if fd in self._ws else self.host.transport(fd)
        if transport is None:
            return
        if event.__class__ is Closing:
            self._ws.pop(fd, None)
            if event.data:
                transport.write(event.data)
            transport.close()
        else:   # Reply: a pong
            transport.write(event.data)

    def closed(self, fd):
        """The connection's close callback is about to run."""
        self._ws.pop(fd, None)
        self._pinged.pop(fd, None)
        self._closing.pop(fd, None)

    # -- pushing (any greenlet; other workers through remote_ops) ---------

    def push(self, fd, data, opcode=None, finish=True):
        entry = self._ws.get(fd)
        if entry is not None and opcode is None and finish and data.__class__ is bytes \
                and len(data) < 126 and not entry[1].compressed and not entry[1].closed:
            # the usual small binary reply, framed inline
            return self.host.send(fd, bytes((0x82, len(data))) + data)
        opcode, payload = _payload(data, opcode)
        if entry is None:
            if fd in self.host.conns:
                return set_last_error(SESSION_NOT_EXIST)   # ours, not a WebSocket
            return self.host.call_owner(fd, "websocket_push", fd, payload, opcode, finish)
        reader = entry[1]
        if reader.closed:
            return set_last_error(SESSION_NOT_EXIST)
        if reader.compressed and opcode in (OPCODE_TEXT, OPCODE_BINARY, OPCODE_CONTINUATION):
            frame = reader.send_message(opcode, payload, finish)
        else:
            frame = encode(opcode, payload, finish)
        return self.host.send(fd, frame)

    def broadcast(self, data, fds=None, opcode=None):
        """Send one message to every established connection of every worker
        (or to those of ``fds``); the frame is made once. Returns the number
        of connections of this worker it went to."""
        opcode, payload = _payload(data, opcode)
        frame = encode(opcode, payload)
        host = self.host
        if fds is None:
            for pid, worker_id in host.event_workers():
                host.cast(pid, worker_id, "websocket_frame_to", frame, None)
            cluster = getattr(host, "cluster", None)
            if cluster is not None:
                cluster.broadcast(frame, None)
            return self._send_frame_local(frame, None)
        others = {}
        mine = []
        remote = []    # other nodes' fds (a cluster)
        for fd in fds:
            if fd in self._ws:
                mine.append(fd)
            elif fd not in host.conns:
                owner = host.shared.owner_of(fd)
                if owner[0] and owner[0] != host.pid:
                    others.setdefault(owner, []).append(fd)
                elif not owner[0] and getattr(host, "cluster", None) is not None:
                    remote.append(fd)
        for (pid, worker_id), group in others.items():
            host.cast(pid, worker_id, "websocket_frame_to", frame, group)
        if remote:
            host.cluster.broadcast(frame, remote)
        return self._send_frame_local(frame, mine)

    def _send_frame_local(self, frame, fds):
        """Send a made frame to this worker's established connections (all,
        or those of ``fds``)."""
        send = self.host.send_gathered
        ws = self._ws
        count = 0
        for fd in (list(ws) if fds is None else fds):
            entry = ws.get(fd)
            if entry is not None and not entry[1].closed and send(fd, frame):
                count += 1
        return count

    def is_established(self, fd):
        entry = self._ws.get(fd)
        if entry is None:
            if fd in self.host.conns:
                return False
            return self.host.call_owner(fd, "websocket_is_established", fd) is True
        return not entry[1].closed and not entry[0].is_closing()

    def disconnect(self, fd, code=CLOSE_NORMAL, reason=""):
        """Start the close handshake: a close frame now; the connection
        closes when the peer answers (or CLOSE_TIMEOUT later)."""
        entry = self._ws.get(fd)
        if entry is None:
            if fd in self.host.conns:
                return set_last_error(SESSION_NOT_EXIST)
            return self.host.call_owner(fd, "websocket_disconnect", fd, code, reason)
        if entry[1].closed:
            return set_last_error(SESSION_NOT_EXIST)
        try:
            frame = entry[1].send_close(code, reason)
        except Exception as exc:    # websockets' ProtocolError: a code one may not send
            raise ValueError("disconnect(): invalid close code %r: %s" % (code, exc)) from None
        if not frame:
            return False
        self._closing[fd] = self.host.clock
        return self.host.send(fd, frame)

    # -- once a second, and stopping --------------------------------------

    def sweep(self, host):
        super().sweep(host)
        clock = host.clock
        for fd, since in list(self._closing.items()):
            if since + CLOSE_TIMEOUT <= clock:
                self._closing.pop(fd, None)
                entry = self._ws.pop(fd, None)
                if entry is not None:
                    entry[0].close()
        interval = self.setting["websocket_ping_interval"]
        if not interval:
            return
        limit = clock - interval
        for fd, (transport, reader) in list(self._ws.items()):
            pinged = self._pinged.get(fd)
            if pinged is not None:
                if reader.pings != pinged[1]:
                    del self._pinged[fd]          # answered
                elif pinged[0] <= limit:
                    log.info("worker #%d: closing WebSocket fd %d: no pong within %ss",
                             host.worker_id, fd, interval)
                    self._ws.pop(fd, None)
                    transport.close()
                continue
            if transport.last_activity <= limit and not reader.closed:
                if transport.send(reader.send_message(9, b"")):
                    self._pinged[fd] = (clock, reader.pings)

    def start_stopping(self, host):
        super().start_stopping(host)
        for fd in list(self._ws):
            self.disconnect(fd, CLOSE_GOING_AWAY, "server stopping")


class Server(_HttpServer):
    """A WebSocket server that also answers plain HTTP (``request``):
    ``on("open")``, ``on("message")``, ``on("close")``; ``push``,
    ``broadcast``, ``disconnect``, ``is_established``, ``exist``."""

    def __init__(self, host, port=0, mode=BASE, sock_type=SOCK_TCP):
        super().__init__(host, port, mode, sock_type=sock_type)

    def _check_request_callback(self):
        if "message" not in self._callbacks:
            raise ServerStateError("start() needs a 'message' callback: "
                                   "server.on('message', fn(server, frame))")

    def _make_protocol(self, reactor):
        return _WebSocketProtocol(reactor, self.setting, self, self._callbacks)

    def _attach_worker(self, worker):
        super()._attach_worker(worker)
        protocol = self._protocol
        for listener in self._listeners:
            if listener.protocol is protocol:
                listener.on_close = _closing_first(protocol.closed, listener.on_close)
        self.push = protocol.push
        self.broadcast = protocol.broadcast
        self.disconnect = protocol.disconnect
        self.is_established = protocol.is_established

    def push(self, fd, data, opcode=None, finish=True):
        """Send a message to WebSocket ``fd`` (any worker's): str as text,
        bytes as binary unless ``opcode`` says otherwise."""
        self._not_in_worker("push")

    def broadcast(self, data, fds=None, opcode=None):
        """One message to every established connection (or to ``fds``)."""
        self._not_in_worker("broadcast")

    def disconnect(self, fd, code=CLOSE_NORMAL, reason=""):
        """Close WebSocket ``fd`` with a close frame and the close handshake."""
        self._not_in_worker("disconnect")

    def is_established(self, fd):
        """Whether ``fd`` is a WebSocket connection past its handshake."""
        self._not_in_worker("is_established")


def _closing_first(closed, on_close):
    def close(server, fd, reactor_id):
        closed(fd)
        if on_close is not None:
            on_close(server, fd, reactor_id)
    return close

"""Sans-IO WebSocket core: the opening handshake, messages from frames, and
frames for what the server sends. Bytes in, events and bytes out; no socket.

The RFC 6455 work (frame parsing and masking, control-frame rules, the close
handshake, permessage-deflate, size limits) is the ``websockets`` package's
sans-IO ``ServerProtocol``. This module adds what a server built on it needs:

* ``negotiate(method, path, headers, ...)`` runs the handshake checks on a
  request the HTTP parser has already read (the request is not parsed twice)
  and returns the status, headers and body to answer with, and, on success,
  the protocol object for the connection, already open.
* ``MessageReader`` is a connection's framing once upgraded: ``feed(data)``
  returns whole messages as ``Frame`` objects (fragments assembled, text
  decoded; a bad UTF-8 message fails the connection with 1007), optional
  ping/pong/close frames, and ``Reply`` / ``Closing`` events carrying the
  bytes the protocol wants sent (pongs, the close frame). ``Closing`` is
  always last: after it the connection must close.
* ``encode(opcode, payload, fin)``: a server frame (unmasked, no extension),
  made once and sendable to any number of connections (broadcast).
"""

import base64
import hashlib

from websockets.datastructures import Headers
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Opcode, apply_mask
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

__all__ = ["OPCODE_CONTINUATION", "OPCODE_TEXT", "OPCODE_BINARY", "OPCODE_CLOSE",
           "OPCODE_PING", "OPCODE_PONG", "Frame", "Reply", "Closing", "MessageReader",
           "negotiate", "is_upgrade", "accept_key", "encode", "encode_close"]

OPCODE_CONTINUATION = 0
OPCODE_TEXT = 1
OPCODE_BINARY = 2
OPCODE_CLOSE = 8
OPCODE_PING = 9
OPCODE_PONG = 10

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT
_PING = Opcode.PING
_PONG = Opcode.PONG
_CLOSE = Opcode.CLOSE


class Frame:
    """What the ``message`` callback receives. ``data`` is str for a text
    message, bytes otherwise; ``finish`` is True for a whole message (the
    server assembles fragments). For a close frame (``open_websocket_close_frame``)
    ``code`` and ``reason`` are set too."""

    __slots__ = ("fd", "data", "opcode", "finish", "code", "reason")

    def __init__(self, fd, data, opcode, finish=True, code=0, reason=""):
        self.fd = fd
        self.data = data
        self.opcode = opcode
        self.finish = finish
        self.code = code
        self.reason = reason

    def __repr__(self):
        return "<Frame fd=%d opcode=%d %d bytes>" % (self.fd, self.opcode, len(self.data))


class Reply:
    """Bytes the protocol sends on its own (a pong)."""

    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data


class Closing:
    """The close handshake is done (or the connection failed): send ``data``
    (the close frame, maybe empty), then close the connection. ``code`` is
    the close code sent, for logs."""

    __slots__ = ("data", "code")

    def __init__(self, data, code):
        self.data = data
        self.code = code


def accept_key(key):
    """Sec-WebSocket-Accept for a client's Sec-WebSocket-Key (for a custom
    ``handshake`` callback)."""
    if isinstance(key, str):
        key = key.encode("latin-1")
    return base64.b64encode(hashlib.sha1(key.strip() + _GUID).digest()).decode("ascii")


def is_upgrade(headers):
    """Does a request's header list ask for a WebSocket upgrade?"""
    for name, value in headers:
        if name == "upgrade" and "websocket" in value.lower():
            return True
    return False


def negotiate(method, path, headers, max_size, compression=False, subprotocols=None):
    """The opening handshake for a request already parsed (``headers`` is a
    list of (lower-case name, value)). Returns ``(status, reason, headers,
    body, protocol)``: on success 101, the handshake headers (Upgrade,
    Sec-WebSocket-Accept, maybe Sec-WebSocket-Extensions/-Protocol) and an
    open ``ServerProtocol``; otherwise an error status and a text body, and
    protocol None. ``headers`` returned exclude Date and Connection (the
    HTTP response writer adds its own)."""
    handshake = ServerProtocol(
        extensions=[ServerPerMessageDeflateFactory()] if compression else None,
        subprotocols=list(subprotocols) if subprotocols else None,
        max_size=max_size)
    request = Request(path, Headers(headers))
    if method != "GET":
        response = handshake.reject(405, "WebSocket handshakes use GET\n")
    else:
        response = handshake.accept(request)
    out = [(k, v) for k, v in response.headers.raw_items()
           if k.lower() not in ("date", "connection", "content-length", "content-type")]
    if response.status_code != 101:
        return response.status_code, response.reason_phrase, out, response.body, None
    protocol = ServerProtocol(state=State.OPEN, max_size=max_size)
    protocol.extensions = handshake.extensions
    protocol.subprotocol = handshake.subprotocol
    return 101, response.reason_phrase, out, b"", protocol


def open_protocol(max_size):
    """A protocol for a connection whose handshake someone else answered
    (a ``handshake`` callback): no extension, no subprotocol."""
    return ServerProtocol(state=State.OPEN, max_size=max_size)


def encode(opcode, payload, fin=True):
    """One server frame (unmasked, no extension bits)."""
    first = (0x80 if fin else 0) | opcode
    length = len(payload)
    if length < 126:
        return bytes((first, length)) + payload
    if length < 65536:
        return bytes((first, 126)) + length.to_bytes(2, "big") + payload
    return bytes((first, 127)) + length.to_bytes(8, "big") + payload


def encode_close(code=CLOSE_NORMAL, reason=""):
    """A close frame's payload: the code and a UTF-8 reason (at most 123 bytes)."""
    reason = reason.encode("utf-8") if isinstance(reason, str) else bytes(reason)
    return code.to_bytes(2, "big") + reason[:123]


class MessageReader:
    """A connection's WebSocket framing (see the module docstring).

    ``protocol`` is the open ``ServerProtocol``; the ``pass_*`` flags put
    ping, pong and close frames among the events (Swoole's
    ``open_websocket_*_frame``)."""

    __slots__ = ("protocol", "fd", "pass_ping", "pass_pong", "pass_close", "_parts",
                 "_opcode", "closed", "pings", "compressed")

    def __init__(self, protocol, fd=0, pass_ping=False, pass_pong=False, pass_close=False):
        self.protocol = protocol
        self.fd = fd
        self.pass_ping = pass_ping
        self.pass_pong = pass_pong
        self.pass_close = pass_close
        self._parts = None           # fragments of a message in progress
        self._opcode = 0
        self.closed = False          # a Closing event was returned: ignore the rest
        self.pings = 0               # pongs received (websocket_ping_interval checks it)
        # permessage-deflate was negotiated (fixed after the handshake): data
        # frames, both ways, go through the protocol.
        self.compressed = bool(protocol.extensions)


    def feed(self, data):
        if self.closed:
            return []
        protocol = self.protocol
        events = []
        if self._parts is None and not self.compressed and not protocol.reader.buffer:
            # The common case, taken apart here: whole, unfragmented, masked
            # text or binary frames (see _whole_frames). Anything else, from
            # its first byte on, goes to the protocol, as all input would.
            done = self._whole_frames(data, events)
            if self.closed:                # bad UTF-8: the protocol failed it
                self._flush(events)
                return events
            if done == len(data):
                return events
            if done:
                data = data[done:]
        protocol.receive_data(data)
        for frame in protocol.events_received():
            opcode = frame.opcode
            if opcode is _BINARY or opcode is _TEXT:
                if frame.fin:
                    if not self._message(events, opcode, frame.data):
                        break
                else:
                    self._opcode = opcode
                    self._parts = [frame.data]
            elif opcode is _CONT:
                self._parts.append(frame.data)
                if frame.fin:
                    parts = self._parts
                    self._parts = None
                    if not self._message(events, self._opcode, b"".join(parts)):
                        break
            elif opcode is _PING:
                if self.pass_ping:
                    events.append(Frame(self.fd, bytes(frame.data), OPCODE_PING))
            elif opcode is _PONG:
                self.pings += 1
                if self.pass_pong:
                    events.append(Frame(self.fd, bytes(frame.data), OPCODE_PONG))
            elif opcode is _CLOSE and self.pass_close:
                received = protocol.close_rcvd
                events.append(Frame(self.fd, bytes(frame.data), OPCODE_CLOSE, True,
                                    received.code if received else 1005,
                                    received.reason if received else ""))
        self._flush(events)
        return events

    def _whole_frames(self, data, events):
        """Read the complete frames at the start of ``data`` that need none
        of the protocol's state: FIN set, no RSV bits, text or binary, masked,
        a 7- or 16-bit length within the size limit. Returns how many bytes
        they took. Such a frame changes nothing in the protocol, in any
        state it can be in here (only fragments, control frames and
        extensions do; after a close frame or a failure ``closed`` is set and
        nothing is read), so the protocol, whose buffer is empty, reads on
        from the first byte this leaves."""
        end = len(data)
        pos = 0
        limit = self.protocol.max_message_size
        fd = self.fd
        while end - pos >= 6:
            first = data[pos]
            if first != 0x82 and first != 0x81:
                break
            length = data[pos + 1] ^ 0x80          # the mask bit must be set
            if length < 126:
                start = pos + 6
            elif length == 126:
                if end - pos < 8:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 8
            else:
                break                              # unmasked, or a 64-bit length
            stop = start + length
            if stop > end or (limit is not None and length > limit):
                break
            payload = apply_mask(data[start:stop], data[start - 4:start])
            if first == 0x82:
                events.append(Frame(fd, payload, OPCODE_BINARY))
            else:
                try:
                    events.append(Frame(fd, payload.decode("utf-8"), OPCODE_TEXT))
                except UnicodeDecodeError:
                    self.protocol.fail(CLOSE_INVALID_DATA, "invalid UTF-8")
                    self.closed = True
                    return stop
            pos = stop
        return pos

    def feed_eof(self):
        """The peer closed the TCP connection."""
        self.closed = True

    def _message(self, events, opcode, data):
        if opcode is _TEXT:
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError:
                self.protocol.fail(CLOSE_INVALID_DATA, "invalid UTF-8")
                return False
            events.append(Frame(self.fd, data, OPCODE_TEXT))
        else:
            events.append(Frame(self.fd, bytes(data), OPCODE_BINARY))
        return True

    def _flush(self, events):
        out = self.protocol.data_to_send()
        if not out:
            return
        if out[-1] == b"":
            # The protocol ends the stream: the close handshake completed, or
            # it failed the connection (1002, 1007, 1009).
            self.closed = True
            sent = self.protocol.close_sent
            events.append(Closing(b"".join(out), sent.code if sent else 1006))
        else:
            events.append(Reply(b"".join(out)))

    # -- what the server sends ---------------------------------------------

    def send_message(self, opcode, payload, fin=True):
        """The bytes of one data frame through the protocol (compression)."""
        protocol = self.protocol
        if opcode == OPCODE_TEXT:
            protocol.send_text(payload, fin)
        elif opcode == OPCODE_BINARY:
            protocol.send_binary(payload, fin)
        elif opcode == OPCODE_CONTINUATION:
            protocol.send_continuation(payload, fin)
        elif opcode == OPCODE_PING:
            protocol.send_ping(payload)
        elif opcode == OPCODE_PONG:
            protocol.send_pong(payload)
        else:
            raise ValueError("opcode %r cannot be pushed (use disconnect() to close)" % opcode)
        return b"".join(self.protocol.data_to_send())

    def send_close(self, code=CLOSE_NORMAL, reason=""):
        """The close frame that starts a server-side close handshake; b"" when
        one was already sent."""
        protocol = self.protocol
        if protocol.state is not State.OPEN:
            return b""
        protocol.send_close(code, reason)
        return b"".join(d for d in protocol.data_to_send() if d)

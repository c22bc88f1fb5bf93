"""The WebSocket core without sockets: the handshake on a parsed request,
MessageReader fed whole, per byte and in random chunks (its fast path for
whole frames and the protocol's path must agree), and the WebSocket protocol
upgrading a connection through a fake transport."""

import base64
import os
import random
import struct

import pytest

from gswoole import settings
from gswoole.http.parser import RequestParser
from gswoole.websocket import protocol as wsp
from gswoole.websocket.server import _WebSocketProtocol

from test_http_protocol import FakeHost, FakeTransport


def masked(opcode, payload, fin=True, rsv=0):
    key = os.urandom(4)
    n = len(payload)
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    if n < 126:
        head = struct.pack("!BB", first, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def reader(max_size=1 << 20, **flags):
    return wsp.MessageReader(wsp.open_protocol(max_size), 7, **flags)


def describe(events):
    out = []
    for e in events:
        if isinstance(e, wsp.Frame):
            out.append(("frame", e.opcode, e.data))
        elif isinstance(e, wsp.Closing):
            out.append(("closing", e.code))
        else:
            out.append(("reply", e.data))
    return out


def feed_in_pieces(r, data, cuts):
    events = []
    start = 0
    for cut in cuts + [len(data)]:
        if cut > start:
            events.extend(r.feed(data[start:cut]))
            start = cut
    return describe(events)


STREAM = b"".join([
    masked(1, "héllo".encode()),
    masked(2, b"\x00" * 200),                 # 16-bit length
    masked(2, os.urandom(70000)[:10]),
    masked(1, b"frag", fin=False), masked(9, b"ping"), masked(0, b"ment"),
    masked(2, b"x" * 70000),                  # 64-bit length: the protocol's path
    masked(1, b"last"),
])


@pytest.mark.parametrize("how", ["whole", "per byte", "random"])
def test_reader_gives_the_same_events_however_fed(how):
    expected = describe(reader().feed(STREAM))
    frames = [e for e in expected if e[0] == "frame"]
    assert [e[1] for e in frames] == [1, 2, 2, 1, 2, 1]
    assert frames[0][2] == "héllo" and frames[3][2] == "fragment"
    assert ("reply", wsp.encode(wsp.OPCODE_PONG, b"ping")) in expected
    if how == "whole":
        return
    rng = random.Random(11)
    for _ in range(5 if how == "random" else 1):
        if how == "per byte":
            cuts = list(range(1, len(STREAM)))
        else:
            cuts = sorted(rng.sample(range(1, len(STREAM)), 40))
        got = feed_in_pieces(reader(), STREAM, cuts)
        frames = [e for e in got if e[0] == "frame"]
        assert frames == [e for e in expected if e[0] == "frame"]
        assert b"".join(e[1] for e in got if e[0] == "reply") == wsp.encode(10, b"ping")


@pytest.mark.parametrize("data, code", [
    (b"\x81\x02ab", 1002),                                   # unmasked
    (masked(1, b"\xff"), 1007),                              # bad UTF-8 (fast path)
    (masked(1, b"ok", fin=False) + masked(0, b"\xff"), 1007),  # bad UTF-8 (assembled)
    (masked(2, b"x" * 200), 1009),                           # past max_size
    (masked(1, b"x", rsv=4), 1002),
])
def test_reader_violations(data, code):
    r = reader(max_size=100)
    events = r.feed(data)
    assert isinstance(events[-1], wsp.Closing) and events[-1].code == code
    assert r.closed and r.feed(masked(1, b"after")) == []


def test_close_handshake_from_peer():
    r = reader(pass_close=True)
    events = r.feed(masked(8, struct.pack("!H", 1000) + b"bye"))
    assert isinstance(events[0], wsp.Frame) and events[0].opcode == 8
    assert (events[0].code, events[0].reason) == (1000, "bye")
    assert isinstance(events[1], wsp.Closing) and events[1].code == 1000


def test_negotiate_on_a_parsed_request():
    key = base64.b64encode(b"0123456789abcdef").decode()
    headers = [("host", "x"), ("upgrade", "websocket"), ("connection", "Upgrade"),
               ("sec-websocket-key", key), ("sec-websocket-version", "13"),
               ("sec-websocket-protocol", "a, b"),
               ("sec-websocket-extensions", "permessage-deflate")]
    status, reason, out, body, protocol = wsp.negotiate("GET", "/", headers, 1000, True, ["b"])
    out = dict((k.lower(), v) for k, v in out)
    assert status == 101 and out["sec-websocket-accept"] == wsp.accept_key(key)
    assert out["sec-websocket-protocol"] == "b"
    assert out["sec-websocket-extensions"].startswith("permessage-deflate")
    assert protocol.subprotocol == "b" and protocol.extensions
    status, *_ , protocol = wsp.negotiate("POST", "/", headers, 1000)
    assert status == 405 and protocol is None
    status, *_ , protocol = wsp.negotiate("GET", "/", headers[:3], 1000)
    assert status == 400 and protocol is None


class UpgradeTransport(FakeTransport):
    def __init__(self, host):
        super().__init__(host)
        self.parser = RequestParser(websocket=True)
        self.switched = None

    def switch_protocol(self, splitter, on_receive, data=b""):
        self.switched = (splitter, on_receive, data)
        self.parser = splitter


def test_protocol_upgrades_and_hands_over_early_bytes():
    host = FakeHost()
    host.remote_ops = {}
    host.conns = {}
    host.stopping = False
    opened = []
    messages = []
    protocol = _WebSocketProtocol(host, settings.defaults(), "server", {
        "open": lambda server, request: opened.append(request.path),
        "message": lambda server, frame: messages.append(frame.data)})
    transport = UpgradeTransport(host)
    host.transport = lambda fd: transport
    key = base64.b64encode(b"0123456789abcdef")
    early = masked(1, b"early")
    events = transport.parser.feed(
        b"GET /room HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n" + early)
    assert len(events) == 1 and events[0].websocket
    protocol.handle("server", transport.fd, 0, events[0])
    assert bytes(transport.out).startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Connection: upgrade\r\n" in bytes(transport.out)
    assert opened == ["/room"] and not transport.closed and not transport.paused
    reader, on_receive, data = transport.switched
    assert data == early
    for event in reader.feed(data):
        on_receive("server", transport.fd, 0, event)
    assert messages == ["early"]

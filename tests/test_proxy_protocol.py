"""The PROXY protocol v1/v2 (gswoole/proxy_protocol.py): whole, per byte, in
random chunks, and end to end through a server's get_client_info."""

import ipaddress
import random
import struct

import pytest

from gswoole.proxy_protocol import V2_SIGNATURE, ProxyHeaderReader, ProxyProtocolError, parse


def v2(command=1, family=0x11, source=("203.0.113.7", 5555), dest=("10.0.0.1", 80), tlv=b""):
    if family >> 4 == 1:
        body = (ipaddress.IPv4Address(source[0]).packed + ipaddress.IPv4Address(dest[0]).packed
                + struct.pack("!HH", source[1], dest[1]))
    elif family >> 4 == 2:
        body = (ipaddress.IPv6Address(source[0]).packed + ipaddress.IPv6Address(dest[0]).packed
                + struct.pack("!HH", source[1], dest[1]))
    else:
        body = b""
    body += tlv
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


CASES = [
    (b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 80\r\n", ("203.0.113.7", 5555)),
    (b"PROXY TCP6 2001:db8::7 2001:db8::1 5555 443\r\n", ("2001:db8::7", 5555)),
    (b"PROXY UNKNOWN\r\n", None),
    (b"PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n", None),
    (v2(), ("203.0.113.7", 5555)),
    (v2(family=0x21, source=("2001:db8::7", 6), dest=("2001:db8::1", 443)), ("2001:db8::7", 6)),
    (v2(tlv=b"\x01\x00\x02h2"), ("203.0.113.7", 5555)),     # a TLV (ALPN) is skipped
    (v2(command=0, family=0x00), None),                      # LOCAL: health check
]


class _Conn:
    def __init__(self):
        self.remote = ("127.0.0.1", 40000)
        self.splitter = None


class _Lines:
    """A stand-in inner splitter: complete lines."""
    def __init__(self):
        self.buffer = b""
        self.state = "inner"

    def feed(self, data):
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        return lines


@pytest.mark.parametrize("header, address", CASES)
@pytest.mark.parametrize("chunking", ["whole", "per byte", "random"])
def test_header_then_payload(header, address, chunking):
    conn = _Conn()
    inner = _Lines()
    conn.splitter = reader = ProxyHeaderReader(conn, inner)
    assert reader.state == "inner"       # the inner splitter's attributes show through
    data = header + b"one\ntwo\n"
    if chunking == "whole":
        pieces = [data]
    elif chunking == "per byte":
        pieces = [data[i:i + 1] for i in range(len(data))]
    else:
        rng, pieces, i = random.Random(len(data)), [], 0
        while i < len(data):
            step = rng.randint(1, 9)
            pieces.append(data[i:i + step])
            i += step
    packets = []
    for piece in pieces:
        packets += conn.splitter.feed(piece)     # as the reactor does: conn.splitter
    assert packets == [b"one", b"two"]
    assert conn.splitter is inner                # stepped aside
    assert conn.remote == (address or ("127.0.0.1", 40000))


@pytest.mark.parametrize("bad", [
    b"GET / HTTP/1.1\r\n\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\n",
    b"PROXY TCP4 2001:db8::1 5.6.7.8 1 80\r\n",
    b"PROXY TCP4 not-an-ip 5.6.7.8 1 80\r\n",
    b"PROXY " + b"x" * 200,
    V2_SIGNATURE + bytes([0x31, 0x11]) + struct.pack("!H", 12) + b"\0" * 12,   # version 3
    V2_SIGNATURE + bytes([0x22, 0x11]) + struct.pack("!H", 12) + b"\0" * 12,   # command 2
    V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", 65535),             # too long
])
def test_bad_headers_raise(bad):
    with pytest.raises(ProxyProtocolError):
        parse(bad)


def test_incomplete_is_none():
    assert parse(b"PROXY TCP4 1.2") is None
    assert parse(V2_SIGNATURE[:5]) is None
    assert parse(v2()[:-1]) is None


ECHO_PEER = """
def on_receive(s, fd, rid, data):
    info = s.get_client_info(fd)
    s.send(fd, b"%s %d|" % (info["remote_ip"].encode(), info["remote_port"]) + data)
server.on("receive", on_receive)
"""


def test_server_sees_the_proxied_client(serve):
    srv = serve(ECHO_PEER, settings="proxy_protocol=True")
    for header, expected in [(CASES[0][0], b"203.0.113.7 5555|hi"),
                             (v2(), b"203.0.113.7 5555|hi"),
                             (CASES[2][0], b"127.0.0.1 ")]:
        with srv.connect() as sock:
            sock.sendall(header + b"hi")
            assert sock.recv(100).startswith(expected)
    with srv.connect() as sock:          # no header: closed, not served
        sock.sendall(b"hello there, no header\r\n")
        assert sock.recv(100) == b""
    srv.wait_line(r"did not start with a PROXY protocol header", stream="err")


def test_untrusted_peer_header_is_just_data(serve):
    srv = serve(ECHO_PEER, settings="proxy_protocol=True, proxy_allow_ips='10.9.9.9'")
    with srv.connect() as sock:
        sock.sendall(CASES[0][0])
        assert sock.recv(100).startswith(b"127.0.0.1 ")

"""The PROXY protocol, versions 1 and 2 (HAProxy's spec), sans-IO.

A load balancer that speaks it (HAProxy ``send-proxy``/``send-proxy-v2``, AWS
NLB, nginx ``proxy_protocol on`` in a stream block) starts each connection
with a header naming the real client; with the ``proxy_protocol`` setting the
reactor puts a ``ProxyHeaderReader`` in front of the connection's framing.
It takes the header off, sets the connection's remote address from it (what
``get_client_info`` and WSGI's REMOTE_ADDR show), then steps aside: the
connection's own splitter takes the next bytes, and no per-read cost remains.

``parse(buffer)`` -> None (need more), or ``(consumed, address)`` where
address is ``(ip, port)`` or None (LOCAL / UNKNOWN: keep the real peer);
raises ProxyProtocolError on anything else, and the connection is closed.
"""

import ipaddress
import struct

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107                      # the spec's longest v1 line, CRLF included
_V2_HEADER = struct.Struct("!12sBBH")
_V2_MAX_BODY = 4096               # TLVs included; real headers are far smaller


class ProxyProtocolError(ValueError):
    pass


def parse(buffer):
    if buffer.startswith(V2_SIGNATURE[:min(len(buffer), 12)]) and buffer[:1] == b"\r":
        return _parse_v2(buffer)
    if b"PROXY "[:len(buffer)] == buffer[:6]:
        return _parse_v1(buffer)
    raise ProxyProtocolError("connection did not start with a PROXY protocol header")


def _parse_v1(buffer):
    end = buffer.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(buffer) >= V1_MAX:
            raise ProxyProtocolError("PROXY v1 line longer than %d bytes" % V1_MAX)
        return None
    parts = buffer[:end].decode("ascii", "replace").split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return end + 2, None
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyProtocolError("bad PROXY v1 line %r" % buffer[:end][:V1_MAX])
    _, family, source, _dest, source_port, _dest_port = parts
    try:
        ip = ipaddress.ip_address(source)
        port = int(source_port)
    except ValueError:
        raise ProxyProtocolError("bad address in PROXY v1 line %r" % buffer[:end]) from None
    if (ip.version == 4) != (family == "TCP4") or not 0 <= port <= 65535:
        raise ProxyProtocolError("bad address in PROXY v1 line %r" % buffer[:end])
    return end + 2, (str(ip), port)


def _parse_v2(buffer):
    if len(buffer) < _V2_HEADER.size:
        return None
    signature, version_command, family, length = _V2_HEADER.unpack_from(buffer)
    if signature != V2_SIGNATURE or version_command >> 4 != 2:
        raise ProxyProtocolError("bad PROXY v2 signature or version")
    if length > _V2_MAX_BODY:
        raise ProxyProtocolError("PROXY v2 header of %d bytes" % length)
    total = _V2_HEADER.size + length
    if len(buffer) < total:
        return None
    command = version_command & 0x0F
    if command == 0:          # LOCAL: the proxy's own connection (health check)
        return total, None
    if command != 1:
        raise ProxyProtocolError("bad PROXY v2 command %d" % command)
    body = buffer[_V2_HEADER.size:total]
    if family >> 4 == 1 and length >= 12:        # AF_INET
        return total, (str(ipaddress.IPv4Address(body[:4])),
                       struct.unpack_from("!H", body, 8)[0])
    if family >> 4 == 2 and length >= 36:        # AF_INET6
        return total, (str(ipaddress.IPv6Address(body[:16])),
                       struct.unpack_from("!H", body, 32)[0])
    if family >> 4 in (0, 3):                    # UNSPEC, AF_UNIX: keep the real peer
        return total, None
    raise ProxyProtocolError("bad PROXY v2 address family 0x%02x" % family)


class ProxyHeaderReader:
    """A connection's splitter until its PROXY header is read (see the module doc).

    ``conn`` needs ``remote`` and ``splitter`` attributes; ``inner`` is the
    connection's real splitter (None: unframed). Other attributes are the
    inner splitter's (the HTTP server reads its parser state)."""

    def __init__(self, conn, inner):
        self._conn = conn
        self._inner = inner
        self._buffer = b""

    def feed(self, data):
        self._buffer += data
        result = parse(self._buffer)
        if result is None:
            return []
        consumed, address = result
        if address is not None:
            self._conn.remote = address
        rest = self._buffer[consumed:]
        self._buffer = b""
        self._conn.splitter = self._inner       # step aside
        if not rest:
            return []
        return self._inner.feed(rest) if self._inner is not None else [rest]

    def __getattr__(self, name):
        return getattr(self._inner, name)

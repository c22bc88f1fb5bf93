"""gswoole.websocket.Server over raw sockets: RFC 6455 cases, the order of
open/message/close, push and broadcast across workers."""

import base64
import os
import socket
import struct
import zlib

import pytest

from conftest import EMIT, recv_until_eof, wait_until
from gswoole.websocket import accept_key

WS_HEADER = """\
import os, sys, time
import gevent
import gswoole, gswoole.websocket
""" + EMIT + """
server = gswoole.websocket.Server("127.0.0.1", 0)
server.set(worker_num={workers}, log_level="info"{extra})
server.on("start", lambda s: emit("READY", s.port, s.master_pid))
"""

ECHO = """
def on_message(server, frame):
    if frame.data == "disconnect":
        server.disconnect(frame.fd, 4000, "done")
    else:
        server.push(frame.fd, frame.data)
server.on("message", on_message)
"""


@pytest.fixture
def ws_serve(serve):
    def start(body=ECHO, workers=1, settings=""):
        extra = (", " + settings) if settings else ""
        import textwrap
        return serve(WS_HEADER.format(workers=workers, extra=extra) + textwrap.dedent(body)
                     + "\nserver.start()\n", raw=True)
    return start


# -- a raw client ------------------------------------------------------------

def handshake_bytes(path="/", extra=""):
    key = base64.b64encode(os.urandom(16)).decode()
    return key, ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n%s\r\n" % (path, key, extra)).encode()


class RawClient:
    def __init__(self, port, path="/", extra="", after=b""):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key, request = handshake_bytes(path, extra)
        self.sock.sendall(request + after)
        self.buf = b""
        head = self._read_until(b"\r\n\r\n")
        self.head = head.decode("latin-1")
        self.status = int(self.head.split(" ", 2)[1])
        self.headers = {}
        for line in self.head.split("\r\n")[1:]:
            if line:
                name, _, value = line.partition(":")
                self.headers[name.strip().lower()] = value.strip()
        if self.status == 101:
            assert self.headers["sec-websocket-accept"] == accept_key(key)

    def _read_until(self, marker):
        while marker not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError("EOF before %r; got %r" % (marker, self.buf))
            self.buf += chunk
        head, _, self.buf = self.buf.partition(marker)
        return head

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("EOF with %d bytes expected" % (n - len(self.buf)))
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send_frame(self, opcode, payload=b"", fin=True, rsv=0, mask=True, length=None):
        first = (0x80 if fin else 0) | (rsv << 4) | opcode
        n = len(payload) if length is None else length
        if n < 126:
            head = struct.pack("!BB", first, (0x80 if mask else 0) | n)
        elif n < 65536:
            head = struct.pack("!BBH", first, (0x80 if mask else 0) | 126, n)
        else:
            head = struct.pack("!BBQ", first, (0x80 if mask else 0) | 127, n)
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            head += key
        self.sock.sendall(head + payload)

    def send_text(self, text):
        self.send_frame(1, text.encode())

    def recv_frame(self):
        """(fin, rsv, opcode, payload)."""
        b0, b1 = self._read(2)
        assert not b1 & 0x80, "server frames are never masked"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        return bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, self._read(n)

    def recv_message(self):
        fin, rsv, opcode, payload = self.recv_frame()
        assert fin
        return opcode, payload

    def expect_close(self, code):
        """The server's close frame with ``code``, then EOF."""
        while True:
            fin, rsv, opcode, payload = self.recv_frame()
            if opcode == 8:
                break
        got = struct.unpack("!H", payload[:2])[0] if payload else 1005
        assert got == code, "close code %d, expected %d (%r)" % (got, code, payload)
        self.expect_eof()
        return payload[2:].decode()

    def expect_eof(self):
        assert self.buf == b"" and recv_until_eof(self.sock) == b""

    def close(self):
        self.sock.close()


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


# -- handshake and messages -----------------------------------------------------

def test_handshake_text_and_binary(ws_serve):
    srv = ws_serve()
    c = RawClient(srv.port, "/chat?room=1")
    assert c.status == 101
    assert c.headers["upgrade"].lower() == "websocket"
    assert c.headers["connection"].lower() == "upgrade"
    assert "sec-websocket-extensions" not in c.headers
    c.send_text("héllo")
    assert c.recv_message() == (1, "héllo".encode())
    c.send_frame(2, b"\x00\xff" * 100)
    assert c.recv_message() == (2, b"\x00\xff" * 100)
    big = os.urandom(70000)                     # 64-bit length
    c.send_frame(2, big)
    assert c.recv_message() == (2, big)
    c.close()


def test_handshake_errors_and_plain_http(ws_serve):
    srv = ws_serve(ECHO + """
def on_request(request, response):
    response.end("plain " + request.path)
server.on("request", on_request)
""")
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(b"GET /page HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    reply = recv_until_eof(s)
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"plain /page")
    # A WebSocket upgrade with a wrong version: refused, closed.
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n")
    reply = recv_until_eof(s)
    assert reply.startswith(b"HTTP/1.1 4"), reply
    # No key at all.
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Version: 13\r\n\r\n")
    assert recv_until_eof(s).startswith(b"HTTP/1.1 400")


def test_without_request_callback_plain_http_gets_426(ws_serve):
    srv = ws_serve()
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert recv_until_eof(s).startswith(b"HTTP/1.1 426")


def test_fragments_assembled_with_interleaved_pings(ws_serve):
    srv = ws_serve()
    c = RawClient(srv.port)
    c.send_frame(1, b"Hel", fin=False)
    c.send_frame(9, b"p1")
    c.send_frame(0, "lo wörld"[:5].encode(), fin=False)
    c.send_frame(9, b"p2")
    c.send_frame(0, "lo wörld"[5:].encode())
    got = [c.recv_frame() for _ in range(3)]
    assert (True, 0, 10, b"p1") in got and (True, 0, 10, b"p2") in got
    assert (True, 0, 1, "Hello wörld".encode()) in got
    # A multi-byte character split across fragments is fine too.
    data = "€".encode()
    c.send_frame(1, data[:1], fin=False)
    c.send_frame(0, data[1:])
    assert c.recv_message() == (1, data)
    c.close()


def test_client_close_handshake(ws_serve):
    srv = ws_serve(ECHO + """
server.on("close", lambda s, fd, reactor_id: emit("CLOSE", fd, reactor_id))
""")
    c = RawClient(srv.port)
    c.send_frame(8, close_payload(1000, b"bye"))
    assert c.expect_close(1000) == "bye"
    srv.wait_line(r"^CLOSE \d+ -1$")   # the server closes the TCP connection (RFC 6455 7.1.1)


def test_server_close_handshake(ws_serve):
    srv = ws_serve(ECHO + """
server.on("close", lambda s, fd, reactor_id: emit("CLOSE", fd))
""")
    c = RawClient(srv.port)
    c.send_text("disconnect")
    fin, rsv, opcode, payload = c.recv_frame()
    assert opcode == 8 and payload == close_payload(4000, b"done")
    c.send_frame(8, payload)        # the client's answer completes the handshake
    c.expect_eof()
    srv.wait_line(r"^CLOSE \d+$")


VIOLATIONS = {
    "unmasked frame": (dict(opcode=1, payload=b"x", mask=False), 1002),
    "reserved opcode": (dict(opcode=3, payload=b"x"), 1002),
    "RSV1 without an extension": (dict(opcode=1, payload=b"x", rsv=4), 1002),
    "continuation without a start": (dict(opcode=0, payload=b"x"), 1002),
    "fragmented ping": (dict(opcode=9, payload=b"x", fin=False), 1002),
    "ping over 125 bytes": (dict(opcode=9, payload=b"x" * 126), 1002),
    "close with a 1-byte payload": (dict(opcode=8, payload=b"x"), 1002),
    "close with a reserved code": (dict(opcode=8, payload=close_payload(1005)), 1002),
    "bad UTF-8": (dict(opcode=1, payload=b"\xff\xfe"), 1007),
    "bad UTF-8 in a close reason": (dict(opcode=8, payload=close_payload(1000, b"\xff")), 1007),
    "message too big": (dict(opcode=2, payload=b"x" * 5000), 1009),
}


@pytest.mark.parametrize("case", sorted(VIOLATIONS))
def test_violation_closes_with_rfc_code(ws_serve, case):
    srv = ws_serve(settings="package_max_length=4096")
    frame, code = VIOLATIONS[case]
    c = RawClient(srv.port)
    c.send_frame(**frame)
    c.expect_close(code)
    # The worker is alive and serving.
    c = RawClient(srv.port)
    c.send_text("still here")
    assert c.recv_message() == (1, b"still here")
    assert not srv.matching("Traceback", stream="err")


def test_violations_across_fragments(ws_serve):
    srv = ws_serve(settings="package_max_length=4096")
    c = RawClient(srv.port)                     # too big only once assembled
    c.send_frame(2, b"x" * 1000, fin=False)
    for _ in range(4):
        c.send_frame(0, b"x" * 1000, fin=False)
    c.expect_close(1009)
    c = RawClient(srv.port)                     # bad UTF-8 only once assembled
    c.send_frame(1, b"ok \xe2", fin=False)
    c.send_frame(0, b"\x28\xa1")
    c.expect_close(1007)
    c = RawClient(srv.port)                     # a new message inside a fragmented one
    c.send_frame(1, b"a", fin=False)
    c.send_frame(1, b"b")
    c.expect_close(1002)
    c = RawClient(srv.port)                     # a declared length past the limit, no data
    c.send_frame(2, b"", length=1 << 40)
    c.expect_close(1009)
    assert not srv.matching("Traceback", stream="err")


def _deflate(data):
    co = zlib.compressobj(wbits=-15)
    out = co.compress(data) + co.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def _inflate(data):
    return zlib.decompressobj(wbits=-15).decompress(data + b"\x00\x00\xff\xff")


def test_compression_negotiated(ws_serve):
    srv = ws_serve(settings="websocket_compression=True")
    c = RawClient(srv.port, extra="Sec-WebSocket-Extensions: permessage-deflate; "
                                  "client_max_window_bits\r\n")
    assert c.headers["sec-websocket-extensions"].startswith("permessage-deflate")
    text = "compress me " * 50
    c.send_frame(1, _deflate(text.encode()), rsv=4)
    fin, rsv, opcode, payload = c.recv_frame()
    assert (fin, rsv, opcode) == (True, 4, 1)
    assert _inflate(payload) == text.encode()
    c.close()


def test_compression_not_negotiated(ws_serve):
    # The server does not enable it: a client's offer is declined, and a
    # compressed frame is a protocol error.
    srv = ws_serve()
    c = RawClient(srv.port, extra="Sec-WebSocket-Extensions: permessage-deflate\r\n")
    assert c.status == 101 and "sec-websocket-extensions" not in c.headers
    c.send_frame(1, _deflate(b"hello"), rsv=4)
    c.expect_close(1002)
    # Enabled, but this client offers nothing: plain frames.
    srv = ws_serve(settings="websocket_compression=True")
    c = RawClient(srv.port)
    assert "sec-websocket-extensions" not in c.headers
    c.send_text("plain")
    assert c.recv_frame() == (True, 0, 1, b"plain")


def test_subprotocol_and_pass_frames(ws_serve):
    srv = ws_serve("""
def on_message(server, frame):
    emit("FRAME", frame.opcode, repr(frame.data), frame.code)
server.on("message", on_message)
""", settings='websocket_subprotocols=["chat", "superchat"], open_websocket_ping_frame=True, '
              'open_websocket_pong_frame=True, open_websocket_close_frame=True')
    c = RawClient(srv.port, extra="Sec-WebSocket-Protocol: other, superchat\r\n")
    assert c.headers["sec-websocket-protocol"] == "superchat"
    c.send_frame(9, b"pi")
    assert c.recv_frame() == (True, 0, 10, b"pi")      # still answered
    c.send_frame(10, b"po")
    c.send_frame(8, close_payload(1001, b"away"))
    c.expect_close(1001)
    srv.wait_line(r"^FRAME 9 b'pi' 0$")
    srv.wait_line(r"^FRAME 10 b'po' 0$")
    srv.wait_line(r"^FRAME 8 .* 1001$")


def test_custom_handshake(ws_serve):
    srv = ws_serve(ECHO + """
def on_handshake(request, response):
    if request.header.get("x-token") != "secret":
        return False
    response.header("Upgrade", "websocket")
    response.header("Connection", "Upgrade")
    response.header("Sec-WebSocket-Accept",
                    gswoole.websocket.accept_key(request.header["sec-websocket-key"]))
    response.status(101)
    response.end()
server.on("handshake", on_handshake)
server.on("open", lambda s, request: emit("OPEN", request.fd))
""")
    c = RawClient(srv.port)
    assert c.status == 403
    c = RawClient(srv.port, extra="X-Token: secret\r\n")
    assert c.status == 101
    c.send_text("authorised")
    assert c.recv_message() == (1, b"authorised")
    srv.wait_line(r"^OPEN \d+$")


def test_ping_interval_closes_silent_peers(ws_serve):
    srv = ws_serve(ECHO + """
server.on("close", lambda s, fd, reactor_id: emit("CLOSE", fd))
""", settings="websocket_ping_interval=1.0")
    c = RawClient(srv.port)
    fin, rsv, opcode, payload = c.recv_frame()     # a ping, after a quiet second
    assert opcode == 9
    c.expect_eof()                                 # never answered: closed
    srv.wait_line(r"^CLOSE \d+$")


# -- ordering -------------------------------------------------------------------

def test_open_message_close_order(ws_serve):
    # open blocks while messages arrive; frames sent right behind the
    # handshake request (before the 101) are not lost either.
    srv = ws_serve("""
def on_open(server, request):
    emit("OPEN", request.fd)
    gevent.sleep(0.2)
    emit("OPENED", request.fd)
def on_message(server, frame):
    emit("MSG", frame.fd, frame.data)
    if frame.data == "3":
        gevent.sleep(0.1)
server.on("open", on_open)
server.on("message", on_message)
server.on("close", lambda s, fd, reactor_id: emit("CLOSE", fd))
""")
    early = b"".join(_masked(1, str(i).encode()) for i in range(1, 3))
    c = RawClient(srv.port, after=early)
    for i in range(3, 6):
        c.send_text(str(i))
    c.send_frame(8, close_payload(1000))
    c.expect_close(1000)
    srv.wait_line(r"^CLOSE ")
    events = [line for line in srv.lines if line.split(" ")[0] in ("OPEN", "OPENED", "MSG",
                                                                   "CLOSE")]
    fd = events[0].split()[1]
    assert events == ["OPEN " + fd, "OPENED " + fd] + ["MSG %s %d" % (fd, i)
                                                        for i in range(1, 6)] + ["CLOSE " + fd]


def _masked(opcode, payload):
    key = os.urandom(4)
    return bytes((0x80 | opcode, 0x80 | len(payload))) + key + bytes(
        b ^ key[i % 4] for i, b in enumerate(payload))


# -- across workers ---------------------------------------------------------------

CROSS = """
def on_open(server, request):
    emit("OPEN", request.fd, server.worker_id)
def on_message(server, frame):
    cmd, _, rest = frame.data.partition(" ")
    if cmd == "push":
        fd, _, text = rest.partition(" ")
        emit("PUSHED", server.push(int(fd), text), server.is_established(int(fd)))
    elif cmd == "broadcast":
        server.broadcast(rest)
    elif cmd == "some":
        fds, _, text = rest.partition(" ")
        server.broadcast(text, [int(f) for f in fds.split(",")])
    elif cmd == "kick":
        server.disconnect(int(rest), 4001, "kicked")
server.on("open", on_open)
server.on("message", on_message)
"""


def test_push_and_broadcast_across_workers(ws_serve):
    srv = ws_serve(CROSS, workers=2)
    clients = {}
    workers = {}
    for opened in range(1, 201):     # connect until both workers own two of ours
        c = RawClient(srv.port)
        match = srv.wait_line(r"^OPEN (\d+) (\d+)$", count=opened)
        fd, worker = int(match.group(1)), int(match.group(2))
        if len(workers.get(worker, ())) >= 2:
            c.close()
            continue
        clients[fd] = c
        workers.setdefault(worker, []).append(fd)
        if len(clients) == 4:
            break
    assert len(workers) == 2, "connections all landed on one worker: %r" % workers
    a, b = workers[0][0], workers[1][0]
    # push from a connection on worker 0 to one on worker 1, and back
    clients[a].send_text("push %d to b" % b)
    assert clients[b].recv_message() == (1, b"to b")
    srv.wait_line(r"^PUSHED True True$")
    clients[b].send_text("push %d to a" % a)
    assert clients[a].recv_message() == (1, b"to a")
    # broadcast reaches every connection of both workers
    clients[a].send_text("broadcast hello everyone")
    for fd, c in clients.items():
        assert c.recv_message() == (1, b"hello everyone"), fd
    # to a list of fds: only those
    chosen = [workers[0][-1], workers[1][-1]]
    clients[b].send_text("some %s just you" % ",".join(map(str, chosen)))
    for fd in chosen:
        assert clients[fd].recv_message() == (1, b"just you")
    # disconnect across workers
    clients[a].send_text("kick %d" % b)
    fin, rsv, opcode, payload = clients[b].recv_frame()
    assert opcode == 8 and payload == close_payload(4001, b"kicked")
    clients[b].send_frame(8, payload)
    clients[b].expect_eof()
    # the others got nothing extra: a ping round trip comes back first
    for fd, c in clients.items():
        if fd != b:
            c.send_frame(9, b"sync")
            assert c.recv_frame() == (True, 0, 10, b"sync"), fd
    # a push to a closed or unknown fd fails
    wait_until(lambda: clients[a].send_text("push %d x" % b) or
               srv.matching(r"^PUSHED False False$"), message="push to a closed fd fails")


def test_stopping_worker_says_going_away(ws_serve):
    srv = ws_serve(ECHO + """
server.on("close", lambda s, fd, reactor_id: emit("CLOSE", fd))
""")
    c = RawClient(srv.port)
    c.send_text("up")
    assert c.recv_message() == (1, b"up")
    import signal
    srv.signal(signal.SIGTERM)
    fin, rsv, opcode, payload = c.recv_frame()
    assert opcode == 8 and payload[:2] == close_payload(1001)
    c.send_frame(8, payload[:2])
    c.expect_eof()
    srv.wait_line(r"^CLOSE \d+$")
    assert srv.wait_exit(15) == 0

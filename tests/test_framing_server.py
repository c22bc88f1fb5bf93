"""Framing inside a real server: whole packets per receive, bad streams closed."""

import random
import struct

from conftest import recv_exactly, recv_until_eof

PACKET_ECHO = """
def on_receive(s, fd, rid, data):
    emit("PACKET", len(data))
    s.send(fd, data)
server.on("receive", on_receive)
"""


def _chunked_send(sock, data, seed):
    rnd = random.Random(seed)
    pos = 0
    while pos < len(data):
        step = rnd.randint(1, 700)
        sock.sendall(data[pos:pos + step])
        pos += step


def test_length_framing_delivers_whole_packets(serve):
    srv = serve(PACKET_ECHO, settings="open_length_check=True, package_length_type='N', "
                                      "package_length_offset=0, package_body_offset=4")
    rnd = random.Random(7)
    bodies = [bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 3000))) for _ in range(40)]
    stream = b"".join(struct.pack(">I", len(b)) + b for b in bodies)
    with srv.connect() as sock:
        _chunked_send(sock, stream, 1)
        assert recv_exactly(sock, len(stream)) == stream
    srv.wait_line(r"^PACKET", count=len(bodies))
    sizes = [int(m.group(1)) for m in srv.matching(r"^PACKET (\d+)")]
    assert sizes == [4 + len(b) for b in bodies]


def test_eof_split_one_receive_per_line(serve):
    srv = serve(PACKET_ECHO, settings="open_eof_split=True, package_eof=b'\\r\\n'")
    lines = [b"line %d\r\n" % i for i in range(50)]
    with srv.connect() as sock:
        _chunked_send(sock, b"".join(lines), 2)
        recv_exactly(sock, sum(map(len, lines)))
    srv.wait_line(r"^PACKET", count=len(lines))
    assert [int(m.group(1)) for m in srv.matching(r"^PACKET (\d+)")] == [len(l) for l in lines]


def test_oversize_packet_closes_after_earlier_packets(serve):
    srv = serve(PACKET_ECHO + 'server.on("close", lambda s, fd, rid: emit("CLOSE", rid))\n',
                settings="open_length_check=True, package_length_type='N', "
                         "package_body_offset=4, package_max_length=1024")
    with srv.connect() as sock:
        good = struct.pack(">I", 3) + b"abc"
        sock.sendall(good + struct.pack(">I", 5000) + b"x" * 100)
        assert recv_until_eof(sock) == good
    srv.wait_line(r"^CLOSE -1")
    srv.wait_line(r"closing fd \d+: .*package_max_length|closing fd \d+: .*1024", stream="err")


def test_bad_length_func_result_closes(serve):
    srv = serve("""
def length(buf):
    return -1 if buf.startswith(b"BAD") else (0 if len(buf) < 2 else buf[0])
server.set(package_length_func=length)
""" + PACKET_ECHO + 'server.on("close", lambda s, fd, rid: emit("CLOSE", rid))\n')
    with srv.connect() as sock:
        sock.sendall(b"\x03ab")
        assert recv_exactly(sock, 3) == b"\x03ab"
        sock.sendall(b"BAD stuff")
        assert recv_until_eof(sock) == b""
    srv.wait_line(r"^CLOSE -1")


def test_length_func_that_raises_closes_instead_of_freezing(serve):
    srv = serve("""
import struct
server.set(package_length_func=lambda buf: struct.unpack(">I", buf[:4])[0] + 4)
""" + PACKET_ECHO + 'server.on("close", lambda s, fd, rid: emit("CLOSE", rid))\n')
    with srv.connect() as sock:
        sock.sendall(b"\x00\x00")   # too short: the user's function raises struct.error
        assert recv_until_eof(sock) == b""
    srv.wait_line(r"^CLOSE -1")

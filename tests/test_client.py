"""Client and AsyncClient over real sockets on 127.0.0.1 and unix paths."""

import errno
import gc
import json
import logging
import socket
import struct
import threading
import weakref

import gevent
import gevent.event
import gevent.socket
import pytest
from gevent.server import StreamServer

import gswoole
from gswoole.client import AsyncClient, Client, live_async_clients
from gswoole.errors import CallbackError, SettingError

pytestmark = pytest.mark.timeout(10)

LENGTH = dict(open_length_check=True, package_length_type="N", package_length_offset=0,
              package_body_offset=4)
LENGTH_SETTINGS = ("open_length_check=True, package_length_type='N', "
                   "package_length_offset=0, package_body_offset=4")


def packet(body):
    return struct.pack(">I", len(body)) + body


@pytest.fixture(autouse=True)
def quiet_loop_after():
    """Every test leaves no live client and no active watcher behind, so tests
    that build a Server in this process afterwards do not hit EventLoopError."""
    yield
    from gevent._hub_local import get_hub_if_exists
    deadline = 100
    while deadline and (live_async_clients() or
                        (get_hub_if_exists() and get_hub_if_exists().loop.activecnt)):
        gevent.sleep(0.02)
        deadline -= 1
    assert live_async_clients() == 0
    hub = get_hub_if_exists()
    assert hub is None or hub.loop.activecnt == 0


@pytest.fixture
def stream_server():
    """``stream_server(handle)`` -> a started in-process gevent StreamServer."""
    servers = []

    def start(handle, address=("127.0.0.1", 0)):
        server = StreamServer(address, handle)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(timeout=1)


def echo(sock, address):
    while True:
        data = sock.recv(65536)
        if not data:
            return
        sock.sendall(data)


def closed_port():
    """A port bound but not listening: connecting is refused, and nobody else
    can take it while the socket stays open."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    return holder, holder.getsockname()[1]


# -- Client -------------------------------------------------------------------

RPC_SERVER = """
import json, struct
def on_receive(s, fd, rid, data):
    request = json.loads(data[4:])
    replies = [json.dumps({"n": request["n"], "part": i}).encode() for i in range(3)]
    replies.append(b"x" * request.get("big", 0))
    # every reply packet in one write: the client must split them
    s.send(fd, b"".join(struct.pack(">I", len(r)) + r for r in replies))
server.on("receive", on_receive)
"""


def test_length_framed_replies_come_one_per_recv(serve):
    srv = serve(RPC_SERVER, settings=LENGTH_SETTINGS)
    client = Client(gswoole.SOCK_TCP)
    client.set(LENGTH, timeout=5)
    assert client.connect("127.0.0.1", srv.port)
    assert client.isConnected() and client.is_connected()
    assert client.getpeername() == ("127.0.0.1", srv.port)
    assert client.getsockname()[0] == "127.0.0.1"
    for n, big in ((1, 0), (2, 300000)):
        request = packet(json.dumps({"n": n, "big": big}).encode())
        assert client.send(request) == len(request)
        for part in range(3):
            reply = client.recv()
            assert json.loads(reply[4:]) == {"n": n, "part": part}   # header included
        assert client.recv() == packet(b"x" * big)
    assert client.close() is True
    assert not client.isConnected()
    assert client.recv() is False and client.errCode == errno.ENOTCONN
    assert client.send(b"x") is False and client.errCode == errno.ENOTCONN
    assert client.close() is False


def test_recv_timeout_keeps_the_connection_and_its_partial_packet(stream_server):
    go_on = gevent.event.Event()

    def half_then_rest(sock, address):
        whole = packet(b"hello world")
        sock.sendall(whole[:6])
        go_on.wait(5)
        sock.sendall(whole[6:])
        sock.recv(1)

    server = stream_server(half_then_rest)
    client = Client()
    client.set(LENGTH)
    assert client.connect("127.0.0.1", server.server_port, timeout=5)
    assert client.recv(timeout=0.2) is False
    assert client.errCode == errno.ETIMEDOUT and client.errMsg
    assert client.isConnected()
    go_on.set()
    assert client.recv() == packet(b"hello world")
    client.close()


def test_default_timeout_comes_from_set(stream_server):
    server = stream_server(lambda sock, address: sock.recv(1))
    client = Client()
    client.set(timeout=0.1)
    assert client.connect("127.0.0.1", server.server_port)
    assert client.recv() is False and client.errCode == errno.ETIMEDOUT
    client.close()


def test_connect_to_a_closed_port_is_refused():
    holder, port = closed_port()
    with holder:
        client = Client()
        assert client.connect("127.0.0.1", port) is False
        assert client.errCode == errno.ECONNREFUSED
        assert "refused" in client.errMsg.lower()
        assert not client.isConnected()
        assert client.getpeername() is False


def test_peer_close_gives_empty_bytes(stream_server):
    def greet_and_close(sock, address):
        sock.sendall(b"bye")

    server = stream_server(greet_and_close)
    with Client() as client:
        assert client.connect("127.0.0.1", server.server_port, timeout=5)
        assert client.recv() == b"bye"
        assert client.recv() == b""
        assert not client.isConnected()


def test_framing_error_returns_earlier_packets_then_closes(stream_server):
    def good_then_oversize(sock, address):
        sock.sendall(packet(b"ok") + struct.pack(">I", 1 << 20) + b"zz")
        sock.recv(1)

    server = stream_server(good_then_oversize)
    client = Client()
    client.set(LENGTH, package_max_length=1024, timeout=5)
    assert client.connect("127.0.0.1", server.server_port)
    assert client.recv() == packet(b"ok")
    assert client.recv() is False
    assert client.errCode == errno.EPROTO
    assert "package_max_length" in client.errMsg
    assert not client.isConnected()


def test_eof_split_over_a_unix_stream_socket(tmp_path):
    path = str(tmp_path / "s.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    listener.settimeout(5)
    got = []

    def serve_one():
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            got.append(conn.recv(100))
            conn.sendall(b"one\r\ntwo\r\nthr")
            conn.sendall(b"ee\r\n")

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    try:
        client = Client(gswoole.SOCK_UNIX_STREAM)
        client.set(open_eof_split=True, package_eof=b"\r\n", timeout=5)
        assert client.connect(path)
        assert client.send("hi") == 2
        assert [client.recv(), client.recv(), client.recv()] == [b"one\r\n", b"two\r\n",
                                                                   b"three\r\n"]
        assert client.recv() == b""
        thread.join(5)
        assert got == [b"hi"]
    finally:
        listener.close()


def test_udp_sendto_connect_and_recv():
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(5)
    port = server.getsockname()[1]
    with server:
        client = Client(gswoole.SOCK_UDP)
        client.set(timeout=5)
        assert client.sendto("127.0.0.1", port, b"ping") == 4
        data, address = server.recvfrom(100)
        assert data == b"ping" and address[1] == client.getsockname()[1]
        server.sendto(b"pong", address)
        assert client.recvfrom() == (b"pong", ("127.0.0.1", port))

        assert client.connect("127.0.0.1", port)
        assert client.send(b"again") == 5
        assert server.recvfrom(100) == (b"again", address)   # same socket as sendto()
        server.sendto(b"A", address)
        server.sendto(b"B", address)
        assert client.recv() == b"A" and client.recv() == b"B"   # one datagram each
        assert client.recv(timeout=0.05) is False and client.errCode == errno.ETIMEDOUT
        assert client.close()


def test_sendto_is_for_datagrams_only():
    client = Client()
    assert client.sendto("127.0.0.1", 9, b"x") is False
    assert client.errCode == errno.EOPNOTSUPP


def test_set_validates_keys_and_values():
    client = Client()
    with pytest.raises(SettingError, match="worker_num"):
        client.set(worker_num=2)
    with pytest.raises(SettingError, match="open_length_chek.*open_length_check"):
        client.set(open_length_chek=True)
    with pytest.raises(SettingError, match="package_length_type"):
        client.set(package_length_type="Q")
    with pytest.raises(SettingError, match="timeout"):
        client.set(timeout="soon")
    with pytest.raises(SettingError, match="cannot both be on"):
        client.set(open_eof_split=True, open_length_check=True)
    assert client.setting == {}
    assert client.set({"open_eof_check": True}, package_eof="\n")
    assert client.setting == {"open_eof_check": True, "package_eof": b"\n"}


# -- AsyncClient ------------------------------------------------------------------

def recording_client(events, done, sock_type=gswoole.SOCK_TCP, close_on=None):
    client = AsyncClient(sock_type)

    def on_receive(c, data):
        events.append(data)
        if data == close_on:
            c.close()

    client.on("connect", lambda c: events.append("connect"))
    client.on("onReceive", on_receive)
    client.on("Error", lambda c: (events.append(("error", c.errCode)), done.set()))
    client.on("on_close", lambda c: (events.append(("close", c.errCode)), done.set()))
    return client


def test_async_callbacks_in_order(stream_server):
    server = stream_server(echo)
    events, done = [], gevent.event.Event()
    client = recording_client(events, done, close_on=b"three\r\n")
    client.set(open_eof_split=True)
    client.on("connect", lambda c: (events.append("connect"),
                                    c.send(b"one\r\ntwo\r\n"), c.send(b"three\r\nfour\r\n")))
    assert client.connect("127.0.0.1", server.server_port, timeout=5)
    assert live_async_clients() == 1
    assert done.wait(5)
    # close() in a receive callback: no receive after it, close comes last
    assert events == ["connect", b"one\r\n", b"two\r\n", b"three\r\n", ("close", 0)]
    assert not client.isConnected()
    assert client.send(b"x") is False and client.close() is False


def test_async_close_when_the_server_closes(stream_server):
    server = stream_server(lambda sock, address: sock.sendall(b"hello"))
    events, done = [], gevent.event.Event()
    assert recording_client(events, done).connect("127.0.0.1", server.server_port)
    assert done.wait(5)
    assert events == ["connect", b"hello", ("close", 0)]


def test_async_close_from_another_greenlet(stream_server):
    server = stream_server(echo)
    events, done = [], gevent.event.Event()
    client = recording_client(events, done)
    client.connect("127.0.0.1", server.server_port, timeout=5)
    for _ in range(250):
        if client.isConnected():
            break
        gevent.sleep(0.02)
    assert client.send(b"ping") == 4
    for _ in range(250):
        if b"ping" in events:
            break
        gevent.sleep(0.02)
    assert client.close() is True
    assert done.wait(5)
    assert events == ["connect", b"ping", ("close", 0)]


def test_async_client_lives_without_references_and_is_released(stream_server):
    server = stream_server(echo)
    events, done = [], gevent.event.Event()

    def start():
        client = recording_client(events, done, close_on=b"ping")
        client.on("connect", lambda c: (events.append("connect"), c.send(b"ping")))
        client.connect("127.0.0.1", server.server_port, timeout=5)
        return weakref.ref(client)

    ref = start()
    gc.collect()
    assert ref() is not None and live_async_clients() == 1
    assert done.wait(5)
    assert events == ["connect", b"ping", ("close", 0)]
    gevent.sleep(0)
    gc.collect()
    assert ref() is None
    assert live_async_clients() == 0


def test_async_connect_error_is_reported_and_released():
    holder, port = closed_port()
    events, done = [], gevent.event.Event()
    with holder:
        client = recording_client(events, done)
        ref = weakref.ref(client)
        assert client.connect("127.0.0.1", port)
        del client
        assert done.wait(5)
    assert events == [("error", errno.ECONNREFUSED)]
    gevent.sleep(0)
    gc.collect()
    assert ref() is None and live_async_clients() == 0


def test_async_callback_error_is_logged_and_the_client_carries_on(stream_server, caplog):
    server = stream_server(echo)
    events, done = [], gevent.event.Event()
    client = recording_client(events, done, close_on=b"two\n")
    client.set(open_eof_split=True, package_eof=b"\n")

    def on_receive(c, data):
        events.append(data)
        if data == b"one\n":
            raise RuntimeError("boom")
        c.close()

    client.on("receive", on_receive)
    client.on("connect", lambda c: c.send(b"one\ntwo\n"))
    with caplog.at_level(logging.ERROR, logger="gswoole"):
        client.connect("127.0.0.1", server.server_port, timeout=5)
        assert done.wait(5)
    assert events == [b"one\n", b"two\n", ("close", 0)]
    assert any("boom" in (r.exc_text or "") or "receive" in r.getMessage()
               for r in caplog.records)


def test_async_client_can_reconnect_from_its_close_callback(stream_server):
    server = stream_server(lambda sock, address: sock.sendall(b"hi"))
    events, done = [], gevent.event.Event()
    client = AsyncClient()
    client.on("receive", lambda c, data: events.append(data))
    client.on("error", lambda c: done.set())

    def on_close(c):
        events.append("close")
        if events.count("close") < 2:
            assert c.connect("127.0.0.1", server.server_port)
        else:
            done.set()

    client.on("close", on_close)
    client.connect("127.0.0.1", server.server_port)
    assert done.wait(5)
    assert events == [b"hi", "close", b"hi", "close"]


def test_async_unix_stream_with_length_framing(tmp_path, stream_server):
    path = str(tmp_path / "a.sock")
    listener = gevent.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def replies(sock, address):
        sock.sendall(packet(b"a") + packet(b"bb") + packet(b"c")[:3])
        sock.sendall(packet(b"c")[3:])

    stream_server(replies, address=listener)
    events, done = [], gevent.event.Event()
    client = recording_client(events, done, sock_type=gswoole.SOCK_UNIX_STREAM)
    client.set(LENGTH)
    assert client.connect(path)
    assert done.wait(5)
    assert events == ["connect", packet(b"a"), packet(b"bb"), packet(b"c"), ("close", 0)]


def test_async_client_rejects_bad_registrations():
    client = AsyncClient()
    with pytest.raises(CallbackError, match="'receive' and 'error'"):
        client.connect("127.0.0.1", 9)
    with pytest.raises(CallbackError, match="unknown AsyncClient event 'packet'"):
        client.on("packet", lambda c, data: None)
    with pytest.raises(CallbackError, match="not callable"):
        client.on("receive", "nope")
    with pytest.raises(CallbackError, match="cannot take"):
        client.on("receive", lambda c: None)
    client.on("receive", lambda c, data: None)
    with pytest.raises(CallbackError, match="'error'"):
        client.connect("127.0.0.1", 9)
    assert live_async_clients() == 0

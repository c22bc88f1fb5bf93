"""UDP, extra ports with their own framing, heartbeat and max_conn."""

import select
import socket
import struct
import time

from conftest import recv_exactly, recv_until_eof

UDP_ECHO = """
def on_packet(s, data, info):
    s.sendto(info["address"], info["port"], b"%d:" % s.worker_id + data)
server.on("packet", on_packet)
"""


def test_udp_echo_with_two_workers(serve):
    srv = serve(UDP_ECHO, workers=2, sock_type="gswoole.SOCK_UDP")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        seen = set()
        for n in range(50):
            sock.sendto(b"ping%d" % n, ("127.0.0.1", srv.port))
            reply, _ = sock.recvfrom(1000)
            worker, _, payload = reply.partition(b":")
            assert payload == b"ping%d" % n
            seen.add(int(worker))
    assert seen <= {0, 1}


def test_udp_without_packet_callback_fails_clearly(serve):
    srv = serve("pass\n", sock_type="gswoole.SOCK_UDP", ready=False)
    assert srv.wait_exit(15) != 0
    srv.wait_line(r"needs a 'packet' callback for the datagram port", stream="err")


def test_extra_port_with_its_own_framing_and_callbacks(serve):
    srv = serve("""
server.on("receive", lambda s, fd, rid, data: s.send(fd, b"main:" + data))
extra = server.listen("127.0.0.1", 0, gswoole.SOCK_TCP)
extra.set(open_length_check=True, package_length_type="N", package_body_offset=4)
extra.on("receive", lambda s, fd, rid, data: s.send(fd, b"extra:%d" % len(data)))
server.on("workerStart", lambda s, wid: emit("EXTRA", extra.port))
""")
    extra_port = int(srv.wait_line(r"^EXTRA (\d+)").group(1))
    with srv.connect() as sock:
        sock.sendall(b"hello")
        assert recv_exactly(sock, 10) == b"main:hello"
    with socket.create_connection(("127.0.0.1", extra_port), timeout=5) as sock:
        packet = struct.pack(">I", 5) + b"abcde"
        sock.sendall(packet[:3])
        sock.sendall(packet[3:] + packet)
        assert recv_exactly(sock, 14) == b"extra:9extra:9"   # two whole packets


def test_port_rejects_server_wide_settings_and_events(serve):
    srv = serve("""
import gswoole.errors
port = server.listen("127.0.0.1", 0)
for call in (lambda: port.set(worker_num=2), lambda: port.on("task", lambda *a: None)):
    try:
        call()
    except (gswoole.errors.SettingError, gswoole.errors.CallbackError) as exc:
        emit("REJECTED", type(exc).__name__, exc)
server.on("receive", lambda s, fd, rid, data: None)
""")
    assert "server-wide setting" in srv.wait_line(r"^REJECTED SettingError").string
    assert "server-wide" in srv.wait_line(r"^REJECTED CallbackError").string


def test_heartbeat_closes_idle_but_not_busy(serve):
    srv = serve("""
server.on("receive", lambda s, fd, rid, data: s.send(fd, data))
server.on("close", lambda s, fd, rid: emit("CLOSE", fd, rid))
""", settings="heartbeat_check_interval=1, heartbeat_idle_time=2")
    idle = srv.connect()
    busy = srv.connect()
    started = time.monotonic()
    # the busy one talks every 0.3 s; the idle one says nothing
    while time.monotonic() - started < 6:
        busy.sendall(b"k")
        assert recv_exactly(busy, 1) == b"k"
        if srv.matching(r"^CLOSE"):
            break
        time.sleep(0.3)
    assert recv_until_eof(idle, timeout=5) == b""
    busy.sendall(b"still")
    assert recv_exactly(busy, 5) == b"still"
    assert len(srv.matching(r"^CLOSE")) == 1
    idle.close()
    busy.close()


def test_max_conn_leaves_extra_connections_in_the_backlog_until_one_closes(serve):
    srv = serve("""
server.on("receive", lambda s, fd, rid, data: s.send(fd, data))
""", settings="max_conn=3", workers=1)
    kept = [srv.connect() for _ in range(3)]
    for sock in kept:
        sock.sendall(b"a")
        assert recv_exactly(sock, 1) == b"a"
    extra = srv.connect()          # the kernel completes it; the worker does not accept
    extra.sendall(b"b")
    srv.wait_line(r"max_conn=3: not accepting until a connection closes", stream="err")
    assert select.select([extra], [], [], 0.3)[0] == [], "served past max_conn"
    for sock in kept[1:]:
        sock.sendall(b"c")
        assert recv_exactly(sock, 1) == b"c"
    kept[0].close()                # room again: the waiting client is accepted and served
    assert recv_exactly(extra, 1) == b"b"
    assert not srv.matching(r"closing a new connection")
    for sock in kept[1:] + [extra]:
        sock.close()


def test_udp_replies_leave_from_the_port_the_packet_came_to(serve):
    srv = serve("""
second = server.listen("127.0.0.1", 0, gswoole.SOCK_UDP)
def on_packet(s, data, info):
    s.sendto(info["address"], info["port"], data.upper(), info["server_socket"])
server.on("packet", on_packet)
server.on("workerStart", lambda s, wid: emit("SECOND", second.port))
""", sock_type="gswoole.SOCK_UDP")
    second_port = int(srv.wait_line(r"^SECOND (\d+)").group(1))
    for port in (srv.port, second_port):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.connect(("127.0.0.1", port))   # accepts replies from that port only
            sock.send(b"hey")
            assert sock.recv(100) == b"HEY"


def test_unix_datagram_server(serve, tmp_path):
    path = str(tmp_path / "dgram.sock")
    client_path = str(tmp_path / "client.sock")
    serve("""
def on_packet(s, data, info):
    s.sendto(info["address"], 0, b"got " + data, info["server_socket"])
server.on("packet", on_packet)
""", host=path, sock_type="gswoole.SOCK_UNIX_DGRAM")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(client_path)   # a named client, so the server can answer it
        sock.settimeout(5)
        sock.sendto(b"hello", path)
        assert sock.recv(100) == b"got hello"


def test_udp_packets_read_before_a_reload_are_still_answered(serve):
    import signal
    srv = serve("""
import gevent
def on_packet(s, data, info):
    gevent.sleep(0.3)   # still busy with the queue when the reload comes
    s.sendto(info["address"], info["port"], data, info["server_socket"])
server.on("packet", on_packet)
server.on("workerStart", lambda s, wid: emit("WORKERSTART", wid))
""", sock_type="gswoole.SOCK_UDP")
    srv.wait_line(r"^WORKERSTART")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        for n in range(5):
            sock.sendto(b"p%d" % n, ("127.0.0.1", srv.port))
        srv.signal(signal.SIGUSR1)
        replies = sorted(sock.recvfrom(100)[0] for _ in range(5))
    assert replies == [b"p%d" % n for n in range(5)]

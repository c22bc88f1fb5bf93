"""Connections end to end: echo, ordering, sending and closing (docs/guide.md sections 1-2)."""

import random
import socket
import struct
import threading

import pytest

from conftest import recv_exactly, recv_until_eof, wait_until

ECHO = """
server.on("receive", lambda s, fd, rid, data: s.send(fd, data))
"""


def test_echo_200_concurrent_connections_random_chunks(serve):
    srv = serve(ECHO, workers=2)
    failures = []

    def client(seed):
        rnd = random.Random(seed)
        payload = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 20000)))
        try:
            with srv.connect() as sock:
                pos = 0
                while pos < len(payload):
                    step = rnd.randint(1, 3000)
                    sock.sendall(payload[pos:pos + step])
                    pos += step
                assert recv_exactly(sock, len(payload)) == payload
        except Exception as exc:  # collected: a thread's assert would be lost
            failures.append(repr(exc))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not failures, failures[:5]


def test_order_connect_receive_close_never_overlap(serve):
    srv = serve("""
        import gevent, random
        state = {}
        def check(fd, event):
            if state.get(fd, {}).get("busy"):
                emit("OVERLAP", fd, event)
        def on_connect(s, fd, rid):
            check(fd, "connect")
            state[fd] = {"busy": True, "seen": ["connect"]}
            gevent.sleep(random.random() * 0.01)
            state[fd]["busy"] = False
        def on_receive(s, fd, rid, data):
            check(fd, "receive")
            if fd not in state or "close" in state[fd]["seen"]:
                emit("BADORDER", fd)
            state[fd]["busy"] = True
            state[fd]["seen"].append("receive")
            gevent.sleep(random.random() * 0.01)
            s.send(fd, data)
            state[fd]["busy"] = False
        def on_close(s, fd, rid):
            check(fd, "close")
            seen = state.pop(fd)["seen"]
            if seen[0] != "connect" or seen.count("connect") != 1:
                emit("BADORDER", fd)
            emit("CLOSED", fd, len(seen))
        server.on("connect", on_connect)
        server.on("receive", on_receive)
        server.on("close", on_close)
    """, workers=2)
    count = 30

    def client(i):
        with srv.connect() as sock:
            data = b""
            for n in range(10):
                msg = b"%d-%d;" % (i, n)
                sock.sendall(msg)
                data += msg
            assert recv_exactly(sock, len(data)) == data

    threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    srv.wait_line(r"^CLOSED", count=count)
    assert not srv.matching(r"OVERLAP|BADORDER")


def test_slow_callback_does_not_delay_other_connections(serve):
    srv = serve("""
        import gevent
        def on_receive(s, fd, rid, data):
            if data.startswith(b"slow"):
                gevent.sleep(5)
            s.send(fd, data)
        server.on("receive", on_receive)
    """)
    slow = srv.connect()
    slow.sendall(b"slow")
    with srv.connect(timeout=2) as fast:
        for _ in range(20):
            fast.sendall(b"fast")
            assert recv_exactly(fast, 4, timeout=2) == b"fast"
    slow.close()


def test_8mib_then_close_arrives_whole_then_eof(serve):
    srv = serve("""
        BIG = bytes(range(256)) * (8 * 1024 * 4)
        def on_receive(s, fd, rid, data):
            assert s.send(fd, BIG)
            assert s.close(fd)
        server.on("receive", on_receive)
    """, settings="buffer_output_size=16 * 1024 * 1024")
    with srv.connect() as sock:
        sock.sendall(b"go")
        data = recv_until_eof(sock, timeout=20)
    assert len(data) == 8 * 1024 * 1024
    assert data == bytes(range(256)) * (8 * 1024 * 4)


def test_client_that_keeps_sending_still_reads_whole_answer(serve):
    # The client reads its answer only after the server has closed, while it
    # is still sending: a plain close() would have unread input in the
    # server's socket, answer with an RST, and the client's kernel would drop
    # the answer it had not read yet. The lingering close prevents that.
    srv = serve("""
        ANSWER = b"A" * 1000000
        def on_receive(s, fd, rid, data):
            if not s.session(fd).get("answered"):
                s.session(fd)["answered"] = True
                s.send(fd, ANSWER)
                s.close(fd)
        server.on("receive", on_receive)
        server.on("close", lambda s, fd, rid: emit("CLOSED", fd))
    """)
    sock = srv.connect()
    stop = threading.Event()

    def keep_sending():
        try:
            while not stop.is_set():
                sock.sendall(b"x" * 4096)
        except OSError:
            pass

    sender = threading.Thread(target=keep_sending)
    sender.start()
    try:
        srv.wait_line(r"^CLOSED")
        data = recv_until_eof(sock, timeout=20)
    finally:
        stop.set()
        try:
            sock.shutdown(socket.SHUT_RDWR)   # unblocks the sender
        except OSError:
            pass
        sender.join(10)
        sock.close()
    assert len(data) == 1000000 and data == b"A" * 1000000


def test_reset_close_gives_client_econnreset(serve):
    srv = serve("""
        def on_receive(s, fd, rid, data):
            s.send(fd, b"dropped" * 100000)
            s.close(fd, reset=True)
        server.on("receive", on_receive)
    """)
    with srv.connect() as sock:
        sock.sendall(b"go")
        with pytest.raises(ConnectionResetError):
            while sock.recv(65536):
                pass


def test_close_event_reactor_id_tells_who_closed(serve):
    srv = serve("""
        def on_receive(s, fd, rid, data):
            if data == b"bye":
                s.close(fd)
        server.on("receive", on_receive)
        server.on("close", lambda s, fd, rid: emit("CLOSE", fd, rid))
    """)
    with srv.connect() as sock:
        sock.sendall(b"bye")
        assert recv_until_eof(sock) == b""
    srv.wait_line(r"^CLOSE \d+ -1$")
    with srv.connect() as sock:
        pass
    srv.wait_line(r"^CLOSE \d+ 0$")


def test_send_after_peer_closed_returns_false_1004(serve):
    srv = serve("""
        import gevent
        def on_receive(s, fd, rid, data):
            gevent.sleep(0.3)   # the client closes meanwhile
            while s.exist(fd):
                gevent.sleep(0.01)
            emit("SEND", s.send(fd, b"late"), s.get_last_error())
        server.on("receive", on_receive)
        server.on("close", lambda s, fd, rid: emit("CLOSE", fd, rid, s.get_client_info(fd) is not None))
    """)
    with srv.connect() as sock:
        sock.sendall(b"hi")
    assert srv.wait_line(r"^SEND ").string == "SEND False 1004"
    assert srv.wait_line(r"^CLOSE ").string.endswith(" 0 True")


def test_send_to_unknown_fd_is_1005_and_second_close_false(serve):
    srv = serve("""
        def on_receive(s, fd, rid, data):
            emit("UNKNOWN", s.send(10 ** 9, b"x"), s.get_last_error())
            emit("CLOSE1", s.close(fd))
            emit("CLOSE2", s.close(fd))
            emit("SENDCLOSING", s.send(fd, b"x"), s.get_last_error())
        server.on("receive", on_receive)
    """)
    with srv.connect() as sock:
        sock.sendall(b"hi")
        recv_until_eof(sock)
    assert srv.wait_line(r"^UNKNOWN").string == "UNKNOWN False 1005"
    assert srv.wait_line(r"^CLOSE1").string == "CLOSE1 True"
    assert srv.wait_line(r"^CLOSE2").string == "CLOSE2 False"
    assert srv.wait_line(r"^SENDCLOSING").string == "SENDCLOSING False 1003"


def test_output_buffer_overflow_1009_worker_stays_responsive(serve):
    srv = serve("""
        def on_receive(s, fd, rid, data):
            if data == b"flood":
                results = []
                for _ in range(100):
                    ok = s.send(fd, b"z" * 65536)
                    results.append(ok)
                    if not ok:
                        break
                emit("FLOOD", results[-1], s.get_last_error(), len(results))
                emit("TOOBIG", s.send(fd, b"z" * (2 * 1024 * 1024 + 1)), s.get_last_error())
            else:
                s.send(fd, data)
        server.on("receive", on_receive)
    """)
    stuck = srv.connect()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(b"flood")   # and never read
    match = srv.wait_line(r"^FLOOD")
    assert match.string.startswith("FLOOD False 1009")
    assert srv.wait_line(r"^TOOBIG").string == "TOOBIG False 1203"
    with srv.connect(timeout=3) as other:
        other.sendall(b"ping")
        assert recv_exactly(other, 4, timeout=3) == b"ping"
    stuck.close()


def test_send_yield_waits_for_the_buffer_to_drain(serve):
    srv = serve("""
        def on_receive(s, fd, rid, data):
            ok = all(s.send(fd, b"y" * 65536) for _ in range(64))
            emit("YIELD", ok)
        server.on("receive", on_receive)
    """, settings="buffer_output_size=256 * 1024, send_yield=True")
    with srv.connect() as sock:
        sock.sendall(b"go")
        assert recv_exactly(sock, 64 * 65536, timeout=20) == b"y" * 64 * 65536
    assert srv.wait_line(r"^YIELD").string == "YIELD True"


def test_raising_callback_is_logged_and_connection_lives_on(serve):
    srv = serve("""
        def on_receive(s, fd, rid, data):
            if data == b"boom":
                raise RuntimeError("kaboom")
            s.send(fd, data)
        server.on("receive", on_receive)
    """)
    with srv.connect() as sock:
        sock.sendall(b"boom")
        srv.wait_line(r"error in receive callback \(fd=\d+, worker #0\)", stream="err")
        srv.wait_line(r"RuntimeError: kaboom", stream="err")
        sock.sendall(b"still here")
        assert recv_exactly(sock, 10) == b"still here"


def test_raising_close_callback_does_not_leak_the_socket(serve):
    srv = serve("""
        def on_close(s, fd, rid):
            raise ValueError("close failed")
        server.on("receive", lambda s, fd, rid, data: s.close(fd))
        server.on("close", on_close)
        server.on("workerStart", lambda s, wid: s.tick(50, lambda t: emit("CONNS", len(s.get_client_list()))))
    """)
    for _ in range(5):
        with srv.connect() as sock:
            sock.sendall(b"x")
            assert recv_until_eof(sock) == b""
    srv.wait_line(r"ValueError: close failed", stream="err", count=5)
    worker = srv.children()[0]
    wait_until(lambda: not _close_wait_sockets(worker), message="no CLOSE_WAIT sockets")


def _close_wait_sockets(pid):
    inodes = set()
    for fd in _listdir("/proc/%d/fd" % pid):
        try:
            target = __import__("os").readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if parts[3] == "08" and parts[9] in inodes:  # 08 = CLOSE_WAIT
                found.append(parts)
    return found


def _listdir(path):
    import os
    try:
        return os.listdir(path)
    except OSError:
        return []


def test_session_ids_unique_across_workers_and_never_reused(serve):
    srv = serve("""
        server.on("connect", lambda s, fd, rid: emit("FD", fd, rid))
        server.on("receive", lambda s, fd, rid, data: s.send(fd, data))
    """, workers=2)
    for _ in range(60):
        with srv.connect() as sock:
            sock.sendall(b"x")
            recv_exactly(sock, 1)
    srv.wait_line(r"^FD ", count=60)
    fds = [int(m.group(1)) for m in srv.matching(r"^FD (\d+) (\d+)")]
    assert len(fds) == 60 and len(set(fds)) == 60


def test_session_dict_and_client_info(serve):
    srv = serve("""
        def on_receive(s, fd, rid, data):
            sess = s.session(fd)
            sess["n"] = sess.get("n", 0) + 1
            info = s.get_client_info(fd)
            s.send(fd, b"%d %s %d %d" % (sess["n"], info["remote_ip"].encode(),
                                          info["server_port"], info["worker_id"]))
        server.on("receive", on_receive)
    """)
    with srv.connect() as sock:
        for n in (1, 2, 3):
            sock.sendall(b"x")
            reply = sock.recv(100).decode().split()
            assert reply == [str(n), "127.0.0.1", str(srv.port), "0"]


def test_echo_to_a_peer_that_pauses_reading_loses_nothing(serve):
    # Flow control: while the client does not read, the server stops reading
    # it instead of overflowing the output buffer (which would drop data).
    srv = serve(ECHO)
    total = 32 * 1024 * 1024
    sock = srv.connect()

    def send_all():
        sock.sendall(b"q" * total)

    sender = threading.Thread(target=send_all)
    sender.start()
    wait_until(lambda: not sender.is_alive() or _send_queue_full(sock), timeout=10,
               message="the client's sends to back up")
    got = len(recv_exactly(sock, total, timeout=30))
    sender.join(30)
    sock.close()
    assert got == total
    assert not srv.matching(r"output buffer overflow", stream="err")


def _send_queue_full(sock):
    import fcntl
    import termios
    outq = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    return outq > 0


def test_a_peer_that_never_reads_is_reset_after_send_timeout(serve):
    srv = serve("""
def on_receive(s, fd, rid, data):
    while s.send(fd, b"z" * 65536):
        pass
server.on("receive", on_receive)
server.on("close", lambda s, fd, rid: emit("CLOSE", fd, rid))
""", settings="send_timeout=1.0")
    sock = srv.connect()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"go")
    srv.wait_line(r"^CLOSE \d+ -1", timeout=10)
    srv.wait_line(r"took no output for 1.0s; resetting it", stream="err")
    sock.close()

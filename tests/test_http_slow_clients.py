"""Slow clients must not pin a worker: ``http_body_min_rate`` and
``max_conn`` (DESIGN section 5).

The clients here pace their own bytes with short sleeps: that is the load
being simulated, not synchronisation; every wait for the server is on a
socket event with a deadline.
"""

import select
import socket
import threading
import time

from conftest import recv_until_eof

SERVER = """
import resource
import gswoole.http
{prelude}
server = gswoole.http.Server("127.0.0.1", 0)
server.set(worker_num=1, http_header_timeout=1.0{settings})
server.on("start", lambda s: print("READY", s.port, s.master_pid, flush=True))
server.on("request", lambda req, resp: resp.end(b"got %d" % len(req.raw_content())))
server.start()
"""


def start(serve, settings="", prelude=""):
    return serve(SERVER.format(settings=(", " + settings) if settings else "",
                               prelude=prelude), raw=True)


def upload_head(length):
    return b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % length


def drip(sock, total, piece, every, limit):
    """Send ``total`` bytes, ``piece`` bytes every ``every`` seconds, until the
    server answers or ``limit`` seconds pass. Returns (answer, seconds)."""
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < limit:
        if sent < total:
            try:
                sock.sendall(b"x" * min(piece, total - sent))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += piece
        if select.select([sock], [], [], every)[0]:
            break
    try:
        answer = recv_until_eof(sock, timeout=5)
    except ConnectionResetError:
        answer = b""
    return answer, time.monotonic() - started


def test_trickling_body_gets_408(serve):
    srv = start(serve)                    # the default rate: 240 bytes a second
    with srv.connect(timeout=10) as sock:
        sock.sendall(upload_head(100000))
        answer, seconds = drip(sock, 100000, piece=10, every=0.1, limit=8)   # ~100 B/s
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert seconds < 5


def test_body_at_a_fair_rate_is_not_cut(serve):
    srv = start(serve, "http_body_min_rate=100")
    total = 1200
    with srv.connect(timeout=10) as sock:
        sock.sendall(upload_head(total))
        # ~400 B/s for 3 s: slower than the grace, faster than the rate.
        sock.settimeout(10)
        for _ in range(total // 40):
            sock.sendall(b"x" * 40)
            time.sleep(0.1)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"got 1200"), answer


def test_slow_bodies_past_the_descriptor_limit_do_not_starve_other_clients(serve):
    # 256 descriptors: max_conn defaults to 192. 300 slow uploads fill the
    # worker and its backlog; it stops accepting instead of failing with
    # EMFILE, cuts the trickles, and the normal requests behind them are served.
    srv = start(serve, prelude="resource.setrlimit(resource.RLIMIT_NOFILE, "
                               "(256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))")
    slow = []
    try:
        for _ in range(300):
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            sock.sendall(upload_head(1000) + b"x")
            slow.append(sock)
        stop = threading.Event()

        def trickle():
            # A byte a second per connection, as the slow-upload attack does:
            # never stalled, far below http_body_min_rate.
            while not stop.wait(0.5):
                for sock in slow:
                    try:
                        sock.send(b"x")
                    except OSError:
                        pass

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        answers = []

        def normal():
            with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                answers.append(recv_until_eof(sock, timeout=20))

        threads = [threading.Thread(target=normal) for _ in range(15)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(answers) == 15
        assert all(a.startswith(b"HTTP/1.1 200 ") for a in answers), answers[:3]
        stop.set()
        trickler.join(10)
    finally:
        stop.set()
        for sock in slow:
            sock.close()
    srv.wait_line(r"is at max_conn=192: not accepting", stream="err")
    assert not srv.matching(r"Too many open files", stream="err")

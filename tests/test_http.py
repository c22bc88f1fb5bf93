"""gswoole.http.Server end to end over real sockets (docs/http.md)."""

import json
import socket
import time
import weakref

import pytest

from conftest import EMIT, recv_until_eof, wait_until

HTTP_HEADER = """\
import os, sys, json
import gswoole, gswoole.http
server = gswoole.http.Server("127.0.0.1", 0)
server.set(worker_num={workers}, log_level="info"{extra})
server.on("start", lambda s: emit("READY", s.port, s.master_pid))
""" + EMIT.replace("{", "{{").replace("}", "}}")

FOOTER = """
server.start()
"""


@pytest.fixture
def http_serve(serve):
    def start(body, workers=1, settings=""):
        extra = (", " + settings) if settings else ""
        return serve(HTTP_HEADER.format(workers=workers, extra=extra) + body + FOOTER, raw=True)
    return start


ECHO_APP = """
def on_request(request, response):
    info = {"method": request.method, "path": request.path, "query": request.query_string,
            "get": request.get, "header": request.header, "post": request.post,
            "cookie": request.cookie, "body": request.raw_content().decode("latin-1"),
            "files": {k: {"name": v["name"], "size": v["size"],
                          "data": open(v["tmp_name"], "rb").read().decode()}
                      for k, v in request.files.items()}}
    response.header("Content-Type", "application/json")
    response.end(json.dumps(info))
server.on("request", on_request)
"""


_leftovers = weakref.WeakKeyDictionary()   # bytes read past a response, per socket


def read_response(sock, timeout=10.0):
    """Read one response (Content-Length or chunked); returns (status, headers, body)."""
    sock.settimeout(timeout)
    buf = _leftovers.pop(sock, b"")
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise AssertionError("EOF before the response head: %r" % buf)
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        size = int(headers["content-length"])
        while len(rest) < size:
            data = sock.recv(65536)
            if not data:
                raise AssertionError("EOF inside the body")
            rest += data
        body, leftover = rest[:size], rest[size:]
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += sock.recv(65536)
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            while len(rest) < size + 2:
                rest += sock.recv(65536)
            body += rest[:size]
            rest = rest[size + 2:]
            if size == 0:
                break
        leftover = rest
    else:
        body = rest + recv_until_eof(sock, timeout)
        leftover = b""
    if leftover:
        _leftovers[sock] = leftover   # pipelined: the next response's start
    return status, headers, body


def request(port, raw, timeout=10.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        return read_response(sock, timeout)


def test_get_with_query_headers_and_cookies(http_serve):
    srv = http_serve(ECHO_APP)
    status, headers, body = request(srv.port, b"GET /a%20b/c?x=1&y=two&y=three&z[]=1&z[]=2 HTTP/1.1\r\n"
                                              b"Host: t\r\nX-Thing: v\r\nCookie: s=abc; t=\"q\"\r\n\r\n")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert "date" in headers
    info = json.loads(body)
    assert info["method"] == "GET" and info["path"] == "/a b/c"
    assert info["get"] == {"x": "1", "y": "three", "z": ["1", "2"]}
    assert info["header"]["x-thing"] == "v" and info["header"]["host"] == "t"
    assert info["cookie"] == {"s": "abc", "t": "q"}


def test_urlencoded_and_multipart_posts(http_serve):
    srv = http_serve(ECHO_APP)
    form = b"a=1&b=hello+world"
    status, _, body = request(srv.port, b"POST /f HTTP/1.1\r\nHost: t\r\n"
                                        b"Content-Type: application/x-www-form-urlencoded\r\n"
                                        b"Content-Length: %d\r\n\r\n%s" % (len(form), form))
    assert status == 200 and json.loads(body)["post"] == {"a": "1", "b": "hello world"}
    multipart = (b"--XyZ\r\nContent-Disposition: form-data; name=\"field\"\r\n\r\nvalue\r\n"
                 b"--XyZ\r\nContent-Disposition: form-data; name=\"up\"; filename=\"a.txt\"\r\n"
                 b"Content-Type: text/plain\r\n\r\nfile contents\r\n--XyZ--\r\n")
    status, _, body = request(srv.port, b"POST /m HTTP/1.1\r\nHost: t\r\n"
                                        b"Content-Type: multipart/form-data; boundary=XyZ\r\n"
                                        b"Content-Length: %d\r\n\r\n%s" % (len(multipart), multipart))
    info = json.loads(body)
    assert info["post"] == {"field": "value"}
    assert info["files"] == {"up": {"name": "a.txt", "size": 13, "data": "file contents"}}


def test_keep_alive_and_pipelining_in_order(http_serve):
    srv = http_serve("""
import gevent
def on_request(request, response):
    if request.path == "/slow":
        gevent.sleep(0.2)
    response.end(request.path)
server.on("request", on_request)
""")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\nGET /1 HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"GET /2 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert [read_response(sock)[2] for _ in range(3)] == [b"/slow", b"/1", b"/2"]
        for n in range(5):   # same connection, kept alive
            sock.sendall(b"GET /k%d HTTP/1.1\r\nHost: t\r\n\r\n" % n)
            assert read_response(sock)[2] == b"/k%d" % n


def test_http10_closes_unless_keep_alive(http_serve):
    srv = http_serve('server.on("request", lambda req, resp: resp.end("ten"))\n')
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        status, headers, body = read_response(sock)
        assert (status, body, headers["connection"]) == (200, b"ten", "close")
        assert recv_until_eof(sock) == b""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert read_response(sock)[1]["connection"] == "keep-alive"
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert read_response(sock)[2] == b"ten"


def test_chunked_upload_and_streamed_download(http_serve):
    srv = http_serve("""
def on_request(request, response):
    body = request.raw_content()
    for i in range(3):
        response.write(b"part%d:" % i)
    response.end(body)
server.on("request", on_request)
""")
    status, headers, body = request(srv.port, b"POST / HTTP/1.1\r\nHost: t\r\n"
                                              b"Transfer-Encoding: chunked\r\n\r\n"
                                              b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    assert headers["transfer-encoding"] == "chunked"
    assert body == b"part0:part1:part2:hello world"


def test_expect_100_continue(http_serve):
    srv = http_serve('server.on("request", lambda req, resp: resp.end(req.raw_content()))\n')
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"PUT / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        interim = sock.recv(100)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"body")
        assert read_response(sock)[2] == b"body"


def test_head_has_length_but_no_body(http_serve):
    srv = http_serve('server.on("request", lambda req, resp: resp.end("twelve bytes"))\n')
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        sock.settimeout(10)
        data = b""
        while data.count(b"\r\n\r\n") < 2 or not data.endswith(b"twelve bytes"):
            data += sock.recv(65536)
        first, second = data.split(b"HTTP/1.1 200", 2)[1:]
        assert b"Content-Length: 12" in first and first.endswith(b"\r\n\r\n")
        assert second.endswith(b"twelve bytes")


def test_status_headers_cookie_redirect(http_serve):
    srv = http_serve("""
def on_request(request, response):
    if request.path == "/go":
        response.redirect("/there", 301)
        return
    response.status(201, "Made")
    response.header("x-custom", "1")
    response.cookie("sid", "abc", path="/", httponly=True)
    response.end("ok")
server.on("request", on_request)
""")
    status, headers, body = request(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 201 and headers["x-custom"] == "1" and body == b"ok"
    assert headers["set-cookie"].startswith("sid=abc") and "HttpOnly" in headers["set-cookie"]
    status, headers, _ = request(srv.port, b"GET /go HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 301 and headers["location"] == "/there"


def test_sendfile(http_serve, tmp_path):
    path = tmp_path / "big.bin"
    payload = bytes(range(256)) * 4096 * 3   # 3 MiB
    path.write_bytes(payload)
    srv = http_serve('server.on("request", lambda req, resp: resp.sendfile(%r))\n' % str(path))
    status, headers, body = request(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", timeout=20)
    assert status == 200 and int(headers["content-length"]) == len(payload)
    assert body == payload


def test_handler_exception_gives_500_and_worker_lives(http_serve):
    srv = http_serve("""
def on_request(request, response):
    if request.path == "/boom":
        raise RuntimeError("handler broke")
    response.end("fine")
server.on("request", on_request)
""")
    status, _, _ = request(srv.port, b"GET /boom HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 500
    srv.wait_line(r"RuntimeError: handler broke", stream="err")
    assert request(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")[2] == b"fine"


@pytest.mark.parametrize("raw, expected", [
    (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(200)) + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nX-Big: " + b"v" * 9000 + b"\r\n\r\n", 431),
    (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\n\r\n", 413),
    # a TLS ClientHello: llhttp sees an unknown method
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", 400),
    (b"BLAH\r\n\r\n", 400),
])
def test_bad_requests_get_4xx_and_close(http_serve, raw, expected):
    srv = http_serve('server.on("request", lambda req, resp: resp.end("should not run"))\n')
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, headers, _ = read_response(sock)
        assert status in (expected if isinstance(expected, tuple) else (expected,))
        assert headers["connection"] == "close"
        assert recv_until_eof(sock) == b""
    assert request(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")[2] == b"should not run"


def test_half_closed_client_still_gets_every_response(http_serve):
    srv = http_serve("""
import gevent
def on_request(request, response):
    gevent.sleep(0.05)
    response.end(request.path)
server.on("request", on_request)
""")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)     # like nc -N
        assert read_response(sock)[2] == b"/a"
        assert read_response(sock)[2] == b"/b"
        assert recv_until_eof(sock) == b""


def test_slowloris_is_cut_off(http_serve):
    import select
    srv = http_serve('server.on("request", lambda req, resp: resp.end("x"))\n',
                     settings="http_header_timeout=1.0")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
        started = time.monotonic()
        answer = b""
        try:
            # A header line every 0.2 s, never the blank line that ends them.
            while time.monotonic() - started < 8:
                sock.sendall(b"X-a: b\r\n")
                if select.select([sock], [], [], 0.2)[0]:
                    answer = recv_until_eof(sock)
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        elapsed = time.monotonic() - started
    assert elapsed < 5, "slowloris was not cut off"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408")


def test_idle_keepalive_connection_closed(http_serve):
    srv = http_serve('server.on("request", lambda req, resp: resp.end("x"))\n',
                     settings="http_keepalive_timeout=1.0")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        read_response(sock)
        started = time.monotonic()
        assert recv_until_eof(sock) == b""
        assert time.monotonic() - started < 4


def test_graceful_stop_closes_a_quiet_keepalive_connection_soon(http_serve):
    # Not at once: a request may be on its way (test_http_reload.py); after
    # STOP_QUIET_TIME (0.5 s) of silence, with max_wait_time far off.
    import signal
    srv = http_serve('server.on("request", lambda req, resp: resp.end("x"))\n',
                     settings="max_wait_time=20, linger_time=3")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        read_response(sock)
        started = time.monotonic()
        srv.signal(signal.SIGTERM)
        assert recv_until_eof(sock) == b""
        # the client keeps its side open, as keep-alive clients do: a socket
        # that only lingers with everything delivered must not hold the stop
        assert srv.wait_exit(10) == 0
        assert time.monotonic() - started < 2


def test_stalled_body_is_cut_off(http_serve):
    srv = http_serve('server.on("request", lambda req, resp: resp.end("x"))\n',
                     settings="http_header_timeout=1.0")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\npart")
        started = time.monotonic()
        answer = recv_until_eof(sock, timeout=10)
    assert time.monotonic() - started < 5
    assert answer.startswith(b"HTTP/1.1 408")


@pytest.mark.parametrize("path", ["/badtype", "/inject", "/timeout"])
def test_handler_errors_before_output_give_500(http_serve, path):
    srv = http_serve("""
import gevent
def on_request(request, response):
    if request.path == "/badtype":
        response.end(123)
    elif request.path == "/inject":
        response.header("X-Evil", "a\\r\\nSet-Cookie: x=1")
        response.end("never")
    else:
        with gevent.Timeout(0.01):
            gevent.sleep(1)
server.on("request", on_request)
""")
    status, headers, _ = request(srv.port, b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode())
    assert status == 500 and "set-cookie" not in headers


def test_pipelined_answer_is_not_held_back_by_a_slow_next_request(http_serve):
    # Answers to pipelined requests are gathered into one write; a handler
    # that blocks must not keep the answers before it from leaving.
    srv = http_serve("""
import gevent
def on_request(request, response):
    if request.path == "/slow":
        gevent.sleep(3)
    response.end(request.path)
server.on("request", on_request)
""")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\nGET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(sock)[2] == b"/fast"
        assert time.monotonic() - started < 2
        assert read_response(sock)[2] == b"/slow"


def test_extra_port_with_its_own_receive_stays_raw_tcp(http_serve):
    srv = http_serve("""
server.on("request", lambda req, resp: resp.end("http"))
raw = server.listen("127.0.0.1", 0)
raw.on("receive", lambda s, fd, rid, data: s.send(fd, b"raw:" + data))
server.on("workerStart", lambda s, wid: emit("RAW", raw.port))
""")
    raw_port = int(srv.wait_line(r"^RAW (\d+)").group(1))
    assert request(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")[2] == b"http"
    with socket.create_connection(("127.0.0.1", raw_port), timeout=5) as sock:
        sock.sendall(b"ping")
        assert sock.recv(100) == b"raw:ping"


def test_access_log_of_the_http_server(http_serve, tmp_path):
    log = tmp_path / "access.log"
    srv = http_serve("""
def on_request(request, response):
    response.status(404)
    response.end("missing")
server.on("request", on_request)
""", settings="access_log=%r" % str(log))
    request(srv.port, b"GET /nothing?x=1 HTTP/1.1\r\nHost: t\r\n\r\n")
    line = wait_until(lambda: log.exists() and log.read_text().strip(), message="access log")
    assert '127.0.0.1 - - [' in line and '"GET /nothing?x=1 HTTP/1.1" 404 7' in line

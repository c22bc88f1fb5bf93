"""The HTTP and WSGI protocols in-process, against a fake transport and a fake
host (as uvicorn tests its protocols): no sockets, no worker, microseconds a
test. What only real sockets can show (lingering close, flow control, reloads)
is in test_http.py, test_http_framing.py and test_http_reload.py."""

import logging

import h11
import pytest

from gswoole import settings
from gswoole.http.parser import RequestParser
from gswoole.http.server import STOP_QUIET_TIME, _HttpProtocol
from gswoole.wsgi import _WsgiProtocol


class FakeTransport:
    """Records what the protocol does with its connection."""

    def __init__(self, host, fd=7, peer=("10.0.0.9", 5555)):
        self.host = host
        self.fd = fd
        self.peer = peer
        self.out = bytearray()
        self.closed = self.aborted = self.paused = False
        self.parser = RequestParser()
        self.idle = True
        self.last_activity = host.clock
        self.tls = False
        self.context = None

    def write(self, data):
        if self.closed:
            return False
        self.out += data
        return True

    send = write

    def write_file(self, file, offset, count):
        file.seek(offset)
        return self.write(file.read(count))

    def close(self):
        was_open = not self.closed
        self.closed = True
        return was_open

    def abort(self):
        self.aborted = True
        return self.close()

    def is_closing(self):
        return self.closed

    def pause_reading(self):
        self.paused = True

    def resume_reading(self):
        self.paused = False

    def touch(self):
        if self.closed:
            return False
        self.last_activity = self.host.clock
        return True

    def get_extra_info(self, name, default=None):
        return {"peername": self.peer, "server_port": 80}.get(name, default)


class FakeTimer:
    def __init__(self):
        self.callback = None

    def start(self, callback, *args):
        self.callback = lambda: callback(*args)


class FakeLoop:
    def __init__(self):
        self.timers = []

    def timer(self, after, repeat=0.0):
        timer = FakeTimer()
        self.timers.append(timer)
        return timer


class FakeHost:
    """The part of a worker the protocol uses."""

    def __init__(self):
        self.clock = 1000
        self.wall_clock = 1_790_000_000
        self.stopping = False
        self.worker_id = 3
        self.loop = FakeLoop()
        self.sweepers = []
        self.stop_hooks = []
        self.by_fd = {}

    def connect(self, **kwargs):
        transport = FakeTransport(self, fd=len(self.by_fd) + 1, **kwargs)
        self.by_fd[transport.fd] = transport
        return transport

    def transport(self, fd):
        return self.by_fd.get(fd)

    def transports(self):
        return [(fd, t) for fd, t in self.by_fd.items() if not t.closed]

    def tick(self, seconds=1):
        self.clock += seconds
        self.wall_clock += seconds
        for sweep in self.sweepers:
            sweep(self)


def setting(**changes):
    values = settings.defaults()
    values.update(changes)
    return values


def http(on_request, **changes):
    host = FakeHost()
    return host, _HttpProtocol(host, setting(**changes), on_request)


def feed(protocol, transport, data):
    """Bytes from the peer: parse them and run each event, as the reactor does."""
    for event in transport.parser.feed(data):
        protocol.handle(None, transport.fd, 0, event)


def responses(raw, methods=("GET",)):
    """Parse what the server wrote with h11: [(status, headers dict, body)]."""
    client = h11.Connection(h11.CLIENT)
    client.receive_data(bytes(raw))
    out = []
    for method in methods:
        client.send(h11.Request(method=method, target="/", headers=[("Host", "t")]))
        client.send(h11.EndOfMessage())
        response, body = None, b""
        while True:
            event = client.next_event()
            if isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise AssertionError("incomplete response: %r" % (event,))
        out.append((response.status_code,
                    {k.decode(): v.decode() for k, v in response.headers}, body))
        if client.our_state is h11.MUST_CLOSE:
            break
        client.start_next_cycle()
    return out


GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def hello(request, response):
    response.header("Content-Type", "text/plain")
    response.end("hello %s" % request.server["remote_addr"])


def test_keep_alive_response_through_the_transport():
    host, protocol = http(hello)
    transport = host.connect()
    feed(protocol, transport, GET + GET)
    (s1, h1, b1), (s2, _, b2) = responses(transport.out, ("GET", "GET"))
    assert (s1, b1, s2, b2) == (200, b"hello 10.0.0.9", 200, b"hello 10.0.0.9")
    assert h1["content-length"] == "14" and "connection" not in h1
    assert not transport.closed


def test_request_with_connection_close_closes_after_the_response():
    host, protocol = http(hello)
    transport = host.connect()
    feed(protocol, transport, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    [(status, headers, _)] = responses(transport.out)
    assert status == 200 and headers["connection"] == "close"
    assert transport.closed and not transport.aborted


def test_a_stopping_worker_answers_with_connection_close():
    host, protocol = http(hello)
    transport = host.connect()
    host.stopping = True
    feed(protocol, transport, GET)
    [(status, headers, _)] = responses(transport.out)
    assert status == 200 and headers["connection"] == "close" and transport.closed


def test_handler_error_before_the_head_is_a_500_and_the_connection_lives(caplog):
    def boom(request, response):
        raise KeyError("nope")
    host, protocol = http(boom)
    transport = host.connect()
    with caplog.at_level(logging.ERROR, logger="gswoole"):
        feed(protocol, transport, GET)
    [(status, _, body)] = responses(transport.out)
    assert (status, body) == (500, b"Internal Server Error\n")
    assert not transport.closed
    assert "error in request callback (GET /, fd=1, worker #3)" in caplog.text


def test_handler_error_after_the_head_aborts():
    def half(request, response):
        response.write("part")
        raise RuntimeError("late")
    host, protocol = http(half)
    transport = host.connect()
    feed(protocol, transport, GET)
    assert transport.out.startswith(b"HTTP/1.1 200 OK\r\n") and transport.aborted


def test_a_transport_that_refuses_writes_ends_the_response():
    sent = []

    def stream(request, response):
        sent.append(response.write("one"))
        transport.closed = True         # the peer went away
        sent.append(response.write("two"))
        sent.append(response.end())
    host, protocol = http(stream)
    transport = host.connect()
    feed(protocol, transport, GET)
    assert sent == [True, False, False] and transport.aborted


def test_expect_continue_and_parse_errors():
    host, protocol = http(lambda req, resp: resp.end(req.raw_content()))
    transport = host.connect()
    feed(protocol, transport, b"PUT / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                              b"Content-Length: 2\r\n\r\n")
    assert bytes(transport.out) == b"HTTP/1.1 100 Continue\r\n\r\n"
    feed(protocol, transport, b"ok")
    assert transport.out.endswith(b"\r\n\r\nok")
    bad = host.connect()
    feed(protocol, bad, b"GET / HTTP/1.1\r\n\r\n")    # no Host
    assert bad.out.startswith(b"HTTP/1.1 400 ") and bad.closed


def test_header_timeout_from_the_sweep():
    host, protocol = http(hello, http_header_timeout=2.0)
    transport = host.connect()
    feed(protocol, transport, b"GET / HTTP/1.1\r\nHost: t\r\n")
    host.tick()
    host.tick()
    assert not transport.closed
    host.tick()
    assert transport.out.startswith(b"HTTP/1.1 408 ") and transport.closed


def test_body_min_rate_cuts_a_trickle_but_not_a_fair_upload():
    host, protocol = http(lambda req, resp: resp.end("got %d" % len(req.raw_content())),
                          http_header_timeout=2.0, http_body_min_rate=100)
    trickle, fair = host.connect(), host.connect()
    for transport in (trickle, fair):
        feed(protocol, transport, b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(4):
        feed(protocol, trickle, b"x" * 10)      # 10 B/s
        feed(protocol, fair, b"x" * 200)        # 200 B/s
        host.tick()
    assert trickle.out.startswith(b"HTTP/1.1 408 ") and trickle.closed
    assert not fair.closed
    feed(protocol, fair, b"x" * 200)
    assert fair.out.endswith(b"got 1000")


def test_idle_keep_alive_is_closed_after_the_keepalive_timeout():
    host, protocol = http(hello, http_keepalive_timeout=3.0)
    transport = host.connect()
    feed(protocol, transport, GET)
    for _ in range(2):
        host.tick()
    assert not transport.closed
    host.tick()
    assert transport.closed


def test_stopping_closes_only_connections_that_stayed_quiet():
    host, protocol = http(hello)
    quiet, talking = host.connect(), host.connect()
    for transport in (quiet, talking):
        feed(protocol, transport, GET)
    host.stopping = True
    for hook in host.stop_hooks:
        hook(host)
    [timer] = host.loop.timers
    assert STOP_QUIET_TIME <= 1.0
    feed(protocol, talking, GET)     # its next request arrived meanwhile
    timer.callback()
    assert quiet.closed and not quiet.aborted
    # The request that arrived was answered with Connection: close, not dropped.
    assert talking.closed and responses(talking.out, ("GET", "GET"))[1][1]["connection"] == "close"


def test_wsgi_protocol_environ_and_framing():
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Transfer-Encoding", "chunked")])
        return iter([environ["wsgi.input"].read(), b"!"])
    host = FakeHost()
    protocol = _WsgiProtocol(host, setting(), app, "localhost", 8000)
    transport = host.connect()
    feed(protocol, transport, b"POST /p%20q?x=1 HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n"
                              b"Content-Length: 3\r\n\r\nabc")
    [(status, headers, body)] = responses(transport.out, ("POST",))
    assert (status, body) == (200, b"abc!")
    assert headers["transfer-encoding"] == "chunked"
    assert seen["PATH_INFO"] == "/p q" and seen["QUERY_STRING"] == "x=1"
    assert seen["REMOTE_ADDR"] == "10.0.0.9" and seen["HTTP_X_A"] == "1"
    assert seen["SERVER_NAME"] == "localhost" and seen["SERVER_PORT"] == "8000"


def test_wsgi_file_wrapper_goes_through_write_file(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"0123456789")
    written = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "4")])
        f = open(path, "rb")
        f.seek(2)
        return environ["wsgi.file_wrapper"](f)
    host = FakeHost()
    protocol = _WsgiProtocol(host, setting(), app, "localhost", 8000)
    transport = host.connect()
    original = transport.write_file
    transport.write_file = lambda f, offset, count: written.append((offset, count)) or \
        original(f, offset, count)
    feed(protocol, transport, GET)
    [(status, _, body)] = responses(transport.out)
    assert (status, body) == (200, b"2345") and written == [(2, 4)]


@pytest.mark.parametrize("status", ["100 Continue", "2xx Bad", "200"])
def test_wsgi_bad_status_is_a_500(status):
    def app(environ, start_response):
        start_response(status, [])
        return [b"x"]
    host = FakeHost()
    protocol = _WsgiProtocol(host, setting(), app, "localhost", 8000)
    transport = host.connect()
    feed(protocol, transport, GET)
    assert transport.out.startswith(b"HTTP/1.1 500 ")

"""gswoole.wsgi.Server and gswoole-serve, end to end."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from conftest import EMIT, recv_until_eof, stop_process_group, wait_until
from test_http import read_response, request

WSGI_HEADER = """\
import os, sys, json
import gswoole, gswoole.wsgi
""" + EMIT

RUN = """
server = gswoole.wsgi.Server(app, "127.0.0.1", 0)
server.set(worker_num={workers}{extra})
server.on("start", lambda s: emit("READY", s.port, s.master_pid))
server.start()
"""


@pytest.fixture
def wsgi_serve(serve):
    def start(app_code, workers=1, settings=""):
        extra = (", " + settings) if settings else ""
        return serve(WSGI_HEADER + textwrap.dedent(app_code) + RUN.format(workers=workers, extra=extra),
                     raw=True)
    return start


def test_environ_and_input(wsgi_serve):
    srv = wsgi_serve("""
        def app(environ, start_response):
            body = environ["wsgi.input"].read()
            keys = ["REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL",
                    "CONTENT_TYPE", "CONTENT_LENGTH", "HTTP_X_TEST", "REMOTE_ADDR", "SCRIPT_NAME"]
            info = {k: environ.get(k) for k in keys}
            info["body"] = body.decode()
            info["multiprocess"] = environ["wsgi.multiprocess"]
            info["underscore"] = [k for k in environ if "UNDER" in k]
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(info).encode()]
    """)
    status, headers, body = request(srv.port, b"POST /p%C3%A5th?q=1 HTTP/1.1\r\nHost: t\r\n"
                                              b"X-Test: yes\r\nX_Under: no\r\n"
                                              b"Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
    info = json.loads(body)
    assert status == 200 and headers["content-length"] == str(len(body))
    assert info == {"REQUEST_METHOD": "POST", "PATH_INFO": "/p\u00c3\u00a5th", "QUERY_STRING": "q=1",
                    "SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_TYPE": "text/plain",
                    "CONTENT_LENGTH": "5", "HTTP_X_TEST": "yes", "REMOTE_ADDR": "127.0.0.1",
                    "SCRIPT_NAME": "", "body": "hello", "multiprocess": True, "underscore": []}


def test_streaming_generator_is_chunked_and_closed(wsgi_serve):
    srv = wsgi_serve("""
        class Body:
            def __iter__(self):
                for i in range(5):
                    yield b"piece%d;" % i
            def close(self):
                emit("CLOSED-ITERABLE")
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return Body()
    """)
    status, headers, body = request(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert headers["transfer-encoding"] == "chunked"
    assert body == b"piece0;piece1;piece2;piece3;piece4;"
    srv.wait_line(r"^CLOSED-ITERABLE")


def test_write_callable_and_exc_info(wsgi_serve):
    srv = wsgi_serve("""
        import sys
        def app(environ, start_response):
            if environ["PATH_INFO"] == "/write":
                write = start_response("200 OK", [("Content-Length", "11")])
                write(b"hello ")
                return [b"world"]
            try:
                raise ValueError("oops")
            except ValueError:
                start_response("200 OK", [])
                start_response("503 Service Unavailable", [("Content-Type", "text/plain")],
                               sys.exc_info())
            return [b"retry later"]
    """)
    assert request(srv.port, b"GET /write HTTP/1.1\r\nHost: t\r\n\r\n")[2] == b"hello world"
    status, _, body = request(srv.port, b"GET /err HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (status, body) == (503, b"retry later")


def test_app_exception_gives_500(wsgi_serve):
    srv = wsgi_serve("""
        def app(environ, start_response):
            if environ["PATH_INFO"] == "/boom":
                raise KeyError("nope")
            start_response("200 OK", [])
            return [b"ok"]
    """)
    assert request(srv.port, b"GET /boom HTTP/1.1\r\nHost: t\r\n\r\n")[0] == 500
    srv.wait_line(r"error in WSGI app \(GET /boom", stream="err")
    assert request(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")[2] == b"ok"


def test_file_wrapper_uses_sendfile(wsgi_serve, tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"0123456789" * 100000)
    srv = wsgi_serve("""
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            return environ["wsgi.file_wrapper"](open(%r, "rb"))
    """ % str(path))
    status, headers, body = request(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert headers["content-length"] == "1000000" and body == b"0123456789" * 100000


def test_access_log(wsgi_serve, tmp_path):
    log = tmp_path / "access.log"
    srv = wsgi_serve("""
        def app(environ, start_response):
            start_response("404 Not Found", [])
            return [b"missing"]
    """, settings="access_log=%r" % str(log))
    request(srv.port, b"GET /nothing?x=1 HTTP/1.1\r\nHost: t\r\n\r\n")
    line = wait_until(lambda: log.exists() and log.read_text().strip(), message="access log")
    assert '127.0.0.1 - - [' in line and '"GET /nothing?x=1 HTTP/1.1" 404 7' in line


def test_flask_app_json_and_form(wsgi_serve):
    pytest.importorskip("flask")
    srv = wsgi_serve("""
        from flask import Flask, request, jsonify
        app = Flask("t")
        @app.post("/json")
        def echo_json():
            return jsonify(got=request.get_json(), n=len(request.data))
        @app.post("/form")
        def echo_form():
            return "name=%s" % request.form["name"]
    """, workers=2)
    payload = json.dumps({"a": [1, 2, 3]}).encode()
    status, headers, body = request(srv.port, b"POST /json HTTP/1.1\r\nHost: t\r\n"
                                              b"Content-Type: application/json\r\n"
                                              b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
    assert status == 200 and json.loads(body) == {"got": {"a": [1, 2, 3]}, "n": len(payload)}
    form = b"name=gswoole"
    status, _, body = request(srv.port, b"POST /form HTTP/1.1\r\nHost: t\r\n"
                                        b"Content-Type: application/x-www-form-urlencoded\r\n"
                                        b"Content-Length: %d\r\n\r\n%s" % (len(form), form))
    assert (status, body) == (200, b"name=gswoole")


# -- gswoole-serve -----------------------------------------------------------

APP_FILE = """
import os
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"served by %d" % os.getpid()]

def create_app():
    return app
"""


def _serve_cli(tmp_path, *args):
    (tmp_path / "myapp.py").write_text(APP_FILE)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "gswoole", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def _port_of(proc):
    for raw in proc.stdout:
        line = raw.decode()
        if "listening on" in line:
            return int(line.split("127.0.0.1:")[1].split()[0])
    raise AssertionError("no 'listening on' line; stderr: %s" % proc.stderr.read().decode())


@pytest.mark.parametrize("target", ["myapp:app", "myapp.py:app", "myapp:create_app",
                                    "myapp:create_app()"])
def test_cli_serves_wsgi_app_with_two_workers_and_stops_on_sigint(tmp_path, target):
    proc = _serve_cli(tmp_path, target, "--bind", "127.0.0.1:0", "-w", "2")
    try:
        port = _port_of(proc)
        pids = {request(port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")[2] for _ in range(30)}
        assert all(p.startswith(b"served by ") for p in pids)
        wait_until(lambda: len(_children(proc.pid)) == 2, message="two workers")
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        stop_process_group(proc)


def _children(pid):
    from conftest import children_of
    return children_of(pid)


def test_cli_config_file(tmp_path):
    # gunicorn spellings: flag names and its config-only names
    (tmp_path / "conf.py").write_text("workers = 3\nbind = '127.0.0.1:0'\nmax_requests = 1000\n"
                                      "keepalive = 10\nloglevel = 'warning'\n")
    proc = _serve_cli(tmp_path, "myapp:app", "-c", "conf.py")
    try:
        port = _port_of(proc)
        assert request(port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")[0] == 200
        wait_until(lambda: len(_children(proc.pid)) == 3, message="three workers")
    finally:
        stop_process_group(proc)


def test_cli_version():
    out = subprocess.run([sys.executable, "-m", "gswoole", "--version"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.startswith("gswoole-serve (gswoole ")


@pytest.mark.parametrize("args, message", [
    (["nosuchmodule_xyz:app"], "cannot import TARGET module 'nosuchmodule_xyz'"),
    (["myapp:missing"], "has no attribute 'missing'"),
    (["myapp:app", "--workers", "0"], "setting 'worker_num': must be >= 1"),
    (["myapp:app", "--bind", "nonsense:port"], "bad --bind address"),
    (["nofile.py:app"], "does not exist"),
    (["myapp:app", "--task-workers", "1"], "no 'task' callback"),
])
def test_cli_bad_input_is_one_line(tmp_path, args, message):
    (tmp_path / "myapp.py").write_text(APP_FILE)
    out = subprocess.run([sys.executable, "-m", "gswoole", *args], capture_output=True,
                         text=True, timeout=30, cwd=tmp_path)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_bodies_larger_than_the_output_buffer_arrive_whole(wsgi_serve):
    # One 3 MiB piece, and a generator faster than the client reads: both
    # wait for buffer room instead of dropping data (buffer_output_size 1 MiB).
    srv = wsgi_serve("""
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            if environ["PATH_INFO"] == "/one":
                return [b"a" * (3 << 20)]
            return (b"%08d" % i * 8192 for i in range(80))
    """, settings="buffer_output_size=1 << 20")
    status, headers, body = request(srv.port, b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n", timeout=30)
    assert status == 200 and body == b"a" * (3 << 20)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        import time as _time
        _time.sleep(0.5)   # a slow reader: let the server's buffer fill first
        status, headers, body = read_response(sock, timeout=30)
    assert body == b"".join(b"%08d" % i * 8192 for i in range(80))


@pytest.mark.parametrize("path", ["/short", "/long"])
def test_app_content_length_is_enforced(wsgi_serve, path):
    srv = wsgi_serve("""
        def app(environ, start_response):
            start_response("200 OK", [("Content-Length", "5")])
            return [b"abc"] if environ["PATH_INFO"] == "/short" else [b"abcdefgh", b"ij"]
    """)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                     % path.encode())
        try:
            data = recv_until_eof(sock)
        except ConnectionResetError:
            data = b"reset"
    if path == "/long":
        assert data.count(b"HTTP/1.1") == 1 and data.endswith(b"\r\n\r\nabcde")
    else:
        assert data == b"reset" or data.count(b"HTTP/1.1") == 1


def test_handler_errors_after_partial_output_reset(wsgi_serve):
    srv = wsgi_serve("""
        def app(environ, start_response):
            start_response("200 OK", [])
            def body():
                yield b"partial"
                raise RuntimeError("mid-body")
            return body()
    """)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            while sock.recv(65536):
                pass


def test_a_closed_connection_leaves_no_cyclic_garbage(wsgi_serve):
    # A connection's objects (its parser and llhttp's, its transport) are
    # freed when it closes, not left for the garbage collector (24 objects a
    # connection before; collecting them cost about 5 us of each connection).
    srv = wsgi_serve("""
        import gc
        def app(environ, start_response):
            body = b"ok"
            if environ["PATH_INFO"] == "/collect":
                found = gc.collect()      # cyclic garbage since the last call
                gc.disable()              # so that only this call finds any
                body = str(found).encode()
            start_response("200 OK", [("Content-Length", str(len(body)))])
            return [body]
    """)
    request(srv.port, b"GET /collect HTTP/1.1\r\nHost: t\r\n\r\n")
    for _ in range(100):
        status, _, body = request(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert (status, body) == (200, b"ok")
    # The server frees a connection once it reads the client's FIN; the
    # /collect request below then counts what the 100 left behind.
    found = int(request(srv.port, b"GET /collect HTTP/1.1\r\nHost: t\r\n\r\n")[2])
    assert found < 50, "%d objects left for the garbage collector by 100 connections" % found

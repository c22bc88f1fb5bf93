"""Stopping workers lose no request (DESIGN sections 1 and 5).

A keep-alive load in Python (a small wrk: threads, each with one
connection, sending the next request as soon as the last answer is in)
runs while workers are replaced: by rolling reloads (SIGHUP) and by
``max_request`` recycling. A request is lost when it was written and its
connection closed (or reset) before the whole response came; the client
reconnects only after a response that said ``Connection: close``.
The figures for the same rounds under wrk are in bench/reload.py.
"""

import socket
import threading

import pytest

from conftest import reload_workers, wait_until

APP = """
import gswoole.wsgi

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]

server = gswoole.wsgi.Server(app, "127.0.0.1", 0)
server.set(worker_num=2{settings})
server.on("start", lambda s: print("READY", s.port, s.master_pid, flush=True))
server.start()
"""

REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


class KeepAliveLoad:
    """``connections`` threads, each looping request -> response on one
    keep-alive connection; counts answers and lost requests."""

    def __init__(self, port, connections=8):
        self.port = port
        self.answered = 0
        self.reconnects = 0
        self.lost = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True)
                         for _ in range(connections)]
        for thread in self._threads:
            thread.start()

    def _run(self):
        sock = None
        while not self._stop.is_set():
            if sock is None:
                sock = self._connect()
            try:
                sock.sendall(REQUEST)
                closing = self._read_response(sock)
            except (OSError, AssertionError) as exc:
                with self._lock:
                    self.lost.append(repr(exc))
                sock.close()
                sock = None
                continue
            with self._lock:
                self.answered += 1
            if closing:
                sock.close()
                sock = None
                with self._lock:
                    self.reconnects += 1
        if sock is not None:
            sock.close()

    def _connect(self):
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    @staticmethod
    def _read_response(sock):
        """Read one response; True if it ends the connection."""
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = sock.recv(4096)
            if not data:
                raise AssertionError("connection closed before the response (%d bytes)"
                                     % len(buf))
            buf += data
        head, _, body = buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        while len(body) < 2:
            data = sock.recv(4096)
            if not data:
                raise AssertionError("connection closed inside the body")
            body += data
        assert body == b"ok", body
        return b"\r\nconnection: close" in head.lower()

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


@pytest.fixture
def load_on(serve):
    loads = []

    def start(settings=""):
        srv = serve(APP.format(settings=(", " + settings) if settings else ""), raw=True)
        load = KeepAliveLoad(srv.port)
        loads.append(load)
        wait_until(lambda: load.answered > 50, message="load running")
        return srv, load

    yield start
    for load in loads:
        load.stop()


def worker_pids_seen(srv, seen):
    seen.update(srv.children())
    return seen


def test_rolling_reloads_under_keep_alive_load_lose_no_request(load_on):
    srv, load = load_on()
    for _ in range(4):
        reload_workers(srv)
    answered = load.answered
    wait_until(lambda: load.answered > answered + 50, message="serving after the reloads")
    load.stop()
    assert not load.lost, load.lost[:5]
    assert load.reconnects > 0    # the old workers did end their connections


def test_max_request_recycling_under_keep_alive_load_loses_no_request(load_on):
    srv, load = load_on("max_request=100, max_request_grace=0")
    seen = set()
    wait_until(lambda: len(worker_pids_seen(srv, seen)) >= 8, timeout=30,
               interval=0.01, message="six recycled workers")
    load.stop()
    assert not load.lost, load.lost[:5]
    assert load.answered >= 600

"""Logging: access_log_format / JSON, log_config, the role on every record,
reopening log files on SIGRTMIN (gswoole/logs.py, gswoole/access_format.py)."""

import json
import os
import signal

import pytest

from conftest import recv_until_eof, wait_until
from gswoole import access_format, settings
from gswoole.errors import SettingError
from test_http import FOOTER, HTTP_HEADER

HELLO = """
def on_request(request, response):
    response.header("X-Answer", "42")
    response.end("hello")
server.on("request", on_request)
"""


def _get(port, target="/", headers=""):
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n"
                      % (target, headers)).encode())
        return recv_until_eof(sock)


# -- the formatter (sans-IO) -------------------------------------------------

def test_gunicorn_atoms():
    access_format.configure('%(h)s %(l)s %(u)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" '
                            '%({x-id}i)s %({content-type}o)s %(T)s %(M)s %(D)s %(p)s %(q)s '
                            '%(nope)s')
    try:
        facts = access_format.atoms("10.0.0.1", 100.0, "GET", "/a?b=1", "HTTP/1.1", 200, 5,
                                    {"referer": "http://r/", "user-agent": "curl",
                                     "x-id": "abc"}, {"content-type": "text/plain"},
                                    now=101.5)
        line = access_format.format_access(facts)
    finally:
        access_format.configure()
    assert line == ('10.0.0.1 - - "GET /a?b=1 HTTP/1.1" 200 5 "http://r/" "curl" abc '
                    'text/plain 1 1500 1500000 <%d> b=1 -' % os.getpid())


def test_json_line():
    access_format.configure(as_json=True)
    try:
        facts = access_format.atoms("10.0.0.1", 100.0, "POST", "/x", "HTTP/1.0", 404, 0,
                                    now=100.25)
        record = json.loads(access_format.format_access(facts))
    finally:
        access_format.configure()
    assert record["method"] == "POST" and record["status"] == 404 and record["bytes"] == 0
    assert record["duration_us"] == 250000 and record["path"] == "/x"


def test_bad_format_fails_at_set():
    with pytest.raises(SettingError, match="access_log_format"):
        settings.validate("access_log_format", "%(h)s %(r")
    with pytest.raises(SettingError, match="does not exist"):
        settings.validate("log_config", "/nonexistent/logging.ini")


# -- end to end --------------------------------------------------------------

@pytest.fixture
def http_serve(serve):
    def start(body, settings=""):
        return serve(HTTP_HEADER.format(workers=1, extra=", " + settings) + body + FOOTER,
                     raw=True)
    return start


def test_access_log_format_and_json_end_to_end(http_serve, tmp_path):
    plain, as_json = tmp_path / "access.log", tmp_path / "access.json"
    srv = http_serve(HELLO, settings="access_log=%r, access_log_format=%r"
                     % (str(plain), '%(m)s %(U)s %(q)s %(s)s %(B)s'))
    assert b"hello" in _get(srv.port, "/p?q=1")
    wait_until(lambda: plain.exists() and plain.read_text(), message="the access line")
    assert plain.read_text() == "GET /p q=1 200 5\n"
    srv2 = http_serve(HELLO, settings="access_log=%r, access_log_json=True" % str(as_json))
    _get(srv2.port, "/j")
    wait_until(lambda: as_json.exists() and as_json.read_text(), message="the JSON line")
    record = json.loads(as_json.read_text())
    assert record["path"] == "/j" and record["status"] == 200


def test_access_log_header_atoms_come_from_the_request_and_the_response(http_serve, tmp_path):
    log = tmp_path / "access.log"
    srv = http_serve(HELLO, settings="access_log=%r, access_log_format=%r" % (
        str(log), '"%(f)s" "%(a)s" %({x-id}i)s %({x-answer}o)s %({content-length}o)s'))
    _get(srv.port, "/", "Referer: http://r/\r\nUser-Agent: ua/1\r\nX-Id: 7\r\n")
    wait_until(lambda: log.exists() and log.read_text(), message="the access line")
    assert log.read_text() == '"http://r/" "ua/1" 7 42 5\n'


def test_log_config_and_role_on_records(serve, tmp_path):
    log_path = tmp_path / "app.log"
    config = {"version": 1, "disable_existing_loggers": False,
              "formatters": {"f": {"format": "%(role)s|%(worker_id)s|%(message)s"}},
              "handlers": {"h": {"class": "logging.FileHandler", "filename": str(log_path),
                                 "formatter": "f"}},
              "loggers": {"gswoole": {"handlers": ["h"], "level": "INFO"}}}
    serve("""
import logging
server.on("receive", lambda s, fd, rid, data: None)
server.on("workerStart", lambda s, wid: logging.getLogger("gswoole").info("hello from %d", wid))
""", workers=2, settings="log_config=%r" % config)
    wait_until(lambda: log_path.exists() and log_path.read_text().count("hello from") == 2,
               message="both workers' lines")
    text = log_path.read_text()
    assert "worker #0|0|hello from 0" in text and "worker #1|1|hello from 1" in text
    assert "master|-1|gswoole master" in text


def test_sigrtmin_reopens_log_files(serve, tmp_path):
    log_path = tmp_path / "server.log"
    srv = serve("""
import logging
def on_receive(s, fd, rid, data):
    logging.getLogger("gswoole").info("got %s", data.decode())
    s.send(fd, data)
server.on("receive", on_receive)
""", settings="log_file=%r" % str(log_path))
    with srv.connect() as sock:
        sock.sendall(b"before")
        assert sock.recv(10) == b"before"
    wait_until(lambda: "got before" in log_path.read_text(), message="the first line")
    os.rename(log_path, str(log_path) + ".1")     # what logrotate does
    srv.signal(signal.SIGRTMIN)
    wait_until(lambda: log_path.exists() and "log files reopened" in log_path.read_text(),
               message="the master to reopen")

    def worker_logs_to_new_file():
        # the worker gets SIGRTMIN from the master a moment after the master
        # reopened: ask until a line lands in the new file
        with srv.connect() as sock:
            sock.sendall(b"after")
            assert sock.recv(10) == b"after"
        return "got after" in log_path.read_text()
    wait_until(worker_logs_to_new_file, interval=0.1, message="the worker's new line")

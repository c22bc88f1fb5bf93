"""The server's own log: where --log-file sends it and what --log-level adds.

Each test runs gswoole-serve (its main(), in a script that first moves into
the test's directory), makes a request, stops the server and reads the whole
of its stderr once the process has exited, so nothing is still on its way.
"""

import os
import re
import signal
import socket

from conftest import REPO_ROOT, ServerProcess, recv_until_eof

APP = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]
"""

RUN = """
import os, sys
os.chdir({cwd!r})
sys.path.insert(0, {cwd!r})
from gswoole.cli import main
sys.exit(main({argv!r}))
"""


def _serve_once(tmp_path, *flags):
    """Run gswoole-serve with ``flags``, make one request, stop it; returns
    (the ServerProcess, the response)."""
    (tmp_path / "logapp.py").write_text(APP)
    script = tmp_path / "run.py"
    argv = ["logapp:app", "--bind", "127.0.0.1:0", "--workers", "1", *flags]
    script.write_text(RUN.format(cwd=str(tmp_path), argv=argv))
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(
        p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p))
    srv = ServerProcess(script, env=env)
    try:
        match = srv.wait_line(r"listening on 127\.0\.0\.1:(\d+) .* master pid (\d+)", 15)
        srv.port, srv.master_pid = int(match.group(1)), int(match.group(2))
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            answer = recv_until_eof(sock)
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(15) == 0
        srv.wait_output_closed()
        return srv, answer
    finally:
        srv.stop()


def test_log_file_dash_is_stderr_and_debug_adds_connections_and_boot(tmp_path):
    srv, answer = _serve_once(tmp_path, "--log-file", "-", "--log-level", "debug")
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"hello")
    assert not (tmp_path / "-").exists()
    debug = [line for line in srv.errlines if "[DEBUG]" in line]
    text = "\n".join(debug)
    assert "worker #0 (pid" in text and "booted: 127.0.0.1:" in text, srv.errlines
    accepted = re.search(r"worker #0: fd (\d+) accepted from \('127\.0\.0\.1', \d+\) "
                         r"on 127\.0\.0\.1:%d \(1 open\)" % srv.port, text)
    assert accepted, srv.errlines
    assert "worker #0: fd %s closed (0 open" % accepted.group(1) in text, srv.errlines
    assert any("[INFO]" in line and "listening on" in line for line in srv.errlines)


def test_log_level_info_has_no_debug_records(tmp_path):
    srv, answer = _serve_once(tmp_path)
    assert answer.endswith(b"hello")
    assert any("[INFO]" in line for line in srv.errlines), srv.errlines
    assert not [line for line in srv.errlines if "[DEBUG]" in line]


def test_log_file_path_gets_the_records(tmp_path):
    log = tmp_path / "server.log"
    srv, _ = _serve_once(tmp_path, "--log-file", str(log), "--log-level", "debug")
    text = log.read_text()
    assert "[INFO]" in text and "listening on" in text and "accepted from" in text
    assert not [line for line in srv.errlines if "[DEBUG]" in line or "[INFO]" in line]

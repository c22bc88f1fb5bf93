"""gswoole-serve's gunicorn parity: config hooks, --chdir, -e, -t, --reload,
--forwarded-allow-ips, and one-line advice for gunicorn flags it lacks."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO_ROOT, wait_until
from gswoole.proxy import client_address, parse_allow_ips
from test_http import request

APP = """
import os, json
import gevent.monkey
def app(environ, start_response):
    if environ["PATH_INFO"] == "/block":
        gevent.monkey.get_original("time", "sleep")(3600)
    body = json.dumps({"remote": environ["REMOTE_ADDR"], "scheme": environ["wsgi.url_scheme"],
                       "cwd": os.getcwd(), "greeting": os.environ.get("GREETING"),
                       "pid": os.getpid(), "version": VERSION}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
VERSION = 1
"""


class Cli:
    """A gswoole-serve process in its own session, its output pumped into lines."""

    def __init__(self, cwd, *args):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen([sys.executable, "-m", "gswoole", *args], cwd=cwd, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.lines = []
        import threading
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def ports(self):
        return [int(line.split("127.0.0.1:")[1].split()[0]) for line in list(self.lines)
                if "gswoole-serve: listening on" in line]

    def wait_port(self, count=1, timeout=20):
        wait_until(lambda: len(self.ports()) >= count or self.proc.poll() is not None,
                   timeout=timeout, message="'listening on' line #%d" % count)
        assert len(self.ports()) >= count, "\n".join(self.lines)
        return self.ports()[count - 1]

    def get(self, port, path="/", headers=b""):
        status, _, body = request(port, b"GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n"
                                  % (path.encode(), headers))
        assert status == 200
        return json.loads(body)

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(5)


@pytest.fixture
def cli(tmp_path):
    started = []

    def start(*args, cwd=None):
        proc = Cli(cwd or tmp_path, *args)
        started.append(proc)
        return proc
    yield start
    for proc in started:
        proc.stop()


HOOKS_CONF = """
import os
bind = "127.0.0.1:0"
workers = 1
_log = os.environ["HOOK_LOG"]
def _write(*parts):
    fd = os.open(_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, (" ".join(map(str, parts)) + "\\n").encode())
    os.close(fd)
def on_starting(server): _write("on_starting", os.getpid())
def when_ready(server): _write("when_ready", os.getpid())
def post_fork(server, worker): _write("post_fork", worker.worker_id, worker.pid)
def worker_exit(server, worker): _write("worker_exit", worker.worker_id, worker.pid)
def child_exit(server, worker): _write("child_exit", worker.worker_id, worker.pid, worker.exit_code)
def on_exit(server): _write("on_exit", os.getpid())
def pre_request(worker, req): _write("pre_request", req.method, req.path, worker.worker_id)
def post_request(worker, req, environ, resp): _write("post_request", req.path, resp.status_code)
"""


def test_config_hooks_run_where_gunicorn_runs_them(cli, tmp_path):
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "conf.py").write_text(HOOKS_CONF)
    log = tmp_path / "hooks.log"
    os.environ["HOOK_LOG"] = str(log)
    try:
        server = cli("app:app", "-c", "conf.py")
        port = server.wait_port()
        server.get(port, "/hello")
        wait_until(lambda: "post_request" in log.read_text(), message="post_request")
        os.kill(server.proc.pid, signal.SIGTERM)
        assert server.proc.wait(15) == 0
    finally:
        del os.environ["HOOK_LOG"]
    lines = [line.split() for line in log.read_text().splitlines()]
    names = [line[0] for line in lines]
    master = str(server.proc.pid)
    assert names[:2] == ["on_starting", "post_fork"] or names[:2] == ["on_starting",
                                                                       "when_ready"]
    by_name = {line[0]: line[1:] for line in lines}
    assert by_name["on_starting"] == [master] and by_name["when_ready"] == [master]
    worker_pid = by_name["post_fork"][1]
    assert by_name["post_fork"][0] == "0" and worker_pid != master
    assert by_name["pre_request"] == ["GET", "/hello", "0"]
    assert by_name["post_request"] == ["/hello", "200"]
    assert by_name["worker_exit"] == ["0", worker_pid]
    assert by_name["child_exit"] == ["0", worker_pid, "0"]
    assert names[-1] == "on_exit" and by_name["on_exit"] == [master]
    assert names.index("post_fork") < names.index("when_ready")   # start waits for workers


def test_chdir_and_env(cli, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "app.py").write_text(APP)
    server = cli("app:app", "--chdir", "site", "-e", "GREETING=hi there", "-b", "127.0.0.1:0")
    info = server.get(server.wait_port())
    assert info["cwd"] == str(site) and info["greeting"] == "hi there"


def test_timeout_flag_kills_a_stuck_worker(cli, tmp_path):
    (tmp_path / "app.py").write_text(APP)
    server = cli("app:app", "-t", "1", "-w", "1", "-b", "127.0.0.1:0")
    port = server.wait_port()
    first = server.get(port)["pid"]
    import socket
    blocker = socket.create_connection(("127.0.0.1", port))
    blocker.sendall(b"GET /block HTTP/1.1\r\nHost: t\r\n\r\n")
    wait_until(lambda: any("event loop stuck" in line for line in server.lines), timeout=10,
               message="the watchdog")
    wait_until(lambda: server.get(port)["pid"] != first, timeout=10, message="a replacement")
    assert any("in app" in line for line in server.lines)   # the stack names the function
    blocker.close()


@pytest.mark.parametrize("args, advice", [
    (["-k", "gevent"], "always runs gevent workers"),
    (["--worker-class=gevent"], "always runs gevent workers"),
    (["--threads", "4"], "use --workers"),
    (["--statsd-host", "x:1"], "--metrics-bind"),
    (["--error-logfile", "x.log"], "use --log-file"),
])
def test_gunicorn_flags_get_one_line_of_advice(tmp_path, args, advice):
    (tmp_path / "app.py").write_text(APP)
    out = subprocess.run([sys.executable, "-m", "gswoole", "app:app", *args], cwd=tmp_path,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert advice in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_help_lists_every_flag():
    # A setting's help may hold "%(role)s" (a log format): argparse must not
    # take it for its own placeholder.
    out = subprocess.run([sys.executable, "-m", "gswoole", "--help"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "--log-config" in out.stdout and "%(role)s" in out.stdout


def test_gunicorn_config_names_get_advice_too(tmp_path):
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "conf.py").write_text("worker_class = 'gevent'\n")
    out = subprocess.run([sys.executable, "-m", "gswoole", "app:app", "-c", "conf.py"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "always runs gevent workers" in out.stderr


def test_forwarded_headers_only_from_trusted_peers(cli, tmp_path):
    (tmp_path / "app.py").write_text(APP)
    forwarded = b"X-Forwarded-For: 203.0.113.7, 127.0.0.1\r\nX-Forwarded-Proto: https\r\n"
    trusting = cli("app:app", "-b", "127.0.0.1:0")          # default: 127.0.0.1,::1
    info = trusting.get(trusting.wait_port(), headers=forwarded)
    assert info["remote"] == "203.0.113.7" and info["scheme"] == "https"
    wary = cli("app:app", "-b", "127.0.0.1:0", "--forwarded-allow-ips", "10.0.0.1")
    info = wary.get(wary.wait_port(), headers=forwarded)
    assert info["remote"] == "127.0.0.1" and info["scheme"] == "http"


def test_forwarded_for_rules():
    trusted = parse_allow_ips("127.0.0.1, 10.0.0.1")
    is_trusted = trusted.__contains__
    assert client_address("1.2.3.4, 10.0.0.1", is_trusted) == "1.2.3.4"
    # a client cannot choose its address by prepending entries
    assert client_address("6.6.6.6, 1.2.3.4, 10.0.0.1", is_trusted) == "1.2.3.4"
    assert client_address("10.0.0.1", is_trusted) == "10.0.0.1"
    assert parse_allow_ips("*") is None


def test_reload_restarts_on_a_source_change(cli, tmp_path):
    pytest.importorskip("watchfiles")
    app = tmp_path / "app.py"
    app.write_text(APP)
    server = cli("app:app", "--reload", "-b", "127.0.0.1:0", "-w", "1")
    assert server.get(server.wait_port())["version"] == 1
    # the watcher may start a moment after the first server: keep changing
    # the file until a second server comes up
    deadline = time.monotonic() + 20
    while len(server.ports()) < 2 and time.monotonic() < deadline:
        app.write_text(APP.replace("VERSION = 1", "VERSION = 2"))
        try:
            wait_until(lambda: len(server.ports()) >= 2, timeout=3, message="a restart")
        except AssertionError:
            continue
    assert server.get(server.wait_port(2))["version"] == 2
    assert any("app.py changed; restarting" in line for line in server.lines)


def test_operations_flags_through_gswoole_serve(cli, tmp_path):
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "logging.json").write_text(json.dumps({
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"f": {"format": "LOGCONF %(role)s %(message)s"}},
        "handlers": {"h": {"class": "logging.StreamHandler", "formatter": "f"}},
        "loggers": {"gswoole": {"handlers": ["h"], "level": "INFO"}}}))
    server = cli("app:app", "-b", "127.0.0.1:0", "-w", "1", "--metrics-bind", "127.0.0.1:0",
                 "--max-worker-memory", "4000", "--log-config", "logging.json",
                 "--access-log", "-", "--access-logformat", "ACCESS %(m)s %(U)s %(s)s")
    port = server.wait_port()
    server.get(port, "/x")
    wait_until(lambda: "ACCESS GET /x 200" in server.lines, message="the access line")
    metrics_line = next(line for line in server.lines if "metrics at http://" in line)
    assert metrics_line.startswith("LOGCONF master ")
    metrics_port = int(metrics_line.rsplit(":", 1)[1].split("/")[0])
    status, _, body = request(metrics_port, b"GET /metrics HTTP/1.0\r\n\r\n")
    assert status == 200 and b"gswoole_requests_total" in body


def test_proxy_protocol_flag(cli, tmp_path):
    import socket
    from conftest import recv_until_eof
    (tmp_path / "app.py").write_text(APP)
    server = cli("app:app", "-b", "127.0.0.1:0", "--proxy-protocol")
    port = server.wait_port()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"PROXY TCP4 198.51.100.9 10.0.0.1 4242 80\r\n"
                     b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        body = recv_until_eof(sock).split(b"\r\n\r\n", 1)[1]
    assert json.loads(body)["remote"] == "198.51.100.9"

"""Test harness: real servers in subprocesses on 127.0.0.1.

``serve(body)`` writes a server script (the given body, after a standard
header that builds ``server`` on port 0) and starts it in its own session.
The script reports "READY <port> <master_pid>" from the ``start`` event, so
tests wait on that line instead of sleeping; server scripts print with
``emit(...)`` (one write per line, see EMIT). Each test's servers are stopped
(SIGTERM, then SIGKILL of the process group they created) at teardown.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Server scripts print with emit(): one os.write() per line. print() is
# several writes (one per part and separator) under PYTHONUNBUFFERED, and the
# master's and workers' writes to the shared pipe then split each other's
# lines ("READYWORKERSTART 1 8807"). Scripts with their own header add EMIT.
EMIT = """
import os
def emit(*parts):
    os.write(1, (" ".join(map(str, parts)) + "\\n").encode())
"""

HEADER = """\
import os, sys, time, signal
import gswoole
server = gswoole.Server({host!r}, 0, sock_type={sock_type})
server.set(worker_num={workers}, log_level="info"{extra})
server.on("start", lambda server: emit("READY", server.port, server.master_pid))
""" + EMIT.replace("{", "{{").replace("}", "}}")

FOOTER = """
server.start()
emit("STOPPED")
"""


class ServerProcess:
    def __init__(self, path, env=None):
        self.path = path
        self.lines = []
        self.errlines = []
        self._cond = threading.Condition()
        self._open_streams = 2
        self.proc = subprocess.Popen(
            [sys.executable, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        self.pgid = self.proc.pid
        for stream, sink in ((self.proc.stdout, self.lines), (self.proc.stderr, self.errlines)):
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()
        self.port = None
        self.master_pid = None

    def _pump(self, stream, sink):
        for raw in stream:
            with self._cond:
                sink.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._open_streams -= 1
            self._cond.notify_all()

    def wait_line(self, pattern, timeout=10.0, stream="out", count=1):
        """Wait until ``count`` lines match ``pattern``; returns the last match."""
        sink = self.lines if stream == "out" else self.errlines
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                matches = [m for m in map(regex.search, sink) if m]
                if len(matches) >= count:
                    return matches[count - 1]
                remaining = deadline - time.monotonic()
                exited = self.proc.poll() is not None and not self._open_streams
                if remaining <= 0 or exited:
                    raise AssertionError(
                        "no %d line(s) matching %r within %ss\nstdout:\n%s\nstderr:\n%s"
                        % (count, pattern, timeout, "\n".join(sink if stream == "out" else
                                                              self.lines),
                           "\n".join(self.errlines[-60:])))
                self._cond.wait(min(remaining, 0.2))

    def matching(self, pattern, stream="out"):
        regex = re.compile(pattern)
        sink = self.lines if stream == "out" else self.errlines
        with self._cond:
            return [m for m in map(regex.search, sink) if m]

    def wait_output_closed(self, timeout=10.0):
        """Wait until stdout and stderr are read to their end (all processes
        holding them have exited), so ``lines`` and ``errlines`` are whole."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._open_streams:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("output still open after %ss" % timeout)
                self._cond.wait(remaining)

    def wait_ready(self, timeout=15.0):
        match = self.wait_line(r"^READY (\d+) (\d+)", timeout)
        self.port = int(match.group(1))
        self.master_pid = int(match.group(2))
        return self

    def connect(self, timeout=5.0):
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def signal(self, sig):
        os.kill(self.master_pid or self.proc.pid, sig)

    def wait_exit(self, timeout=15.0):
        return self.proc.wait(timeout)

    def children(self):
        """Pids of the master's live children (its workers)."""
        return children_of(self.master_pid)

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait(5)


def stop_process_group(proc, timeout=10.0):
    """Stop a process this test started in a session of its own: SIGTERM to
    it, then SIGKILL to whatever is left of its group; always reaped."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(5)


def children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return sorted(found)


def wait_until(predicate, timeout=10.0, interval=0.02, message="condition"):
    """Poll ``predicate`` until true; the interval only paces the polling."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % message)
        time.sleep(interval)


def reload_workers(srv, workers=2):
    """SIGHUP ``srv`` and wait until it again has ``workers`` workers, none
    of them from before the reload."""
    before = set(srv.children())
    srv.signal(signal.SIGHUP)
    wait_until(lambda: len(srv.children()) == workers and not set(srv.children()) & before,
               timeout=20, message="workers replaced")


@pytest.fixture
def serve(tmp_path):
    """``serve(body, workers=1, settings="", host=..., sock_type=...)`` -> ready ServerProcess."""
    started = []

    def start(body, workers=1, settings="", host="127.0.0.1", sock_type="gswoole.SOCK_TCP",
              ready=True, raw=False, env=None):
        extra = (", " + settings) if settings else ""
        if raw:
            source = textwrap.dedent(body)
        else:
            source = HEADER.format(host=host, sock_type=sock_type, workers=workers,
                                   extra=extra) + textwrap.dedent(body) + FOOTER
        path = tmp_path / ("server%d.py" % len(started))
        path.write_text(source)
        full_env = dict(os.environ)
        full_env["PYTHONUNBUFFERED"] = "1"
        # Servers import this checkout's gswoole, whatever is installed.
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p)
        full_env.update(env or {})
        proc = ServerProcess(path, env=full_env)
        started.append(proc)
        return proc.wait_ready() if ready else proc

    yield start
    for proc in started:
        proc.stop()


def recv_exactly(sock, size, timeout=10.0):
    sock.settimeout(timeout)
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise AssertionError("EOF with %d bytes still expected" % size)
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def recv_until_eof(sock, timeout=10.0):
    sock.settimeout(timeout)
    chunks = []
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)

"""A real redis-server for the cluster tests: loopback only, no
persistence, on a port picked from a random high range (a port is taken
only by starting on it, so no other program can slip in between a check and
the start), stopped by its PID."""

import random
import shutil
import socket
import subprocess
import time

PORT_RANGE = (20000, 60000)
ATTEMPTS = 20


class RedisServer:
    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.port = None
        self.proc = None

    def start(self, port=None):
        """Start on ``port``, or on a random free port of PORT_RANGE."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (Debian: apt-get install "
                               "redis-server; .ci/run does it)")
        ports = [port] if port else [random.randint(*PORT_RANGE) for _ in range(ATTEMPTS)]
        for candidate in ports:
            self.proc = subprocess.Popen(
                [binary, "--bind", "127.0.0.1", "--port", str(candidate), "--save", "",
                 "--appendonly", "no", "--dir", str(self.tmp_path), "--protected-mode", "no"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if self._wait_ready(candidate):
                self.port = candidate
                return self
            self.stop()
        raise RuntimeError("redis-server did not start on any of %s" % ports)

    def _wait_ready(self, port, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False   # port taken (or another failure): try another
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return True
            except OSError:
                time.sleep(0.02)
        return False

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self):
        """Kill it and start it again on the same port (everything in it is lost)."""
        port = self.port
        self.stop()
        return self.start(port)

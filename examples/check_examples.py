"""Run every example server, talk to it with its client, stop it with SIGTERM.

    python examples/check_examples.py [NAME ...]

Each server is started on port 0 (the kernel picks a free port; the example
prints the real one), in a session of its own, and stopped with SIGTERM to
the master's pid, which must then exit 0 and leave no process behind.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# Run the examples against this checkout's gswoole, not whatever copy happens
# to be installed (an editable install may point at another tree).
ENV = dict(os.environ, PYTHONUNBUFFERED="1",
           PYTHONPATH=os.pathsep.join(filter(None, [os.path.dirname(HERE),
                                                    os.environ.get("PYTHONPATH")])))
LISTENING = re.compile(r"on 127\.0\.0\.1:(\d+)")

EXAMPLES = ["echo", "send_then_close", "ack_close", "ordering", "state", "sessions",
            "per_process", "callback_styles", "event_loop_error", "process_model", "timers",
            "send_errors", "http_hello", "http_framing", "flask_app", "line_protocol",
            "rpc_client", "udp_echo", "async_client", "shared_memory", "operations",
            "swoole_tcp_server", "swoole_confirm", "chat/server", "tls_echo"]

# Examples that need a package outside gswoole's own requirements.
REQUIRES = {"flask_app": "flask", "tls_echo": "trustme"}


def echo_client(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"hello\n")
        assert conn.recv(100) == b"hello\n"
    return 0, "echoed hello\n"


def group_alive(pgid):
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def check(name):
    path = os.path.join(HERE, name + ".py")
    if name in REQUIRES:
        import importlib.util
        if importlib.util.find_spec(REQUIRES[name]) is None:
            return None, "skipped: needs %s (pip install -e '.[test]')" % REQUIRES[name]
    server = subprocess.Popen([sys.executable, path, "0"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              start_new_session=True, env=ENV)
    lines = []
    found = threading.Event()
    port = []

    def pump():
        for raw in server.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            lines.append(line)
            match = LISTENING.search(line)
            if match and not found.is_set():
                port.append(int(match.group(1)))
                found.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        if not found.wait(20):
            return False, "never said where it listens:\n" + "\n".join(lines)
        started = time.monotonic()
        if name == "echo":
            code, out = echo_client(port[0])
        else:
            result = subprocess.run([sys.executable, path, "client", str(port[0])],
                                    capture_output=True, text=True, timeout=120, env=ENV)
            code, out = result.returncode, result.stdout + result.stderr
        took = time.monotonic() - started
    finally:
        if server.poll() is None:
            os.kill(server.pid, signal.SIGTERM)     # the master is the process we started
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(5)
            return False, "master did not exit after SIGTERM"
    time.sleep(0.2)
    leftovers = group_alive(server.pid)
    ok = code == 0 and server.returncode == 0 and not leftovers
    report = "client exit %d in %.1f s, master exit %s%s\n%s" % (
        code, took, server.returncode, ", PROCESSES LEFT BEHIND" if leftovers else "", out)
    if not ok:
        report += "\nserver output:\n" + "\n".join(lines)
    return ok, report


def main():
    names = sys.argv[1:] or EXAMPLES
    failed = []
    for name in names:
        ok, report = check(name)
        print("=" * 70)
        print("%s %s" % ({True: "PASS", False: "FAIL", None: "SKIP"}[ok], name))
        print(report.rstrip())
        if ok is False:
            failed.append(name)
    print("=" * 70)
    print("failed: %s" % (", ".join(failed) if failed else "none"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

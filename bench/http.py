"""HTTP hello-world benchmark: gswoole against gunicorn -k gevent, gevent.pywsgi
and uvicorn (httptools + uvloop), measured with wrk; and over TLS against
uvicorn and granian.

    python bench/http.py [--seconds 5] [--rounds one|two|both|tls|all] [--turns 1]

Every server answers GET / with 200, text/plain, "Hello, World!" (13 bytes)
over keep-alive connections (apps in bench/http_apps.py). For each server:
a 1 s wrk warm-up, then ``wrk -t1 -c64 -d<seconds>s --latency``; req/s and the
99th percentile latency are printed, with the ratios gswoole/peer and the
targets. Round "one": one worker, the server pinned to CPU 0 and wrk to
CPU 1. Round "two": two workers, nothing pinned (pywsgi has no workers and
sits this round out). Round "tls": HTTPS, one worker pinned as in round
one, gswoole (gswoole-serve --certfile) against uvicorn (--ssl-certfile) and
granian (--ssl-certificate, WSGI), keep-alive; then a second wrk run with
``Connection: close`` gives the rate of new TLS connections (one handshake
per request) beside it, and the server's CPU time per request and per new
connection (steadier than the rates on a shared machine). The certificate
is made with trustme for the run.
With --turns N the servers take N turns each and the medians are printed.
wrk, gunicorn, uvicorn, uvloop, httptools, granian and trustme are installed
first if missing. Default: all three rounds.
"""

import os
import sys

HERE = os.path.dirname(os.path.realpath(__file__))
ROOT = os.path.dirname(HERE)
# This file is named http.py: with its folder first on sys.path it would
# stand in for the standard library's http package. The servers run from the
# repository root and import the apps as bench.http_apps for the same reason.
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != HERE]

import argparse  # noqa: E402
import importlib.metadata  # noqa: E402
import importlib.util  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import tempfile  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

HOST = "127.0.0.1"
CONNECTIONS = 64
BODY = b"Hello, World!"
PEERS = ("gunicorn", "uvicorn", "uvloop", "httptools", "granian", "trustme")  # pip may install
SERVERS = ("gswoole", "gunicorn", "pywsgi", "uvicorn")
TLS_SERVERS = ("gswoole", "uvicorn", "granian")
LABELS = {"gswoole": "gswoole", "gunicorn": "gunicorn -k gevent",
          "pywsgi": "gevent.pywsgi", "uvicorn": "uvicorn httptools+uvloop",
          "granian": "granian (WSGI)"}
ROUNDS = {  # name: (workers, server CPUs, wrk CPUs); None = not pinned
    "one": (1, "0", "1"),
    "two": (2, None, None),
    "tls": (1, "0", "1"),
}
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    pass


def server_command(kind, workers, port, tls=None):
    """The command line of one server; ``tls`` = (certfile, keyfile) for HTTPS."""
    python = [sys.executable, "-m"]
    bind = "%s:%d" % (HOST, port)
    if kind == "gswoole":
        return python + ["gswoole", "bench.http_apps:wsgi_app", "--bind", bind,
                         "--workers", str(workers), "--log-level", "warning"] + \
            (["--certfile", tls[0], "--keyfile", tls[1]] if tls else [])
    if kind == "granian":
        return python + ["granian", "--interface", "wsgi", "--host", HOST, "--port", str(port),
                         "--workers", str(workers), "--log-level", "warning",
                         "--ssl-certificate", tls[0], "--ssl-keyfile", tls[1],
                         "bench.http_apps:wsgi_app"]
    if kind == "gunicorn":
        return python + ["gunicorn", "-k", "gevent", "--workers", str(workers), "--bind", bind,
                         "--log-level", "warning", "bench.http_apps:wsgi_app"]
    if kind == "pywsgi":
        return python + ["bench.http_apps", bind]
    if kind == "uvicorn":
        return python + ["uvicorn", "bench.http_apps:asgi_app", "--host", HOST,
                         "--port", str(port), "--workers", str(workers),
                         "--http", "httptools", "--loop", "uvloop",
                         "--log-level", "warning", "--no-access-log"] + \
            (["--ssl-certfile", tls[0], "--ssl-keyfile", tls[1]] if tls else [])
    raise ValueError(kind)


def make_certificate(folder):
    """A throwaway certificate for 127.0.0.1 (wrk does not verify it)."""
    import trustme
    issued = trustme.CA().issue_cert("127.0.0.1", "localhost")
    cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    issued.cert_chain_pems[0].write_to_path(cert)
    issued.private_key_pem.write_to_path(key)
    return cert, key


def pinned(command, cpus):
    return command if cpus is None else ["taskset", "-c", cpus] + command


# -- processes ---------------------------------------------------------------

class Processes:
    """Every process the benchmark starts, each leading a new session (and so
    a process group that its workers join), stopped by its pid and group."""

    def __init__(self):
        self.running = []

    def start(self, command, **popen):
        proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL,
                                start_new_session=True, **popen)
        self.running.append(proc)
        return proc

    def stop(self, proc):
        if proc.poll() is None:
            proc.terminate()  # the leader stops its own workers
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left in its group
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        if proc.stdout:
            proc.stdout.close()
        self.running.remove(proc)

    def stop_all(self):
        """On the way out: a second Ctrl-C must not cut the cleanup short."""
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        for proc in list(self.running):
            self.stop(proc)


def cpu_seconds(server_pgid):
    """CPU time used so far: (by the server's process group, by the children
    this script has reaped (so wrk, once it is done), by the whole machine)."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == server_pgid:  # fields[0] is stat(5)'s field 3, state
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open("/proc/stat") as f:
        machine = [int(n) for n in f.readline().split()[1:9]]  # user .. steal
    busy = sum(machine) - machine[3] - machine[4]  # less idle and iowait
    return ticks / CLK_TCK, reaped.ru_utime + reaped.ru_stime, busy / CLK_TCK


# -- setup ---------------------------------------------------------------------

def run_visibly(command):
    print("$ " + " ".join(command), flush=True)
    return subprocess.call(command, stdin=subprocess.DEVNULL)


def install_missing():
    if shutil.which("wrk") is None:
        print("wrk not found: installing it with apt-get", flush=True)
        if run_visibly(["apt-get", "install", "-y", "wrk"]) != 0:
            run_visibly(["apt-get", "update"])
            run_visibly(["apt-get", "install", "-y", "wrk"])
        if shutil.which("wrk") is None:
            raise BenchError("wrk is missing and apt-get could not install it")
    missing = [name for name in PEERS if importlib.util.find_spec(name) is None]
    if missing:
        print("not importable: %s; installing with pip" % ", ".join(missing), flush=True)
        if run_visibly([sys.executable, "-m", "pip", "install"] + missing) != 0:
            raise BenchError("pip could not install %s" % ", ".join(missing))
        importlib.invalidate_caches()


def versions():
    names = ["gevent", "gunicorn", "uvicorn", "uvloop", "httptools", "granian"]
    found = []
    for name in names:
        try:
            found.append("%s %s" % (name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            found.append(name + " (missing)")
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    wrk_version = (wrk.stdout + wrk.stderr).split()[1:2] or ["?"]
    return "python %s, %s, wrk %s" % (sys.version.split()[0], ", ".join(found), wrk_version[0])


def free_port():
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# -- one server ------------------------------------------------------------------

def fetch_once(port, timeout, tls=False):
    """One keep-alive GET /: (status line, headers, body)."""
    raw = socket.create_connection((HOST, port), timeout=timeout)
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        raw = context.wrap_socket(raw)
    with raw as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise BenchError("connection closed before the response headers")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip()
                   for name, _, value in (line.partition(":") for line in lines)}
        length = int(headers.get("content-length", "-1"))
        while 0 <= len(body) < length:
            chunk = sock.recv(4096)
            if not chunk:
                break
            body += chunk
        return status, headers, body


def wait_until_serving(proc, port, what, timeout=20.0, tls=False):
    """Poll-connect until the server answers, then check its answer."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise BenchError("%s exited with code %d (its error is above)"
                             % (what, proc.returncode))
        try:
            status, headers, body = fetch_once(port, timeout=2, tls=tls)
            break
        except (OSError, BenchError):
            if time.monotonic() > deadline:
                raise BenchError("%s did not answer on port %d within %ds"
                                 % (what, port, timeout))
            time.sleep(0.05)
    problems = []
    if not status.startswith("HTTP/1.1 200"):
        problems.append("status %r" % status)
    if body != BODY:
        problems.append("body %r" % body)
    if headers.get("content-type") != "text/plain":
        problems.append("Content-Type %r" % headers.get("content-type"))
    if headers.get("connection", "").lower() == "close":
        problems.append("Connection: close")
    if problems:
        raise BenchError("%s answered wrongly: %s" % (what, ", ".join(problems)))


# -- wrk --------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def parse_wrk(output):
    def number(pattern, default=None):
        match = re.search(pattern, output, re.MULTILINE)
        return match.groups() if match else default

    rate = number(r"^Requests/sec:\s+([\d.]+)")
    p99 = number(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$")
    if rate is None or p99 is None:
        raise BenchError("could not read wrk's output:\n" + output)
    socket_errors = number(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                           r"timeout (\d+)", ("0", "0", "0", "0"))
    return {
        "rate": float(rate[0]),
        "p99_ms": float(p99[0]) * _UNITS[p99[1]],
        "non_2xx": int(number(r"Non-2xx or 3xx responses: (\d+)", ("0",))[0]),
        "socket_errors": dict(zip(("connect", "read", "write", "timeout"),
                                  map(int, socket_errors))),
    }


def run_wrk(procs, port, seconds, cpus, tls=False, close=False):
    """``close``: every request on a new connection (Connection: close)."""
    command = pinned(["wrk", "-t1", "-c%d" % CONNECTIONS, "-d%ds" % seconds, "--latency"]
                     + (["-H", "Connection: close"] if close else [])
                     + ["%s://%s:%d/" % ("https" if tls else "http", HOST, port)], cpus)
    proc = procs.start(command, stdout=subprocess.PIPE)
    try:
        output, _ = proc.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        raise BenchError("wrk did not finish within %ds" % (seconds + 30))
    finally:
        procs.stop(proc)
    if proc.returncode != 0:
        raise BenchError("wrk exited with code %d:\n%s" % (proc.returncode, output.decode()))
    return parse_wrk(output.decode())


def measure(procs, kind, workers, server_cpus, wrk_cpus, args, tls=None):
    """Start one server, warm it up, run wrk, stop it: wrk's figures plus the
    CPU used meanwhile by the server, by wrk and by everything else. With
    ``tls`` (cert, key): over HTTPS, and then the rate of new connections."""
    port = free_port()
    what = LABELS[kind]
    https = tls is not None
    server = procs.start(pinned(server_command(kind, workers, port, tls), server_cpus),
                         stdout=subprocess.DEVNULL)  # errors and warnings go to stderr
    try:
        wait_until_serving(server, port, what, tls=https)
        if args.warmup > 0:
            run_wrk(procs, port, args.warmup, wrk_cpus, tls=https)
        before, start = cpu_seconds(server.pid), time.monotonic()
        result = run_wrk(procs, port, args.seconds, wrk_cpus, tls=https)
        after, elapsed = cpu_seconds(server.pid), time.monotonic() - start
        server_cpu, wrk_cpu, machine_cpu = ((a - b) / elapsed for a, b in zip(after, before))
        # In cores: others = what the rest of the machine took meanwhile.
        result["cpu"] = (server_cpu, wrk_cpu, max(0.0, machine_cpu - server_cpu - wrk_cpu))
        if https:
            # On a shared machine the rates swing with the neighbours; the
            # server's CPU time per request or per connection swings less.
            result["us_per_request"] = server_cpu * 1e6 / result["rate"]
            before, start = cpu_seconds(server.pid), time.monotonic()
            fresh = run_wrk(procs, port, args.seconds, wrk_cpus, tls=True, close=True)
            after, elapsed = cpu_seconds(server.pid), time.monotonic() - start
            result["handshakes"] = fresh["rate"]
            result["us_per_connection"] = (after[0] - before[0]) / elapsed * 1e6 / fresh["rate"]
            result["handshake_errors"] = errors_of(fresh)
        if server.poll() is not None:
            raise BenchError("%s exited with code %d during the run"
                             % (what, server.returncode))
        return result
    finally:
        procs.stop(server)


# -- report -------------------------------------------------------------------------

def errors_of(result):
    parts = ["%d non-2xx" % result["non_2xx"]] if result["non_2xx"] else []
    sockets = ["%d %s" % (count, name) for name, count in result["socket_errors"].items()
               if count]
    if sockets:
        parts.append("socket errors: " + ", ".join(sockets))
    return "; ".join(parts)


def combine(turns):
    """One server's turns in a round: the medians of req/s, p99 and CPU,
    every error, and the req/s range. A failed turn fails the server."""
    for turn in turns:
        if "failed" in turn:
            return turn
    rates = [turn["rate"] for turn in turns]
    extra = {}
    if "handshakes" in turns[0]:
        for key in ("handshakes", "us_per_request", "us_per_connection"):
            extra[key] = statistics.median(turn[key] for turn in turns)
        extra["handshake_errors"] = "; ".join(t["handshake_errors"] for t in turns
                                              if t["handshake_errors"])
    return dict(extra, **{
        "rate": statistics.median(rates),
        "range": (min(rates), max(rates)),
        "p99_ms": statistics.median(turn["p99_ms"] for turn in turns),
        "cpu": [statistics.median(cpu) for cpu in zip(*(turn["cpu"] for turn in turns))],
        "non_2xx": sum(turn["non_2xx"] for turn in turns),
        "socket_errors": {name: sum(turn["socket_errors"][name] for turn in turns)
                          for name in turns[0]["socket_errors"]},
    })


def print_table(results, turns):
    spread = "  req/s range" if turns > 1 else ""
    print("  %-26s %8s %10s   %-22s%s  %s"
          % ("server", "req/s", "p99", "CPU: server  wrk other", spread, "errors"))
    for kind, result in results.items():
        if "failed" in result:
            print("  %-26s FAILED: %s" % (LABELS[kind], result["failed"]))
            continue
        low, high = result["range"]
        print("  %-26s %8s %8.2fms      %5.2f %5.2f %5.2f%s  %s"
              % (LABELS[kind], format(round(result["rate"]), ","), result["p99_ms"],
                 *result["cpu"], "  %6.0f-%-6.0f" % (low, high) if turns > 1 else "",
                 errors_of(result) or "none"))
        if "handshakes" in result:
            print("  %-26s %8s new TLS connections/s (Connection: close)%s"
                  % ("", format(round(result["handshakes"]), ","),
                     "; errors: " + result["handshake_errors"]
                     if result["handshake_errors"] else ""))
            print("  %-26s server CPU: %.0f us per keep-alive request, %.0f us per new "
                  "connection" % ("", result["us_per_request"], result["us_per_connection"]))


def print_ratios(results):
    ours = results.get("gswoole", {})
    if "rate" not in ours:
        print("  no ratios: gswoole has no figures")
        return
    print()
    for kind, result in results.items():
        if kind != "gswoole" and "rate" in result:
            print("  gswoole/%-17s req/s %5.2fx   p99 %5.2fx%s"
                  % (kind, ours["rate"] / result["rate"], ours["p99_ms"] / result["p99_ms"],
                     "   new TLS connections/s %5.2fx   CPU per request %5.2fx   per connection "
                     "%5.2fx" % (ours["handshakes"] / result["handshakes"],
                                 ours["us_per_request"] / result["us_per_request"],
                                 ours["us_per_connection"] / result["us_per_connection"])
                     if result.get("handshakes") and "handshakes" in ours else ""))
    print()
    targets = (  # peer, figure, sense, what
        ("uvicorn", "rate", ">=", "req/s per core"),
        ("gunicorn", "p99_ms", "<=", "p99 latency"),
    )
    for peer, figure, sense, what in targets:
        label = "target: gswoole %s %s %s's" % (what, sense, peer)
        if "rate" not in results.get(peer, {}):
            print("  %-46s  n/a (%s has no figures)" % (label, peer))
            continue
        ratio = ours[figure] / results[peer][figure]
        met = ratio >= 1.0 if sense == ">=" else ratio <= 1.0
        print("  %-46s  %5.2fx  %s" % (label, ratio, "met" if met else "MISSED"))


def run_round(procs, name, args):
    workers, server_cpus, wrk_cpus = ROUNDS[name]
    if server_cpus is not None and len(os.sched_getaffinity(0)) < 2:
        server_cpus = wrk_cpus = None
    where = ("server on CPU %s, wrk on CPU %s" % (server_cpus, wrk_cpus)
             if server_cpus is not None else "nothing pinned")
    print("\n== %s%d worker%s, %s ==" % ("HTTPS, " if name == "tls" else "", workers,
                                         "" if workers == 1 else "s", where), flush=True)
    tls = folder = None
    if name == "tls":
        kinds = list(TLS_SERVERS)
        folder = tempfile.mkdtemp(prefix="gswoole-bench-")
        tls = make_certificate(folder)
    else:
        kinds = [kind for kind in SERVERS if workers == 1 or kind != "pywsgi"]
    turns = {kind: [] for kind in kinds}
    try:
        for _ in range(args.turns):  # in turn, so that a busy spell hits them alike
            for kind in kinds:
                try:
                    turns[kind].append(measure(procs, kind, workers, server_cpus, wrk_cpus,
                                               args, tls))
                except BenchError as exc:
                    turns[kind].append({"failed": str(exc)})
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
    results = {kind: combine(runs) for kind, runs in turns.items()}
    print_table(results, args.turns)
    print_ratios(results)
    # Peers' own errors (gunicorn's wrk timeouts, say) are shown, not failed on.
    return (all("failed" not in result for result in results.values())
            and not errors_of(results["gswoole"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per server")
    parser.add_argument("--warmup", type=int, default=1, help="wrk warm-up per server (s)")
    parser.add_argument("--rounds", choices=("one", "two", "both", "tls", "all"),
                        default="all",
                        help="one worker pinned, two workers unpinned, both of these, "
                             "HTTPS with one worker pinned, or all three")
    parser.add_argument("--turns", type=int, default=1,
                        help="measure each server this many times per round, taking "
                             "turns; the medians are printed (default 1)")
    args = parser.parse_args()

    def stop_on_sigterm(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    procs = Processes()
    try:
        install_missing()
        print("wrk -t1 -c%d -d%ds --latency (after a %ds warm-up), GET / -> 200 text/plain "
              "%r, keep-alive%s" % (CONNECTIONS, args.seconds, args.warmup, BODY.decode(),
                                    "; median of %d turns" % args.turns if args.turns > 1 else ""))
        print(versions() + "; %d CPUs" % os.cpu_count())
        rounds = {"both": ("one", "two"), "all": ("one", "two", "tls")}.get(
            args.rounds, (args.rounds,))
        clean = all([run_round(procs, name, args) for name in rounds])
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BenchError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
    if not clean:
        print("\na server FAILED, or gswoole had errors (see above)")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())

"""HTTP benchmark: gswoole against granian (WSGI), bjoern, uvicorn (httptools
+ uvloop), gunicorn -k gevent and gevent.pywsgi, measured with wrk.

    python bench/http.py [--seconds 5] [--rounds ROUNDS] [--turns 1] [--markdown]

ROUNDS is one of one, two, close, io, tls, or a comma-separated list of
them (``one,io``), or ``both`` (one and two) or ``all`` (the default).

Every hello-world server answers GET / with 200, text/plain, "Hello, World!"
(13 bytes) (apps in bench/http_apps.py). For each server: a 1 s wrk warm-up,
then ``wrk -t1 -c64 -d<seconds>s --latency``; printed are req/s, the 99th
percentile latency, the CPU the server's processes used per request (their
utime + stime over the run, divided by the requests: steadier than the rates
on a shared machine) and the CPU taken by wrk and by everything else; then
the ratios gswoole/peer and issue 10's targets as met or MISSED.

Round "one": one worker, keep-alive, the server pinned to CPU 0 and wrk to
CPU 1. Round "two": two workers, nothing pinned; pywsgi has no workers and
sits it out; bjoern runs as two processes sharing the port (SO_REUSEPORT).
Round "close": as round one, but wrk sends ``Connection: close``, so every
request comes on a new connection. Round "io": one worker pinned as in round
one, an app that waits 20 ms per request (a database call), ``wrk -t2
-c256``: gswoole, granian (``--blocking-threads 256``: a thread for every
connection), uvicorn with an async app and gunicorn -k gevent; the ideal,
256 / 0.020 s = 12,800 req/s, is printed beside them. Round "tls": HTTPS, one
worker pinned as in round one, gswoole (gswoole-serve --certfile) against
uvicorn (--ssl-certfile) and granian (--ssl-certificate, WSGI), keep-alive;
then a second wrk run with ``Connection: close`` gives the rate of new TLS
connections (one handshake per request) and the server's CPU time per new
connection beside it. The certificate is made with trustme for the run.

With --turns N the servers take N turns each and the medians are printed.
With --markdown each round's table is printed again as Markdown, with the
command line, for README.md. wrk and libev-dev (bjoern builds on it) are
installed with apt-get, and gunicorn, uvicorn, uvloop, httptools, granian,
bjoern and trustme with pip, when missing. The exit status is 1 when a
server fails or gswoole has wrk errors (a peer's errors are only shown).
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
BODY = b"Hello, World!"
IO_WAIT = 0.020  # bench.http_apps.IO_WAIT: the I/O-bound apps' wait per request
PEERS = ("gunicorn", "uvicorn", "uvloop", "httptools", "granian", "bjoern",
         "trustme")  # pip may install
HTTP_SERVERS = ("gswoole", "granian", "bjoern", "uvicorn", "gunicorn", "pywsgi")
LABELS = {"gswoole": "gswoole", "granian": "granian (WSGI)", "bjoern": "bjoern",
          "uvicorn": "uvicorn httptools+uvloop", "gunicorn": "gunicorn -k gevent",
          "pywsgi": "gevent.pywsgi"}
IO_LABELS = dict(LABELS, uvicorn="uvicorn (async app)")
GRANIAN_IO_THREADS = 256  # = the io round's connections: the pool never makes one wait


class Round:
    """One round: who is measured, how the load comes, and issue 10's
    targets as (peer, figure, sense, factor): gswoole's figure over the
    peer's must be >= (or <=) the factor."""

    def __init__(self, title, servers, workers=1, pinned=True, connections=64, threads=1,
                 close=False, io=False, tls=False, targets=()):
        self.title, self.servers, self.workers = title, servers, workers
        self.server_cpus, self.wrk_cpus = ("0", "1") if pinned else (None, None)
        self.connections, self.threads = connections, threads
        self.close, self.io, self.tls, self.targets = close, io, tls, targets

    @property
    def ideal(self):
        """The I/O-bound round's ceiling: every connection waiting IO_WAIT."""
        return self.connections / IO_WAIT if self.io else None


ROUNDS = {
    "one": Round("keep-alive, 1 worker", HTTP_SERVERS, targets=(
        ("granian", "rate", ">=", 1.15), ("granian", "p99_ms", "<=", 1.5),
        ("uvicorn", "rate", ">=", 1.0), ("gunicorn", "p99_ms", "<=", 1.0))),
    "two": Round("keep-alive, 2 workers",  # pywsgi has no workers
                 tuple(kind for kind in HTTP_SERVERS if kind != "pywsgi"), workers=2, pinned=False,
                 targets=(("granian", "rate", ">=", 1.0), ("uvicorn", "rate", ">=", 1.0),
                          ("gunicorn", "p99_ms", "<=", 1.0))),
    "close": Round("Connection: close (a new connection per request), 1 worker",
                   HTTP_SERVERS, close=True),
    "io": Round("I/O-bound: the app waits %d ms per request, 1 worker" % (IO_WAIT * 1000),
                ("gswoole", "granian", "uvicorn", "gunicorn"), connections=256, threads=2,
                io=True),
    "tls": Round("HTTPS, keep-alive, 1 worker", ("gswoole", "uvicorn", "granian"), tls=True,
                 targets=(("uvicorn", "rate", ">=", 1.0),)),
}
ROUND_SETS = {"both": ("one", "two"), "all": ("one", "two", "close", "io", "tls")}
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    pass


def server_command(kind, workers, port, tls=None, io=False):
    """The command line of one server; ``tls`` = (certfile, keyfile) for
    HTTPS; ``io``: serve the I/O-bound app instead of hello world."""
    python = [sys.executable, "-m"]
    bind = "%s:%d" % (HOST, port)
    wsgi = "bench.http_apps:" + ("wsgi_io_app" if io else "wsgi_app")
    if kind == "gswoole":
        return python + ["gswoole", wsgi, "--bind", bind,
                         "--workers", str(workers), "--log-level", "warning"] + \
            (["--certfile", tls[0], "--keyfile", tls[1]] if tls else [])
    if kind == "granian":
        return python + ["granian", "--interface", "wsgi", "--host", HOST, "--port", str(port),
                         "--workers", str(workers), "--log-level", "warning"] + \
            (["--blocking-threads", str(GRANIAN_IO_THREADS)] if io else []) + \
            (["--ssl-certificate", tls[0], "--ssl-keyfile", tls[1]] if tls else []) + [wsgi]
    if kind == "bjoern":
        return python + ["bench.http_apps", "bjoern", bind, str(workers)]
    if kind == "gunicorn":
        return python + ["gunicorn", "-k", "gevent", "--workers", str(workers), "--bind", bind,
                         "--log-level", "warning", wsgi]
    if kind == "pywsgi":
        return python + ["bench.http_apps", "pywsgi", bind]
    if kind == "uvicorn":
        return python + ["uvicorn", "bench.http_apps:" + ("asgi_io_app" if io else "asgi_app"),
                         "--host", HOST, "--port", str(port), "--workers", str(workers),
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


def apt_get_install(package, present):
    """Install a Debian package unless ``present()`` already says it is there."""
    if present():
        return
    print("%s not found: installing it with apt-get" % package, flush=True)
    if run_visibly(["apt-get", "install", "-y", package]) != 0:
        run_visibly(["apt-get", "update"])
        run_visibly(["apt-get", "install", "-y", package])
    if not present():
        raise BenchError("%s is missing and apt-get could not install it" % package)


def install_missing():
    apt_get_install("wrk", lambda: shutil.which("wrk") is not None)
    missing = [name for name in PEERS if importlib.util.find_spec(name) is None]
    if "bjoern" in missing:  # pip builds it against libev's headers
        apt_get_install("libev-dev", lambda: os.path.exists("/usr/include/ev.h"))
    if missing:
        print("not importable: %s; installing with pip" % ", ".join(missing), flush=True)
        if run_visibly([sys.executable, "-m", "pip", "install"] + missing) != 0:
            raise BenchError("pip could not install %s" % ", ".join(missing))
        importlib.invalidate_caches()


def versions():
    names = ["gevent", "granian", "bjoern", "uvicorn", "uvloop", "httptools", "gunicorn"]
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
    requests = number(r"^\s*(\d+) requests in ")
    p99 = number(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$")
    if rate is None or p99 is None or requests is None:
        raise BenchError("could not read wrk's output:\n" + output)
    socket_errors = number(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                           r"timeout (\d+)", ("0", "0", "0", "0"))
    return {
        "rate": float(rate[0]),
        "requests": int(requests[0]),
        "p99_ms": float(p99[0]) * _UNITS[p99[1]],
        "non_2xx": int(number(r"Non-2xx or 3xx responses: (\d+)", ("0",))[0]),
        "socket_errors": dict(zip(("connect", "read", "write", "timeout"),
                                  map(int, socket_errors))),
    }


def run_wrk(procs, port, seconds, spec, close=None):
    """wrk as round ``spec`` loads a server; ``close`` (default: the
    round's): every request on a new connection (Connection: close)."""
    close = spec.close if close is None else close
    command = pinned(["wrk", "-t%d" % spec.threads, "-c%d" % spec.connections,
                      "-d%ds" % seconds, "--latency"]
                     + (["-H", "Connection: close"] if close else [])
                     + ["%s://%s:%d/" % ("https" if spec.tls else "http", HOST, port)],
                     spec.wrk_cpus)
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


def loaded(procs, server, port, seconds, spec, close=None):
    """One wrk run, with the CPU the server's process group, wrk and the rest
    of the machine took meanwhile (in cores), and the server's CPU time per
    request (its CPU seconds over wrk's count of requests, in us)."""
    before, start = cpu_seconds(server.pid), time.monotonic()
    result = run_wrk(procs, port, seconds, spec, close)
    after, elapsed = cpu_seconds(server.pid), time.monotonic() - start
    server_cpu, wrk_cpu, machine_cpu = ((a - b) / elapsed for a, b in zip(after, before))
    result["cpu"] = (server_cpu, wrk_cpu, max(0.0, machine_cpu - server_cpu - wrk_cpu))
    # On a shared machine the rates swing with the neighbours; the server's
    # CPU time per request swings less.
    result["us_per_request"] = (after[0] - before[0]) * 1e6 / max(1, result["requests"])
    return result


def measure(procs, kind, spec, args, tls=None):
    """Start one server as round ``spec`` has it, warm it up, run wrk, stop
    it: wrk's figures and the CPU used meanwhile. With ``tls`` (cert, key):
    over HTTPS, and then the rate of new connections and their CPU cost."""
    port = free_port()
    what = LABELS[kind]
    command = server_command(kind, spec.workers, port, tls, io=spec.io)
    server = procs.start(pinned(command, spec.server_cpus),
                         stdout=subprocess.DEVNULL)  # errors and warnings go to stderr
    try:
        wait_until_serving(server, port, what, tls=spec.tls)
        if args.warmup > 0:
            run_wrk(procs, port, args.warmup, spec)
        result = loaded(procs, server, port, args.seconds, spec)
        if spec.tls:
            fresh = loaded(procs, server, port, args.seconds, spec, close=True)
            result["handshakes"] = fresh["rate"]
            result["us_per_connection"] = fresh["us_per_request"]
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
        for key in ("handshakes", "us_per_connection"):
            extra[key] = statistics.median(turn[key] for turn in turns)
        extra["handshake_errors"] = "; ".join(t["handshake_errors"] for t in turns
                                              if t["handshake_errors"])
    return dict(extra, **{
        "rate": statistics.median(rates),
        "range": (min(rates), max(rates)),
        "p99_ms": statistics.median(turn["p99_ms"] for turn in turns),
        "us_per_request": statistics.median(turn["us_per_request"] for turn in turns),
        "cpu": [statistics.median(cpu) for cpu in zip(*(turn["cpu"] for turn in turns))],
        "non_2xx": sum(turn["non_2xx"] for turn in turns),
        "socket_errors": {name: sum(turn["socket_errors"][name] for turn in turns)
                          for name in turns[0]["socket_errors"]},
    })


def labels_of(spec):
    return IO_LABELS if spec.io else LABELS


def print_table(results, spec, turns):
    labels = labels_of(spec)
    spread = "  req/s range" if turns > 1 else ""
    ideal = "  of ideal" if spec.ideal else ""
    print("  %-26s %8s %10s %12s%s   %-21s%s  %s"
          % ("server", "req/s", "p99", "CPU/request", ideal, "CPU: server  wrk other",
             spread, "errors"))
    for kind, result in results.items():
        if "failed" in result:
            print("  %-26s FAILED: %s" % (labels[kind], result["failed"]))
            continue
        low, high = result["range"]
        print("  %-26s %8s %8.2fms %10.1fus%s      %5.2f %5.2f %5.2f%s  %s"
              % (labels[kind], format(round(result["rate"]), ","), result["p99_ms"],
                 result["us_per_request"],
                 "  %7.0f%%" % (100 * result["rate"] / spec.ideal) if spec.ideal else "",
                 *result["cpu"], "  %6.0f-%-6.0f" % (low, high) if turns > 1 else "",
                 errors_of(result) or "none"))
        if "handshakes" in result:
            print("  %-26s %8s new TLS connections/s (Connection: close), server CPU "
                  "%.0f us per new connection%s"
                  % ("", format(round(result["handshakes"]), ","), result["us_per_connection"],
                     "; errors: " + result["handshake_errors"]
                     if result["handshake_errors"] else ""))
    if spec.ideal:
        print("  %-26s %8s  (%d connections each waiting %d ms: the ceiling)"
              % ("ideal", format(round(spec.ideal), ","), spec.connections, IO_WAIT * 1000))


def print_ratios(results, spec):
    ours = results.get("gswoole", {})
    if "rate" not in ours:
        print("  no ratios: gswoole has no figures")
        return
    print()
    for kind, result in results.items():
        if kind != "gswoole" and "rate" in result:
            print("  gswoole/%-10s req/s %5.2fx   p99 %5.2fx   CPU per request %5.2fx%s"
                  % (kind, ours["rate"] / result["rate"], ours["p99_ms"] / result["p99_ms"],
                     ours["us_per_request"] / result["us_per_request"],
                     "   new TLS connections/s %5.2fx   CPU per new connection %5.2fx"
                     % (ours["handshakes"] / result["handshakes"],
                        ours["us_per_connection"] / result["us_per_connection"])
                     if result.get("handshakes") and ours.get("handshakes") else ""))
    if spec.targets:
        print()
    names = {"rate": "req/s", "p99_ms": "p99 latency"}
    for peer, figure, sense, factor in spec.targets:
        label = "target: gswoole %s %s %s%s's" % (
            names[figure], sense, "%gx " % factor if factor != 1 else "", peer)
        if "rate" not in results.get(peer, {}):
            print("  %-46s  n/a (%s has no figures)" % (label, peer))
            continue
        ratio = ours[figure] / results[peer][figure]
        met = ratio >= factor if sense == ">=" else ratio <= factor
        print("  %-46s  %5.2fx  %s" % (label, ratio, "met" if met else "MISSED"))


def markdown_table(results, spec):
    """The round's table as Markdown (for README.md), failed servers left out."""
    labels = labels_of(spec)
    lines = ["| server | req/s | p99 | server CPU per request |%s" % (
        " of ideal |" if spec.ideal else ""), "|---|---|---|---|%s" % (
        "---|" if spec.ideal else "")]
    for kind, result in results.items():
        if "rate" not in result:
            continue
        name = "**gswoole**" if kind == "gswoole" else labels[kind]
        lines.append("| %s | %s | %s ms | %.1f µs |%s" % (
            name, format(round(result["rate"]), ","), format_ms(result["p99_ms"]),
            result["us_per_request"],
            " %.0f%% |" % (100 * result["rate"] / spec.ideal) if spec.ideal else ""))
    if spec.ideal:
        lines.append("| ideal (%d connections / %d ms) | %s | | | 100%% |" % (
            spec.connections, IO_WAIT * 1000, format(round(spec.ideal), ",")))
    return "\n".join(lines)


def format_ms(ms):
    return "%.0f" % ms if ms >= 100 else "%.1f" % ms if ms >= 10 else "%.2f" % ms


def describe(name, spec):
    where = ("server on CPU %s, wrk on CPU %s" % (spec.server_cpus, spec.wrk_cpus)
             if spec.server_cpus is not None else "nothing pinned")
    load = "wrk -t%d -c%d%s" % (spec.threads, spec.connections,
                                " -H 'Connection: close'" if spec.close else "")
    return "round %s: %s; %s; %s" % (name, spec.title, load, where)


def run_round(procs, name, args):
    """Measure every server of round ``name``; return (clean, results)."""
    spec = ROUNDS[name]
    if spec.server_cpus is not None and len(os.sched_getaffinity(0)) < 2:
        spec.server_cpus = spec.wrk_cpus = None
    print("\n== %s ==" % describe(name, spec), flush=True)
    if "bjoern" in spec.servers and spec.workers > 1:
        print("  bjoern has no workers: it runs as %d processes listening on the port "
              "with SO_REUSEPORT" % spec.workers)
    if spec.workers > 1 and "pywsgi" not in spec.servers:
        print("  gevent.pywsgi has no workers and sits this round out")
    if spec.io:
        print("  granian runs the app in %d blocking threads (--blocking-threads); gswoole "
              "and gunicorn -k gevent monkey-patch time.sleep; uvicorn's app awaits "
              "asyncio.sleep" % GRANIAN_IO_THREADS)
    tls = folder = None
    if spec.tls:
        folder = tempfile.mkdtemp(prefix="gswoole-bench-")
        tls = make_certificate(folder)
    turns = {kind: [] for kind in spec.servers}
    try:
        for _ in range(args.turns):  # in turn, so that a busy spell hits them alike
            for kind in spec.servers:
                try:
                    turns[kind].append(measure(procs, kind, spec, args, tls))
                except BenchError as exc:
                    turns[kind].append({"failed": str(exc)})
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
    results = {kind: combine(runs) for kind, runs in turns.items()}
    print_table(results, spec, args.turns)
    print_ratios(results, spec)
    # Peers' own errors (gunicorn's wrk timeouts, say) are shown, not failed on.
    clean = (all("failed" not in result for result in results.values())
             and not errors_of(results["gswoole"]))
    return clean, results


def rounds_of(text):
    names = []
    for part in text.split(","):
        part = part.strip()
        for name in ROUND_SETS.get(part, (part,)):
            if name not in ROUNDS:
                raise argparse.ArgumentTypeError(
                    "unknown round %r (choose from %s)"
                    % (part, ", ".join(list(ROUNDS) + list(ROUND_SETS))))
            if name not in names:
                names.append(name)
    return names


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per server")
    parser.add_argument("--warmup", type=int, default=1, help="wrk warm-up per server (s)")
    parser.add_argument("--rounds", type=rounds_of, default="all",
                        metavar="ROUNDS",
                        help="one (keep-alive, 1 worker pinned), two (2 workers unpinned), "
                             "close (Connection: close, 1 worker pinned), io (20 ms app, "
                             "256 connections, 1 worker pinned), tls (HTTPS, 1 worker "
                             "pinned); comma-separated, or both (one,two) or all "
                             "(the default)")
    parser.add_argument("--turns", type=int, default=1,
                        help="measure each server this many times per round, taking "
                             "turns; the medians are printed (default 1)")
    parser.add_argument("--markdown", action="store_true",
                        help="at the end, print each round's table as Markdown with "
                             "the command line (for README.md)")
    args = parser.parse_args()

    def stop_on_sigterm(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    procs = Processes()
    tables = []
    try:
        install_missing()
        print("wrk -d%ds --latency (after a %ds warm-up), GET / -> 200 text/plain %r%s"
              % (args.seconds, args.warmup, BODY.decode(),
                 "; median of %d turns" % args.turns if args.turns > 1 else ""))
        print(versions() + "; %d CPUs" % os.cpu_count())
        clean = True
        for name in args.rounds:
            round_clean, results = run_round(procs, name, args)
            clean = clean and round_clean
            tables.append((name, results))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BenchError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
    if args.markdown:
        print("\n-- Markdown: `python bench/http.py %s`, %s, %s\n"
              % (" ".join(sys.argv[1:]), time.strftime("%Y-%m-%d"), versions()))
        for name, results in tables:
            print("%s\n\n%s\n" % (describe(name, ROUNDS[name]),
                                  markdown_table(results, ROUNDS[name])))
    if not clean:
        print("\na server FAILED, or gswoole had errors (see above)")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())

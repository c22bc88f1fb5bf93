"""Echo benchmark: gswoole with one worker against gevent's StreamServer.

    python bench/echo.py [--seconds 5] [--bulk-mib 256] [--idle 10000]

Measures round trips (64 connections, one 64-byte message in flight each),
bulk throughput (one connection streaming --bulk-mib MiB) and the worker's
resident memory per idle connection, and prints them next to the targets.
The servers run pinned to one CPU, the load generator (bench/_load.py) in its
own process pinned to the other; the servers take turns under the same load.
"""

import argparse
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SERVERS = ("gswoole", "streamserver")
LABELS = {"gswoole": "gswoole", "streamserver": "StreamServer", "epoll": "bare epoll"}
TARGETS = (  # label, phase, figure, target ratio gswoole/StreamServer, sense
    ("round trips/s", "rt", "rate", 1.5, ">="),
    ("bulk MB/s", "bulk", "mbps", 1.0, ">="),
    ("idle RSS/conn (B)", "idle", "per_conn", 1.5, "<="),
)


class BenchError(Exception):
    pass


class Processes:
    """Every process the benchmark starts, each in its own session, so that
    stopping one also reaches the workers it forked."""

    def __init__(self):
        self.running = []

    def start(self, script, *args, **popen):
        proc = subprocess.Popen([sys.executable, os.path.join(HERE, script)] + list(args),
                                start_new_session=True, **popen)
        self.running.append(proc)
        return proc

    def stop(self, proc):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group this process leads
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream:
                stream.close()
        self.running.remove(proc)

    def stop_all(self):
        for proc in list(self.running):
            self.stop(proc)


def read_line(proc, timeout, what):
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else b""
    if not line:
        code = proc.poll()
        raise BenchError("%s: no output within %ss" % (what, timeout) if code is None
                         else "%s: exited with code %d (its error is above)" % (what, code))
    return line.decode()


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise BenchError("no VmRSS for pid %d" % pid)


class Server:
    """One echo server process, up and answering, pinned to ``core``."""

    def __init__(self, procs, kind, core):
        self.kind = kind
        self.proc = procs.start("_servers.py", kind, *core_args("--core", core),
                                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            self._check_up(core)
        except BaseException:
            procs.stop(self.proc)
            raise

    def _check_up(self, core):
        self.port = int(read_line(self.proc, 15, LABELS[self.kind] + " server"))
        self.worker = self.proc.pid
        if self.kind == "gswoole":
            workers = children(self.proc.pid)
            if len(workers) != 1:
                raise BenchError("gswoole master %d has children %s, expected one worker"
                                 % (self.proc.pid, workers))
            self.worker = workers[0]
        if core is not None:
            for pid in {self.proc.pid, self.worker}:
                os.sched_setaffinity(pid, {core})
        # One echo before anything is measured: the worker is up and serving.
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(b"ping")
            if sock.recv(16) != b"ping":
                raise BenchError("%s server did not echo" % LABELS[self.kind])


def core_args(flag, core):
    return [] if core is None else [flag, str(core)]


class Bench:
    def __init__(self, args, procs):
        self.args = args
        self.procs = procs
        cores = sorted(os.sched_getaffinity(0))
        self.load_core, self.server_core = (cores[0], cores[1]) if len(cores) >= 2 else (None, None)

    def servers(self, kinds):
        servers = []
        try:
            for kind in kinds:
                servers.append(Server(self.procs, kind, self.server_core))
        except BaseException:
            self.stop(servers)
            raise
        return servers

    def stop(self, servers):
        for server in servers:
            self.procs.stop(server.proc)

    def load(self, mode, servers, *args, timeout):
        """Run the load generator against ``servers``; returns its result per server."""
        ports = ",".join(str(s.port) for s in servers)
        proc = self.procs.start("_load.py", mode, ports, *core_args("--core", self.load_core),
                                *core_args("--server-core", self.server_core), *args,
                                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError("load generator (%s) took over %ss" % (mode, timeout)) from None
        finally:
            self.procs.stop(proc)
        if proc.returncode:
            raise BenchError("load generator (%s) failed with exit code %d (its error is above)"
                             % (mode, proc.returncode))
        return dict(zip((s.kind for s in servers), json.loads(out.decode().splitlines()[-1])))

    def round_trips(self):
        servers = self.servers(("epoll",) + SERVERS)
        try:
            return self.load("rt", servers, "--seconds", str(self.args.seconds),
                             "--warmup", str(self.args.warmup),
                             timeout=3 * (self.args.seconds + self.args.warmup) + 60)
        finally:
            self.stop(servers)

    def bulk(self):
        servers = self.servers(SERVERS)
        try:
            return self.load("bulk", servers, "--mib", str(self.args.bulk_mib),
                             "--rounds", str(self.args.bulk_rounds),
                             # each turn at 100 MB/s or worse, or failing after 3 s
                             timeout=2 * (self.args.bulk_rounds + 1)
                             * (self.args.bulk_mib / 95 + 3) + 30)
        finally:
            self.stop(servers)

    def idle(self, kind):
        """Worker RSS growth per connection, on a fresh server."""
        servers = self.servers((kind,))
        try:
            worker = servers[0].worker
            before = rss_bytes(worker)
            load = self.procs.start("_load.py", "idle", str(servers[0].port),
                                    "--conns", str(self.args.idle),
                                    *core_args("--core", self.load_core),
                                    stdout=subprocess.PIPE, stdin=subprocess.PIPE)
            try:
                opened = json.loads(read_line(load, 120, "idle connections"))["open"]
                after = rss_bytes(worker)
            finally:
                self.procs.stop(load)
            return {"per_conn": (after - before) / opened, "before": before, "after": after}
        finally:
            self.stop(servers)


def attempt(what, fn):
    """Run one measurement; a failure is printed and leaves no figure."""
    try:
        return fn()
    except (BenchError, OSError, ValueError) as exc:
        print("  %s FAILED: %s" % (what, exc))
        return None


def percent(x):
    return "?" if x is None else "%.0f%%" % (100 * x)


def failures(results, phase):
    """True if a server has no figure for ``phase``, or erred in some of its turns."""
    return any(not results.get(phase, {}).get(kind) or results[phase][kind].get("errors")
               for kind in SERVERS)


def summary(results):
    row = "%-19s %12s %13s %8s %9s  %s"
    lines = [row % ("", "gswoole", "StreamServer", "ratio", "target", "")]
    for label, phase, figure, target, sense in TARGETS:
        values = [(results.get(phase, {}).get(kind) or {}).get(figure) for kind in SERVERS]
        cells = ["-" if v is None else "{:,.0f}".format(v) for v in values]
        ratio_cell, verdict = "-", ""
        if None not in values and values[1] > 0:
            ratio = values[0] / values[1]
            met = ratio >= target if sense == ">=" else ratio <= target
            ratio_cell, verdict = "%.2fx" % ratio, "ok" if met else "MISSED"
        if failures(results, phase):
            verdict = "FAILED (see above)"
        lines.append(row % (label, cells[0], cells[1], ratio_cell,
                            "%s %.1fx" % (sense, target), verdict))
    return "\n".join(lines)


def run(bench, args, results):
    print("\nround trips: 64 connections x 64 B, %g s per server after %g s warm-up, "
          "the servers taking turns" % (args.seconds, args.warmup))
    rt = attempt("round trips", bench.round_trips)
    if rt:
        results["rt"] = rt
        for kind, r in rt.items():
            print("  {:<13} {:>10,.0f} round trips/s  (server CPU busy {}, generator busy {})"
                  .format(LABELS[kind], r["rate"], percent(r["server_cpu"]),
                          percent(r["busy"])))
        ceiling = rt["epoll"]
        if bench.load_core is not None and ceiling["busy"]:
            print("  load generator ceiling ~{:,.0f} round trips/s (its rate against the bare "
                  "epoll echo / the share of time it was busy)"
                  .format(ceiling["rate"] / ceiling["busy"]))

    print("\nbulk: one connection streaming %d MiB, median of %d turns"
          % (args.bulk_mib, args.bulk_rounds))
    bulk = attempt("bulk", bench.bulk)
    if bulk:
        results["bulk"] = bulk
        for kind, r in bulk.items():
            if r["runs"]:
                print("  {:<13} {:>10,.0f} MB/s  (server CPU busy {}, generator CPU busy {}; "
                      "turns {})".format(LABELS[kind], r["mbps"], percent(r["server_cpu"]),
                                         percent(r["busy"]),
                                         " ".join("%.0f" % x for x in r["runs"])))
            for error in r["errors"]:
                print("  {:<13} FAILED: {}".format(LABELS[kind], error))

    print("\nidle: %d connections to one worker, each echoed once" % args.idle)
    results["idle"] = {}
    for kind in SERVERS:
        r = attempt(LABELS[kind] + " idle", lambda: bench.idle(kind))
        if r:
            results["idle"][kind] = r
            print("  {:<13} {:>10,.0f} B per connection  (worker RSS {:.1f} -> {:.1f} MiB)"
                  .format(LABELS[kind], r["per_conn"], r["before"] / 2**20, r["after"] / 2**20))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="measured round-trip time per server (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="unmeasured round trips per server first (default 1)")
    parser.add_argument("--bulk-mib", type=int, default=256,
                        help="MiB streamed through each server per turn (default 256)")
    parser.add_argument("--bulk-rounds", type=int, default=10,
                        help="bulk turns per server; the median counts (default 10)")
    parser.add_argument("--idle", type=int, default=10000,
                        help="idle connections for the memory figure (default 10000)")
    args = parser.parse_args()
    # Progress lines must not sit in a pipe's buffer behind the servers' stderr.
    sys.stdout.reconfigure(line_buffering=True)
    # SIGTERM should clean up like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    procs = Processes()
    bench = Bench(args, procs)
    if bench.load_core is None:
        print("only one CPU available: load generator and servers share it")
    else:
        print("load generator on CPU %d, servers on CPU %d" % (bench.load_core, bench.server_core))
    results = {}
    started = time.monotonic()
    try:
        run(bench, args, results)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
    print("\nsummary (%.0f s)" % (time.monotonic() - started))
    print(summary(results))
    return 1 if any(failures(results, phase) for _, phase, *_ in TARGETS) else 0


if __name__ == "__main__":
    sys.exit(main())

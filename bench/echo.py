"""Echo benchmark: gswoole with one worker against gevent's StreamServer.

    python bench/echo.py [--seconds 5] [--pipeline 4] [--bulk-mib 256] [--idle 10000]

Measures round trips (64 connections, one 64-byte message in flight each),
the same over a length-framed echo (4-byte big-endian length + 64-byte body:
gswoole's open_length_check against the framing done by hand on the
StreamServer), once with one packet per write and once with --pipeline
packets per write, bulk throughput (one connection streaming --bulk-mib MiB)
and the worker's resident memory per idle connection, and prints them next to
the targets.
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
FRAMED_TARGET = 1.0


def targets(pipeline):
    """(label, phase, figure, target ratio gswoole/StreamServer, sense) per row."""
    rows = [("round trips/s", "rt", "rate", 1.5, ">="),
            ("framed round trips/s", "frt", "rate", FRAMED_TARGET, ">=")]
    if pipeline > 1:
        rows.append(("framed x%d packets/s" % pipeline, "frt%d" % pipeline, "packets",
                     FRAMED_TARGET, ">="))
    rows += [("bulk MB/s", "bulk", "mbps", 1.0, ">="),
             ("idle RSS/conn (B)", "idle", "per_conn", 1.5, "<=")]
    return rows


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
    """One echo server process, up and answering, pinned to ``core``;
    ``framed``: the length-framed echo."""

    def __init__(self, procs, kind, core, framed=False):
        self.kind = kind
        self.framed = framed
        self.proc = procs.start("_servers.py", kind, *core_args("--core", core),
                                *(["--framed"] if framed else []),
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
        ping = b"\0\0\0\4ping" if self.framed else b"ping"
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(ping)
            echo = b""
            while len(echo) < len(ping):
                data = sock.recv(16)
                if not data:
                    break
                echo += data
            if echo != ping:
                raise BenchError("%s server did not echo" % LABELS[self.kind])


def core_args(flag, core):
    return [] if core is None else [flag, str(core)]


class Bench:
    def __init__(self, args, procs):
        self.args = args
        self.procs = procs
        cores = sorted(os.sched_getaffinity(0))
        self.load_core, self.server_core = (cores[0], cores[1]) if len(cores) >= 2 else (None, None)

    def servers(self, kinds, framed=False):
        servers = []
        try:
            for kind in kinds:
                servers.append(Server(self.procs, kind, self.server_core, framed))
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

    def framed_servers(self):
        return self.servers(("epoll",) + SERVERS, framed=True)

    def framed(self, servers, pipeline, check):
        """Framed round trips, ``pipeline`` packets per write; ``check``: the
        load generator first checks each server's framed echo."""
        return self.load("frt", servers, "--pipeline", str(pipeline),
                         *(["--check"] if check else []),
                         "--seconds", str(self.args.seconds), "--warmup", str(self.args.warmup),
                         timeout=3 * (self.args.seconds + self.args.warmup) + 60)

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


def print_round_trips(results, bench, unit="round trips/s", pipeline=1):
    for kind, r in results.items():
        extra = "" if pipeline == 1 else " = {:,.0f} round trips/s".format(r["rate"])
        print("  {:<13} {:>10,.0f} {}{}  (server CPU busy {}, generator busy {})"
              .format(LABELS[kind], r["rate"] * pipeline, unit, extra,
                      percent(r["server_cpu"]), percent(r["busy"])))
        for error in r.get("errors", ()):
            print("  {:<13} FAILED: {}".format(LABELS[kind], error))
    ceiling = results["epoll"]
    if bench.load_core is not None and ceiling["busy"]:
        print("  load generator ceiling ~{:,.0f} {} (its rate against the bare "
              "epoll echo / the share of time it was busy)"
              .format(ceiling["rate"] * pipeline / ceiling["busy"], unit))


def framed(bench, args, results):
    """Both framed measurements on one set of framed servers."""
    print("\nframed round trips: 64 connections x one packet (4-byte length + 64 B), "
          "%g s per server after %g s warm-up, the servers taking turns"
          % (args.seconds, args.warmup))
    servers = attempt("framed echo", bench.framed_servers)
    if not servers:
        return
    try:
        frt = attempt("framed round trips", lambda: bench.framed(servers, 1, check=True))
        if frt:
            results["frt"] = frt
            failed = any(r.get("errors") for r in frt.values())
            print("  framed check: %s" % ("FAILED (below)" if failed else
                                          "each server echoed 451 packets of 0 B to 1 MiB, "
                                          "sent in pieces cut at awkward places, intact"))
            print_round_trips(frt, bench)
        if args.pipeline > 1:
            print("\nframed pipelined: 64 connections x %d packets in one write, all echoed "
                  "before the next; %g s per server after %g s warm-up"
                  % (args.pipeline, args.seconds, args.warmup))
            phase = "frt%d" % args.pipeline
            r = attempt("framed pipelined",
                        lambda: bench.framed(servers, args.pipeline, check=False))
            if r:
                results[phase] = r
                print_round_trips(r, bench, "packets/s", args.pipeline)
    finally:
        bench.stop(servers)


def failures(results, phase):
    """True if a server has no figure for ``phase``, or erred in some of its turns."""
    return any(not results.get(phase, {}).get(kind) or results[phase][kind].get("errors")
               for kind in SERVERS)


def summary(results, rows):
    row = "%-21s %12s %13s %8s %9s  %s"
    lines = [row % ("", "gswoole", "StreamServer", "ratio", "target", "")]
    for label, phase, figure, target, sense in rows:
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
        print_round_trips(rt, bench)

    framed(bench, args, results)

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
    parser.add_argument("--pipeline", type=int, default=4,
                        help="framed packets per write in the pipelined measurement; "
                             "1 skips it (default 4)")
    parser.add_argument("--bulk-mib", type=int, default=256,
                        help="MiB streamed through each server per turn (default 256)")
    parser.add_argument("--bulk-rounds", type=int, default=10,
                        help="bulk turns per server; the median counts (default 10)")
    parser.add_argument("--idle", type=int, default=10000,
                        help="idle connections for the memory figure (default 10000)")
    args = parser.parse_args()
    if args.pipeline < 1:
        parser.error("--pipeline must be 1 or more")
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
    rows = targets(args.pipeline)
    print(summary(results, rows))
    return 1 if any(failures(results, phase) for _, phase, *_ in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

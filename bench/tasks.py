"""Task benchmark: gswoole's taskwait()/task() against concurrent.futures.

    python bench/tasks.py                    # about 50 s with the defaults
    python bench/tasks.py --seconds 1 --rounds 1

Both sides run the same trivial job (echo a small payload back) on two
worker processes, on this machine:

* gswoole: a server with one event worker and task_worker_num=2. The
  measurements run inside the event worker, in the greenlet of a receive
  callback: this script connects to the server and sends it one command per
  measurement, so the two sides can take turns.
    - taskwait round trips/s from one greenlet (and its p50/p99 latency),
    - taskwait round trips/s from 64 greenlets at once,
    - task() + finish completions/s with 1,000 tasks in flight (each finish
      sends the next task).
* ProcessPoolExecutor(2), in this process:
    - submit(...).result() round trips/s from one thread (and its latency),
    - the same from 64 threads, and with 64 outstanding futures (the better
      of the two is the baseline),
    - completions/s with 1,000 outstanding futures.

Each figure is measured for --seconds after --warmup, --rounds times, the
sides alternating; the rates shown are the medians of the rounds, the
latency percentiles are over every sample of every round. Targets:
gswoole >= 2x ProcessPoolExecutor for one and for 64 concurrent waiters,
and p99 taskwait latency < 1 ms from a single greenlet.

Every process started here is stopped on exit, on Ctrl-C and on SIGTERM: the
server runs in a session of its own, is asked to shut down and then has its
process group killed; the executor is shut down with its futures cancelled.
"""

import argparse
import json
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)       # benchmark this checkout's gswoole

CONCURRENCY = 64
IN_FLIGHT = 1000


def echo(data):
    return data


def _pool_worker_signals():
    # The pool's workers are forked from this process: leave SIGTERM and
    # Ctrl-C to the parent, which shuts the pool down.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# -- the gswoole side (runs in the server subprocess) --------------------------

def serve(payload_size):
    import gevent
    import gevent.event
    import gswoole

    payload = b"p" * payload_size
    server = gswoole.Server("127.0.0.1", 0)
    server.set(worker_num=1, task_worker_num=2, log_level="warning")
    server.on("task", lambda s, task_id, src_worker_id, data: data)
    flow = {"running": False, "done": 0, "outstanding": 0, "wrong": 0}
    drained = gevent.event.Event()

    def on_finish(s, task_id, data):
        if data != payload:
            flow["wrong"] += 1
        flow["done"] += 1
        if flow["running"] and s.task(payload) is not False:
            return
        flow["outstanding"] -= 1
        if not flow["outstanding"]:
            drained.set()

    def single(s, seconds, warmup):
        latencies = []
        wrong = 0
        clock = time.perf_counter
        end_warmup = clock() + warmup
        while clock() < end_warmup:
            s.taskwait(payload, timeout=5)
        started = clock()
        end = started + seconds
        now = started
        while now < end:
            result = s.taskwait(payload, timeout=5)
            after = clock()
            latencies.append(after - now)
            if result != payload:
                wrong += 1
            now = after
        return {"rate": len(latencies) / (now - started), "latencies": latencies,
                "wrong": wrong}

    def concurrent(s, seconds, warmup, n):
        counts = [0] * n
        wrong = [0]
        window = {}

        def loop(i):
            clock = time.perf_counter
            while True:
                result = s.taskwait(payload, timeout=5)
                if result != payload:
                    wrong[0] += 1
                if "end" in window and clock() >= window["end"]:
                    return
                if "start" in window:
                    counts[i] += 1

        greenlets = [gevent.spawn(loop, i) for i in range(n)]
        gevent.sleep(warmup)
        window["start"] = time.perf_counter()
        gevent.sleep(seconds)
        window["end"] = time.perf_counter()
        elapsed = window["end"] - window["start"]
        gevent.joinall(greenlets, timeout=30)
        return {"rate": sum(counts) / elapsed, "wrong": wrong[0]}

    def in_flight(s, seconds, warmup, n):
        flow.update(running=True, done=0, outstanding=0, wrong=0)
        drained.clear()
        for _ in range(n):
            if s.task(payload) is not False:
                flow["outstanding"] += 1
        gevent.sleep(warmup)
        started, done_at_start = time.perf_counter(), flow["done"]
        gevent.sleep(seconds)
        elapsed, done = time.perf_counter() - started, flow["done"] - done_at_start
        flow["running"] = False
        drained.wait(30)
        return {"rate": done / elapsed, "wrong": flow["wrong"],
                "left": flow["outstanding"]}

    def on_receive(s, fd, reactor_id, data):
        for line in data.splitlines():
            command = json.loads(line)
            op = command.pop("op")
            if op == "quit":
                s.send(fd, b'{"bye": true}\n')
                s.close(fd)        # so that the worker has nothing to drain
                s.shutdown()
                return
            result = {"single": single, "concurrent": concurrent,
                      "in_flight": in_flight}[op](s, **command)
            s.send(fd, json.dumps(result).encode() + b"\n")

    server.on("finish", on_finish)
    server.on("receive", on_receive)
    server.on("start", lambda s: print(json.dumps({"port": s.port, "master": s.master_pid}),
                                       flush=True))
    server.start()


class GswooleSide:
    def __init__(self, payload_size, timeout):
        self.timeout = timeout
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve",
             "--payload", str(payload_size)],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            raise RuntimeError("the gswoole server did not start (its error is above)")
        info = json.loads(line)
        self.master = info["master"]
        self.sock = socket.create_connection(("127.0.0.1", info["port"]), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def run(self, op, **args):
        self.sock.sendall(json.dumps(dict(args, op=op)).encode() + b"\n")
        line = self.file.readline()
        if not line:
            raise RuntimeError("the gswoole server closed the connection")
        return json.loads(line)

    def close(self):
        try:
            if self.proc.poll() is None:
                try:
                    self.run("quit")
                except (OSError, RuntimeError, ValueError):
                    os.kill(self.master, signal.SIGTERM)
                self.file.close()      # (the socket stays open while its file is)
                self.sock.close()
                self.proc.wait(15)
        except subprocess.TimeoutExpired:
            pass
        finally:
            for stream in (getattr(self, "file", None), getattr(self, "sock", None),
                           self.proc.stdout):
                if stream is not None:
                    stream.close()
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)   # whatever is left of its group
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()


# -- the ProcessPoolExecutor side (this process) ---------------------------------

class PoolSide:
    def __init__(self, payload_size):
        self.payload = b"p" * payload_size
        self.pool = ProcessPoolExecutor(2, initializer=_pool_worker_signals)
        for future in [self.pool.submit(echo, self.payload) for _ in range(200)]:
            future.result()

    def single(self, seconds, warmup):
        pool, payload, clock = self.pool, self.payload, time.perf_counter
        end_warmup = clock() + warmup
        while clock() < end_warmup:
            pool.submit(echo, payload).result()
        latencies = []
        wrong = 0
        started = now = clock()
        end = started + seconds
        while now < end:
            result = pool.submit(echo, payload).result(timeout=5)
            after = clock()
            latencies.append(after - now)
            wrong += result != payload
            now = after
        return {"rate": len(latencies) / (now - started), "latencies": latencies,
                "wrong": wrong}

    def threads(self, seconds, warmup, n):
        pool, payload = self.pool, self.payload
        counts = [0] * n
        window = {}

        def loop(i):
            clock = time.perf_counter
            while True:
                pool.submit(echo, payload).result(timeout=30)
                if "end" in window and clock() >= window["end"]:
                    return
                if "start" in window:
                    counts[i] += 1

        threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        time.sleep(warmup)
        window["start"] = time.perf_counter()
        time.sleep(seconds)
        window["end"] = time.perf_counter()
        elapsed = window["end"] - window["start"]
        for t in threads:
            t.join(30)
        return {"rate": sum(counts) / elapsed}

    def outstanding(self, seconds, warmup, n):
        """Keep ``n`` futures in flight: each completion lets one more be submitted."""
        pool, payload = self.pool, self.payload
        room = threading.Semaphore(n)
        done = [0]

        def completed(future):
            done[0] += 1
            room.release()

        clock = time.perf_counter
        end_warmup = clock() + warmup
        start_count = None
        started = end = None
        while True:
            room.acquire()
            now = clock()
            if start_count is None and now >= end_warmup:
                start_count, started, end = done[0], now, now + seconds
            if end is not None and now >= end:
                count = done[0] - start_count
                break
            pool.submit(echo, payload).add_done_callback(completed)
        elapsed = clock() - started
        for _ in range(n - 1):     # let the rest finish before the next measurement
            room.acquire(timeout=30)
        return {"rate": count / elapsed}

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


# -- driver ---------------------------------------------------------------------

def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, int(round(q / 100 * len(sorted_values))) - 1))
    return sorted_values[index]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--warmup", type=float, default=0.3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--payload", type=int, default=64, help="payload bytes")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.payload)

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    timing = {"seconds": args.seconds, "warmup": args.warmup}
    results = {key: [] for key in ("gs1", "gs64", "gs1000", "pp1", "ppt64", "ppf64",
                                   "pp1000")}
    latencies = {"gs1": [], "pp1": []}
    wrong = 0
    gs = pool = None
    print("tasks benchmark: %d round(s) of %.1f s per figure, payload %d bytes, %d CPU(s)"
          % (args.rounds, args.seconds, args.payload, os.cpu_count()), flush=True)
    try:
        gs = GswooleSide(args.payload, timeout=args.seconds + args.warmup + 60)
        pool = PoolSide(args.payload)
        for round_no in range(args.rounds):
            steps = [
                ("gs1", lambda: gs.run("single", **timing)),
                ("pp1", lambda: pool.single(**timing)),
                ("gs64", lambda: gs.run("concurrent", n=CONCURRENCY, **timing)),
                ("ppt64", lambda: pool.threads(n=CONCURRENCY, **timing)),
                ("ppf64", lambda: pool.outstanding(n=CONCURRENCY, **timing)),
                ("gs1000", lambda: gs.run("in_flight", n=IN_FLIGHT, **timing)),
                ("pp1000", lambda: pool.outstanding(n=IN_FLIGHT, **timing)),
            ]
            if round_no % 2:    # alternate which side goes first
                steps[0], steps[1] = steps[1], steps[0]
            for key, step in steps:
                figure = step()
                wrong += figure.get("wrong", 0)
                results[key].append(figure["rate"])
                if key in latencies:
                    latencies[key].extend(figure["latencies"])
            print("round %d: %s" % (round_no + 1, "  ".join(
                "%s %.0f/s" % (key, results[key][-1]) for key in results)), flush=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if pool is not None:
            pool.close()
        if gs is not None:
            gs.close()

    med = {key: statistics.median(values) for key, values in results.items()}
    pp64 = max(med["ppt64"], med["ppf64"])
    lat = {key: sorted(values) for key, values in latencies.items()}

    def us(seconds):
        return seconds * 1e6

    rows = [
        ("taskwait round trips/s, 1 greenlet vs 1 thread", med["gs1"], med["pp1"], 2.0),
        ("taskwait round trips/s, 64 greenlets vs best of 64 threads / 64 futures",
         med["gs64"], pp64, 2.0),
        ("task()+finish/s, 1000 in flight vs 1000 outstanding futures", med["gs1000"],
         med["pp1000"], None),
    ]
    print()
    print("%-75s %12s %12s %7s  %s" % ("figure", "gswoole", "PPE(2)", "ratio", "target"))
    verdicts = []
    for label, ours, theirs, target in rows:
        ratio = ours / theirs if theirs else float("inf")
        verdict = "" if target is None else ("%s (>= %.0fx)" % (
            "PASS" if ratio >= target else "MISS", target))
        if target is not None:
            verdicts.append(ratio >= target)
        print("%-75s %12.0f %12.0f %6.2fx  %s" % (label, ours, theirs, ratio, verdict))
    print("  (PPE 64 threads %.0f/s, 64 outstanding futures %.0f/s)" % (med["ppt64"],
                                                                       med["ppf64"]))
    p99 = percentile(lat["gs1"], 99)
    print()
    print("latency, 1 waiter     %10s %10s %10s %10s" % ("p50", "p90", "p99", "max"))
    for key, name in (("gs1", "gswoole taskwait"), ("pp1", "PPE submit/result")):
        values = lat[key]
        print("%-21s %8.0fus %8.0fus %8.0fus %8.0fus  (%d samples)" % (
            name, us(percentile(values, 50)), us(percentile(values, 90)),
            us(percentile(values, 99)), us(values[-1]) if values else float("nan"),
            len(values)))
    verdicts.append(p99 < 1e-3)
    print("p99 taskwait latency, single greenlet: %.0f us: %s (< 1000 us)" % (
        us(p99), "PASS" if p99 < 1e-3 else "MISS"))
    if wrong:
        print("WRONG RESULTS: %d" % wrong)
    print()
    print("targets met: %d of %d" % (sum(verdicts), len(verdicts)))
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared-memory benchmark: gswoole.Table against multiprocessing.Manager().dict()
and against Redis (redis-py), from one process, in one run.

    python bench/shm.py                       # about 30 s with the defaults
    python bench/shm.py --seconds 1 --rounds 1

Each side stores the same rows under the same 1,000 keys: a row is
{"name": <str of 5-8 chars>, "hits": <int>, "score": <float>}.

* Table: ``table.set(key, row)`` then ``table.get(key)`` (a 4,096-row table
  with columns name STRING(32), hits INT, score FLOAT). Measured as
  installed (the CPU-atomics seqlock, through the compiled helper
  gswoole._atomic when it was built), and for information through libatomic
  with ctypes (GSWOOLE_SHM_ATOMICS=ctypes: what an install without a C
  compiler gets) and with the fcntl fallback (GSWOOLE_SHM_ATOMICS=fcntl).
* Manager: ``d[key] = row`` then ``d[key]`` on a ``Manager().dict()`` (one
  round trip to the manager process each).
* Redis: ``HSET key name .. hits .. score ..`` then ``HGETALL key`` with
  redis-py over TCP to a redis-server this script starts on 127.0.0.1 (a
  free port, no persistence: ``--save '' --appendonly no``).

Operations/s counts each set and each get as one operation. Each side runs
for --seconds after --warmup, --rounds times, the sides taking turns; the
medians are printed with the ratios and the targets (Table >= 20x Manager,
>= 5x Redis). Every process started here is stopped on exit, Ctrl-C and
SIGTERM: the manager is shut down, redis-server is terminated by its pid.

Needs redis-py (``pip install -e '.[bench]'``) and redis-server
(``apt-get install -y redis-server``); without them the Redis column says
why and the rest still runs.
"""

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)       # benchmark this checkout's gswoole

KEYS = ["user:%d" % i for i in range(1000)]
ROWS = [{"name": "n%06d" % i, "hits": i, "score": i / 7.0} for i in range(1000)]


def measure(step, seconds, warmup):
    """Call ``step(i)`` (one set and one get) for ``seconds``; ops/s."""
    end = time.perf_counter() + warmup
    i = 0
    while time.perf_counter() < end:
        step(i % 1000)
        i += 1
    done = 0
    started = time.perf_counter()
    end = started + seconds
    while True:
        for _ in range(200):
            step(done % 1000)
            done += 1
        now = time.perf_counter()
        if now >= end:
            return 2 * done / (now - started)


# -- the sides ----------------------------------------------------------------------

def table_side(mode):
    """(step, name) for a Table; ``mode``: GSWOOLE_SHM_ATOMICS's value, or
    None for the default."""
    if mode is not None:
        os.environ["GSWOOLE_SHM_ATOMICS"] = mode
    import gswoole
    table = gswoole.Table(4096)
    table.column("name", gswoole.Table.TYPE_STRING, 32)
    table.column("hits", gswoole.Table.TYPE_INT)
    table.column("score", gswoole.Table.TYPE_FLOAT)
    table.create()
    os.environ.pop("GSWOOLE_SHM_ATOMICS", None)
    set_, get = table.set, table.get

    def step(i):
        set_(KEYS[i], ROWS[i])
        if get(KEYS[i])["hits"] != i:
            raise AssertionError("Table returned a wrong row")
    via = getattr(table._words, "via", None)
    return step, table.lock_kind + (", %s" % via if via else "")


def manager_side(manager):
    d = manager.dict()

    def step(i):
        d[KEYS[i]] = ROWS[i]
        if d[KEYS[i]]["hits"] != i:
            raise AssertionError("Manager dict returned a wrong row")
    return step


def redis_side(port):
    import redis
    client = redis.Redis(host="127.0.0.1", port=port)

    def step(i):
        key = KEYS[i]
        client.hset(key, mapping=ROWS[i])
        if int(client.hgetall(key)[b"hits"]) != i:
            raise AssertionError("Redis returned a wrong row")
    return step


class RedisServer:
    """redis-server on 127.0.0.1, no persistence; stopped by its pid."""

    def __init__(self):
        self.proc = None
        self.port = None

    def start(self):
        binary = shutil.which("redis-server")
        if binary is None:
            return "redis-server not found (apt-get install -y redis-server)"
        try:
            import redis
        except ImportError:
            return "redis-py not installed (pip install -e '.[bench]')"
        for _ in range(5):
            port = random.randint(20000, 60000)
            proc = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                start_new_session=True)
            client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2)
            deadline = time.monotonic() + 5
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    if client.ping():
                        self.proc, self.port = proc, port
                        return None
                except redis.exceptions.ConnectionError:
                    time.sleep(0.02)   # polling its readiness, not a measurement
            self._kill(proc)          # port taken, or it did not come up: another port
        return "redis-server did not start"

    @staticmethod
    def _kill(proc):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def stop(self):
        if self.proc is not None:
            self._kill(self.proc)
            self.proc = None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=0.3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from multiprocessing import Manager
    manager = Manager()
    redis_server = RedisServer()

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        redis_problem = redis_server.start()
        sides = {}
        table_step, kind = table_side(None)
        sides["Table (%s)" % kind] = table_step
        if kind == "seqlock, c":
            ctypes_step, ctypes_kind = table_side("ctypes")
            if ctypes_kind == "seqlock, ctypes":
                sides["Table (%s)" % ctypes_kind] = ctypes_step
        fallback_step, fallback_kind = table_side("fcntl")
        sides["Table (%s fallback)" % fallback_kind] = fallback_step
        sides["Manager().dict()"] = manager_side(manager)
        if redis_problem is None:
            sides["Redis (redis-py)"] = redis_side(redis_server.port)
        results = {name: [] for name in sides}
        for round_ in range(args.rounds):
            for name, step in sides.items():
                results[name].append(measure(step, args.seconds, args.warmup))
        medians = {name: statistics.median(rates) for name, rates in results.items()}
    finally:
        redis_server.stop()
        manager.shutdown()

    print("Table set+get from one process, %d round(s) of %.1f s, medians "
          "(each set and each get is one operation)" % (args.rounds, args.seconds))
    print()
    print("%-28s %14s %22s" % ("side", "ops/s", "range"))
    for name, rates in results.items():
        print("%-28s %14s %22s" % (name, "{:,.0f}".format(medians[name]),
                                   "{:,.0f} - {:,.0f}".format(min(rates), max(rates))))
    print()
    table_rate = medians["Table (%s)" % kind]
    ok = True
    for peer, target in (("Manager().dict()", 20.0), ("Redis (redis-py)", 5.0)):
        if peer not in medians:
            print("Table / %-18s   not measured: %s" % (peer, redis_problem))
            continue
        ratio = table_rate / medians[peer]
        met = ratio >= target
        ok = ok and met
        print("Table / %-18s %7.1fx   target >= %.0fx  %s" % (peer, ratio, target,
                                                             "met" if met else "NOT MET"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

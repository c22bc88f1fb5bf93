"""Is each worker's event loop still turning? (``timeout``, ``max_worker_memory``)

How this works. A gevent worker runs every connection in one thread: a
callback stuck in a CPU loop or an unpatched blocking call freezes all of
them, and nothing inside the worker can notice (the code that would notice
runs on the same stuck loop). So the two halves live in different processes:

* In each worker, a ``Heartbeat`` hub timer writes the monotonic time into
  the process's shared slot every ``interval`` (at most a second). It only
  runs when the loop turns, so a stale time means a stuck loop. The same
  tick measures how late the timer fired (the loop's lag) and, about once a
  second, reads the RSS from /proc/self/statm for the metrics and for
  ``max_worker_memory``. Nothing is added to the per-request path.
* The master's ``Watchdog`` compares those times with the clock (the same
  CLOCK_MONOTONIC for every process). A worker whose time is older than
  ``timeout`` is sent ``STACK_SIGNAL``, on which ``faulthandler`` (armed in
  the worker by ``arm_stack_dump``) writes the Python stack to the worker's
  stderr or log file from inside the signal handler, which works while the
  Python code is stuck. A moment later the master kills it with SIGKILL.
  A task worker is exempt while it runs a task (tasks may be long and block
  on purpose), not while it is idle.
"""

import faulthandler
import logging
import os
import signal
import time

from .shared import monotonic_ms

log = logging.getLogger("gswoole")

# Not one of the worker signals of DESIGN 1 (TERM, QUIT, USR1; INT, USR2, HUP,
# TTIN, TTOU ignored), nor SIGRTMIN (log reopening).
STACK_SIGNAL = signal.SIGRTMIN + 1
DUMP_GRACE = 0.5       # seconds between the stack-dump signal and SIGKILL
MEMORY_CHECK_EVERY = 1.0

# Why a process asked to retire (its slot's retire_reason): for the log and
# the exits-by-cause metric.
RETIRE_REASONS = ("", "max_request", "memory", "stop")


def heartbeat_interval(timeout):
    """How often workers beat and the master looks: a quarter of the timeout,
    at most a second, so a stuck worker is found within timeout + interval."""
    return min(1.0, timeout / 4.0) if timeout else 1.0


def arm_stack_dump(stream):
    """In a worker: dump every thread's Python stack to ``stream`` on STACK_SIGNAL."""
    faulthandler.register(STACK_SIGNAL, file=stream, all_threads=True, chain=False)


def read_rss(statm_fd, page_size=os.sysconf("SC_PAGE_SIZE")):
    """Resident set size in bytes from an open /proc/<pid>/statm."""
    fields = os.pread(statm_fd, 128, 0).split()
    return int(fields[1]) * page_size


class Heartbeat:
    """In a worker: the hub timer that says the loop turns (see the module doc).

    ``on_memory_limit`` is called once when the RSS passes ``memory_limit``
    bytes (0 = no limit)."""

    def __init__(self, shared, slot, timeout, memory_limit=0, on_memory_limit=None):
        self.shared = shared
        self.slot = slot
        self.interval = heartbeat_interval(timeout)
        self.memory_limit = memory_limit
        self.on_memory_limit = on_memory_limit
        self._timer = None
        self._expected = 0.0
        self._next_rss = 0.0
        self._statm = None
        self._fresh = True     # the first RSS reading is the worker's baseline

    def start(self, loop):
        try:
            self._statm = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._statm = None    # no procfs: no RSS figures, no memory recycling
        self._expected = time.monotonic()
        self.beat()    # RSS and heartbeat known from the start, not an interval later
        self._timer = loop.timer(self.interval, self.interval)
        self._timer.start(self.beat)

    def stop(self):
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if self._statm is not None:
            os.close(self._statm)
            self._statm = None

    def beat(self):
        now = time.monotonic()
        lag = max(0.0, now - self._expected)
        self._expected = now + self.interval
        self.shared.write_slot(self.slot, heartbeat_ms=int(now * 1000),
                               loop_lag_us=int(lag * 1e6))
        if self._statm is not None and now >= self._next_rss:
            self._next_rss = now + MEMORY_CHECK_EVERY
            rss = read_rss(self._statm)
            self.shared.set(self.slot, "rss_bytes", rss)
            if self.memory_limit and rss > self.memory_limit and self.on_memory_limit:
                callback, self.on_memory_limit = self.on_memory_limit, None
                if self._fresh:
                    # Retiring would fork a replacement just as big, forever.
                    log.error("max_worker_memory (%d MiB) is below a fresh worker's RSS "
                              "(%d MiB): memory recycling is off for this worker",
                              self.memory_limit >> 20, rss >> 20)
                else:
                    callback(rss)
            self._fresh = False

    def touch(self):
        """Say the loop turned now (a task worker after a task: its timer could
        not run while the task held the process)."""
        self.shared.set(self.slot, "heartbeat_ms", monotonic_ms())


class Watchdog:
    """In the master: finds processes whose loop stopped turning."""

    def __init__(self, timeout):
        self.timeout_ms = int(timeout * 1000)
        self.interval = heartbeat_interval(timeout)
        self.next_check = 0.0

    def stuck(self, procs, shared, now):
        """The procs (``_Proc``) stuck past the timeout, with how long, in
        seconds: ``[(proc, seconds)]``. ``now`` is time.monotonic()."""
        if not self.timeout_ms or now < self.next_check:
            return []
        self.next_check = now + self.interval
        now_ms = int(now * 1000)
        found = []
        for proc in procs:
            if proc.cause == "timeout" or proc.pid is None:
                continue   # already being dealt with
            slot = shared.read_slot(proc.slot)
            if slot["pid"] != proc.pid or slot["task_src_pid"]:
                continue   # not started yet, or a task worker inside a task
            # Before its first beat a process counts from its fork (a slot
            # read just before that beat holds 0, not a stuck loop).
            idle_ms = now_ms - (slot["heartbeat_ms"] or int(proc.started * 1000))
            if idle_ms > self.timeout_ms:
                found.append((proc, idle_ms / 1000.0))
        return found

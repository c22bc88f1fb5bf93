"""What an event worker does after the master forks it.

The worker owns a gevent hub and a Reactor. Its main greenlet runs
``workerStart``, starts accepting, tells the master it is ready, and then
waits to be told to stop. Stopping comes in two kinds:

* graceful (SIGTERM from the master, ``max_request`` reached, ``stop()``):
  stop accepting, cancel this process's timers, serve open connections until
  they close or ``max_wait_time`` passes, close what is left, ``workerStop``,
  exit 0. When the worker retires on its own (``max_request``, ``stop()``) it
  first asks the master for a replacement, so the server never has fewer
  workers accepting than it should.
  SIGUSR1 to a worker (what ``server.stop(worker_id)`` sends) retires it.
* fast (SIGQUIT): close every socket and exit at once.

A worker whose master is gone (PR_SET_PDEATHSIG, and a once-a-second parent
check for where that does not reach) stops gracefully too.
"""

import ctypes
import logging
import os
import random
import signal
import sys
import time

import gevent
from gevent.event import Event

from . import watchdog
from .logs import reopen_log_files
from .reactor import Reactor
from .tasks import Mailbox
from .timers import Timer
from .usercode import call_user

log = logging.getLogger("gswoole")

PR_SET_PDEATHSIG = 1
_IGNORED_SIGNALS = ("SIGINT", "SIGUSR1", "SIGUSR2", "SIGHUP", "SIGTTIN", "SIGTTOU", "SIGWINCH")


def reset_signals_after_fork():
    """Undo the master's signal setup in a freshly forked child."""
    signal.set_wakeup_fd(-1)
    for name in ("SIGTERM", "SIGQUIT", "SIGCHLD") + _IGNORED_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, signal.SIG_DFL)
    # SIGRTMIN's default action kills; until the worker watches it, ignore it.
    signal.signal(signal.SIGRTMIN, signal.SIG_IGN)
    # Ctrl-C reaches the whole process group; the master turns it into an
    # orderly shutdown of the workers, so workers themselves ignore it.
    for name in _IGNORED_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, signal.SIG_IGN)


def unblock_signals():
    """The master forks with its signals blocked; a child calls this once its
    own handlers are in place (a signal sent meanwhile is delivered now)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [getattr(signal, name) for name in
                                                ("SIGTERM", "SIGQUIT", "SIGCHLD", "SIGRTMIN")
                                                + _IGNORED_SIGNALS])


def die_with_parent():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the parent check below still catches it


class Worker:
    kind = "worker"

    def __init__(self, server, worker_id, context):
        self.server = server
        self.worker_id = worker_id
        self.context = context           # master.WorkerContext
        self.setting = context.setting
        self.pid = os.getpid()
        self._stop = Event()
        self._graceful = True
        self._retiring = False
        self.reactor = None

    # -- lifecycle -------------------------------------------------------

    def run(self):
        """Never returns: ends the process with the worker's exit code."""
        exit_with(self._run, "%s #%d" % (self.kind, self.worker_id))

    def _run(self):
        ctx = self.context
        die_with_parent()
        random.seed()
        Timer._reset_after_fork()
        self.reactor = Reactor(self.server, self.worker_id, self.setting,
                               ctx.listeners, ctx.shared)
        self._set_request_limit()
        self.mailbox = Mailbox(self.server, self.worker_id, ctx, self.reactor)
        self.reactor.route = self.mailbox.call
        self.reactor.cast = self.mailbox.cast
        if ctx.shared.node:
            from .cluster.routing import ClusterRouting
            self.reactor.cluster = ClusterRouting(self.setting, ctx.shared.node, self.mailbox,
                                                  self.worker_id, self.pid)
            if self.setting["task_backend"] == "redis":
                from .cluster.tasks import TaskSender
                self.mailbox.remote_tasks = TaskSender(self.reactor.cluster.link,
                                                       self.reactor.cluster.key, ctx.shared.node,
                                                       self.pid, self.worker_id)
        self.server._attach_worker(self)
        hub_loop = gevent.get_hub().loop
        watchdog.arm_stack_dump(sys.stderr)
        self.heartbeat = start_heartbeat(self, hub_loop)
        self._reopen = watch_log_reopen(hub_loop)
        for signum, handler in ((signal.SIGTERM, self.stop), (signal.SIGQUIT, self.stop_now),
                                (signal.SIGUSR1, self.retire)):
            watcher = hub_loop.signal(signum)
            watcher.start(handler)
        unblock_signals()
        self.reactor.open_sockets()
        log.debug("%s #%d (pid %d) booted: %s, max_request %s", self.kind, self.worker_id,
                  self.pid, ", ".join(l.describe() for l in ctx.listeners) or "no ports",
                  self.reactor.request_limit or "unlimited")
        self._call("workerstart", self.server, self.worker_id)
        if not self._stop.is_set():
            self.reactor.start()
            ctx.tell_master(b"R")
        publisher = hub_loop.timer(0.0, 1.0)
        publisher.start(self.publish)
        while not self._stop.wait(1.0):
            if os.getppid() != ctx.master_pid:
                log.warning("worker #%d: master %d is gone; stopping", self.worker_id,
                            ctx.master_pid)
                self.stop()
        publisher.stop()
        if not self._graceful:
            self.reactor.shutdown_now()
            self.publish()
            return 0
        Timer.clear_all()
        deadline = time.monotonic() + self.setting["max_wait_time"]
        self.reactor.stop_gracefully(self.setting["max_wait_time"])
        # Results of tasks this worker sent still come to it (finish callbacks).
        self.mailbox.wait_idle(max(0.0, deadline - time.monotonic()))
        self._call("workerstop", self.server, self.worker_id)
        self.heartbeat.stop()
        self.publish()    # the last counts, for the totals the master keeps
        return 0

    def _set_request_limit(self):
        limit = self.setting["max_request"]
        if not limit:
            return
        grace = self.setting["max_request_grace"]
        if grace is None:
            grace = limit // 2
        self.reactor.request_limit = limit + random.randint(0, grace)
        self.reactor.on_request_limit = lambda: self.retire("max_request")

    def _call(self, event, *args):
        callback = self.context.callbacks.get(event)
        if callback is not None:
            call_user("%s callback" % event, callback, *args)

    # -- stopping --------------------------------------------------------

    def stop(self):
        """Graceful stop (SIGTERM)."""
        self._stop.set()

    def stop_now(self):
        self._graceful = False
        self._stop.set()

    def retire(self, reason="stop", why=None):
        """Ask to be replaced (max_request, max_worker_memory, stop()): the
        master forks the replacement and sends us SIGTERM once it is ready, so
        this worker keeps accepting until then and no connection is ever
        refused. ``reason`` is one of watchdog.RETIRE_REASONS."""
        if self._retiring or self._stop.is_set():
            return
        self._retiring = True
        log.info("worker #%d (pid %d) retiring %s", self.worker_id, self.pid,
                 why or "after %d requests" % self.reactor.request_count)
        self.context.shared.set(self.context.slot, "retire_reason",
                                watchdog.RETIRE_REASONS.index(reason))
        self.context.tell_master(b"X")

    # -- stats -----------------------------------------------------------

    def publish(self):
        r = self.reactor
        self.context.shared.write_slot(
            self.context.slot, retiring=int(self._stop.is_set()),
            accept_count=r.accept_count, close_count=r.close_count,
            connection_num=len(r.conns), request_count=r.request_count)


def watch_log_reopen(loop):
    """Reopen this process's log files on SIGRTMIN (in the hub: never in the
    middle of a record being written)."""
    watcher = loop.signal(signal.SIGRTMIN)
    watcher.start(reopen_log_files)
    return watcher


def start_heartbeat(process, loop):
    """Start the watchdog's heartbeat in a worker or task worker (``process``
    has ``context``, ``setting`` and ``retire(reason, why)``)."""
    setting = process.setting
    limit = setting["max_worker_memory"] * 1024 * 1024

    def over_memory(rss):
        process.retire("memory", "with %d MiB RSS, past max_worker_memory %d MiB"
                       % (rss // (1024 * 1024), setting["max_worker_memory"]))
    heartbeat = watchdog.Heartbeat(process.context.shared, process.context.slot,
                                   setting["timeout"], limit, over_memory)
    heartbeat.start(loop)
    return heartbeat


def exit_with(run, name):
    """Run a forked process's body and end the process with its exit code
    (1 if it raised), without returning into the code that forked it."""
    code = 0
    try:
        code = run()
    except BaseException:
        log.exception("%s crashed", name)
        code = 1
    finally:
        logging.shutdown()
        os._exit(code)


def run_worker(server, worker_id, context):
    """Entry point in the forked child (the master's fork calls this)."""
    if "gevent" in sys.modules:
        gevent.reinit()
    Worker(server, worker_id, context).run()

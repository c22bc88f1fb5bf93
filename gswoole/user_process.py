"""User processes: ``server.add_process(gswoole.Process(callback))``.

A side job that belongs to the server (a Redis subscriber, a queue consumer,
a periodic cleaner) runs in a process of its own that the master starts with
the workers, restarts when it dies, and stops at shutdown (Swoole's
``addProcess``). Its title is ``gswoole: user process #N`` (N counts from 0 in
the order of ``add_process``); its worker id, as other workers see it in
``pipeMessage``, follows the task workers' (Swoole's numbering).

After the fork the process gets a gevent hub, and ``callback(process)`` runs
in the main greenlet. Inside it ``server.send/close/exist/get_client_info``
reach connections in whichever worker owns them (a call to that worker, as
between workers), ``server.send_message`` reaches a worker's ``pipeMessage``,
timers work, and Tables, Atomics and Locks made before ``start()`` are shared.

When the callback returns, the process exits, unless it left timers running:
then it keeps serving them until it is stopped. Either way the master starts
it again (with a growing pause if it keeps exiting within two seconds). On
SIGTERM (shutdown) the callback gets ``SystemExit`` where it waits, so its
``finally`` blocks run; a callback that never yields to gevent is killed
when ``max_wait_time`` has passed.
"""

import logging
import os
import signal
import sys

from . import errors
from .callbacks import _import_target
from .errors import CallbackError

log = logging.getLogger("gswoole")


class Process:
    """A user process for ``server.add_process``. ``callback(process)`` runs
    in it; ``process.server`` is the server, ``process.pid`` its pid,
    ``process.index`` its number (0, 1, ...), ``process.worker_id`` its id."""

    def __init__(self, callback):
        original = callback
        if isinstance(callback, str):
            callback = _import_target(callback)
        if not callable(callback):
            raise CallbackError("Process() needs a callable callback(process), got %r"
                                % (original,))
        self.callback = callback
        self.server = None
        self.index = -1
        self.worker_id = -1
        self.pid = 0

    def __repr__(self):
        return "<gswoole.Process #%d pid=%d %r>" % (self.index, self.pid, self.callback)


class UserProcessRunner:
    """What a user process does after the fork (the master calls ``run``)."""

    kind = "user process"

    def __init__(self, server, worker_id, context, process):
        self.server = server
        self.worker_id = worker_id
        self.context = context
        self.process = process

    def run(self):
        from .worker import exit_with
        exit_with(self._run, "user process #%d" % self.process.index)

    def _run(self):
        import gevent
        from gevent.event import Event
        from greenlet import getcurrent

        from .tasks import Mailbox
        from .timers import Timer
        from .worker import die_with_parent, unblock_signals

        ctx = self.context
        die_with_parent()
        Timer._reset_after_fork()
        process = self.process
        process.pid = os.getpid()
        process.server = self.server
        self.stopping = Event()
        self.mailbox = Mailbox(self.server, self.worker_id, ctx, None)
        self.server._attach_user_process(self)
        main = getcurrent()
        hub = gevent.get_hub()

        def stop():
            if not self.stopping.is_set():
                self.stopping.set()
                hub.loop.run_callback(main.throw, SystemExit(0))

        for signum in (signal.SIGTERM, signal.SIGQUIT):
            hub.loop.signal(signum).start(stop)
        unblock_signals()
        parent_check = hub.loop.timer(1.0, 1.0)
        parent_check.start(lambda: os.getppid() != ctx.master_pid and stop())
        try:
            process.callback(process)
            # Timers left running keep the process alive, as in Swoole.
            while len(Timer) and not self.stopping.wait(1.0):
                pass
        except SystemExit:
            if not self.stopping.is_set():
                raise
        finally:
            parent_check.stop()
            Timer.clear_all()
            self.mailbox.wait_idle(1.0)
        return 0

    # -- server methods inside a user process ------------------------------

    def _route(self, fd, op, *args, default=False, patient=False):
        from .process import pid_alive
        pid, worker_id = self.context.shared.owner_of(fd)
        if not pid or not pid_alive(pid):
            errors.set_last_error(errors.SESSION_NOT_EXIST)
            return default
        return self.mailbox.call(pid, worker_id, op, *args, patient=patient)

    def send(self, fd, data):
        return self._route(fd, "send", fd, data)

    def close(self, fd, reset=False):
        return self._route(fd, "close", fd, reset)

    def exist(self, fd):
        return self._route(fd, "exist", fd) is True

    def get_client_info(self, fd):
        return self._route(fd, "get_client_info", fd, default=None) or None

    def routed(self, op):
        """``op(fd, *args)`` run by the worker that owns ``fd`` (pause,
        resume, confirm, protect, bind, sendwait, sendfile)."""
        patient = op in ("sendwait", "sendfile")

        def call(fd, *args):
            return self._route(fd, op, fd, *args, patient=patient)
        call.__name__ = op
        return call


def run_user_process(server, worker_id, context, process):
    """Entry point in the forked child."""
    if "gevent" in sys.modules:
        import gevent
        gevent.reinit()
    UserProcessRunner(server, worker_id, context, process).run()

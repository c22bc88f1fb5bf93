"""Millisecond timers on the gevent hub: ``Timer.tick``, ``Timer.after``,
``Timer.clear``.

As in Swoole, a tick callback gets ``(timer_id, *args)`` and an after callback
gets ``(*args)``. Each firing runs in its own greenlet, so a callback may wait
on I/O without stalling the hub. Timers belong to the process that made them;
a stopping worker clears all of its own (``Timer.clear_all``) so that a
forgotten tick cannot keep it alive through a reload.
"""

import itertools
import logging

import gevent
from greenlet import greenlet

from .usercode import log_user_error

log = logging.getLogger("gswoole")

_MAX_MS = 86400000  # Swoole's upper bound: one day


def _interval(ms):
    if isinstance(ms, bool) or not isinstance(ms, (int, float)):
        raise TypeError("timer interval must be a number of milliseconds, got %r" % (ms,))
    if not 0 < ms <= _MAX_MS:
        raise ValueError("timer interval must be in (0, %d] ms, got %r" % (_MAX_MS, ms))
    return ms / 1000.0


class _Timers:
    """The process's timer table. One instance, ``Timer``, is public."""

    def __init__(self):
        self._watchers = {}
        self._ids = itertools.count(1)
        self._in_master = False   # set while this process is a running master

    def tick(self, ms, callback, *args):
        """Call ``callback(timer_id, *args)`` every ``ms``; returns the timer id."""
        return self._add(ms, callback, args, repeat=True)

    def after(self, ms, callback, *args):
        """Call ``callback(*args)`` once after ``ms``; returns the timer id."""
        return self._add(ms, callback, args, repeat=False)

    def defer(self, callback, *args):
        """Call ``callback(*args)`` once the current loop iteration's events
        are handled (Swoole's ``Event::defer``), in a greenlet of its own."""
        self._refuse_in_master()
        if not callable(callback):
            raise TypeError("defer callback is not callable: %r" % (callback,))
        gevent.get_hub().loop.run_callback(_start_deferred, callback, args)

    def clear(self, timer_id):
        """Cancel a timer. Returns False if it does not exist (or already fired)."""
        watcher = self._watchers.pop(timer_id, None)
        if watcher is None:
            return False
        watcher.stop()
        return True

    def clear_all(self):
        """Cancel every timer of this process; returns how many there were."""
        count = len(self._watchers)
        for watcher in self._watchers.values():
            watcher.stop()
        self._watchers.clear()
        return count

    def exists(self, timer_id):
        return timer_id in self._watchers

    def list(self):
        return list(self._watchers)

    def __len__(self):
        return len(self._watchers)

    def _reset_after_fork(self):
        # Watchers copied from the parent belong to its loop: forget them.
        self._watchers = {}
        self._in_master = False

    def _refuse_in_master(self):
        if self._in_master:
            from .errors import EventLoopError
            raise EventLoopError("timers cannot run in the master process: it runs no event "
                                 "loop, and every worker forked later would inherit the "
                                 "timer. Create timers in workerStart.")

    def _add(self, ms, callback, args, repeat):
        self._refuse_in_master()
        seconds = _interval(ms)
        if not callable(callback):
            raise TypeError("timer callback is not callable: %r" % (callback,))
        timer_id = next(self._ids)
        watcher = gevent.get_hub().loop.timer(seconds, seconds if repeat else 0.0)
        self._watchers[timer_id] = watcher
        watcher.start(self._fire, timer_id, callback, args, repeat)
        return timer_id

    def _fire(self, timer_id, callback, args, repeat):
        if repeat:
            args = (timer_id,) + args
        else:
            self._watchers.pop(timer_id, None)
        # Runs in the hub; the callback gets a greenlet of its own so it may block.
        greenlet(_run_timer_callback).switch(callback, args, timer_id)


def _run_timer_callback(callback, args, timer_id):
    try:
        callback(*args)
    except BaseException:
        log_user_error("timer callback %r (timer #%d)", callback, timer_id)


def _start_deferred(callback, args):
    greenlet(_run_deferred).switch(callback, args)


def _run_deferred(callback, args):
    try:
        callback(*args)
    except BaseException:
        log_user_error("deferred callback %r", callback)


Timer = _Timers()

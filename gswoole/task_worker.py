"""What a task worker does after the master forks it: a plain loop.

It waits (select, up to a second at a time so it notices a stop request or a
dead master) on the shared task queue, its own inbox and its private inbox;
runs one task at a time through the ``task`` callback; and sends the result
to the inbox of the event worker that asked, addressed to that process's
pid. While a task runs, its (sender pid, worker id, task id) is in this
process's shared slot: if the task worker dies mid-task, the master reads it
there and sends the sender a TaskError at once instead of letting it wait
for a timeout.

A graceful stop (SIGTERM, a reload, ``task_max_request``) finishes the task in
hand and takes no new one; whatever is still queued stays in the kernel's
socket buffers for the other task workers or the replacement.
"""

import logging
import os
import random
import select
import signal
import socket
import sys
import time
import traceback

import gevent
from gevent.select import poll as gevent_poll

from . import ipc, watchdog
from .timers import Timer
from .usercode import call_user
from .worker import (die_with_parent, exit_with, start_heartbeat, unblock_signals,
                     watch_log_reopen)

log = logging.getLogger("gswoole")


class TaskWorker:
    kind = "task worker"

    def __init__(self, server, worker_id, context):
        self.server = server
        self.worker_id = worker_id
        self.context = context
        self.setting = context.setting
        self.channels = context.channels
        self.shared = context.shared
        self.slot = context.slot
        self.pid = os.getpid()
        self.stopping = False
        self.retiring = False
        self.current = None        # the message of the task being run
        self.remote = None         # cluster.tasks.TaskConsumer (task_backend "redis")
        self.busy = None           # held while a task from Redis runs
        self.finished = False      # finish() already sent its result
        self.tasks_done = 0
        self.task_time = 0.0       # seconds spent in tasks, for the latency metric

    def run(self):
        exit_with(self._run, "%s #%d" % (self.kind, self.worker_id))

    def _run(self):
        die_with_parent()
        random.seed()
        Timer._reset_after_fork()
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        signal.signal(signal.SIGUSR1, lambda *_: self.retire())
        signal.signal(signal.SIGQUIT, lambda *_: os._exit(0))
        watchdog.arm_stack_dump(sys.stderr)
        self.heartbeat = start_heartbeat(self, gevent.get_hub().loop)
        self._reopen = watch_log_reopen(gevent.get_hub().loop)
        unblock_signals()
        self.private = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.private.bind(ipc.inbox_address(self.context.master_pid, self.pid))
        receivers = [self.private, self.channels.task_inboxes[self.worker_id][1]]
        if self.channels.task_queue is not None:
            receivers.append(self.channels.task_queue[1])
        # gevent's poll: not select() (descriptors may be past 1023), and the
        # hub runs while we wait, so timers and greenlets of this process work.
        poller = gevent_poll()
        by_fd = {}
        for sock in receivers:
            sock.setblocking(False)
            poller.register(sock.fileno(), select.POLLIN)
            by_fd[sock.fileno()] = sock
        self.server._attach_task_worker(self)
        self._call("workerstart", self.server, self.worker_id)
        consumer = self._start_remote() if self.setting["task_backend"] == "redis" else None
        self.context.tell_master(b"R")
        while not self.stopping:
            try:
                ready = [by_fd[fd] for fd, _ in poller.poll(1000)]
            except InterruptedError:
                continue
            if os.getppid() != self.context.master_pid:
                log.warning("task worker #%d: master is gone; stopping", self.worker_id)
                break
            for sock in ready:
                if self.stopping:
                    break
                try:
                    message = ipc.recv_message(sock)
                except BlockingIOError:
                    continue   # another task worker took it
                except (OSError, ValueError) as exc:
                    log.warning("task worker #%d: bad message dropped: %s", self.worker_id, exc)
                    continue
                if self.remote is None:
                    self._handle(message)
                else:
                    with self.busy:   # not while a task from Redis runs
                        self._handle(message)
        if consumer is not None:
            self.stopping = True
            consumer.join()   # the task in hand first (an unacknowledged one is reclaimed)
        self._call("workerstop", self.server, self.worker_id)
        self.heartbeat.stop()
        return 0

    def _start_remote(self):
        """task_backend "redis": a greenlet that takes tasks from the
        cluster's stream (cluster/tasks.py) while this loop serves the inboxes."""
        from gevent.lock import Semaphore
        from .cluster.link import Link
        from .cluster.tasks import TaskConsumer
        self.busy = Semaphore()
        self.remote = TaskConsumer(self.setting, Link(self.setting), self.shared.node, self)
        return gevent.spawn(self.remote.serve)

    def run_remote(self, task):
        """Run a task from Redis (acknowledged there with its outcome)."""
        from .cluster.tasks import split_entry_id
        with self.busy:
            ms, seq = split_entry_id(task.entry)
            # In the slot while it runs: the cluster process keeps the entry
            # from being reclaimed, and the master does not fail it.
            self.shared.write_slot(self.slot, task_entry_ms=ms, task_entry_seq=seq)
            try:
                self._run_task(task)
            finally:
                self.shared.write_slot(self.slot, task_entry_ms=0, task_entry_seq=0)

    def stop(self):
        self.stopping = True

    def retire(self, reason="stop", why=None):
        if not self.retiring:
            self.retiring = True
            if why:
                log.info("task worker #%d (pid %d) retiring %s", self.worker_id, self.pid, why)
            self.shared.set(self.slot, "retire_reason", watchdog.RETIRE_REASONS.index(reason))
            self.context.tell_master(b"X")
        self.stopping = True

    def _call(self, event, *args):
        callback = self.context.callbacks.get(event)
        if callback is not None:
            call_user("%s callback" % event, callback, *args)

    # -- messages ----------------------------------------------------------

    def _handle(self, message):
        if message.kind == ipc.TASK:
            self._run_task(message)
        elif message.kind == ipc.MESSAGE:
            callback = self.context.callbacks.get("pipemessage")
            if callback is not None:
                self._call("pipemessage", self.server, message.src_worker, message.value())

    def _run_task(self, message):
        shared, slot = self.shared, self.slot
        self.tasks_done += 1
        shared.write_slot(slot, task_src_pid=message.src_pid, task_src_worker=message.src_worker,
                          task_id=message.id, tasks_taken=self.tasks_done)
        self.current = message
        self.finished = False
        callback = self.context.callbacks["task"]
        started = time.monotonic()
        try:
            result = callback(self.server, message.id, message.src_worker, message.value())
        except BaseException as exc:
            text = traceback.format_exc()
            log.error("task %d from worker #%d raised in task worker #%d:\n%s", message.id,
                      message.src_worker, self.worker_id, text)
            self._reply(message, ipc.ERROR,
                        ("task %d raised %s: %s" % (message.id, type(exc).__name__, exc), text))
        else:
            if result is None and not self.finished:
                # No result to deliver (Swoole's rule), but the sender must
                # learn the task is over to forget it.
                self._reply(message, ipc.DONE, None)
            elif result is not None and not self.finished:
                try:
                    self._reply(message, ipc.RESULT, result)
                except Exception as exc:   # e.g. a result that cannot be pickled
                    text = traceback.format_exc()
                    log.error("task %d: its result could not be sent:\n%s", message.id, text)
                    self._reply(message, ipc.ERROR, ("task %d's result could not be sent: "
                                                     "%s: %s" % (message.id,
                                                                 type(exc).__name__, exc), text))
        finally:
            self.current = None
            self.task_time += time.monotonic() - started
            # The heartbeat first: the watchdog must not see a stale time
            # (the timer could not run during the task) once the task is over.
            self.heartbeat.touch()
            shared.write_slot(slot, task_src_pid=0, task_src_worker=0, task_id=0,
                              task_time_us=int(self.task_time * 1e6))
        limit = self.setting["task_max_request"]
        if limit and self.tasks_done >= limit:
            log.info("task worker #%d retiring after %d tasks", self.worker_id, self.tasks_done)
            self.retire("max_request")

    def finish(self, data):
        """Send ``data`` as the current task's result (once per task)."""
        if self.current is None:
            raise RuntimeError("finish() works only while a task runs (in the task callback)")
        if self.finished:
            log.warning("task worker #%d: finish() called again for task %d; ignored",
                        self.worker_id, self.current.id)
            return False
        self.finished = True
        return self._reply(self.current, ipc.RESULT, data)

    def _reply(self, message, kind, obj):
        if self.remote is not None and self.remote.owns(message):
            return self.remote.reply(message, kind, obj)
        pair = self.channels.worker_inboxes.get(message.src_worker)
        sock = pair[0] if pair else None
        address = None
        if sock is None:
            sock, address = self.private, ipc.inbox_address(self.context.master_pid,
                                                            message.src_pid)
        datagram, memfd = ipc.encode(kind, self.worker_id, self.pid, message.id, obj,
                                     message.src_pid, message.src_worker)
        return ipc.send_blocking(sock, datagram, memfd, address)

    def send_message(self, message, dst_worker_id):
        pair = self.channels.inbox_of(dst_worker_id)
        if pair is None or dst_worker_id == self.worker_id:
            raise ValueError("no other worker with id %r" % (dst_worker_id,))
        datagram, memfd = ipc.encode(ipc.MESSAGE, self.worker_id, self.pid, 0, message,
                                     0, dst_worker_id)
        return ipc.send_blocking(pair[0], datagram, memfd)


def run_task_worker(server, worker_id, context):
    if "gevent" in sys.modules:
        import gevent
        gevent.reinit()
    TaskWorker(server, worker_id, context).run()

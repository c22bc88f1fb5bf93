"""An event worker's side of tasks, pipe messages and cross-worker calls.

``Mailbox`` owns the worker's receiving sockets (its inbox socketpair and its
private abstract-address inbox) and one ``_Outbox`` per destination socket.
Sending never blocks the hub: a datagram the kernel will not take yet waits
in the outbox's queue and a write watcher pushes it out in order. Only when
an outbox holds ``OUTBOX_LIMIT`` messages does ``task()`` wait, in its own
greenlet, for room (up to ``send_timeout``).

Results are matched to ``_pending`` entries by task id. An entry is removed
when its result arrives or when ``taskwait`` gives up, so a late result finds
nothing and is dropped: it can never be taken for a later task's answer.
"""

import itertools
import logging
import os
import socket
import time
from collections import deque

import gevent
from gevent.event import AsyncResult, Event
from greenlet import getcurrent, greenlet

from . import errors, ipc
from .errors import ServerStateError, TaskError
from .process import pid_alive
from .usercode import call_user

log = logging.getLogger("gswoole")

OUTBOX_LIMIT = 4096     # queued messages per destination before task() waits
_FINISH_EVENT = object()   # a pending task whose result goes to the finish callback
CALL_TIMEOUT = 3.0


class _Outbox:
    """Ordered, non-blocking sends to one datagram socket."""

    def __init__(self, sock, loop, address=None):
        self.sock = sock
        self.address = address
        self.queue = deque()
        self.room = Event()
        self.room.set()
        self._watcher = loop.io(sock.fileno(), 2)

    def _send(self, datagram, memfd):
        """True if sent, None if the socket is full, False if dropped."""
        try:
            ipc.send_datagram(self.sock, datagram, memfd, self.address)
            return True
        except BlockingIOError:
            return None
        except OSError as exc:
            if memfd is not None:
                os.close(memfd)
            log.warning("message dropped: %s", exc)
            return False

    def put(self, datagram, memfd=None):
        if not self.queue:
            sent = self._send(datagram, memfd)
            if sent is not None:
                return sent
        self.queue.append((datagram, memfd))
        if len(self.queue) >= OUTBOX_LIMIT:
            self.room.clear()
        if not self._watcher.active:
            self._watcher.start(self._flush)
        return True

    def _flush(self):
        queue = self.queue
        while queue:
            if self._send(*queue[0]) is None:
                return   # still full: the watcher calls again
            queue.popleft()
            if len(queue) < OUTBOX_LIMIT:
                self.room.set()
        self._watcher.stop()


class Mailbox:
    def __init__(self, server, worker_id, context, reactor):
        self.server = server
        self.worker_id = worker_id
        self.context = context
        self.reactor = reactor
        self.channels = context.channels
        self.pid = os.getpid()
        self.master_pid = context.master_pid
        self.loop = gevent.get_hub().loop
        self.setting = context.setting
        self._ids = itertools.count()
        self._pending = {}        # task id -> callback, or AsyncResult for taskwait
        self._calls = {}          # call id -> AsyncResult
        self._call_ids = itertools.count(1)
        self._outboxes = {}
        self._watchers = []
        self._warned_no_finish = False
        self._idle = Event()          # set while no task is pending
        self.remote_tasks = None      # cluster.tasks.TaskSender (task_backend "redis")
        own = self.channels.inbox_of(worker_id)
        receivers = [own[1]] if own else []
        self.private = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.private.bind(ipc.inbox_address(self.master_pid, self.pid))
        receivers.append(self.private)
        for sock in receivers:
            sock.setblocking(False)
            watcher = self.loop.io(sock.fileno(), 1)
            watcher.start(self._on_readable, sock)
            self._watchers.append(watcher)

    def _note_idle(self):
        if not self._pending:
            self._idle.set()

    def wait_idle(self, timeout):
        """Wait (a stopping worker) until every task sent has ended and every
        queued message is out, so finish callbacks still run. Returns True if
        nothing was left behind."""
        deadline = time.monotonic() + timeout
        if self._pending and not self._idle.wait(timeout):
            log.warning("worker #%d exits with %d task(s) unfinished", self.worker_id,
                        len(self._pending))
            return False
        for box in self._outboxes.values():
            while box.queue and time.monotonic() < deadline:
                gevent.sleep(0.01)   # the outbox's write watcher is draining it
        return not any(box.queue for box in self._outboxes.values())

    def close(self):
        for watcher in self._watchers:
            watcher.stop()
        self.private.close()

    # -- sending ---------------------------------------------------------

    def _outbox(self, key, sock=None, address=None):
        """The outbox for ``key``, made on first use (``sock`` None: a new
        unbound datagram socket for sending to ``address``)."""
        box = self._outboxes.get(key)
        if box is None:
            if sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            box = self._outboxes[key] = _Outbox(sock, self.loop, address)
        return box

    def _outbox_for_worker(self, worker_id, pid=0):
        pair = self.channels.inbox_of(worker_id)
        if pair is not None:
            return self._outbox(("w", worker_id), pair[0])
        if not pid:
            return None
        return self._outbox(("p", pid), None, ipc.inbox_address(self.master_pid, pid))

    def _post(self, box, kind, msg_id, obj, dst_pid=0, dst_worker=-1):
        datagram, memfd = ipc.encode(kind, self.worker_id, self.pid, msg_id, obj,
                                     dst_pid, dst_worker)
        if not box.room.is_set():
            if getcurrent() is gevent.get_hub():
                return errors.set_last_error(errors.OUTPUT_BUFFER_OVERFLOW)
            if not box.room.wait(self.setting["send_timeout"]):
                if memfd is not None:
                    os.close(memfd)
                return errors.set_last_error(errors.OUTPUT_BUFFER_OVERFLOW)
        return box.put(datagram, memfd)

    # -- tasks -----------------------------------------------------------

    def _task_box(self, dst_worker_id):
        channels = self.channels
        if channels.task_queue is None:
            raise ServerStateError("task() needs task workers: set task_worker_num > 0")
        if dst_worker_id == -1:
            return self._outbox("queue", channels.task_queue[0])
        pair = channels.task_inboxes.get(dst_worker_id)
        if pair is None:
            raise ValueError("dst_worker_id %r is not a task worker id (task workers are %s)"
                             % (dst_worker_id, sorted(channels.task_inboxes)))
        return self._outbox(("t", dst_worker_id), pair[0])

    def task(self, data, dst_worker_id=-1, callback=None, waiter=None):
        if self.remote_tasks is not None:
            return self._remote_task(data, dst_worker_id, waiter or callback or _FINISH_EVENT)
        box = self._task_box(dst_worker_id)
        task_id = next(self._ids)
        self._pending[task_id] = waiter or callback or _FINISH_EVENT
        self._idle.clear()
        try:
            posted = self._post(box, ipc.TASK, task_id, data, dst_worker=dst_worker_id)
        except BaseException:   # e.g. data that cannot be pickled
            self._pending.pop(task_id, None)
            raise
        if not posted:
            self._pending.pop(task_id, None)
            return False
        self.context.shared.set(self.context.slot, "tasks_sent", task_id + 1)
        return task_id

    def _remote_task(self, data, dst_worker_id, target):
        """task_backend "redis": the task goes to the cluster's stream
        (cluster/tasks.py); its result comes back through this node's
        cluster process like a local one."""
        if dst_worker_id != -1:
            raise ValueError("dst_worker_id %r: with task_backend='redis' a task goes to "
                             "whichever task worker of the cluster is free; leave "
                             "dst_worker_id at -1" % (dst_worker_id,))
        task_id = next(self._ids)
        message = self.remote_tasks.encode(task_id, data)   # raises here on data JSON cannot carry
        self._pending[task_id] = target
        self._idle.clear()
        if getcurrent() is gevent.get_hub():
            gevent.spawn(self._send_remote_task, task_id, message)   # the hub must not wait
        elif not self.remote_tasks.send(message):
            self._pending.pop(task_id, None)
            self._note_idle()
            return errors.set_last_error(errors.TASK_DISPATCH_FAIL)
        # Not counted in tasks_sent: stats' task_queue_num is this node's
        # queue; these wait in the cluster's stream (XLEN gswoole:tasks).
        return task_id

    def _send_remote_task(self, task_id, message):
        if not self.remote_tasks.send(message):
            target = self._pending.pop(task_id, None)
            self._note_idle()
            failure = TaskError("task %d could not be queued: Redis is unreachable" % task_id)
            if isinstance(target, AsyncResult):
                target.set(failure)
            elif target is not None:
                self._finish(target, task_id, failure)

    def taskwait(self, data, timeout=0.5, dst_worker_id=-1):
        result = AsyncResult()
        task_id = self.task(data, dst_worker_id, waiter=result)
        if task_id is False:
            return False
        try:
            value = result.get(timeout=timeout)
        except gevent.Timeout:
            self._pending.pop(task_id, None)   # a late result is dropped
            self._note_idle()
            return errors.set_last_error(errors.TASK_TIMEOUT)
        if isinstance(value, TaskError):
            raise value
        return value

    def taskwait_multi(self, tasks, timeout=0.5):
        """Results by index for the tasks that finished within ``timeout``;
        a failed task's value is its TaskError."""
        waiters = {}
        for index, data in enumerate(tasks):
            result = AsyncResult()
            task_id = self.task(data, waiter=result)
            if task_id is not False:
                waiters[index] = (task_id, result)
        deadline = time.monotonic() + timeout
        results = {}
        for index, (task_id, result) in waiters.items():
            try:
                results[index] = result.get(timeout=max(0.0, deadline - time.monotonic()))
            except gevent.Timeout:
                self._pending.pop(task_id, None)
        self._note_idle()
        if len(results) < len(waiters):
            errors.set_last_error(errors.TASK_TIMEOUT)
        return results

    # -- pipe messages and cross-worker calls --------------------------

    def send_message(self, message, dst_worker_id):
        if dst_worker_id == self.worker_id:
            raise ValueError("send_message() to the sending worker itself")
        box = self._outbox_for_worker(dst_worker_id)
        if box is None:
            raise ValueError("no worker with id %r" % (dst_worker_id,))
        return self._post(box, ipc.MESSAGE, 0, message, dst_worker=dst_worker_id)

    def call(self, pid, worker_id, op, *args, patient=False):
        """Run reactor method ``op`` in the worker process that owns a
        connection and return its answer (and its last error). ``patient``:
        the op waits on a peer (sendfile, sendwait) and ends on its own
        (send_timeout bounds each stall), so wait while that process lives."""
        box = self._outbox_for_worker(worker_id, pid)
        if box is None:
            return errors.set_last_error(errors.SESSION_NOT_EXIST)
        call_id = next(self._call_ids)
        result = self._calls[call_id] = AsyncResult()
        try:
            if not self._post(box, ipc.CALL, call_id, (op, args), dst_pid=pid,
                              dst_worker=worker_id):
                return False
            while True:
                try:
                    value, code = result.get(timeout=CALL_TIMEOUT)
                    break
                except gevent.Timeout:
                    if not (patient and pid_alive(pid)):
                        return errors.set_last_error(errors.SESSION_NOT_EXIST)
        finally:
            self._calls.pop(call_id, None)
        errors.set_last_error(code)
        return value

    def cast(self, pid, worker_id, op, *args):
        """Run ``op`` in another worker without waiting for it (broadcast):
        True once the message is queued for it."""
        box = self._outbox_for_worker(worker_id, pid)
        if box is None:
            return errors.set_last_error(errors.SESSION_NOT_EXIST)
        return self._post(box, ipc.CALL, 0, (op, args), dst_pid=pid, dst_worker=worker_id)

    # -- answers that come through the cluster (cluster/) ----------------

    def expect_reply(self):
        """(call id, AsyncResult) for a call whose REPLY will come to this
        inbox from elsewhere (another node); ``forget_reply`` when done."""
        call_id = next(self._call_ids)
        result = self._calls[call_id] = AsyncResult()
        return call_id, result

    def forget_reply(self, call_id):
        self._calls.pop(call_id, None)

    def deliver(self, kind, msg_id, obj, pid, worker_id):
        """Hand a message that came from another node (a reply, a task's
        result) to worker process ``pid`` of this node."""
        box = self._outbox_for_worker(worker_id, pid)
        if box is None:
            return False
        return self._post(box, kind, msg_id, obj, dst_pid=pid, dst_worker=worker_id)

    # -- receiving (hub) -------------------------------------------------

    def _on_readable(self, sock):
        for _ in range(64):   # bounded: let the hub serve connections too
            try:
                message = ipc.recv_message(sock)
            except BlockingIOError:
                return
            except (OSError, ValueError) as exc:
                log.warning("worker #%d: bad message dropped: %s", self.worker_id, exc)
                continue
            if message.dst_pid and message.dst_pid != self.pid:
                self._forward(message)
                continue
            try:
                self._dispatch(message)
            except Exception:
                # An exception escaping a watcher callback makes gevent stop the
                # watcher: this inbox would never be read again.
                log.exception("worker #%d: message %r could not be handled", self.worker_id,
                              message)

    def _forward(self, message):
        # A message for the process we share a worker id with (one of us is
        # draining for a reload): hand it over through its private inbox.
        datagram, memfd = ipc.encode_raw(message)
        box = self._outbox(("p", message.dst_pid), None,
                           ipc.inbox_address(self.master_pid, message.dst_pid))
        box.put(datagram, memfd)

    def _dispatch(self, message):
        kind = message.kind
        if kind == ipc.DONE:
            target = self._pending.pop(message.id, None)
            if isinstance(target, AsyncResult):
                target.set(None)   # taskwait of a task that returned nothing
            self._note_idle()
        elif kind == ipc.RESULT or kind == ipc.ERROR:
            target = self._pending.pop(message.id, None)
            self._note_idle()
            if target is None:
                return   # timed out, or nobody wanted the result
            try:
                value = message.value()
            except Exception as exc:
                value = TaskError("the result of task %d could not be unpickled: %s: %s"
                                  % (message.id, type(exc).__name__, exc))
            else:
                if kind == ipc.ERROR:
                    value = TaskError(*value)
            if isinstance(target, AsyncResult):
                target.set(value)
            else:
                _spawn(self._finish, target, message.id, value)
        elif kind == ipc.REPLY:
            result = self._calls.get(message.id)
            if result is not None:
                result.set(message.value())
        elif kind == ipc.MESSAGE:
            callback = self.context.callbacks.get("pipemessage")
            if callback is None:
                log.warning("worker #%d got a pipe message but has no pipeMessage callback",
                            self.worker_id)
                return
            _spawn(_guarded, "pipeMessage", callback, self.server, message.src_worker,
                   message.value())
        elif kind == ipc.CALL:
            if message.id:
                _spawn(self._answer_call, message)
            else:
                # A cast (send, WebSocket push, broadcast frames: ops that
                # only queue output, and nobody waits) runs now, not in a
                # greenlet of its own one loop turn later: that turn was a
                # tenth of a cross-node send's path.
                self._answer_call(message)

    def _finish(self, callback, task_id, value):
        if callback is _FINISH_EVENT:
            callback = self.context.callbacks.get("finish")
            if callback is None:
                if not self._warned_no_finish:
                    self._warned_no_finish = True
                    log.warning("worker #%d: a task returned a result but there is no "
                                "finish callback; results are dropped", self.worker_id)
                return
            _guarded("finish", callback, self.server, task_id, value)
        else:
            _guarded("task callback", callback, self.server, task_id, value)

    def _answer_call(self, message):
        op, args = message.value()
        errors.set_last_error(0)
        reactor = self.reactor
        try:
            # A protocol's own operations (WebSocket push) first, then the reactor's.
            value = (reactor.remote_ops.get(op) or getattr(reactor, op))(*args)
        except Exception as exc:
            log.warning("cross-worker %s failed: %s", op, exc)
            value = False
        if not message.id:
            return   # a cast: nobody waits for the answer
        reply = (value, errors.get_last_error())
        box = self._outbox_for_worker(message.src_worker, message.src_pid)
        if box is not None:
            self._post(box, ipc.REPLY, message.id, reply, dst_pid=message.src_pid,
                       dst_worker=message.src_worker)


def _spawn(fn, *args):
    greenlet(fn, gevent.get_hub()).switch(*args) if getcurrent() is gevent.get_hub() \
        else gevent.spawn(fn, *args)


def _guarded(name, callback, *args):
    call_user("%s callback" % name, callback, *args)

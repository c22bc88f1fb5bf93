"""Tasks on Redis (``task_backend = "redis"``): one stream that the task
workers of every node read.

How a task travels:

    event worker (node A)  --XADD gswoole:tasks-->  the stream
    any idle task worker of any node  --XREADGROUP, one task at a time-->  task callback
    its result  --PUBLISH on node A's channel-->  A's cluster process
                --Mailbox.deliver-->  the sending worker, matched by task id like a local result
    with it XACK + XDEL: the task is done and its entry gone.

The stream has one consumer group; each task worker is a consumer named
after its node number and worker id. A task worker asks for one task only
when it is free, so a busy one never holds tasks others could run.

At-least-once. An entry is acknowledged only once its result went out
(the PUBLISH and the XACK + XDEL in one pipeline, in that order).
While a task runs, the task worker's shared slot holds the entry's id and
the node's cluster process touches the entry (XCLAIM JUSTID: its idle time
back to 0) every third of ``task_reclaim_time``; so an entry idle for
``task_reclaim_time`` belongs to a task worker or node that died (or could
not reach Redis to acknowledge), and the next free task worker anywhere
claims it (XAUTOCLAIM) and runs it again. A task that has been delivered
MAX_DELIVERIES times (it kills its task worker each time) is not run again:
its sender gets a TaskError instead.

Everything in the stream is signed (wire.py); an entry that fails the check
is dropped with a log line and never run.
"""

import logging
import time

import gevent
import redis

from . import PREFIX, node_channel, wire
from .. import ipc
from ..process import pid_alive
from .link import RETRY_PAUSE, Unreachable

log = logging.getLogger("gswoole")

STREAM = PREFIX + "tasks"
GROUP = "task_workers"
BLOCK_MS = 1000          # how long one XREADGROUP waits for a task
RECLAIM_CHECK = 1.0      # seconds between a task worker's looks for abandoned tasks
MAX_DELIVERIES = 3
RESULT_PATIENCE = 3.0    # seconds a result waits for its live sender node's subscriber

# Reset the idle time of an entry, but only while it is still pending for
# this consumer (another may have claimed it meanwhile).
_TOUCH = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #pending == 1 then
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
  return 1
end
return 0
"""


def consumer_name(node, worker_id):
    """The consumer a task worker reads as (a replacement reuses it)."""
    return "node%d.task%d" % (node, worker_id)


def split_entry_id(entry_id):
    """A stream entry id (b'1700000000000-3') as the two ints a slot stores."""
    if isinstance(entry_id, bytes):
        entry_id = entry_id.decode("ascii")
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


def join_entry_id(ms, seq):
    return "%d-%d" % (ms, seq)


# -- what crosses Redis (sans-IO) -----------------------------------------

class RemoteTask:
    """A task read from the stream: the attributes of a local task message
    that the task worker uses, plus where its result goes."""

    __slots__ = ("id", "src_worker", "src_pid", "node", "data", "entry")

    def __init__(self, entry, node, src_pid, src_worker, task_id, data):
        self.entry = entry
        self.node = node
        self.src_pid = src_pid
        self.src_worker = src_worker
        self.id = task_id
        self.data = data

    def value(self):
        return self.data


def encode_task(key, node, pid, worker_id, task_id, data):
    """The signed stream message of a task. TypeError (or ValueError) when
    ``data`` is not JSON data: raised by ``task()``, not lost later."""
    return wire.encode(key, {"k": "task", "node": node, "pid": pid, "w": worker_id,
                             "id": task_id, "data": data})


def decode_task(key, entry_id, fields):
    """The RemoteTask in a stream entry; wire.BadSignature for anything not
    signed with ``key`` or not a task."""
    message = (fields or {}).get(b"m")
    if message is None:
        raise wire.BadSignature("not a task entry")
    task = wire.decode(key, message)
    try:
        if task["k"] != "task":
            raise ValueError(task["k"])
        numbers = [task[name] for name in ("node", "pid", "w", "id")]
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
            raise ValueError(numbers)
        return RemoteTask(entry_id, *numbers, task["data"])
    except (KeyError, TypeError, ValueError) as exc:
        raise wire.BadSignature("signed but not a task: %r" % (exc,)) from None


def encode_result(key, task, kind, value):
    """The signed message that brings a task's outcome (ipc.RESULT, ERROR
    or DONE) to its sender's node. TypeError when ``value`` is not JSON data."""
    return wire.encode(key, {"k": "result", "kind": kind, "id": task.id, "value": value,
                             "pid": task.src_pid, "w": task.src_worker})


# -- an event worker's side ---------------------------------------------------

class TaskSender:
    """XADD of an event worker's tasks (``Mailbox.task`` with the redis backend)."""

    def __init__(self, link, key, node, pid, worker_id):
        self.link = link
        self.key = key
        self.node = node
        self.pid = pid
        self.worker_id = worker_id

    def encode(self, task_id, data):
        return encode_task(self.key, self.node, self.pid, self.worker_id, task_id, data)

    def send(self, message):
        """True once the task is in the stream; False while Redis is unreachable."""
        try:
            self.link.run(lambda client: client.xadd(STREAM, {"m": message}))
        except Unreachable:
            return False
        return True


# -- a task worker's side -------------------------------------------------------

class TaskConsumer:
    """A task worker's reading of the stream. ``worker`` (task_worker.TaskWorker)
    runs each task with ``run_remote`` and says ``stopping``."""

    def __init__(self, setting, link, node, worker):
        self.link = link
        self.key = wire.key(setting["cluster_secret"])
        self.node = node
        self.worker = worker
        self.name = consumer_name(node, worker.worker_id)
        self.min_idle_ms = int(setting["task_reclaim_time"] * 1000)
        self._reclaim_at = 0.0
        self._cursor = "0-0"
        self._group_ready = False

    def owns(self, task):
        return isinstance(task, RemoteTask)

    def serve(self):
        """Take and run tasks, one at a time, until the worker stops."""
        while not self.worker.stopping:
            try:
                task = self._next()
            except Unreachable:
                gevent.sleep(RETRY_PAUSE)   # the link logged it once
                continue
            except Exception:
                log.exception("task worker #%d: reading the task stream failed",
                              self.worker.worker_id)
                gevent.sleep(RETRY_PAUSE)
                continue
            if task is not None:
                try:
                    self.worker.run_remote(task)
                except Exception:   # this loop must go on: it is the worker's only reader
                    log.exception("task worker #%d: task %d from node %d could not be "
                                  "finished", self.worker.worker_id, task.id, task.node)

    def _next(self):
        if not self._group_ready:
            self.link.run(self._create_group)
            self._group_ready = True
        now = time.monotonic()
        if now >= self._reclaim_at:
            self._reclaim_at = now + RECLAIM_CHECK
            task = self._reclaim()
            if task is not None:
                return task
        try:
            reply = self.link.run(lambda client: client.xreadgroup(
                GROUP, self.name, {STREAM: ">"}, count=1, block=BLOCK_MS))
        except redis.ResponseError as exc:
            return self._no_group(exc)
        for _, entries in reply or ():
            for entry_id, fields in entries:
                return self._accept(entry_id, fields)
        return None

    @staticmethod
    def _create_group(client):
        # From id 0: tasks added before the group existed (a Redis restarted
        # empty, senders faster than task workers) are read too.
        try:
            client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _no_group(self, exc):
        if "NOGROUP" not in str(exc):
            raise exc
        self._group_ready = False   # Redis restarted empty: make it again
        return None

    def _reclaim(self):
        """A task abandoned for task_reclaim_time, claimed for this worker; or None."""
        try:
            cursor, entries = self.link.run(lambda client: client.xautoclaim(
                STREAM, GROUP, self.name, self.min_idle_ms, start_id=self._cursor,
                count=1))[:2]
        except redis.ResponseError as exc:
            return self._no_group(exc)
        self._cursor = cursor
        if not entries:
            return None
        entry_id, fields = entries[0]
        pending = self.link.run(lambda client: client.xpending_range(
            STREAM, GROUP, min=entry_id, max=entry_id, count=1))
        deliveries = pending[0]["times_delivered"] if pending else 1
        log.warning("task worker #%d: took over task entry %s, abandoned for %.0f s (its task "
                    "worker or node died mid-task; delivery %d)", self.worker.worker_id,
                    entry_id.decode("ascii"), self.min_idle_ms / 1000.0, deliveries)
        task = self._accept(entry_id, fields)
        if task is not None and deliveries > MAX_DELIVERIES:
            log.error("task %d from node %d: given up after %d deliveries", task.id, task.node,
                      deliveries - 1)
            self.reply(task, ipc.ERROR, [
                "task %d was taken %d times and its task worker died each time; not run "
                "again" % (task.id, deliveries - 1), ""])
            return None
        return task

    def _accept(self, entry_id, fields):
        try:
            return decode_task(self.key, entry_id, fields)
        except wire.BadSignature as exc:
            log.warning("task worker #%d: dropped task entry %s from Redis without running it: "
                        "%s (is cluster_secret the same on every node?)",
                        self.worker.worker_id, entry_id.decode("ascii", "replace"), exc)
            self._ack(entry_id)
            return None

    def reply(self, task, kind, value):
        """Send ``task``'s outcome to its sender's node and acknowledge the
        task; True if that node heard it. Raises TypeError when ``value`` is
        not JSON data. While Redis is unreachable the task stays
        unacknowledged (and runs again after task_reclaim_time)."""
        message = encode_result(self.key, task, kind, value)
        channel = node_channel(task.node)
        publish = lambda client: client.publish(channel, message)  # noqa: E731

        def publish_and_ack(client):
            # One round trip: in order, so acknowledged only once published.
            pipe = client.pipeline(transaction=False)
            pipe.publish(channel, message)
            pipe.xack(STREAM, GROUP, task.entry)
            pipe.xdel(STREAM, task.entry)
            # (an acknowledgement refused, NOGROUP after a Redis restart,
            # must not make a delivered result look undelivered)
            heard = pipe.execute(raise_on_error=False)[0]
            return 0 if isinstance(heard, Exception) else heard
        try:
            heard = self.link.run(publish_and_ack)
            if not heard and self.link.node_alive(task.node):
                # Registered but not listening: its cluster process is
                # (re)starting (it subscribes a moment after its node starts).
                deadline = time.monotonic() + RESULT_PATIENCE
                while not heard and time.monotonic() < deadline:
                    gevent.sleep(0.05)
                    heard = self.link.run(publish)
        except Unreachable:
            return False   # not acknowledged: run again after task_reclaim_time
        if not heard:
            log.warning("task %d: its sender's node %d is gone; result dropped", task.id,
                        task.node)
        return bool(heard)

    def _ack(self, entry_id):
        def ack(client):
            pipe = client.pipeline(transaction=False)
            pipe.xack(STREAM, GROUP, entry_id)
            pipe.xdel(STREAM, entry_id)
            return pipe.execute()
        try:
            self.link.run(ack)
        except Unreachable:
            pass   # left pending: another task worker runs it again (at-least-once)


# -- the node's cluster process: keep running tasks from being reclaimed ------

def touch_running_tasks(link, shared, node):
    """Reset the idle time of the entries this node's live task workers are
    running, so they are not taken from them however long they run."""
    running = [(consumer_name(node, slot["worker_id"]),
                join_entry_id(slot["task_entry_ms"], slot["task_entry_seq"]))
               for slot in shared.live_slots()
               if slot["task_entry_ms"] and pid_alive(slot["pid"])]
    if not running:
        return

    def touch(client):
        pipe = client.pipeline(transaction=False)
        for consumer, entry_id in running:
            pipe.eval(_TOUCH, 1, STREAM, GROUP, consumer, entry_id)
        return pipe.execute()
    link.run(touch)


def keep_running_tasks(link, shared, node, reclaim_time):
    """The cluster process's loop around ``touch_running_tasks``."""
    while True:
        gevent.sleep(reclaim_time / 3.0)
        try:
            touch_running_tasks(link, shared, node)
        except Unreachable:
            pass
        except redis.ResponseError as exc:
            log.warning("cluster node %d: could not keep running tasks: %s", node, exc)

"""The node's one subscriber: the cluster process.

Why a process of its own, not worker 0: a worker may be stuck in a user
callback, retire for max_request or be reloaded, and the node must keep
hearing its channel meanwhile; one process also means one Redis subscriber
per node however many workers it has. The master starts it as its last user
process (``gswoole: user process #N``, after the user's own), restarts it
when it dies, and stops it at shutdown; it unregisters the node then, so
the other nodes forget it at once instead of after cluster_node_timeout.

It hears two channels: its node's (calls, casts and replies addressed to
this node) and the cluster's (broadcast frames). Pub/sub rather than
streams: a message for a node is only worth something while that node
lives (its connections die with it), pub/sub delivers it at once with no
storage to trim, and PUBLISH says how many listeners got it, which is the
sender's "is that node listening" check. Messages published while Redis or
this process is down are lost, as the connections' writes would be.

Every message is checked against ``cluster_secret`` before anything is done
with it; one that fails is dropped with a log line.

Every third of cluster_node_timeout it refreshes the node's registration
(which also brings it back after a Redis restart).
"""

import logging
import time

import gevent

from . import ALL_CHANNEL, node_channel, node_of, wire
from .. import errors, ipc
from ..process import pid_alive
from .link import REDIS_ERRORS, RETRY_PAUSE, Link, Unreachable, node_name
from .pubsub import Subscriber
from .routing import CASTS, REMOTE_OPS

log = logging.getLogger("gswoole")

WORKERS_CACHE = 1.0
# Seconds a worker's liveness is believed without asking the kernel again:
# pid_alive (a kill and a read of /proc) was the cluster process's largest
# cost per message. A message for a worker that died within this window is
# dropped (with a log line) by the datagram's forwarding, as its
# connections died with it.
PID_CACHE = 0.5


class ClusterNode:
    def __init__(self, setting, shared, mailbox):
        self.setting = setting
        self.shared = shared
        self.mailbox = mailbox
        self.number = shared.node
        self.name = node_name(setting)
        self.key = wire.key(setting["cluster_secret"])
        self.link = Link(setting)
        self.worker_num = setting["worker_num"]
        self._workers = ([], 0.0)
        self._pids = {}           # pid -> (alive, checked at)

    def serve(self):
        refresher = gevent.spawn(self._refresh_forever)
        keeper = None
        if self.setting["task_backend"] == "redis":
            from .tasks import keep_running_tasks
            keeper = gevent.spawn(keep_running_tasks, self.link, self.shared, self.number,
                                  self.setting["task_reclaim_time"])
        try:
            self._listen_forever()
        except SystemExit:
            try:
                self.link.unregister(self.number)
            except Unreachable:
                pass
            raise
        finally:
            refresher.kill()
            if keeper is not None:
                keeper.kill()

    def _refresh_forever(self):
        every = self.setting["cluster_node_timeout"] / 3.0
        while True:
            self._refresh()
            gevent.sleep(every)

    def _refresh(self):
        try:
            self.link.refresh(self.number, self.name, self.setting["cluster_node_timeout"])
        except Unreachable:
            pass

    def _listen_forever(self):
        channels = (node_channel(self.number), ALL_CHANNEL)
        while True:
            subscriber = Subscriber(self.link.host, self.link.port, channels)
            try:
                subscriber.subscribe()
                self.link.recovered()
                self._refresh()   # back after a Redis restart: register again at once
                subscriber.listen(self._on_message)
            except REDIS_ERRORS as exc:
                self.link.lost(exc)
            finally:
                subscriber.close()
            gevent.sleep(RETRY_PAUSE)

    # -- what arrives ----------------------------------------------------------

    def _on_message(self, data):
        try:
            message = wire.decode(self.key, data)
            kind = message["k"]
        except (wire.BadSignature, KeyError, TypeError) as exc:
            log.warning("cluster node %d: dropped a message from Redis: %s (is "
                        "cluster_secret the same on every node?)", self.number, exc)
            return
        try:
            if kind == "cast":
                self._cast(message["op"], message["args"])
            elif kind == "call":
                gevent.spawn(self._answer, message)
            elif kind == "reply":
                self.mailbox.deliver(ipc.REPLY, message["id"], tuple(message["value"]),
                                     message["pid"], message["w"])
            elif kind == "result" and message["kind"] in (ipc.RESULT, ipc.ERROR, ipc.DONE):
                self.mailbox.deliver(message["kind"], message["id"], message["value"],
                                     message["pid"], message["w"])
            elif kind == "frame":
                if message["node"] != self.number:
                    self._frame(message["frame"], message["fds"])
        except Exception:
            log.exception("cluster node %d: a message could not be handled", self.number)

    def _owner(self, fd):
        """(pid, worker id) of the live local worker holding ``fd``, or None."""
        if node_of(fd) != self.number:
            return None
        pid, worker_id = self.shared.owner_of(fd)
        if not pid:
            return None
        now = time.monotonic()
        known = self._pids.get(pid)
        if known is None or now - known[1] > PID_CACHE:
            if len(self._pids) > 1024:
                self._pids.clear()
            known = self._pids[pid] = (pid_alive(pid), now)
        return (pid, worker_id) if known[0] else None

    def _cast(self, op, args):
        if op not in CASTS or not args:
            return
        owner = self._owner(args[0])
        if owner is not None:
            self.mailbox.cast(owner[0], owner[1], op, *args)

    def _answer(self, message):
        op, args = message["op"], message["args"]
        errors.set_last_error(0)
        if op == "get_client_list":
            fds = []
            for pid, worker_id in self._event_workers():
                found = self.mailbox.call(pid, worker_id, "get_client_list", args[0], 0)
                if isinstance(found, list):
                    fds.extend(found)
            value, code = fds, 0
        elif op in REMOTE_OPS and args and self._owner(args[0]) is not None:
            pid, worker_id = self._owner(args[0])
            value = self.mailbox.call(pid, worker_id, op, *args)
            code = errors.get_last_error()
        else:
            value, code = REMOTE_OPS.get(op, False), errors.SESSION_NOT_EXIST
        reply = wire.encode(self.key, {"k": "reply", "id": message["id"], "pid": message["pid"],
                                       "w": message["w"], "value": [value, code]})
        try:
            self.link.publish(node_channel(message["node"]), reply)
        except Unreachable:
            pass

    def _event_workers(self):
        workers, when = self._workers
        now = time.monotonic()
        if now - when > WORKERS_CACHE:
            workers = [(slot["pid"], slot["worker_id"]) for slot in self.shared.live_slots()
                       if slot["worker_id"] < self.worker_num]
            self._workers = (workers, now)
        return workers

    def _frame(self, frame, fds):
        if fds is None:
            for pid, worker_id in self._event_workers():
                self.mailbox.cast(pid, worker_id, "websocket_frame_to", frame, None)
            return
        groups = {}
        for fd in fds:
            owner = self._owner(fd)
            if owner is not None:
                groups.setdefault(owner, []).append(fd)
        for (pid, worker_id), group in groups.items():
            self.mailbox.cast(pid, worker_id, "websocket_frame_to", frame, group)


def run_cluster_process(process):
    """The callback of the node's cluster process (a user process the
    server adds at start)."""
    runner = process.server._user_process
    ClusterNode(runner.context.setting, runner.context.shared, runner.mailbox).serve()

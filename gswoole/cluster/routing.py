"""An event worker's calls for connections held by other nodes.

``Reactor._routed`` hands a call here when no process of this node owns
the fd. The fd's node is ``fd >> NODE_SHIFT``; when the registry says that
node is alive, the call is published on the node's channel. Its cluster
process (node.py) passes it to the owning worker through the usual
cross-worker call and publishes the answer on this node's channel, whence
this node's cluster process hands it to this worker's inbox as the REPLY of
a cross-worker call (tasks.py matches it by call id).

``send`` and ``push`` do not wait for an answer (a cast): they return True
once a live node's cluster process has received the message (PUBLISH counts
its listeners), so a send costs one Redis round trip, not two. The far
worker's verdict (the fd closed meanwhile) is not reported back, as with
``broadcast``. Every other call waits (up to CALL_TIMEOUT) for the answer.
"""

import logging

import gevent

from . import ALL_CHANNEL, node_channel, node_of, wire
from .. import errors
from .link import Link, Unreachable

log = logging.getLogger("gswoole")

CALL_TIMEOUT = 3.0
# What another node may ask of a connection here: op -> value when it fails.
REMOTE_OPS = {"send": False, "close": False, "exist": False, "get_client_info": None,
              "pause": False, "resume": False, "confirm": False, "protect": False,
              "bind": False, "websocket_push": False, "websocket_disconnect": False,
              "websocket_is_established": False}
CASTS = frozenset(("send", "websocket_push"))


class ClusterRouting:
    def __init__(self, setting, node, mailbox, worker_id, pid):
        self.link = Link(setting)
        self.key = wire.key(setting["cluster_secret"])
        self.node = node
        self.mailbox = mailbox
        self.worker_id = worker_id
        self.pid = pid

    def _fail(self, default):
        errors.set_last_error(errors.SESSION_NOT_EXIST)
        return default

    def route(self, fd, op, args, default):
        """``op(*args)`` run by the worker of another node that holds ``fd``."""
        number = node_of(fd)
        if op not in REMOTE_OPS or not number or number == self.node:
            return self._fail(default)
        try:
            if not self.link.node_alive(number):
                return self._fail(default)
            if op in CASTS:
                message = wire.encode(self.key, {"k": "cast", "op": op, "args": args})
                if not self.link.publish(node_channel(number), message):
                    return self._fail(default)   # its cluster process is not listening
                return True
            answers = self._ask([number], op, args)
        except Unreachable:
            return self._fail(default)
        if number not in answers:
            return self._fail(default)
        value, code = answers[number]
        errors.set_last_error(code)
        return value

    def _ask(self, numbers, op, args):
        """Publish a call to each node of ``numbers``; {number: (value, code)}
        of those that answered within CALL_TIMEOUT."""
        waiting = {}
        try:
            for number in numbers:
                call_id, result = self.mailbox.expect_reply()
                waiting[number] = (call_id, result)
                message = wire.encode(self.key, {
                    "k": "call", "id": call_id, "node": self.node, "pid": self.pid,
                    "w": self.worker_id, "op": op, "args": args})
                if not self.link.publish(node_channel(number), message):
                    result.set((None, errors.SESSION_NOT_EXIST))
            answers = {}
            with gevent.Timeout(CALL_TIMEOUT, False):
                for number, (_, result) in waiting.items():
                    answers[number] = tuple(result.get())
            return answers
        finally:
            for call_id, _ in waiting.values():
                self.mailbox.forget_reply(call_id)

    def client_list(self, start_fd):
        """Open fds above ``start_fd`` on every other live node."""
        try:
            numbers = [n for n in self.link.live_nodes() if n != self.node]
            answers = self._ask(numbers, "get_client_list", [start_fd])
        except Unreachable:
            return []
        fds = []
        for value, _ in answers.values():
            if isinstance(value, list):
                fds.extend(value)
        return fds

    def broadcast(self, frame, fds):
        """A WebSocket frame for every other node's connections (``fds``
        None) or for those of ``fds``: one message every node hears."""
        message = wire.encode(self.key, {"k": "frame", "node": self.node, "frame": frame,
                                         "fds": fds})
        if gevent.getcurrent() is gevent.get_hub():
            gevent.spawn(self._publish_all, message)
        else:
            self._publish_all(message)

    def _publish_all(self, message):
        try:
            self.link.publish(ALL_CHANNEL, message)
        except Unreachable:
            pass   # logged once by the link

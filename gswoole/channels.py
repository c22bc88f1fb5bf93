"""The socketpairs that connect a server's processes, made by the master
before it forks anything so that every worker, and every replacement of a
worker, inherits the same ones.

* ``task_queue``: one datagram socketpair for tasks any task worker may take.
  Every idle task worker waits on its receiving end, and the kernel gives
  each datagram to exactly one of them.
* ``task_inboxes[t]``: one per task worker id, for tasks sent to that worker
  (``dst_worker_id``) and its pipe messages.
* ``worker_inboxes[w]``: one per event worker id, for task results, pipe
  messages and cross-worker calls.

What sits in these sockets belongs to no process, so it survives a worker's
reload or crash and the replacement reads it. Between a worker and its
replacement (both alive while the old one drains) each message names the pid
it is for; whoever reads a message for the other forwards it to that
process's private inbox (``ipc.inbox_address``).
"""

import socket
from _socket import socketpair as _socketpair

BUFFER_SIZE = 4 * 1024 * 1024


def _pair():
    # _socket's socketpair: plain sockets even in a monkey-patched process;
    # each side manages blocking itself.
    a, b = _socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for sock in (a, b):
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, BUFFER_SIZE)
            except OSError:
                pass   # capped by net.core.wmem_max: the default still works
    return a, b


class Channels:
    def __init__(self, worker_num, task_worker_num):
        self.worker_num = worker_num
        self.task_queue = _pair() if task_worker_num else None
        self.task_inboxes = {t: _pair() for t in range(worker_num, worker_num + task_worker_num)}
        self.worker_inboxes = {w: _pair() for w in range(worker_num)}

    def add_worker(self, worker_id):
        """A new event worker id (TTIN): processes forked before it cannot
        reach it through a socketpair; they fall back to its private inbox."""
        if worker_id not in self.worker_inboxes:
            self.worker_inboxes[worker_id] = _pair()

    def inbox_of(self, worker_id):
        """The (send, recv) pair that reaches worker ``worker_id``, or None."""
        pair = self.worker_inboxes.get(worker_id)
        return pair if pair is not None else self.task_inboxes.get(worker_id)

    def close(self):
        pairs = list(self.task_inboxes.values()) + list(self.worker_inboxes.values())
        if self.task_queue:
            pairs.append(self.task_queue)
        for pair in pairs:
            for sock in pair:
                sock.close()

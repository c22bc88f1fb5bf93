"""Accepting connections: one worker's listening sockets.

In the manner of gevent's BaseServer: up to a batch of accepts per wake-up,
a pause on errors that say the process is out of something (EMFILE and
friends) instead of spinning, and no accepting at all while the worker is at
``max_conn``, so that new clients wait in the listen backlog (where another
worker may take them) instead of being accepted and dropped.
"""

import errno
import logging
import resource

log = logging.getLogger("gswoole")

ACCEPT_ERRNOS_BACKOFF = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
BACKOFF_SECONDS = 0.1

# Descriptors a worker keeps for itself (listening sockets, pipes to the
# master and the other workers, the event loop, log files): max_conn's
# default leaves them out of the open-file limit.
OWN_DESCRIPTORS = 64


def default_max_conn():
    """Connections a worker can hold within its open-file limit."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(1, soft - OWN_DESCRIPTORS)


class Acceptor:
    """Accepts on the stream listeners and hands each new socket to
    ``add_connection(listener, fileno, addr)``; ``open_count()`` is how many
    connections the worker holds (open or still closing)."""

    def __init__(self, loop, worker_id, setting, add_connection, open_count):
        self.loop = loop
        self.worker_id = worker_id
        self.max_conn = setting["max_conn"] or default_max_conn()
        self._backlog = setting["backlog"]
        self._shared_sockets = not setting["enable_reuse_port"]
        self._add_connection = add_connection
        self._open_count = open_count
        self._watching = []          # (watcher, listener, sock, batch)
        self._full = False           # paused: max_conn reached

    def open(self, listeners):
        """Bind this worker's own sockets (reuse_port) before workerStart
        runs, so clients queue in its backlog meanwhile instead of being
        refused. Returns [(listener, socket)] for every listener."""
        return [(listener, listener.open_worker_socket(self._backlog))
                for listener in listeners]

    def start(self, listener, sock):
        watcher = self.loop.io(sock.fileno(), 1)
        # Several workers sharing one socket all wake for each connection;
        # taking one per wake-up spreads connections across them instead of
        # letting the first awake worker grab the whole backlog.
        batch = 1 if self._shared_sockets else 64
        watcher.start(self._on_accept, listener, sock, batch)
        self._watching.append((watcher, listener, sock, batch))

    def stop(self):
        for watcher, listener, sock, _ in self._watching:
            watcher.stop()
            if sock is not listener.sock:
                # Our own SO_REUSEPORT socket: take what is already queued on it
                # first, since closing a listening socket resets its backlog.
                self._on_accept(listener, sock, 1 << 30)
                sock.close()
        self._watching = []

    def _on_accept(self, listener, sock, batch):
        try:
            for _ in range(batch):
                if self._open_count() >= self.max_conn:
                    self._pause_when_full()
                    return
                try:
                    fileno, addr = sock._accept()
                except BlockingIOError:
                    return
                except OSError as exc:
                    if exc.errno in ACCEPT_ERRNOS_BACKOFF:
                        self._back_off(exc)
                        return
                    continue  # ECONNABORTED and friends: that client is gone
                self._add_connection(listener, fileno, addr)
        except Exception:
            log.exception("worker #%d: error while accepting", self.worker_id)

    def _pause_when_full(self):
        if not self._full:
            self._full = True
            log.warning("worker #%d is at max_conn=%d: not accepting until a connection "
                        "closes", self.worker_id, self.max_conn)
        self._watch(False)

    def connection_gone(self):
        """A connection is gone: accept again if max_conn had paused it."""
        if self._full and self._open_count() < self.max_conn:
            self._full = False
            self._watch(True)

    def _watch(self, on):
        for watcher, listener, sock, batch in self._watching:
            if not on:
                watcher.stop()
            elif not watcher.active:
                watcher.start(self._on_accept, listener, sock, batch)

    def _back_off(self, exc):
        log.error("accept() failed on worker #%d: %s; pausing accepts for %.1f s",
                  self.worker_id, exc, BACKOFF_SECONDS)
        self._watch(False)

        def resume():
            if not self._full:
                self._watch(True)
        self.loop.timer(BACKOFF_SECONDS).start(resume)

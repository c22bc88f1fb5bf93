"""The reactor's graceful and fast stops.

A graceful stop stops accepting, tells the protocols (``stop_hooks``: HTTP
answers what arrives with ``Connection: close`` and closes quiet keep-alive
connections), and waits up to ``max_wait_time`` until no connection could
still lose data: sockets that merely linger with everything delivered do not
hold it up. What is left then is closed. A fast stop closes every socket.

``Stopping`` is a part of ``Reactor`` (reactor.py), kept in its own module.
"""

import logging
import time

from . import errors
from .closing import unsent_bytes

log = logging.getLogger("gswoole")


class Stopping:

    def stop_gracefully(self, timeout):
        """Stop accepting and wait up to ``timeout`` for open connections to
        finish; then close what is left. Returns True if nothing was cut off."""
        self.stopping = True
        self.acceptor.stop()
        self.datagrams.stop()
        if self._heartbeat is not None:
            self._heartbeat.stop()
        for hook in self.stop_hooks:
            hook(self)
        deadline = time.monotonic() + timeout
        self._check_all_closed()
        # Re-check now and then: a lingering socket's kernel queue empties
        # without any event of ours.
        while not self._all_closed.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
            self._check_all_closed()
            if time.monotonic() >= deadline:
                break
        clean = self._all_closed.is_set()
        if not clean:
            errors.set_last_error(errors.WORKER_EXIT_TIMEOUT)
            log.warning("worker #%d: max_wait_time (%ss) passed with %d connection(s) open; "
                        "closing them (error %d)", self.worker_id, timeout, len(self.conns),
                        errors.WORKER_EXIT_TIMEOUT)
            self.close_all()
            # close callbacks run in runners; give them a moment, bounded.
            self._all_closed.wait(1.0)
        for conn in list(self._lingering):
            self._destroy(conn)
        return clean

    def _check_all_closed(self):
        if self.stopping and self._nothing_to_lose():
            self._all_closed.set()

    def _nothing_to_lose(self):
        """No connection left that could still lose data: closed sockets that
        merely linger with everything delivered do not hold a stop up."""
        if self.conns or self.datagrams.busy():
            return False
        return all(c.sock is None or (not c.out_size and not unsent_bytes(c.fileno))
                   for c in self._lingering)

    def close_all(self):
        for fd in list(self.conns):
            self.close(fd)

    def shutdown_now(self):
        """Fast stop: no callbacks, just close every socket."""
        for conn in list(self.conns.values()) + list(self._lingering):
            self._close_socket(conn)
        self.acceptor.stop()

"""The reactor's output side: sends, the output buffer and flow control.

A send writes straight to the socket when nothing is queued (one syscall, no
wake-up); what the kernel does not take is queued and written by a write
watcher started only then. While input is pipelined, answers are gathered
("corked") and written together on the hub's next turn.

Flow control: a peer that does not read its answers stops being read (the
HOLD_OUTPUT hold, taken at half of ``buffer_output_size`` and given back at a
quarter), so a request/response protocol slows to the peer's pace instead of
overflowing. A peer that takes nothing for ``send_timeout`` is reset.

``Sending`` is a part of ``Reactor`` (reactor.py), kept in its own module:
its methods use the reactor's connection table and settings.
"""

import logging
import os
import socket as _stdsocket
import time

from gevent.event import Event
from gevent.socket import wait_write
from greenlet import getcurrent

from . import errors
from .connection import HOLD_OUTPUT, OPEN, RELEASED, as_bytes
from .closing import unsent_bytes

log = logging.getLogger("gswoole")


class Sending:

    def send(self, fd, data):
        conn = self.conns.get(fd)
        if conn is None or conn.state != OPEN:
            if conn is None and self.route is not None:
                return self._routed(fd, "send", fd, data)
            return self._fail(fd, conn)
        if data.__class__ is not bytes:
            data = as_bytes(data)
        if conn.tls is not None:
            return self._tls_send(conn, data)   # encryption.py
        size = len(data)
        if conn.out_size or conn.corked:
            # Behind queued (or gathered) output: queue, to keep the order.
            if conn.out_size + size > self.buffer_limit:
                return self._overflow(conn, data)
            conn.queue_output(data)
        else:
            if size > self.buffer_limit:
                return self._overflow(conn, data)
            try:
                sent = conn.sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._on_eof(conn, broken=True)
                return errors.set_last_error(errors.SESSION_CLOSED)
            if sent == size:
                return True
            conn.queue_output(memoryview(data)[sent:] if sent else data)
            self._start_writer(conn)
        if conn.out_size >= self._high_water:
            self.hold_reading(conn, HOLD_OUTPUT)
        return True

    def send_wait(self, fd, data):
        """Send all of ``data``, waiting in this greenlet for buffer room (up to
        send_timeout) instead of failing with 1009/1203: what a protocol that
        must not lose part of a message (HTTP) uses. False if the connection
        went away or the peer did not read in time."""
        conn = self.conns.get(fd)
        limit = self.buffer_limit
        if conn is None or conn.state != OPEN or conn.out_size + len(data) <= limit:
            return self.send(fd, data)
        if data.__class__ is not bytes:
            data = as_bytes(data)
        step = max(limit // 2, 1)
        deadline = time.monotonic() + self.setting["send_timeout"]
        for start in range(0, len(data), step):
            piece = data[start:start + step]
            if not self._wait_output(conn, limit - len(piece), deadline):
                return self._no_room(conn)
            if not self.send(fd, piece):
                return False
        return True

    def send_gathered(self, fd, data):
        """``send``, gathered with this connection's other sends until the
        hub's next turn, then written in one go: for fan-out, where one turn
        may send a connection several messages (a burst of broadcasts)."""
        conn = self.conns.get(fd)
        if conn is not None and not conn.corked and conn.state == OPEN:
            conn.corked = True
            self.loop.run_callback(self._uncork, conn)
        return self.send(fd, data)

    def _uncork(self, conn):
        """Write what corked sends gathered, in one go."""
        if not conn.corked:
            return
        conn.corked = False
        if conn.out_size and conn.sock is not None:
            if conn.writer is not None and conn.writer.active:
                return   # waiting for the socket already: the writer sends it
            self._on_writable(conn)
            if conn.out_size and conn.sock is not None:
                self._start_writer(conn)

    def _overflow(self, conn, data):
        size = len(data)
        if size > self.buffer_limit:
            log.warning("worker #%d: send of %d bytes to fd %d refused: larger than "
                        "buffer_output_size (%d)", self.worker_id, size, conn.fd,
                        self.buffer_limit)
            return errors.set_last_error(errors.DATA_LENGTH_TOO_LARGE)
        if not self.setting["send_yield"] or getcurrent() is self.hub:
            if not conn.warned:
                conn.warned = True
                log.warning("worker #%d: output buffer overflow on fd %d (%d bytes queued, "
                            "buffer_output_size %d): send() returns False (1009); the data "
                            "is not sent", self.worker_id, conn.fd, conn.out_size,
                            self.buffer_limit)
            return errors.set_last_error(errors.OUTPUT_BUFFER_OVERFLOW)
        deadline = time.monotonic() + self.setting["send_timeout"]
        if not self._wait_output(conn, self.buffer_limit - size, deadline):
            return self._no_room(conn)
        conn.queue_output(data if conn.tls is None else conn.tls.encrypt(data))
        self._start_writer(conn)
        if conn.out_size >= self._high_water:
            self.hold_reading(conn, HOLD_OUTPUT)
        return True

    def _wait_output(self, conn, allowed, deadline):
        """Wait, in this greenlet, until ``conn`` has at most ``allowed`` bytes
        queued. False if it closed or ``deadline`` passed first."""
        while conn.out_size > allowed:
            remaining = deadline - time.monotonic()
            if conn.state != OPEN or conn.sock is None or remaining <= 0:
                return False
            if conn.output_room is None:
                conn.output_room = Event()
            conn.output_room.clear()
            conn.output_room.wait(remaining)
        return conn.state == OPEN and conn.sock is not None

    def _no_room(self, conn):
        if conn.state != OPEN or conn.sock is None:
            return self._fail(conn.fd, conn)
        return errors.set_last_error(errors.OUTPUT_BUFFER_OVERFLOW)

    def _start_writer(self, conn):
        if conn.writer is None:
            conn.writer = self.loop.io(conn.fileno, 2)
        if not conn.writer.active:
            conn.writer.start(self._on_writable, conn)
            conn.write_progress = self.clock
            self._backlogged.add(conn)

    def _on_writable(self, conn):
        try:
            before = conn.out_size
            try:
                done = conn.write_pending()
            except OSError:
                conn.drop_output()
                done = True
                if conn.state == OPEN:
                    self._on_eof(conn, broken=True)
            if conn.out_size < before:
                conn.write_progress = self.clock
            if conn.output_room is not None and conn.out_size < self.buffer_limit:
                conn.output_room.set()
            if conn.holds & HOLD_OUTPUT and conn.out_size <= self._low_water:
                self.release_reading(conn, HOLD_OUTPUT)
            if done:
                if conn.writer is not None:
                    conn.writer.stop()
                self._backlogged.discard(conn)
                if conn.state == RELEASED:
                    self._shutdown_write(conn)
        except Exception:
            self._callback_failed("write", conn)

    def wait_output_written(self, fd, timeout):
        """Block this greenlet until ``fd``'s queued output is all written.
        Returns False if the connection went away or ``timeout`` passed."""
        conn = self.conns.get(fd)
        return conn is not None and self._wait_output(conn, 0, time.monotonic() + timeout)

    def send_file(self, fd, file, offset=0, count=None):
        """Write ``count`` bytes of ``file`` (from ``offset``) with os.sendfile.

        Zero-copy: the kernel moves the bytes from the page cache to the
        socket. Runs in the caller's greenlet and waits cooperatively when
        the socket is full, up to send_timeout per wait. Returns True when
        everything was written. On TLS connections: reads and sends."""
        timeout = self.setting["send_timeout"]
        if not self.wait_output_written(fd, timeout):
            return self._fail(fd, self.conns.get(fd))
        conn = self.conns[fd]
        if conn.tls is not None:
            return self._tls_send_file(conn, file, offset, count)
        in_fd = file.fileno()
        if count is None:
            count = os.fstat(in_fd).st_size - offset
        while count > 0:
            try:
                sent = os.sendfile(conn.fileno, in_fd, offset, count)
            except BlockingIOError:
                try:
                    wait_write(conn.fileno, timeout=timeout)
                except _stdsocket.timeout:
                    self.close(fd, reset=True)
                    return errors.set_last_error(errors.OUTPUT_BUFFER_OVERFLOW)
                if conn.sock is None or conn.state != OPEN:
                    return self._fail(fd, conn)
                continue
            except OSError:
                self._on_eof(conn, broken=True)
                return errors.set_last_error(errors.SESSION_CLOSED)
            if sent == 0:
                break  # the file is shorter than promised
            offset += sent
            count -= sent
        return count <= 0

    def _reset_stuck_writers(self):
        # A peer that takes none of its queued output for send_timeout would
        # pin up to buffer_output_size of memory forever (and hold up a
        # graceful stop): give up on it.
        limit = self.clock - self.setting["send_timeout"]
        for conn in [c for c in self._backlogged if c.write_progress < limit]:
            # The kernel's own buffer may still be draining to a slow reader
            # (our queue waits behind it): that is progress too.
            unsent = unsent_bytes(conn.fileno) if conn.sock is not None else 0
            if 0 < unsent < conn.unsent or (unsent and not conn.unsent):
                conn.unsent = unsent
                conn.write_progress = self.clock
                continue
            self._backlogged.discard(conn)
            log.warning("worker #%d: fd %d took no output for %ss; resetting it",
                        self.worker_id, conn.fd, self.setting["send_timeout"])
            if conn.state == OPEN:
                self.close(conn.fd, reset=True)
            elif conn.sock is not None:
                conn.drop_output()
                self._destroy(conn)

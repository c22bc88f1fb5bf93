"""What a program asks of one connection, by fd, from any worker: pause and
resume reading, confirm (``enable_delay_receive``), protect from the
heartbeat, bind a uid, send and wait, send a file; and the heartbeat itself.

Each method acts on a connection of this worker, or is routed to the worker
that owns the fd (``Reactor._routed``, as ``send`` and ``close`` are), so a
callback in worker 0 can pause a connection of worker 1.

Reading is held back with the connection's hold bits (connection.py):
``pause`` takes HOLD_USER and ``resume`` gives it back; a connection accepted
with ``enable_delay_receive`` starts with HOLD_CONFIRM, which ``confirm``
gives back. Other holds (flow control, a lagging queue) are separate bits,
so a resume never restarts reading that flow control still holds, and the
end of flow control never undoes a pause. As in Swoole, a pause stops the
reading: packets already read before it (at most one read's worth) are
still delivered.

``Controls`` is a part of ``Reactor`` (reactor.py), kept in its own module.
"""

import logging
import os

from .connection import HOLD_CONFIRM, HOLD_USER, OPEN
from .swoole_names import WORKER_BUSY, WORKER_EXIT, WORKER_IDLE

log = logging.getLogger("gswoole")

UID_MIN = -2147483648     # Swoole's range for bind()
UID_MAX = 4294967295


class Controls:

    def _open_conn(self, fd, op, *args, patient=False):
        """(connection, None) when ``fd`` is open here; else (None, answer),
        the answer coming from the owning worker or being False with
        get_last_error() set."""
        conn = self.conns.get(fd)
        if conn is not None and conn.state == OPEN:
            return conn, None
        if conn is None and self.route is not None:
            return None, self._routed(fd, op, fd, *args, patient=patient)
        return None, self._fail(fd, conn)

    # -- reading ---------------------------------------------------------------

    def pause(self, fd):
        """Stop reading ``fd`` until ``resume``. False if it is already paused."""
        conn, answer = self._open_conn(fd, "pause")
        if conn is None:
            return answer
        if conn.holds & HOLD_USER:
            return False
        self.hold_reading(conn, HOLD_USER)
        return True

    def resume(self, fd):
        """Read ``fd`` again after ``pause``. False if it was not paused."""
        conn, answer = self._open_conn(fd, "resume")
        if conn is None:
            return answer
        if not conn.holds & HOLD_USER:
            return False
        self.release_reading(conn, HOLD_USER)
        return True

    def confirm(self, fd):
        """With ``enable_delay_receive``: start reading ``fd``. False if it is
        already being read (confirmed before, or no delay was set)."""
        conn, answer = self._open_conn(fd, "confirm")
        if conn is None:
            return answer
        if not conn.holds & HOLD_CONFIRM:
            return False
        self.release_reading(conn, HOLD_CONFIRM)
        return True

    # -- per-connection flags ---------------------------------------------------

    def protect(self, fd, is_protected=True):
        """Keep ``fd`` from being closed by the heartbeat (or allow it again)."""
        conn, answer = self._open_conn(fd, "protect", is_protected)
        if conn is None:
            return answer
        conn.protected = bool(is_protected)
        return True

    def bind(self, fd, uid):
        """Bind ``uid`` (a non-zero int) to ``fd``; get_client_info shows it.
        False if the connection already has one, as in Swoole."""
        if isinstance(uid, bool) or not isinstance(uid, int):
            raise TypeError("bind() takes an int uid, got %r" % (uid,))
        if uid == 0 or not UID_MIN <= uid <= UID_MAX:
            raise ValueError("bind() needs a non-zero uid between %d and %d, got %d"
                             % (UID_MIN, UID_MAX, uid))
        conn, answer = self._open_conn(fd, "bind", uid)
        if conn is None:
            return answer
        if conn.uid:
            return False
        conn.uid = uid
        return True

    # -- sending and waiting ----------------------------------------------------

    def sendwait(self, fd, data):
        """Send ``data`` and wait, in this greenlet, until all of it is
        written to the socket (up to send_timeout per stall)."""
        conn, answer = self._open_conn(fd, "sendwait", data, patient=True)
        if conn is None:
            return answer
        return self.send_wait(fd, data) and \
            self.wait_output_written(fd, self.setting["send_timeout"])

    def sendfile(self, fd, filename, offset=0, length=0):
        """Send ``length`` bytes (0: to the end) of the file ``filename`` from
        ``offset``, zero-copy, after what is queued; waits in this greenlet
        until the file is written. False if the file cannot be read or the
        range is outside it (logged), or the connection went away."""
        conn, answer = self._open_conn(fd, "sendfile", filename, offset, length,
                                       patient=True)
        if conn is None:
            return answer
        try:
            file = open(filename, "rb")
        except OSError as exc:
            log.warning("worker #%d: sendfile to fd %d: %s", self.worker_id, fd, exc)
            return False
        with file:
            size = os.fstat(file.fileno()).st_size
            if offset < 0 or length < 0 or offset > size or offset + length > size:
                log.warning("worker #%d: sendfile to fd %d: offset %d, length %d is "
                            "outside %s (%d bytes)", self.worker_id, fd, offset, length,
                            filename, size)
                return False
            return self.send_file(fd, file, offset, length or size - offset)

    # -- the heartbeat ----------------------------------------------------------

    def heartbeat(self, close=True):
        """This worker's connections idle for longer than heartbeat_idle_time
        (default twice heartbeat_check_interval), not protected and not in a
        callback; closed unless ``close`` is False. Returns their fds, or
        False when neither setting gives an idle time."""
        idle = self.setting["heartbeat_idle_time"] or \
            self.setting["heartbeat_check_interval"] * 2
        if not idle:
            return False
        limit = self.clock - idle
        found = [fd for fd, conn in self.conns.items()
                 if conn.state == OPEN and conn.last_time < limit and not conn.busy
                 and not conn.protected]
        if close:
            for fd in found:
                log.info("worker #%d: closing fd %d, idle for %ss (heartbeat)",
                         self.worker_id, fd, idle)
                self.close(fd)
        return found

    def _check_heartbeat(self):
        self.heartbeat()

    # -- this worker -------------------------------------------------------------

    def worker_status(self):
        """EXIT while stopping, BUSY while a connection has callbacks running
        or queued, else IDLE (Swoole's getWorkerStatus values)."""
        if self.stopping:
            return WORKER_EXIT
        if self._ready or any(conn.busy for conn in self.conns.values()):
            return WORKER_BUSY
        return WORKER_IDLE

"""The reactor's closing side: server closes, resets, and the lingering close.

``close(fd)`` moves the connection to CLOSING and queues the ``close`` event
behind whatever its greenlet is running; once the callback has run, the
session is released (``_release``) and the socket finishes on its own: queued
output is flushed (bounded by ``send_timeout``), then our FIN goes out and
the socket keeps being read and discarded for ``linger_time`` (nginx's
lingering close). On a TLS connection the FIN follows a close_notify.
Closing with unread input would make the kernel send an RST, and an RST can
destroy the tail of a response still sitting unread in the client's receive
buffer. The linger re-arms while the kernel is still
draining our output to a slow reader.

``Closing`` is a part of ``Reactor`` (reactor.py), kept in its own module.
"""

import fcntl
import logging
import socket as _stdsocket
import struct
import termios

from .connection import CLOSE, OPEN, RELEASE, SERVER_CLOSE

log = logging.getLogger("gswoole")

_LINGER_RESET = struct.pack("ii", 1, 0)


def unsent_bytes(fileno):
    """Bytes the kernel has not yet sent on a socket (SIOCOUTQ), 0 if unknown."""
    try:
        return struct.unpack("i", fcntl.ioctl(fileno, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except OSError:
        return 0


class Closing:

    def close(self, fd, reset=False):
        conn = self.conns.get(fd)
        if conn is None or conn.state != OPEN:
            if conn is None and self.route is not None:
                return self._routed(fd, "close", fd, reset)
            return self._fail(fd, conn)
        if conn.tls is not None and conn.tls.handshaking:
            return self._tls_abort(conn, "closed by the server during the TLS handshake",
                                   logging.DEBUG)
        conn.move(SERVER_CLOSE)
        conn.drop_pending_receives()
        if conn.output_room is not None:
            conn.output_room.set()   # a send waiting for room gives up now
        if reset:
            self._reset(conn)
        conn.events.append(CLOSE)
        self.schedule(conn)
        return True

    def _reset(self, conn):
        conn.drop_output()
        try:
            conn.sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass
        conn.eof = True
        self._close_socket(conn)

    def _release(self, conn):
        """After the close callback: forget the session, then finish the socket."""
        del self.conns[conn.fd]
        self.close_count += 1
        conn.move(RELEASE)
        if self._debug:
            log.debug("worker #%d: fd %d closed (%d open, %d bytes still to send)",
                      self.worker_id, conn.fd, len(self.conns), conn.out_size)
        if conn.sock is None:
            self._connection_gone()
            return
        self._lingering.add(conn)
        if conn.out_size:
            # Queued output goes out before the FIN, bounded by send_timeout.
            self._start_writer(conn)
            self._start_linger_timer(conn, self.setting["send_timeout"])
        else:
            self._shutdown_write(conn)

    def _shutdown_write(self, conn):
        if conn.tls is not None:
            self._send_close_notify(conn)   # TLS: close_notify before the FIN
        if conn.eof:
            self._destroy(conn)
            return
        # Our FIN, then read and discard until the peer's FIN or linger_time.
        try:
            conn.sock.shutdown(_stdsocket.SHUT_WR)
        except OSError:
            self._destroy(conn)
            return
        if not conn.reader.active:
            conn.reader.start(self._on_read, conn)
        conn.unsent = unsent_bytes(conn.fileno)
        self._start_linger_timer(conn, self.setting["linger_time"], self._linger_expired)

    def _linger_expired(self, conn):
        # The kernel may still hold part of the answer (a slow reader); an
        # RST now would destroy it. Keep lingering while it keeps draining.
        unsent = unsent_bytes(conn.fileno) if conn.sock is not None else 0
        if 0 < unsent < conn.unsent:
            conn.unsent = unsent
            self._start_linger_timer(conn, self.setting["linger_time"], self._linger_expired)
        else:
            self._destroy(conn)

    def _start_linger_timer(self, conn, seconds, callback=None):
        if conn.linger_timer is not None:
            conn.linger_timer.stop()
        conn.linger_timer = self.loop.timer(seconds)
        conn.linger_timer.start(callback or self._destroy, conn)

    def _destroy(self, conn):
        self._lingering.discard(conn)
        if conn.linger_timer is not None:
            conn.linger_timer.stop()
            conn.linger_timer = None
        self._close_socket(conn)
        self._connection_gone()

    def _close_socket(self, conn):
        self._backlogged.discard(conn)
        if conn.reader is not None:
            conn.reader.stop()
        if conn.writer is not None:
            conn.writer.stop()
        if conn.output_room is not None:
            conn.output_room.set()
        if conn.sock is not None:
            conn.sock.close()
            conn.sock = None
        # The connection is gone: break the reference cycles it was part of
        # (its parser and llhttp's parser, which holds the parser's
        # callbacks; the connection and its transport), so reference counting
        # frees them now instead of the garbage collector later (with a new
        # connection per request that was about 5 us of each connection's 66).
        splitter = conn.splitter
        if splitter is not None:
            conn.splitter = None
            release = getattr(splitter, "release", None)
            if release is not None:
                release()
        conn.transport = None

"""The reactor's TLS side: handshakes, decrypting reads, encrypting sends.

A connection of a TLS port carries a ``TlsLayer`` (tls.py) in ``conn.tls``;
on every other connection that attribute is None, and the read and send
paths test it once (``if conn.tls is not None``), so plaintext connections
pay one attribute test per read and per send and nothing more.

* Accept: the layer is made and a timer of ``ssl_handshake_timeout``
  started; no ``connect`` yet.
* Read (hub): ``_tls_read`` feeds the ciphertext to the layer, writes what
  OpenSSL answers (handshake messages, session tickets, alerts), and returns
  the plaintext for the port's splitter. When the handshake completes the
  ``connect`` event is queued, ahead of any data. OpenSSL never waits for
  the network here (memory BIOs), so a stalled handshake costs its own
  connection only.
* Send: ``_tls_send`` encrypts and writes the ciphertext the way ``send``
  writes plaintext (straight to the socket when nothing is queued, else
  behind the queue). Sends made during the handshake wait in the layer.
* Close: close_notify goes out before our FIN (closing.py), then the usual
  lingering close. ``sendfile`` becomes ordinary reads and sends.
* Stopping: a graceful stop lets handshakes in progress finish (the
  client is about to send a request), within ssl_handshake_timeout and
  max_wait_time.
* Failure: a plaintext request, a bad record or a refused certificate closes
  the connection with one log line; the worker carries on. A connection
  whose handshake never completed closes without ``connect``/``close``
  callbacks (the application never saw it).

``Encryption`` is a part of ``Reactor`` (reactor.py), kept in its own module.
"""

import logging
import os

from . import errors
from .connection import CONNECT, HOLD_CONFIRM, HOLD_DONE, HOLD_OUTPUT, OPEN, RELEASE, SHUTDOWN
from .tls import TlsError, TlsLayer

log = logging.getLogger("gswoole")

FILE_CHUNK = 256 * 1024


class Encryption:

    def _start_tls(self, conn):
        listener = conn.listener
        tls = conn.tls = TlsLayer(listener.ssl_context)
        self._handshaking.add(conn)
        timeout = listener.ssl_setting["ssl_handshake_timeout"]
        if timeout:
            tls.timer = self.loop.timer(timeout)
            tls.timer.start(self._handshake_expired, conn, timeout)

    def _handshake_expired(self, conn, timeout):
        if conn in self._handshaking:
            self._tls_abort(conn, "TLS handshake not finished within %gs" % timeout,
                            logging.INFO)

    # -- reading (hub) ---------------------------------------------------------

    def _tls_read(self, conn, data):
        """Ciphertext read from ``conn`` -> plaintext for the splitter, or
        None when there is none (or the connection ended here)."""
        tls = conn.tls
        handshaking = tls.handshaking
        try:
            plain = tls.feed(data)
        except TlsError as exc:
            self._tls_broken(conn, exc)
            return None
        reply = tls.outgoing()
        # Written before anything the application sends (the keys come
        # with it); a handshake whose last flight cannot go out never happened.
        if reply and not self._write_raw(conn, reply, in_handshake=handshaking):
            return None
        if handshaking and not tls.handshaking:
            self._handshake_done(conn)
        if tls.closed:
            # The peer's close_notify: an EOF, after what came before it.
            if plain:
                if conn.splitter is None:
                    conn.events.append(plain)
                else:
                    self._split(conn, plain)
            self._on_eof(conn, broken=False)
            return None
        return plain

    def _handshake_done(self, conn):
        tls = conn.tls
        self._handshaking.discard(conn)
        if tls.timer is not None:
            tls.timer.stop()
            tls.timer = None
        if self._debug:
            info = tls.info()
            log.debug("worker #%d: fd %d: TLS handshake done (%s, %s)", self.worker_id,
                      conn.fd, info["ssl_version"], info["ssl_cipher"])
        if self._delay_receive:
            self.hold_reading(conn, HOLD_CONFIRM)   # until server.confirm(fd)
        if conn.listener.on_connect is not None:
            conn.events.append(CONNECT)
            self.schedule(conn)
        pending, tls.pending = tls.pending, None
        for data in pending or ():
            self._tls_send(conn, data)

    def _tls_broken(self, conn, exc):
        tls = conn.tls
        if tls.handshaking:
            self._tls_abort(conn, "TLS handshake failed: %s" % exc, logging.WARNING)
            return
        log.warning("worker #%d: closing fd %d from %s: TLS error: %s", self.worker_id,
                    conn.fd, _peer(conn), exc)
        tls.broken = True
        self.hold_reading(conn, HOLD_DONE)
        alert = tls.outgoing()
        if alert:
            self._write_raw(conn, alert)
        if conn.state == OPEN:
            conn.events.append(SHUTDOWN)
            self.schedule(conn)

    def _tls_abort(self, conn, why, level):
        """End a connection whose handshake never completed: the application
        never saw it, so no callbacks; one log line says why."""
        log.log(level, "worker #%d: closing fd %d from %s: %s", self.worker_id, conn.fd,
                _peer(conn), why)
        tls = conn.tls
        self._handshaking.discard(conn)
        if tls.timer is not None:
            tls.timer.stop()
            tls.timer = None
        alert = tls.outgoing()   # OpenSSL's alert says why to the client too
        if alert and conn.sock is not None and not conn.out_size:
            try:
                conn.sock.send(alert)
            except OSError:
                pass
        if self.conns.get(conn.fd) is conn:
            del self.conns[conn.fd]
            self.close_count += 1
            conn.move(RELEASE)
        conn.drop_output()
        conn.eof = True
        self._close_socket(conn)
        self._connection_gone()
        return True

    # -- writing -----------------------------------------------------------------

    def _tls_send(self, conn, data):
        """``send`` on a TLS connection (plaintext ``data``, bytes)."""
        tls = conn.tls
        size = len(data)
        if tls.handshaking:
            # No keys yet: keep it until the handshake completes.
            if tls.pending is None:
                tls.pending = []
            if sum(map(len, tls.pending)) + size > self.buffer_limit:
                return errors.set_last_error(errors.OUTPUT_BUFFER_OVERFLOW)
            tls.pending.append(data)
            return True
        if conn.out_size + size > self.buffer_limit:
            return self._overflow(conn, data)   # encrypts if it queues after all
        try:
            cipher = tls.encrypt(data)
        except Exception as exc:   # ssl.SSLError: the TLS session is unusable
            log.warning("worker #%d: fd %d: TLS send failed: %s", self.worker_id, conn.fd, exc)
            self._on_eof(conn, broken=True)
            return errors.set_last_error(errors.SESSION_CLOSED)
        if not self._write_raw(conn, cipher):
            return errors.set_last_error(errors.SESSION_CLOSED)
        if conn.out_size >= self._high_water:
            self.hold_reading(conn, HOLD_OUTPUT)
        return True

    def _write_raw(self, conn, data, in_handshake=False):
        """Write bytes as they are, behind what is queued. False if the socket
        broke (the connection is then ending)."""
        if conn.out_size or conn.corked:
            conn.queue_output(data)
            return True
        try:
            sent = conn.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            if in_handshake:
                self._tls_abort(conn, "the peer left during the TLS handshake", logging.INFO)
            else:
                self._on_eof(conn, broken=True)
            return False
        if sent < len(data):
            conn.queue_output(memoryview(data)[sent:] if sent else data)
            self._start_writer(conn)
        return True

    def _tls_send_file(self, conn, file, offset, count):
        """sendfile cannot encrypt: read the file and send it in pieces."""
        in_fd = file.fileno()
        if count is None:
            count = os.fstat(in_fd).st_size - offset
        while count > 0:
            chunk = os.pread(in_fd, min(count, FILE_CHUNK), offset)
            if not chunk:
                break   # the file is shorter than promised
            if not self.send_wait(conn.fd, chunk):
                return False
            offset += len(chunk)
            count -= len(chunk)
        return count <= 0

    def _send_close_notify(self, conn):
        """Before our FIN: tell the peer the TLS stream ends here (so it can
        tell a whole response from a truncated one)."""
        alert = conn.tls.close_notify()
        if alert:
            try:
                conn.sock.send(alert)
            except OSError:
                pass


def _peer(conn):
    remote = conn.remote
    if isinstance(remote, tuple):
        return "%s:%s" % (remote[0], remote[1])
    return remote or "a unix socket"

"""The worker's socket code: accept, read, dispatch, write, close.

How this works. Everything socket-related runs in the gevent hub, in libev
watcher callbacks, with no greenlet switch: the listening socket's watcher
accepts, and each connection has one persistent read watcher (started once,
never stopped per read) whose callback does the ``recv`` and appends the bytes
to the connection's event queue. User callbacks may block cooperatively, so
they cannot run in the hub. A connection with queued events that nobody is
serving goes on the ready list, and once per loop iteration (a hub callback,
after all the reads of that iteration) the hub switches into a *runner*
greenlet that drains the ready connections one after another, each queue in
order, and then parks itself for reuse. So a busy loop iteration costs one
switch pair for all its connections, not one per message.

A runner that blocks inside a user callback simply stays with that connection
(its later events keep queuing behind it: that is what keeps one connection's
callbacks in order and never overlapping); the hub hands the rest of the
ready list to another runner. An idle connection costs a socket, a watcher
and a small object, no greenlet.

Sends write straight to the socket when nothing is queued (one syscall, no
wake-up); what the kernel does not take is queued and written by a write
watcher started only then.
"""

import errno
import fcntl
import logging
import os
import socket as _stdsocket
import struct
import termios
import time
from _socket import socket as _rawsocket
from collections import deque

import gevent
from gevent.event import Event
from gevent.socket import wait_write
from greenlet import getcurrent, greenlet

from . import errors
from .connection import (CLOSE, CLOSING, CONNECT, OPEN, PEER_CLOSED, RELEASED, SHUTDOWN,
                         Connection)
from .proxy_protocol import ProxyHeaderReader

log = logging.getLogger("gswoole")

RECV_SIZE = 65536
MAX_QUEUED_EVENTS = 64      # stop reading a connection whose callbacks lag this far
MAX_SPARE_RUNNERS = 256
ACCEPT_ERRNOS_BACKOFF = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_LINGER_RESET = struct.pack("ii", 1, 0)
_switch = greenlet.switch


class Reactor:
    """One worker's connections. Created in the worker after fork.

    ``server`` is passed through to callbacks untouched (it is the user's
    facade object); each listener carries its port's callbacks and framing."""

    def __init__(self, server, worker_id, setting, listeners, shared):
        self.server = server
        self.worker_id = worker_id
        self.setting = setting
        self.hub = gevent.get_hub()
        self.loop = self.hub.loop
        self.listeners = listeners
        self.shared = shared
        self.pid = os.getpid()
        self.conns = {}
        self._closing = set()        # released connections whose sockets are still open
        self._backlogged = set()     # connections with output waiting for the socket
        self._ready = deque()        # connections with events and no runner yet
        self._kicked = False         # a _kick is scheduled for this loop iteration
        self._spare = []
        # proxy_protocol: False (off), None (any peer) or the set of allowed peers
        self.proxy_from = False
        if setting.get("proxy_protocol"):
            allow = [ip.strip() for ip in setting["proxy_allow_ips"].split(",") if ip.strip()]
            self.proxy_from = None if "*" in allow else frozenset(allow)
        self.request_count = 0
        self.request_limit = 0       # set by the worker from max_request (+ grace)
        self.on_request_limit = None
        self.accept_count = 0
        self.close_count = 0
        self.clock = int(time.time())
        self._fd_next = self._fd_end = 0
        self._accepting = []
        self._datagram_queues = []
        self._buffer_limit = setting["buffer_output_size"]
        self._high_water = self._buffer_limit // 2
        self._low_water = self._buffer_limit // 4
        self.stopping = False
        self._drained = Event()
        self._clock_timer = self.loop.timer(1.0, 1.0)
        self._clock_timer.start(self._tick_clock)
        self._heartbeat = None
        self.sweepers = []           # called every second with the reactor (protocol timeouts)
        self.route = None            # (pid, worker_id, op, *args) -> answer, for other workers' fds
        self.stop_hooks = []         # called once when a graceful stop begins

    # -- accepting -----------------------------------------------------------

    def open_sockets(self):
        """Bind this worker's own sockets (reuse_port) before workerStart runs,
        so clients queue in its backlog meanwhile instead of being refused."""
        backlog = self.setting["backlog"]
        self._sockets = [(listener, listener.open_worker_socket(backlog))
                         for listener in self.listeners]

    def start(self):
        shared_sockets = not self.setting["enable_reuse_port"]
        for listener, sock in self._sockets:
            if not listener.is_stream:
                self._start_datagrams(listener, sock)
                continue
            watcher = self.loop.io(sock.fileno(), 1)
            # Several workers sharing one socket all wake for each connection;
            # taking one per wake-up spreads connections across them instead of
            # letting the first awake worker grab the whole backlog.
            batch = 1 if shared_sockets else 64
            watcher.start(self._on_accept, listener, sock, batch)
            self._accepting.append((watcher, listener, sock, batch))
        interval = self.setting["heartbeat_check_interval"]
        if interval:
            idle = self.setting["heartbeat_idle_time"] or interval * 2
            self._heartbeat = self.loop.timer(interval, interval)
            self._heartbeat.start(self._check_heartbeat, idle)

    def _start_datagrams(self, listener, sock):
        # Every worker reads the shared datagram socket; the kernel gives each
        # datagram to one of them. Packets of one worker run in order, through
        # a connection-like queue that is never in the session table.
        queue = Connection(0, sock, sock.fileno(), listener, None, self.clock)
        queue.reader = watcher = self.loop.io(sock.fileno(), 1)
        watcher.start(self._on_datagram, queue)
        self._datagram_queues.append(queue)

    def _on_datagram(self, queue):
        recvfrom = queue.sock.recvfrom
        events = queue.events
        server_socket = queue.fileno
        for _ in range(64):
            try:
                events.append(recvfrom(65536) + (server_socket,))
            except BlockingIOError:
                break
            except OSError as exc:
                log.warning("worker #%d: recvfrom failed: %s", self.worker_id, exc)
                break
        if events:
            if len(events) > MAX_QUEUED_EVENTS * 16:
                queue.paused = True
                queue.reader.stop()
            self._schedule(queue)

    def sendto(self, address, port, data, server_socket=-1):
        """Send one datagram from the server's UDP (or unix datagram) socket:
        the one a packet's ``client_info["server_socket"]`` names, else the
        first of the address's family."""
        if data.__class__ is not bytes:
            data = _as_bytes(data)
        queues = self._datagram_queues
        if server_socket != -1:
            queues = [q for q in queues if q.sock.fileno() == server_socket]
        family = _family_of(address)
        for queue in queues:
            if queue.listener.family != family:
                continue
            target = address if family == _stdsocket.AF_UNIX else (address, port)
            try:
                queue.sock.sendto(data, target)
                return True
            except BlockingIOError:
                return errors.set_last_error(errors.OUTPUT_BUFFER_OVERFLOW)
            except OSError as exc:
                log.warning("worker #%d: sendto %s failed: %s", self.worker_id, target, exc)
                return errors.set_last_error(errors.SESSION_NOT_EXIST)
        raise ValueError("sendto(%r): the server has no datagram socket for that address"
                         % (address,))

    def stop_accepting(self):
        for queue in self._datagram_queues:
            queue.reader.stop()   # the other workers take the datagrams from now on
        for watcher, listener, sock, _ in self._accepting:
            watcher.stop()
            if sock is not listener.sock:
                # Our own SO_REUSEPORT socket: take what is already queued on it
                # first, since closing a listening socket resets its backlog.
                self._on_accept(listener, sock, 1 << 30)
                sock.close()
        self._accepting = []

    def _on_accept(self, listener, sock, batch):
        try:
            for _ in range(batch):
                try:
                    fileno, addr = sock._accept()
                except BlockingIOError:
                    return
                except OSError as exc:
                    if exc.errno in ACCEPT_ERRNOS_BACKOFF:
                        self._back_off_accept(exc)
                        return
                    continue  # ECONNABORTED and friends: that client is gone
                self._add_connection(listener, fileno, addr)
        except Exception:
            log.exception("worker #%d: error while accepting", self.worker_id)

    def _callback_failed(self, what, conn):
        log.exception("worker #%d: error while handling a %s on fd %d; resetting it",
                      self.worker_id, what, conn.fd)
        if conn.state == OPEN:
            self.close(conn.fd, reset=True)

    def _back_off_accept(self, exc):
        log.error("accept() failed on worker #%d: %s; pausing accepts for 0.1 s",
                  self.worker_id, exc)
        for watcher, _, _, _ in self._accepting:
            watcher.stop()

        def resume():
            for watcher, listener, sock, batch in self._accepting:
                watcher.start(self._on_accept, listener, sock, batch)
        self.loop.timer(0.1).start(resume)

    def _proxy_allowed(self, addr):
        """May this peer send a PROXY header? (unix-socket peers are local)"""
        return self.proxy_from is None or not isinstance(addr, tuple) or \
            addr[0] in self.proxy_from

    def _add_connection(self, listener, fileno, addr):
        if len(self.conns) >= self.setting["max_conn"]:
            log.warning("worker #%d is at max_conn=%d: closing a new connection from %s",
                        self.worker_id, self.setting["max_conn"], addr)
            _stdsocket.close(fileno)
            return
        sock = _rawsocket(listener.family, _stdsocket.SOCK_STREAM, 0, fileno)
        sock.setblocking(False)
        if listener.is_tcp and self.setting["open_tcp_nodelay"]:
            sock.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
        fd = self._fd_next
        if fd == self._fd_end:
            fd, self._fd_end = self.shared.reserve_ids(self.pid, self.worker_id)
        self._fd_next = fd + 1
        conn = Connection(fd, sock, fileno, listener, addr, self.clock)
        self.conns[fd] = conn
        self.accept_count += 1
        if listener.splitter_factory is not None:
            conn.splitter = listener.splitter_factory()
        if self.proxy_from is not False and self._proxy_allowed(addr):
            conn.splitter = ProxyHeaderReader(conn, conn.splitter)
        conn.reader = reader = self.loop.io(fileno, 1)
        reader.start(self._on_read, conn)
        if listener.on_connect is not None:
            conn.events.append(CONNECT)
            self._schedule(conn)

    # -- reading and dispatch (hub) ----------------------------------------

    def _on_read(self, conn):
        # A libev callback: an exception escaping it would make gevent stop
        # this watcher for good (a frozen connection), hence the catch-all.
        try:
            try:
                data = conn.sock.recv(RECV_SIZE)
            except BlockingIOError:
                return
            except OSError:
                data = None
            if data:
                if conn.state != OPEN:
                    return  # closing: read and discard (see _shutdown_write)
                conn.last_time = self.clock
                if conn.splitter is None:
                    conn.events.append(data)
                else:
                    if not self._split(conn, data):
                        return
                if not conn.busy:
                    # _schedule(), inlined: this runs once per message
                    conn.busy = True
                    self._ready.append(conn)
                    if not self._kicked:
                        self._kicked = True
                        self.loop.run_callback(self._kick)
                elif len(conn.events) > MAX_QUEUED_EVENTS:
                    conn.paused = True
                    conn.reader.stop()
                return
            self._on_eof(conn, broken=data is None)
        except Exception:
            self._callback_failed("read", conn)

    def _split(self, conn, data):
        """Feed framing; queue whole packets. False if nothing new to run."""
        try:
            packets = conn.splitter.feed(data)
        except Exception as exc:   # FramingError, or a package_length_func that raised
            # Packets completed before the bad one are still delivered, then
            # the connection closes (as Swoole does): nothing after a framing
            # error can be trusted.
            log.warning("worker #%d: closing fd %d: %s", self.worker_id, conn.fd, exc)
            conn.reader.stop()
            conn.paused = False
            conn.events.extend(getattr(exc, "packets", ()))
            conn.events.append(SHUTDOWN)
            return True
        conn.events.extend(packets)
        return bool(packets)

    def _on_eof(self, conn, broken):
        close_queued = conn.eof   # a half-closed HTTP connection already queued CLOSE
        conn.eof = True
        conn.reader.stop()
        if conn.drained is not None and broken:
            conn.drained.set()
        if broken:
            conn.drop_output()
        state = conn.state
        if state == OPEN:
            if not (broken or close_queued) and conn.listener.half_close:
                # The peer only stopped sending: answer what it sent before
                # the FIN (its queued events), then close. Sends keep working.
                conn.events.append(CLOSE)
                self._schedule(conn)
                return
            conn.state = PEER_CLOSED
            if not close_queued:
                conn.events.append(CLOSE)
                self._schedule(conn)
        elif state == RELEASED and not conn.out_size:
            self._destroy(conn)

    def _schedule(self, conn):
        """Make sure a runner drains ``conn``'s queue; callable from any greenlet."""
        if conn.busy:
            return
        conn.busy = True
        self._ready.append(conn)
        if not self._kicked:
            self._kicked = True
            self.loop.run_callback(self._kick)

    def _kick(self):
        # Hub callback, after this iteration's reads. A runner returns here
        # when it parks (ready list empty) or when a user callback blocks (the
        # list may still hold connections: give them another runner).
        self._kicked = False
        ready = self._ready
        spare = self._spare
        while ready:
            (spare.pop() if spare else greenlet(self._run, self.hub)).switch()

    def _run(self):
        ready = self._ready
        spare = self._spare
        hub = self.hub
        me = getcurrent()
        drain = self._drain
        while True:
            while ready:
                drain(ready.popleft())
            if len(spare) >= MAX_SPARE_RUNNERS:
                return
            spare.append(me)
            _switch(hub)

    def _drain(self, conn):
        events = conn.events
        server = self.server
        worker_id = self.worker_id
        fd = conn.fd
        listener = conn.listener
        on_receive = listener.on_receive
        while events:
            event = events.popleft()
            if event is CONNECT:
                try:
                    listener.on_connect(server, fd, worker_id)
                except BaseException:
                    self._report("connect", fd)
            elif event is CLOSE:
                events.clear()
                conn.corked = False   # _release flushes what was gathered
                try:
                    if listener.on_close is not None:
                        listener.on_close(server, fd, -1 if conn.state == CLOSING else worker_id)
                except BaseException:
                    self._report("close", fd)
                finally:
                    self._release(conn)
                return  # busy stays True: nothing runs for this fd again
            elif event is SHUTDOWN:
                self.close(fd)   # queues CLOSE, which this loop runs next
            else:
                # data, a framed packet, or a parsed request (HTTP)
                if events and not conn.corked:
                    # More input is queued behind this one (pipelining): gather
                    # the answers into one write. The hub uncorks on its next
                    # turn, so a callback that blocks does not hold them back.
                    conn.corked = True
                    self.loop.run_callback(self._uncork, conn)
                try:
                    on_receive(server, fd, worker_id, event)
                except BaseException:
                    self._report("receive", fd)
                self.request_count += 1
                if self.request_count == self.request_limit:
                    self.on_request_limit()
        conn.busy = False
        if conn.corked:
            self._uncork(conn)
        if conn.paused:
            conn.paused = False
            self._resume_reading(conn)
        if self.stopping and not listener.is_stream:
            self._check_drained()   # a datagram queue just ran dry

    def _resume_reading(self, conn):
        stream = conn.listener.is_stream
        if not stream and self.stopping:
            return   # a datagram queue of a stopping worker: the others read now
        if conn.state == OPEN and not (conn.eof or conn.paused or conn.throttled) \
                and not conn.reader.active:
            conn.reader.start(self._on_read if stream else self._on_datagram, conn)

    def _report(self, event, fd):
        log.exception("error in %s callback (fd=%d, worker #%d)", event, fd, self.worker_id)

    # -- sending -------------------------------------------------------------

    def send(self, fd, data):
        conn = self.conns.get(fd)
        if conn is None or conn.state != OPEN:
            if conn is None and self.route is not None:
                return self._routed(fd, "send", fd, data)
            return self._fail(fd, conn)
        if data.__class__ is not bytes:
            data = _as_bytes(data)
        size = len(data)
        if conn.out_size or conn.corked:
            # Behind queued (or gathered) output: queue, to keep the order.
            if conn.out_size + size > self._buffer_limit:
                return self._overflow(conn, data)
            conn.queue_output(data)
        else:
            if size > self._buffer_limit:
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
            self._throttle(conn)
        return True

    def _uncork(self, conn):
        """Write what corked sends gathered, in one go."""
        if not conn.corked:
            return
        conn.corked = False
        if conn.out_size and conn.sock is not None:
            self._start_writer(conn)
            self._on_writable(conn)

    def _throttle(self, conn):
        # Flow control: a peer that does not read its answers stops being
        # read, so a request/response protocol (an echo) slows to the peer's
        # pace instead of overflowing its output buffer. Reading resumes when
        # the output is down to a quarter (see _on_writable).
        if not conn.throttled:
            conn.throttled = True
            conn.reader.stop()

    def _routed(self, fd, op, *args, default=False):
        """Run ``op`` in the worker that owns ``fd`` (another process), if any."""
        pid, worker_id = self.shared.owner_of(fd)
        if not pid or pid == self.pid or getcurrent() is self.hub or not _alive(pid):
            return self._fail(fd, None) if default is False else default
        return self.route(pid, worker_id, op, *args)

    def _fail(self, fd, conn):
        if conn is not None:
            code = errors.SESSION_CLOSED_BY_SERVER if conn.state == CLOSING \
                else errors.SESSION_CLOSED
        elif self.shared.owner_of(fd)[0] == self.pid:
            code = errors.SESSION_CLOSED   # ours once, closed since
        else:
            code = errors.SESSION_NOT_EXIST
        return errors.set_last_error(code)

    def _overflow(self, conn, data):
        size = len(data)
        if size > self._buffer_limit:
            log.warning("worker #%d: send of %d bytes to fd %d refused: larger than "
                        "buffer_output_size (%d)", self.worker_id, size, conn.fd,
                        self._buffer_limit)
            return errors.set_last_error(errors.DATA_LENGTH_TOO_LARGE)
        if not self.setting["send_yield"] or getcurrent() is self.hub:
            if not conn.warned:
                conn.warned = True
                log.warning("worker #%d: output buffer overflow on fd %d (%d bytes queued, "
                            "buffer_output_size %d): send() returns False (1009); the data "
                            "is not sent", self.worker_id, conn.fd, conn.out_size,
                            self._buffer_limit)
            return errors.set_last_error(errors.OUTPUT_BUFFER_OVERFLOW)
        deadline = time.monotonic() + self.setting["send_timeout"]
        if not self._wait_output(conn, self._buffer_limit - size, deadline):
            return self._no_room(conn)
        conn.queue_output(data)
        self._start_writer(conn)
        if conn.out_size >= self._high_water:
            self._throttle(conn)
        return True

    def _wait_output(self, conn, allowed, deadline):
        """Wait, in this greenlet, until ``conn`` has at most ``allowed`` bytes
        queued. False if it closed or ``deadline`` passed first."""
        while conn.out_size > allowed:
            remaining = deadline - time.monotonic()
            if conn.state != OPEN or conn.sock is None or remaining <= 0:
                return False
            if conn.drained is None:
                conn.drained = Event()
            conn.drained.clear()
            conn.drained.wait(remaining)
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
            if conn.drained is not None and conn.out_size < self._buffer_limit:
                conn.drained.set()
            if conn.throttled and conn.out_size <= self._low_water:
                conn.throttled = False
                self._resume_reading(conn)
            if done:
                conn.writer.stop()
                self._backlogged.discard(conn)
                if conn.state == RELEASED:
                    self._shutdown_write(conn)
        except Exception:
            self._callback_failed("write", conn)

    def send_wait(self, fd, data):
        """Send all of ``data``, waiting in this greenlet for buffer room (up to
        send_timeout) instead of failing with 1009/1203: what a protocol that
        must not lose part of a response (HTTP) uses. False if the connection
        went away or the peer did not read in time."""
        conn = self.conns.get(fd)
        limit = self._buffer_limit
        if conn is None or conn.state != OPEN or conn.out_size + len(data) <= limit:
            return self.send(fd, data)
        if data.__class__ is not bytes:
            data = _as_bytes(data)
        step = max(limit // 2, 1)
        deadline = time.monotonic() + self.setting["send_timeout"]
        for start in range(0, len(data), step):
            piece = data[start:start + step]
            if not self._wait_output(conn, limit - len(piece), deadline):
                return self._no_room(conn)
            if not self.send(fd, piece):
                return False
        return True

    def wait_output_drained(self, fd, timeout):
        """Block this greenlet until ``fd``'s queued output is all written.
        Returns False if the connection went away or ``timeout`` passed."""
        conn = self.conns.get(fd)
        return conn is not None and self._wait_output(conn, 0, time.monotonic() + timeout)

    def send_file(self, fd, file, offset=0, count=None):
        """Write ``count`` bytes of ``file`` (from ``offset``) with os.sendfile.

        Zero-copy: the kernel moves the bytes from the page cache to the
        socket. Runs in the caller's greenlet and waits cooperatively when
        the socket is full, up to send_timeout per wait. Returns True when
        everything was written."""
        timeout = self.setting["send_timeout"]
        if not self.wait_output_drained(fd, timeout):
            return self._fail(fd, self.conns.get(fd))
        conn = self.conns[fd]
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

    # -- closing -------------------------------------------------------------

    def close(self, fd, reset=False):
        conn = self.conns.get(fd)
        if conn is None or conn.state != OPEN:
            if conn is None and self.route is not None:
                return self._routed(fd, "close", fd, reset)
            return self._fail(fd, conn)
        conn.state = CLOSING
        conn.drop_pending_receives()
        if conn.drained is not None:
            conn.drained.set()   # a send waiting for room gives up now
        if reset:
            self._reset(conn)
        conn.events.append(CLOSE)
        self._schedule(conn)
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
        conn.state = RELEASED
        if conn.sock is None:
            self._check_drained()
            return
        self._closing.add(conn)
        if conn.out_size:
            # Queued output goes out before the FIN, bounded by send_timeout.
            self._start_writer(conn)
            self._start_linger_timer(conn, self.setting["send_timeout"])
        else:
            self._shutdown_write(conn)

    def _shutdown_write(self, conn):
        if conn.eof:
            self._destroy(conn)
            return
        # Lingering close: send our FIN but keep reading (and discarding) until
        # the peer's FIN or linger_time. Closing with unread input would make the
        # kernel send an RST, and an RST can destroy the tail of the response
        # still sitting unread in the client's receive buffer.
        try:
            conn.sock.shutdown(_stdsocket.SHUT_WR)
        except OSError:
            self._destroy(conn)
            return
        if not conn.reader.active:
            conn.reader.start(self._on_read, conn)
        conn.unsent = _unsent_bytes(conn.fileno)
        self._start_linger_timer(conn, self.setting["linger_time"], self._linger_expired)

    def _linger_expired(self, conn):
        # The kernel may still hold part of the answer (a slow reader); an
        # RST now would destroy it. Keep lingering while it keeps draining.
        unsent = _unsent_bytes(conn.fileno) if conn.sock is not None else 0
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
        self._closing.discard(conn)
        if conn.linger_timer is not None:
            conn.linger_timer.stop()
            conn.linger_timer = None
        self._close_socket(conn)
        self._check_drained()

    def _close_socket(self, conn):
        self._backlogged.discard(conn)
        if conn.reader is not None:
            conn.reader.stop()
        if conn.writer is not None:
            conn.writer.stop()
        if conn.drained is not None:
            conn.drained.set()
        if conn.sock is not None:
            conn.sock.close()
            conn.sock = None

    # -- queries -------------------------------------------------------------

    def exist(self, fd):
        conn = self.conns.get(fd)
        if conn is None and self.route is not None:
            return self._routed(fd, "exist", fd, default=False) is True
        return conn is not None and conn.state == OPEN

    def get_client_info(self, fd):
        conn = self.conns.get(fd)
        if conn is None:
            if self.route is not None:
                return self._routed(fd, "get_client_info", fd, default=None) or None
            return None
        return conn.client_info(self.worker_id, conn.listener.port)

    def get_client_list(self, start_fd=0, page_size=0):
        """Open fds above ``start_fd`` in ascending order; ``page_size`` 0 = all."""
        fds = sorted(fd for fd, c in self.conns.items() if fd > start_fd and c.state == OPEN)
        return fds[:page_size] if page_size else fds

    def session(self, fd):
        conn = self.conns.get(fd)
        if conn is None:
            raise KeyError("fd %r is not a connection of worker #%d" % (fd, self.worker_id))
        return conn.session

    # -- timers and stopping -----------------------------------------------

    def _tick_clock(self):
        self.clock = int(time.time())
        self._reset_stuck_writers()
        for sweep in self.sweepers:
            try:
                sweep(self)
            except Exception:
                log.exception("error in a connection sweep (worker #%d)", self.worker_id)

    def _reset_stuck_writers(self):
        # A peer that takes none of its queued output for send_timeout would
        # pin up to buffer_output_size of memory forever (and hold up a
        # graceful stop): give up on it.
        limit = self.clock - self.setting["send_timeout"]
        for conn in [c for c in self._backlogged if c.write_progress < limit]:
            # The kernel's own buffer may still be draining to a slow reader
            # (our queue waits behind it): that is progress too.
            unsent = _unsent_bytes(conn.fileno) if conn.sock is not None else 0
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

    def _check_heartbeat(self, idle):
        limit = self.clock - idle
        for fd, conn in list(self.conns.items()):
            if conn.state == OPEN and conn.last_time < limit and not conn.busy:
                log.info("worker #%d: closing fd %d, idle for %ss (heartbeat)",
                         self.worker_id, fd, idle)
                self.close(fd)

    def _check_drained(self):
        if self.stopping and self._idle_enough():
            self._drained.set()

    def _idle_enough(self):
        """No connection left that could still lose data: closed sockets that
        merely linger with everything delivered do not hold a stop up."""
        if self.conns or any(q.busy for q in self._datagram_queues):
            return False
        return all(c.sock is None or (not c.out_size and not _unsent_bytes(c.fileno))
                   for c in self._closing)

    def drain(self, timeout):
        """Stop accepting and wait up to ``timeout`` for open connections to
        finish; then close what is left. Returns True if nothing was cut off."""
        self.stopping = True
        self.stop_accepting()
        if self._heartbeat is not None:
            self._heartbeat.stop()
        for hook in self.stop_hooks:
            hook(self)
        deadline = time.monotonic() + timeout
        self._check_drained()
        # Re-check now and then: a lingering socket's kernel queue empties
        # without any event of ours.
        while not self._drained.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
            self._check_drained()
            if time.monotonic() >= deadline:
                break
        clean = self._drained.is_set()
        if not clean:
            errors.set_last_error(errors.WORKER_EXIT_TIMEOUT)
            log.warning("worker #%d: max_wait_time (%ss) passed with %d connection(s) open; "
                        "closing them (error %d)", self.worker_id, timeout, len(self.conns),
                        errors.WORKER_EXIT_TIMEOUT)
            self.close_all()
            # close callbacks run in runners; give them a moment, bounded.
            self._drained.wait(1.0)
        for conn in list(self._closing):
            self._destroy(conn)
        return clean

    def close_all(self):
        for fd in list(self.conns):
            self.close(fd)

    def shutdown_now(self):
        """Fast stop: no callbacks, just close every socket."""
        for conn in list(self.conns.values()) + list(self._closing):
            self._close_socket(conn)
        self.stop_accepting()


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _family_of(address):
    if ":" in address:
        return _stdsocket.AF_INET6
    try:
        _stdsocket.inet_aton(address)
    except OSError:
        return _stdsocket.AF_UNIX   # a path
    return _stdsocket.AF_INET


def _unsent_bytes(fileno):
    """Bytes the kernel has not yet sent on a socket (SIOCOUTQ), 0 if unknown."""
    try:
        return struct.unpack("i", fcntl.ioctl(fileno, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except OSError:
        return 0


def _as_bytes(data):
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError("send() takes bytes or str, not %s" % type(data).__name__)

"""The worker's socket code: read, dispatch, and the rooms around them.

How this works. Everything socket-related runs in the gevent hub, in libev
watcher callbacks, with no greenlet switch: the acceptor's watchers accept
(acceptor.py), and each connection has one persistent read watcher (started
once, stopped only while something holds reading back) whose callback does
the ``recv``, feeds the port's framing, and appends what is complete to the
connection's event queue. User callbacks may block cooperatively, so they
cannot run in the hub. A connection with queued events that nobody is
serving goes on the ready list, and once per loop iteration (a hub callback,
after all the reads of that iteration) the hub switches into a *runner*
greenlet that runs the ready connections' events one connection after
another, each queue in order, and then parks itself for reuse. So a busy
loop iteration costs one switch pair for all its connections, not one per
message.

A runner that blocks inside a user callback simply stays with that connection
(its later events keep queuing behind it: that is what keeps one connection's
callbacks in order and never overlapping); the hub hands the rest of the
ready list to another runner. An idle connection costs a socket, a watcher
and a small object, no greenlet.

The rooms, one concern each: acceptor.py (accepting, max_conn, back-off),
datagrams.py (UDP ports), connection.py (a connection's state table and what
holds its reading back), sending.py (output and flow control), closing.py
(close, reset, lingering close), stopping.py (graceful and fast stops),
controls.py (what a program asks of a connection: pause, confirm, protect,
bind, the heartbeat) and transport.py (what protocols see of a connection).
``Reactor`` joins the output, closing, stopping and control parts as mixins, so the per-message path has no
extra call; this module keeps reading, dispatch, routing and the queries.

Timeouts count on ``clock``, whole seconds of the monotonic clock, updated
once a second; ``wall_clock`` is the same tick in Unix time, for the Date
header and the times ``get_client_info`` reports.
"""

import logging
import os
import socket as _stdsocket
import time
from _socket import socket as _rawsocket
from collections import deque

import gevent
from gevent import socket as _gsocket
from gevent.event import Event
from greenlet import getcurrent, greenlet

from . import errors
from .acceptor import Acceptor
from .closing import Closing
from .connection import (CLOSE, CLOSING, CONNECT, HOLD_CONFIRM, HOLD_DETACHED, HOLD_DONE,
                         HOLD_QUEUE, OPEN, PEER_EOF, RELEASED, SHUTDOWN, Connection)
from .controls import Controls
from .datagrams import DatagramPorts
from .process import pid_alive
from .encryption import Encryption
from .sending import Sending
from .stopping import Stopping
from .tls import refresh as refresh_tls_context
from .transport import Transport
from .usercode import log_user_error
from .proxy_protocol import ProxyHeaderReader

log = logging.getLogger("gswoole")

RECV_SIZE = 65536
MAX_QUEUED_EVENTS = 64      # stop reading a connection whose callbacks lag this far
MAX_SPARE_RUNNERS = 256
_switch = greenlet.switch
_MARKER = CONNECT.__class__   # CONNECT, CLOSE and SHUTDOWN are bare objects; data is not


class Reactor(Sending, Closing, Stopping, Controls, Encryption):
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
        self._lingering = set()      # released connections whose sockets are still open
        self._backlogged = set()     # connections with output waiting for the socket
        self._handshaking = set()    # TLS connections not through their handshake yet
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
        self.clock = int(time.monotonic())
        self.wall_clock = int(time.time())
        self._fd_next = self._fd_end = 0
        self.acceptor = Acceptor(self.loop, worker_id, setting, self.add_connection,
                                 self._open_count)
        self.datagrams = DatagramPorts(self)
        self.sendto = self.datagrams.sendto
        self.buffer_limit = setting["buffer_output_size"]
        self._high_water = self.buffer_limit // 2
        self._low_water = self.buffer_limit // 4
        self.stopping = False
        self._all_closed = Event()
        self._clock_timer = self.loop.timer(1.0, 1.0)
        self._clock_timer.start(self._tick_clock)
        self._heartbeat = None
        self.sweepers = []           # called every second with the reactor (protocol timeouts)
        self.route = None            # (pid, worker_id, op, *args) -> answer, for other workers' fds
        self.cluster = None          # cluster.routing.ClusterRouting: other nodes' fds
        self.cast = None             # (pid, worker_id, op, *args): the same, not waiting
        self.remote_ops = {}         # op -> fn: what protocols let other workers call here
        self.stop_hooks = []         # called once when a graceful stop begins
        # Per-connection debug records (accept, release) only when asked for:
        # the level is set in the master before the fork and never changes.
        self._debug = log.isEnabledFor(logging.DEBUG)
        self._delay_receive = setting["enable_delay_receive"]

    # -- starting -------------------------------------------------------------

    def open_sockets(self):
        """Bind this worker's own sockets (reuse_port) before workerStart runs,
        so clients queue in its backlog meanwhile instead of being refused."""
        self._sockets = self.acceptor.open(self.listeners)
        for listener in self.listeners:
            if listener.is_ssl:
                refresh_tls_context(listener, self.worker_id)

    def start(self):
        for listener, sock in self._sockets:
            if listener.is_stream:
                self.acceptor.start(listener, sock)
            else:
                self.datagrams.start(listener, sock)
        interval = self.setting["heartbeat_check_interval"]
        if interval:
            self._heartbeat = self.loop.timer(interval, interval)
            self._heartbeat.start(self._check_heartbeat)

    @property
    def max_conn(self):
        return self.acceptor.max_conn

    def _open_count(self):
        return len(self.conns) + len(self._lingering)

    def _connection_gone(self):
        """A connection released its session or its socket."""
        self.acceptor.connection_gone()
        self._check_all_closed()

    def _proxy_allowed(self, addr):
        """May this peer send a PROXY header? (unix-socket peers are local)"""
        return self.proxy_from is None or not isinstance(addr, tuple) or \
            addr[0] in self.proxy_from

    def add_connection(self, listener, fileno, addr):
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
        if self._debug:
            log.debug("worker #%d: fd %d accepted from %s on %s (%d open)", self.worker_id,
                      fd, addr, listener.describe(), len(self.conns))
        if listener.splitter_factory is not None:
            conn.splitter = listener.splitter_factory()
        if self.proxy_from is not False and self._proxy_allowed(addr):
            conn.splitter = ProxyHeaderReader(conn, conn.splitter)
        if listener.protocol is not None:
            conn.transport = Transport(self, conn)
        conn.reader = reader = self.loop.io(fileno, 1)
        conn.on_readable = self._on_read
        if listener.ssl_context is not None:
            # The handshake reads; a delayed receive is held once it is done.
            reader.start(self._on_read, conn)
            self._start_tls(conn)   # connect comes after the handshake
            return
        if self._delay_receive:
            conn.holds = HOLD_CONFIRM   # read once server.confirm(fd) says so
        else:
            reader.start(self._on_read, conn)
        if listener.on_connect is not None:
            conn.events.append(CONNECT)
            self.schedule(conn)

    # -- reading (hub) ---------------------------------------------------------

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
                    return  # closing: read and discard (see closing.py)
                conn.last_time = self.clock
                if conn.tls is not None:
                    data = self._tls_read(conn, data)
                    if not data:
                        return
                splitter = conn.splitter
                if splitter is None:
                    conn.events.append(data)
                else:
                    # _split(), inlined: this runs once per message
                    try:
                        packets = splitter.feed(data)
                    except Exception as exc:
                        self._framing_failed(conn, exc)
                    else:
                        if not packets:
                            return
                        conn.events.extend(packets)
                if not conn.busy:
                    # schedule(), inlined: this runs once per message
                    conn.busy = True
                    self._ready.append(conn)
                    if not self._kicked:
                        self._kicked = True
                        self.loop.run_callback(self._kick)
                elif len(conn.events) > MAX_QUEUED_EVENTS:
                    self.hold_reading(conn, HOLD_QUEUE)
                return
            self._on_eof(conn, broken=data is None)
        except Exception:
            self._callback_failed("read", conn)

    def _split(self, conn, data):
        """Feed framing; queue whole packets. False if nothing new to run."""
        try:
            packets = conn.splitter.feed(data)
        except Exception as exc:
            self._framing_failed(conn, exc)
            return True
        conn.events.extend(packets)
        return bool(packets)

    def _framing_failed(self, conn, exc):
        """The framing raised (FramingError, or a package_length_func that
        did). Packets completed before the bad one are still delivered, then
        the connection closes (as Swoole does): nothing after a framing
        error can be trusted."""
        log.warning("worker #%d: closing fd %d: %s", self.worker_id, conn.fd, exc)
        self.hold_reading(conn, HOLD_DONE)
        conn.events.extend(getattr(exc, "packets", ()))
        conn.events.append(SHUTDOWN)

    def _on_eof(self, conn, broken):
        if conn.tls is not None and conn.tls.handshaking:
            # A connect-and-close without a byte (a TCP health check) is no news.
            self._tls_abort(conn, "the peer left during the TLS handshake",
                            logging.INFO if conn.tls.started else logging.DEBUG)
            return
        close_queued = conn.eof   # a half-closed HTTP connection already queued CLOSE
        conn.eof = True
        conn.reader.stop()
        if conn.output_room is not None and broken:
            conn.output_room.set()
        if broken:
            conn.drop_output()
        state = conn.state
        if state == OPEN:
            if not (broken or close_queued) and conn.listener.half_close:
                # The peer only stopped sending: answer what it sent before
                # the FIN (its queued events), then close. Sends keep working.
                conn.events.append(CLOSE)
                self.schedule(conn)
                return
            conn.move(PEER_EOF)
            if not close_queued:
                conn.events.append(CLOSE)
                self.schedule(conn)
        elif state == RELEASED and not conn.out_size:
            self._destroy(conn)

    def hold_reading(self, conn, reason):
        """Stop reading ``conn`` for ``reason`` (a HOLD_* bit) until released."""
        conn.holds |= reason
        conn.reader.stop()

    def release_reading(self, conn, reason):
        """Give back the hold ``reason``; reading resumes if nothing else holds it."""
        conn.holds &= ~reason
        if conn.readable and not conn.reader.active:
            conn.reader.start(conn.on_readable, conn)

    # -- dispatch (runners) ------------------------------------------------------

    def schedule(self, conn):
        """Make sure a runner runs ``conn``'s events; callable from any greenlet."""
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
        run_events = self._run_events
        while True:
            while ready:
                run_events(ready.popleft())
            if len(spare) >= MAX_SPARE_RUNNERS:
                return
            spare.append(me)
            _switch(hub)

    def _run_events(self, conn):
        events = conn.events
        server = self.server
        worker_id = self.worker_id
        fd = conn.fd
        listener = conn.listener
        while events:
            event = events.popleft()
            if event.__class__ is not _MARKER or not (event is CONNECT or event is CLOSE
                                                      or event is SHUTDOWN):
                # data, a framed packet, or a parsed request (HTTP)
                if events and not conn.corked:
                    # More input is queued behind this one (pipelining): gather
                    # the answers into one write. The hub uncorks on its next
                    # turn, so a callback that blocks does not hold them back.
                    conn.corked = True
                    self.loop.run_callback(self._uncork, conn)
                try:
                    # conn's, not the port's: a protocol switch (HTTP to
                    # WebSocket) changes it between two events.
                    conn.on_receive(server, fd, worker_id, event)
                except BaseException:
                    self._report("receive", fd)
                self.request_count += 1
                if self.request_count == self.request_limit:
                    self.on_request_limit()
            elif event is CONNECT:
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
            else:   # SHUTDOWN
                self.close(fd)   # queues CLOSE, which this loop runs next
        conn.busy = False
        if conn.corked:
            self._uncork(conn)
        if conn.holds & HOLD_QUEUE:
            self.release_reading(conn, HOLD_QUEUE)
        if self.stopping and not listener.is_stream:
            self._check_all_closed()   # a datagram queue just ran dry

    # -- handing a connection to another protocol -------------------------------

    def switch_protocol(self, conn, splitter, on_receive, data=b""):
        """From now on ``conn``'s input goes to ``splitter`` and its events to
        ``on_receive`` (HTTP's Upgrade). ``data`` is input the old framing
        had already read past its last message: it goes to the new one
        first. Runs in the connection's greenlet, between two of its events,
        so no event of the old protocol is still queued."""
        conn.splitter = splitter
        conn.on_receive = on_receive
        if data and conn.state == OPEN and self._split(conn, data):
            self.schedule(conn)

    def detach(self, conn, timeout):
        """Give ``conn``'s socket to a protocol that reads and writes it
        itself (an app that takes the socket over): flush what is queued for
        it (up to ``timeout`` seconds), stop reading it for good, and return
        a cooperative socket on a duplicate of its descriptor, or None when
        the output did not drain. The connection stays in the table until
        the protocol closes it, so sessions, counts and stops see it."""
        if conn.out_size and not self.wait_output_written(conn.fd, timeout):
            return None
        self.hold_reading(conn, HOLD_DETACHED)
        return _gsocket.socket(conn.listener.family, _stdsocket.SOCK_STREAM, 0,
                              fileno=os.dup(conn.fileno))

    def _report(self, event, fd):
        log_user_error("%s callback (fd=%d, worker #%d)", event, fd, self.worker_id)

    def _callback_failed(self, what, conn):
        log.exception("worker #%d: error while handling a %s on fd %d; resetting it",
                      self.worker_id, what, conn.fd)
        if conn.state == OPEN:
            self.close(conn.fd, reset=True)

    # -- other workers' connections ------------------------------------------------

    def _routed(self, fd, op, *args, default=False, patient=False):
        """Run ``op`` in the worker that owns ``fd`` (another process), if any.
        ``patient``: the op itself waits (sendfile), so wait for its answer
        as long as the owner lives rather than the usual few seconds."""
        pid, worker_id = self.shared.owner_of(fd)
        if not pid and self.cluster is not None and getcurrent() is not self.hub:
            return self.cluster.route(fd, op, list(args), default)   # another node's fd
        if not pid or pid == self.pid or getcurrent() is self.hub or not pid_alive(pid):
            return self._fail(fd, None) if default is False else default
        return self.route(pid, worker_id, op, *args, patient=patient)

    def call_owner(self, fd, op, *args):
        """Run ``op`` (a reactor method, or one of ``remote_ops``) in the
        worker that owns ``fd``, when that is another process; False with
        get_last_error() when no live worker does."""
        if self.route is None:
            return self._fail(fd, None)
        return self._routed(fd, op, *args)

    def event_workers(self):
        """(pid, worker_id) of every other live event worker, retiring ones
        included (they still serve their connections)."""
        worker_num = self.setting["worker_num"]
        return [(slot["pid"], slot["worker_id"]) for slot in self.shared.live_slots()
                if slot["worker_id"] < worker_num and slot["pid"] != self.pid]

    def _fail(self, fd, conn):
        if conn is not None:
            code = errors.SESSION_CLOSED_BY_SERVER if conn.state == CLOSING \
                else errors.SESSION_CLOSED
        elif self.shared.owner_of(fd)[0] == self.pid:
            code = errors.SESSION_CLOSED   # ours once, closed since
        else:
            code = errors.SESSION_NOT_EXIST
        return errors.set_last_error(code)

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
        info = conn.client_info(self.worker_id, conn.listener.port,
                                self.wall_clock - self.clock)
        if conn.tls is not None:
            info.update(conn.tls.info())
        return info

    def get_client_list(self, start_fd=0, page_size=0):
        """This worker's open fds above ``start_fd`` in ascending order;
        ``page_size`` 0 = all."""
        fds = sorted(fd for fd, c in self.conns.items() if fd > start_fd and c.state == OPEN)
        return fds[:page_size] if page_size else fds

    def session(self, fd):
        conn = self.conns.get(fd)
        if conn is None:
            raise KeyError("fd %r is not a connection of worker #%d" % (fd, self.worker_id))
        return conn.session

    def transport(self, fd):
        """The Transport of connection ``fd`` (a port with a protocol), or None."""
        conn = self.conns.get(fd)
        return conn.transport if conn is not None else None

    def transports(self):
        """(fd, Transport) of every open connection that has one."""
        return [(fd, conn.transport) for fd, conn in self.conns.items()
                if conn.transport is not None]

    # -- once a second -----------------------------------------------------

    def _tick_clock(self):
        self.clock = int(time.monotonic())
        self.wall_clock = int(time.time())
        self._reset_stuck_writers()
        for sweep in self.sweepers:
            try:
                sweep(self)
            except Exception:
                log.exception("error in a connection sweep (worker #%d)", self.worker_id)

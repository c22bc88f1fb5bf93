"""Per-connection state: the ordered event queue, the output buffer, the
close states and what holds reading back.

A connection moves one way through these states, and only through
``Connection.move()``, which refuses any other step (as h11's _state.py
does)::

    OPEN --SERVER_CLOSE--> CLOSING ----RELEASE--> RELEASED --flushed, lingered--> (socket closed)
    OPEN --PEER_EOF------> PEER_CLOSED --RELEASE--> RELEASED
    OPEN --RELEASE-------> RELEASED    (a half-closed HTTP client, answered)

In CLOSING and PEER_CLOSED the ``close`` event is queued behind whatever the
connection's greenlet is still running; sends fail (1003 / 1004). RELEASED
means the session is gone from the worker's table and the fd is no longer
valid; the socket may still be flushing queued output and lingering.

Reading. The socket is read while the connection is OPEN, the peer has not
sent EOF, and nothing holds reading back. ``holds`` is a set of reasons
(bits), each taken and given back by one owner: too many events queued for
the callbacks (the reactor), too much output queued for a peer that does not
read (flow control), the protocol asked (``pause_reading``), no more input
is wanted (after a framing error), the program paused it
(``server.pause(fd)``), it waits for ``server.confirm(fd)``
(``enable_delay_receive``), or a protocol took the socket over.

A protocol may switch a connection to another protocol (HTTP to WebSocket):
``splitter`` and ``on_receive`` are then the new protocol's framing and
event handler (``Reactor.switch_protocol``).
"""

from collections import deque

OPEN = 0
CLOSING = 1       # the server called close(fd)
PEER_CLOSED = 2   # the peer closed or the socket failed
RELEASED = 3      # close callback done; only the socket's tail end remains

# What moves a connection to its next state.
SERVER_CLOSE = "server close"
PEER_EOF = "peer EOF"
RELEASE = "close callback done"

_TRANSITIONS = {
    (OPEN, SERVER_CLOSE): CLOSING,
    (OPEN, PEER_EOF): PEER_CLOSED,
    (OPEN, RELEASE): RELEASED,
    (CLOSING, RELEASE): RELEASED,
    (PEER_CLOSED, RELEASE): RELEASED,
}

# Reasons not to read the socket (bits of Connection.holds).
HOLD_QUEUE = 1        # the callbacks lag: too many events queued
HOLD_OUTPUT = 2       # the peer does not read its answers (flow control)
HOLD_PROTOCOL = 4     # the protocol paused reading
HOLD_DONE = 8         # no more input is wanted (a framing error)
HOLD_USER = 16        # server.pause(fd), until server.resume(fd)
HOLD_CONFIRM = 32     # enable_delay_receive: not read until server.confirm(fd)
HOLD_DETACHED = 64    # a protocol took the socket over (it reads it itself)

# Queue markers; receive events are the data itself (bytes), so the hot path
# is a deque of bytes with these rare objects among them.
CONNECT = object()
CLOSE = object()
SHUTDOWN = object()   # the server closes here (framing error): packets before it still run

IOV_MAX = 512


def as_bytes(data):
    """What a send accepts: bytes, str (as UTF-8), bytearray, memoryview."""
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError("send() takes bytes or str, not %s" % type(data).__name__)


class Connection:
    __slots__ = (
        "fd", "sock", "fileno", "listener", "remote", "connect_time", "last_time",
        "events", "busy", "state", "eof", "holds", "warned", "corked", "splitter",
        "reader", "writer", "out", "out_size", "output_room", "write_progress", "linger_timer",
        "unsent", "transport", "on_readable", "on_receive", "protected", "uid", "tls",
        "_session",
    )

    def __init__(self, fd, sock, fileno, listener, remote, now):
        self.fd = fd
        self.sock = sock
        self.fileno = fileno
        self.listener = listener
        self.remote = remote
        self.connect_time = now
        self.last_time = now
        self.events = deque()
        self.busy = False        # a greenlet is running (or is about to run) its events
        self.state = OPEN
        self.eof = False         # the peer will send nothing more
        self.holds = 0           # HOLD_* reasons not to read (see the module docstring)
        self.warned = False      # an overflow was logged for this connection
        self.corked = False      # sends are gathered into one write (pipelined input)
        self.splitter = None     # framing, when the port has it
        self.reader = None
        self.writer = None
        self.out = None          # deque of pending output, created on first need
        self.out_size = 0
        self.output_room = None  # gevent Event: set when queued output shrank (send waiters)
        self.write_progress = 0  # clock of the last write that took queued output
        self.linger_timer = None
        self.unsent = 0          # kernel send queue at the last linger check
        self.transport = None    # the protocols' view of it (transport.py), if a port has one
        self.on_readable = None  # the read watcher's callback, to restart it after a hold
        self.protected = False   # server.protect(fd): the heartbeat leaves it open
        self.uid = 0             # server.bind(fd, uid)
        self.on_receive = listener.on_receive   # runs each event; a protocol switch changes it
        self.tls = None          # TLS ports: the TlsLayer (tls.py); None on plaintext
        self._session = None

    def move(self, event):
        """Take the state transition ``event``; raise on one that the state
        table does not allow (a bug in the caller, never the peer's doing)."""
        new = _TRANSITIONS.get((self.state, event))
        if new is None:
            raise RuntimeError("connection %d: %r is not allowed in state %d"
                               % (self.fd, event, self.state))
        self.state = new

    @property
    def readable(self):
        """Whether the socket should be read now."""
        return self.state == OPEN and not self.eof and not self.holds

    @property
    def session(self):
        if self._session is None:
            self._session = {}
        return self._session

    def queue_output(self, data):
        if self.out is None:
            self.out = deque()
        self.out.append(data)
        self.out_size += len(data)

    def write_pending(self):
        """Write as much queued output as the socket takes.

        Returns True when the buffer is empty. Raises OSError from the socket
        (other than EAGAIN), which means the peer is gone."""
        out = self.out
        while out:
            try:
                if len(out) == 1:
                    sent = self.sock.send(out[0])
                else:
                    chunks = list(out) if len(out) <= IOV_MAX else [out[i] for i in range(IOV_MAX)]
                    sent = self.sock.sendmsg(chunks)
            except BlockingIOError:
                return False
            self.out_size -= sent
            while sent:
                head = out[0]
                if sent >= len(head):
                    sent -= len(head)
                    out.popleft()
                else:
                    out[0] = memoryview(head)[sent:]
                    sent = 0
        return True

    def drop_output(self):
        if self.out:
            self.out.clear()
        self.out_size = 0

    def drop_pending_receives(self):
        """Server close: no more receive for this fd; a pending connect stays."""
        keep_connect = CONNECT in self.events
        self.events.clear()
        if keep_connect:
            self.events.append(CONNECT)

    def client_info(self, worker_id, server_port, wall_offset):
        """Swoole's client info; times are Unix seconds (the reactor keeps
        monotonic ones: ``wall_offset`` converts them)."""
        remote = self.remote
        if isinstance(remote, tuple):
            ip, port = remote[0], remote[1]
        else:
            ip, port = remote or "", 0
        info = {
            "remote_ip": ip,
            "remote_port": port,
            "server_port": server_port,
            "connect_time": self.connect_time + wall_offset,
            "last_time": self.last_time + wall_offset,
            "worker_id": worker_id,
            "reactor_id": worker_id,
        }
        if self.uid:
            info["uid"] = self.uid   # only once bound, as in Swoole
        return info

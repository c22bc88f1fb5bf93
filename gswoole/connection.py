"""Per-connection state: the ordered event queue, the output buffer and the
close states.

A connection moves one way through these states::

    OPEN --close(fd)--> CLOSING --close callback--> RELEASED --flushed, lingered--> (socket closed)
    OPEN --EOF/error--> PEER_CLOSED --close callback--> RELEASED

In CLOSING and PEER_CLOSED the ``close`` event is queued behind whatever the
connection's greenlet is still running; sends fail (1003 / 1004). RELEASED
means the session is gone from the worker's table and the fd is no longer
valid; the socket may still be flushing queued output and lingering.
"""

from collections import deque

OPEN = 0
CLOSING = 1       # the server called close(fd)
PEER_CLOSED = 2   # the peer closed or the socket failed
RELEASED = 3      # close callback done; only the socket's tail end remains

# Queue markers; receive events are the data itself (bytes), so the hot path
# is a deque of bytes with these rare objects among them.
CONNECT = object()
CLOSE = object()
SHUTDOWN = object()   # the server closes here (framing error): packets before it still run

IOV_MAX = 512


class Connection:
    __slots__ = (
        "fd", "sock", "fileno", "listener", "remote", "connect_time", "last_time",
        "events", "busy", "state", "eof", "paused", "throttled", "warned", "corked", "splitter",
        "reader", "writer", "out", "out_size", "drained", "write_progress", "linger_timer", "unsent",
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
        self.paused = False      # reading stopped until the event queue drains
        self.throttled = False   # reading stopped until queued output drains
        self.warned = False      # an overflow was logged for this connection
        self.corked = False      # sends are gathered into one write (pipelined input)
        self.splitter = None     # framing, when the port has it
        self.reader = None
        self.writer = None
        self.out = None          # deque of pending output, created on first need
        self.out_size = 0
        self.drained = None      # gevent Event for send_yield waiters
        self.write_progress = 0  # clock of the last write that took queued output
        self.linger_timer = None
        self.unsent = 0          # kernel send queue at the last linger check
        self._session = None

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

    def client_info(self, worker_id, server_port):
        remote = self.remote
        if isinstance(remote, tuple):
            ip, port = remote[0], remote[1]
        else:
            ip, port = remote or "", 0
        return {
            "remote_ip": ip,
            "remote_port": port,
            "server_port": server_port,
            "connect_time": self.connect_time,
            "last_time": self.last_time,
            "worker_id": worker_id,
            "reactor_id": worker_id,
        }

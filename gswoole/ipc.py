"""Messages between worker processes: tasks, results, pipe messages and
cross-worker calls.

The wire format is sans-IO (``pack``/``unpack`` over bytes): a fixed header
and a pickled payload, one message per datagram of a unix SOCK_DGRAM
socketpair. Datagram sockets keep message boundaries, so several processes
can write to one socket without interleaving, and several can read from one
(the task queue) with each message going to exactly one reader: an idle task
worker blocked in recv simply takes the next task.

A payload too big for one datagram (the socket buffer is ~200 KiB) travels
in an anonymous memory file (memfd) whose descriptor rides along in the
datagram (SCM_RIGHTS): no fragmentation, no reassembly, and a 50 MiB task
costs one copy into the memfd and one out.
"""

import array
import logging
import os
import pickle
import select
import socket
import struct

log = logging.getLogger("gswoole")

TASK = 1          # event worker -> task worker
RESULT = 2        # task worker -> event worker (a task's return value / finish())
ERROR = 3         # a TaskError for the sender (raised, or the task worker died)
MESSAGE = 4       # send_message() -> pipeMessage
CALL = 5          # send/close/exist/get_client_info for another worker's fd
REPLY = 6
DONE = 7          # a task ended without a result (its task callback returned None)

FLAG_MEMFD = 1

HEADER = struct.Struct("!BBHiiiqi")   # kind, flags, -, src_worker, src_pid, dst_pid, id, dst_worker
INLINE_LIMIT = 32 * 1024
MAX_DATAGRAM = HEADER.size + INLINE_LIMIT
_FD_SPACE = socket.CMSG_SPACE(array.array("i", [0]).itemsize)


class Message:
    __slots__ = ("kind", "src_worker", "src_pid", "dst_pid", "id", "dst_worker", "payload")

    def __init__(self, kind, src_worker, src_pid, dst_pid, id, dst_worker, payload):
        self.kind = kind
        self.src_worker = src_worker
        self.src_pid = src_pid
        self.dst_pid = dst_pid
        self.id = id
        self.dst_worker = dst_worker
        self.payload = payload

    def value(self):
        return pickle.loads(self.payload)

    def __repr__(self):
        return "<Message kind=%d id=%d from #%d/%d>" % (self.kind, self.id, self.src_worker,
                                                         self.src_pid)


def dumps(obj):
    return pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)


def pack(kind, src_worker, src_pid, msg_id, payload, dst_pid=0, dst_worker=-1, flags=0):
    """Header + payload bytes (payload already pickled)."""
    return HEADER.pack(kind, flags, 0, src_worker, src_pid, dst_pid, msg_id, dst_worker) + payload


def unpack(datagram, payload=None):
    """Parse a datagram; ``payload`` replaces the inline one (memfd case).
    Returns (Message, flags). Raises ValueError on a short datagram."""
    if len(datagram) < HEADER.size:
        raise ValueError("truncated message (%d bytes)" % len(datagram))
    kind, flags, _, src_worker, src_pid, dst_pid, msg_id, dst_worker = \
        HEADER.unpack_from(datagram)
    if payload is None:
        payload = datagram[HEADER.size:]
    return Message(kind, src_worker, src_pid, dst_pid, msg_id, dst_worker, payload), flags


# -- socket side ------------------------------------------------------------

def encode(kind, src_worker, src_pid, msg_id, obj, dst_pid=0, dst_worker=-1):
    """Pickle ``obj`` and frame it: returns (datagram, memfd or None).

    Big payloads go into a memfd; the caller sends the datagram with
    ``send_datagram`` which passes the descriptor and closes it."""
    return _frame(kind, src_worker, src_pid, msg_id, dumps(obj), dst_pid, dst_worker)


def encode_raw(message):
    """Frame a received message again, unchanged (for forwarding)."""
    return _frame(message.kind, message.src_worker, message.src_pid, message.id,
                  message.payload, message.dst_pid, message.dst_worker)


def _frame(kind, src_worker, src_pid, msg_id, payload, dst_pid, dst_worker):
    if len(payload) <= INLINE_LIMIT:
        return pack(kind, src_worker, src_pid, msg_id, payload, dst_pid, dst_worker), None
    fd = os.memfd_create("gswoole-message", os.MFD_CLOEXEC)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        raise
    return pack(kind, src_worker, src_pid, msg_id, b"", dst_pid, dst_worker, FLAG_MEMFD), fd


def send_datagram(sock, datagram, memfd=None, address=None):
    """Send one message; raises BlockingIOError when the queue is full (the
    memfd is then kept for the retry). Closes the memfd once sent."""
    if memfd is None:
        if address is None:
            sock.send(datagram)
        else:
            sock.sendto(datagram, address)
        return
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [memfd]))]
    sock.sendmsg([datagram], ancillary, 0, *(() if address is None else (address,)))
    os.close(memfd)


def send_blocking(sock, datagram, memfd=None, address=None, timeout=5.0, poll_fn=None):
    """Send on a non-blocking shared socket, waiting for room up to ``timeout``
    (with ``poll_fn``: the master passes the unpatched select.poll). Returns
    False, after logging, when the message could not be sent."""
    poller = (poll_fn or select.poll)()
    poller.register(sock.fileno(), select.POLLOUT)
    while True:
        try:
            send_datagram(sock, datagram, memfd, address)
            return True
        except BlockingIOError:
            if not poller.poll(timeout * 1000):
                reason = "the receiver's queue stayed full for %.1f s" % timeout
                break
        except OSError as exc:
            reason = str(exc)
            break
    if memfd is not None:
        os.close(memfd)
    log.warning("message dropped: %s", reason)
    return False


def recv_message(sock):
    """Receive one message (raises BlockingIOError when none is waiting)."""
    datagram, ancdata, _, _ = sock.recvmsg(MAX_DATAGRAM, _FD_SPACE)
    fds = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.extend(array.array("i", data[:len(data) - len(data) % 4]))
    payload = None
    if fds:
        try:
            payload = _read_all(fds[0])
        finally:
            for fd in fds:
                os.close(fd)
    message, flags = unpack(datagram, payload)
    if flags & FLAG_MEMFD and payload is None:
        raise ValueError("message said its payload was in a memfd, but none came")
    return message


def _read_all(fd):
    size = os.fstat(fd).st_size
    chunks = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, min(size - offset, 1 << 24), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def inbox_address(master_pid, pid):
    """Abstract-namespace address of a worker's private inbox."""
    return b"\0gswoole-%d-%d" % (master_pid, pid)

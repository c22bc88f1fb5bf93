"""The task wire format (sans-IO pack/unpack: pure functions
over bytes) and its socket side."""

import os
import pickle
import socket
from _socket import socketpair

import pytest

from gswoole import ipc

KINDS = (ipc.TASK, ipc.RESULT, ipc.ERROR, ipc.MESSAGE, ipc.CALL, ipc.REPLY)


# -- pack / unpack: no sockets --------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_pack_unpack_round_trip_every_kind(kind):
    payload = ipc.dumps({"kind": kind, "data": b"\x00\xff" * 10, "n": [1, 2.5, None]})
    datagram = ipc.pack(kind, 3, 12345, 987654321012, payload, dst_pid=54321, dst_worker=7)
    assert len(datagram) == ipc.HEADER.size + len(payload)
    message, flags = ipc.unpack(datagram)
    assert flags == 0
    assert (message.kind, message.src_worker, message.src_pid, message.dst_pid, message.id,
            message.dst_worker) == (kind, 3, 12345, 54321, 987654321012, 7)
    assert message.payload == payload
    assert message.value() == {"kind": kind, "data": b"\x00\xff" * 10, "n": [1, 2.5, None]}


def test_pack_defaults_and_negative_fields():
    datagram = ipc.pack(ipc.TASK, -1, 1, 0, b"")
    message, flags = ipc.unpack(datagram)
    assert (message.dst_pid, message.dst_worker, message.src_worker) == (0, -1, -1)
    assert message.payload == b"" and flags == 0


def test_unpack_flags_and_payload_override():
    datagram = ipc.pack(ipc.RESULT, 0, 1, 5, b"", flags=ipc.FLAG_MEMFD)
    outside = ipc.dumps("from the memfd")
    message, flags = ipc.unpack(datagram, outside)
    assert flags & ipc.FLAG_MEMFD
    assert message.value() == "from the memfd"


@pytest.mark.parametrize("cut", [0, 1, ipc.HEADER.size // 2, ipc.HEADER.size - 1])
def test_truncated_datagram_raises_value_error(cut):
    datagram = ipc.pack(ipc.TASK, 0, 1, 2, ipc.dumps("x"))
    with pytest.raises(ValueError):
        ipc.unpack(datagram[:cut])


def test_header_only_datagram_is_an_empty_payload():
    message, _ = ipc.unpack(ipc.pack(ipc.MESSAGE, 0, 1, 2, b""))
    assert message.payload == b""


# -- the socket side: a local datagram socketpair ----------------------------

@pytest.fixture
def pair():
    a, b = socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for sock in (a, b):
        sock.settimeout(10)
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, 1 << 20)
    yield a, b
    a.close()
    b.close()


def _open_fds():
    return set(os.listdir("/proc/self/fd"))


def test_small_payload_goes_inline(pair):
    a, b = pair
    datagram, memfd = ipc.encode(ipc.TASK, 1, os.getpid(), 42, {"small": b"x" * 100},
                                 dst_pid=99, dst_worker=3)
    assert memfd is None
    assert len(datagram) <= ipc.MAX_DATAGRAM
    ipc.send_datagram(a, datagram, memfd)
    message = ipc.recv_message(b)
    assert (message.kind, message.src_worker, message.src_pid, message.id, message.dst_pid,
            message.dst_worker) == (ipc.TASK, 1, os.getpid(), 42, 99, 3)
    assert message.value() == {"small": b"x" * 100}


def test_payload_at_the_inline_limit_stays_inline(pair):
    a, b = pair
    # find an object whose pickle is exactly INLINE_LIMIT bytes long
    obj = b"y" * (ipc.INLINE_LIMIT - len(ipc.dumps(b"")) - 3)
    while len(ipc.dumps(obj)) < ipc.INLINE_LIMIT:
        obj += b"y"
    assert len(ipc.dumps(obj)) == ipc.INLINE_LIMIT
    datagram, memfd = ipc.encode(ipc.RESULT, 0, 1, 0, obj)
    assert memfd is None and len(datagram) == ipc.MAX_DATAGRAM
    ipc.send_datagram(a, datagram)
    assert ipc.recv_message(b).value() == obj
    datagram, memfd = ipc.encode(ipc.RESULT, 0, 1, 0, obj + b"y")
    assert memfd is not None
    ipc.send_datagram(a, datagram, memfd)
    assert ipc.recv_message(b).value() == obj + b"y"


def test_large_payload_travels_in_a_memfd(pair):
    a, b = pair
    payload = os.urandom(5 * 1024 * 1024)
    before = _open_fds()
    datagram, memfd = ipc.encode(ipc.RESULT, 2, os.getpid(), 7, payload, dst_pid=11,
                                 dst_worker=0)
    assert memfd is not None
    assert len(datagram) == ipc.HEADER.size     # only the header is inline
    assert os.readlink("/proc/self/fd/%d" % memfd).startswith("/memfd:gswoole-message")
    ipc.send_datagram(a, datagram, memfd)
    # the sender's copy of the memfd is closed once sent
    with pytest.raises(OSError):
        os.fstat(memfd)
    message = ipc.recv_message(b)
    assert (message.kind, message.src_worker, message.id, message.dst_pid,
            message.dst_worker) == (ipc.RESULT, 2, 7, 11, 0)
    assert message.value() == payload
    assert _open_fds() <= before, "a memfd leaked"


def test_send_datagram_to_an_address(tmp_path):
    address = b"\0gswoole-test-%d" % os.getpid()
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        receiver.bind(address)
        receiver.settimeout(10)
        for obj in (b"small", os.urandom(300 * 1024)):
            datagram, memfd = ipc.encode(ipc.MESSAGE, 0, 1, 0, obj)
            ipc.send_datagram(sender, datagram, memfd, address)
            assert ipc.recv_message(receiver).value() == obj
    finally:
        receiver.close()
        sender.close()


def test_send_blocking_gives_up_on_a_full_queue():
    a, b = socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        a.setblocking(False)
        datagram, _ = ipc.encode(ipc.TASK, 0, 1, 0, b"z" * 1000)
        with pytest.raises(BlockingIOError):
            while True:
                ipc.send_datagram(a, datagram)
        datagram, memfd = ipc.encode(ipc.TASK, 0, 1, 0, b"big" * 100000)
        assert ipc.send_blocking(a, datagram, memfd, timeout=0.05) is False
        with pytest.raises(OSError):
            os.fstat(memfd)      # closed: not leaked on failure
    finally:
        a.close()
        b.close()


def test_recv_message_without_a_waiting_datagram_raises_blocking_io_error(pair):
    a, b = pair
    b.setblocking(False)
    with pytest.raises(BlockingIOError):
        ipc.recv_message(b)


def test_recv_message_rejects_a_truncated_datagram(pair):
    a, b = pair
    a.send(b"\x01\x00\x00")
    with pytest.raises(ValueError):
        ipc.recv_message(b)


def test_recv_message_rejects_a_memfd_flag_without_a_descriptor(pair):
    a, b = pair
    a.send(ipc.pack(ipc.RESULT, 0, 1, 0, b"", flags=ipc.FLAG_MEMFD))
    with pytest.raises(ValueError):
        ipc.recv_message(b)


@pytest.mark.parametrize("size", [64, 5 * 1024 * 1024])
def test_encode_raw_forwards_a_message_unchanged(pair, size):
    a, b = pair
    obj = os.urandom(size)
    datagram, memfd = ipc.encode(ipc.CALL, 4, 4444, 31, obj, dst_pid=5555, dst_worker=1)
    ipc.send_datagram(a, datagram, memfd)
    first = ipc.recv_message(b)
    # forward it, as a worker does for its draining twin
    datagram, memfd = ipc.encode_raw(first)
    assert (memfd is None) == (size <= ipc.INLINE_LIMIT)
    ipc.send_datagram(a, datagram, memfd)
    second = ipc.recv_message(b)
    for field in ipc.Message.__slots__:
        assert getattr(second, field) == getattr(first, field), field
    assert second.value() == obj


def test_many_messages_keep_their_boundaries(pair):
    a, b = pair
    for i in range(200):
        datagram, memfd = ipc.encode(ipc.TASK, 0, 1, i, ("task", i))
        ipc.send_datagram(a, datagram, memfd)
    assert [ipc.recv_message(b).value() for _ in range(200)] == [("task", i) for i in range(200)]


def test_inbox_address_is_abstract_and_per_process():
    address = ipc.inbox_address(100, 200)
    assert address.startswith(b"\0") and b"100" in address and b"200" in address
    assert address != ipc.inbox_address(100, 201)
    assert address != ipc.inbox_address(101, 200)


def test_message_repr_and_pickled_value():
    message, _ = ipc.unpack(ipc.pack(ipc.ERROR, 2, 3, 4, pickle.dumps(("boom", "tb"))))
    assert "id=4" in repr(message) and "#2" in repr(message)
    assert message.value() == ("boom", "tb")

"""Sans-IO packet framing: Swoole's EOF and length-prefixed splitters.

How this works
--------------
``make_splitter(setting)`` reads Swoole's framing keys once and returns a
factory (or None when no framing option is on). The reactor calls the factory
once per connection and then ``splitter.feed(data)`` for every read; ``feed``
returns the complete packets found so far, as bytes, and keeps the incomplete
tail in a ``bytearray``.

Four splitters, one per mode:

* ``EofCheckSplitter`` (``open_eof_check``): the whole buffer is one packet
  once it ends with ``package_eof``. Like Swoole it does not look inside, so
  one delivery may hold several packets if they arrived together.
* ``EofSplitSplitter`` (``open_eof_split``): one packet per
  ``package_eof``-terminated chunk, the EOF included (Swoole keeps it).
* ``LengthSplitter`` (``open_length_check``): a length field of
  ``package_length_type`` at ``package_length_offset`` gives the body length;
  a packet is ``package_body_offset + length`` bytes, header included.
* ``LengthFuncSplitter`` (``package_length_func``): the user's function says
  how long the packet at the front of the buffer is.

Cost per ``feed``: the buffer only ever holds the start of one incomplete
packet. While reads do not complete it, each read is appended to it and the
splitter checks only what it must: has the buffer reached the size it is
known to need, or does the EOF appear from where the last search stopped
(so an EOF split across reads is found and no byte is searched twice). A
large packet arriving in small reads thus costs O(len(read)) per read. The
read that completes it joins buffer and read into one ``bytes``, packets are
sliced out of that, and the incomplete tail (bytes of this read only) goes
back into the buffer. Each byte is copied a bounded number of times however
the stream is chunked. When the buffer is empty (the common case: reads end
on packet boundaries) packets are sliced straight out of ``data``, and a
read that is exactly one packet is returned as is, without a copy.

Limits and errors: a packet may be up to ``package_max_length`` bytes. A bad
stream raises ``FramingError`` (a ``ValueError``) as soon as it is certain:
a length field or function result over the limit, a negative or impossible
length, or unterminated EOF data that already fills the limit. There is no
packet boundary to recover from, so the connection must be closed and the
splitter discarded. ``exc.packets`` holds the complete packets that came
before the bad one in the same ``feed`` (Swoole delivers those before it
closes), so what a connection delivers before an error does not depend on
how the stream was chunked.

Byte order: Swoole's host-order codes ``s S l L`` are little-endian here on
every machine (x86 and nearly all ARM hosts are), so a stream means the same
thing wherever it is parsed.
"""

import struct
from functools import partial

from .errors import GSwooleError

__all__ = ["make_splitter", "FramingError", "LENGTH_TYPES"]

# Swoole's pack codes -> struct formats. "s S l L" are host order in Swoole;
# pinned to little-endian here (see module docstring).
LENGTH_TYPES = {
    "c": "b",    # int8
    "C": "B",    # uint8
    "s": "<h",   # int16, host (little) endian
    "S": "<H",   # uint16, host (little) endian
    "n": ">H",   # uint16 big-endian (network)
    "N": ">I",   # uint32 big-endian (network)
    "l": "<i",   # int32, host (little) endian
    "L": "<I",   # uint32, host (little) endian
    "v": "<H",   # uint16 little-endian
    "V": "<I",   # uint32 little-endian
}

MAX_EOF = 8            # Swoole's limit on package_eof
DEFAULT_MAX_LENGTH = 2 * 1024 * 1024
FUNC_PROBE = 64        # first slice handed to package_length_func (see there)


class FramingError(GSwooleError, ValueError):
    """The peer sent a stream that cannot be framed; close the connection.

    ``packets`` holds the complete packets that preceded the bad data in the
    ``feed`` call that raised.
    """

    def __init__(self, reason, packets=()):
        super().__init__(reason)
        self.packets = list(packets)


def make_splitter(setting):
    """Return a zero-arg factory of fresh splitters for ``setting``, or None.

    ``setting`` is a dict with Swoole's framing keys (missing keys take
    Swoole's defaults). None means no framing option is on: deliver reads as
    they come. Raises ValueError for a contradictory or invalid setting
    (EOF and length framing together, an unknown length type, ...).
    """
    eof_check = bool(setting.get("open_eof_check", False))
    eof_split = bool(setting.get("open_eof_split", False))
    length_check = bool(setting.get("open_length_check", False))
    length_func = setting.get("package_length_func")
    max_length = _check_int(setting, "package_max_length", DEFAULT_MAX_LENGTH, 1)

    if length_func is not None and not callable(length_func):
        raise ValueError("package_length_func must be callable, got %r" % (length_func,))
    length_mode = length_check or length_func is not None
    if (eof_check or eof_split) and length_mode:
        raise ValueError("EOF framing (open_eof_check/open_eof_split) and length framing "
                         "(open_length_check/package_length_func) cannot both be on")

    if eof_check or eof_split:
        eof = setting.get("package_eof", b"\r\n")
        if isinstance(eof, str):
            eof = eof.encode("latin-1")
        if not isinstance(eof, bytes) or not 1 <= len(eof) <= MAX_EOF:
            raise ValueError("package_eof must be 1..%d bytes, got %r" % (MAX_EOF, eof))
        # open_eof_split implies the EOF check, as in Swoole.
        cls = EofSplitSplitter if eof_split else EofCheckSplitter
        return partial(cls, eof, max_length)

    if length_func is not None:
        return partial(LengthFuncSplitter, length_func, max_length)

    if length_check:
        code = setting.get("package_length_type", "N")
        if not isinstance(code, str) or code not in LENGTH_TYPES:
            raise ValueError("package_length_type must be one of %s, got %r"
                             % (" ".join(LENGTH_TYPES), code))
        field = struct.Struct(LENGTH_TYPES[code])
        offset = _check_int(setting, "package_length_offset", 0, 0)
        body_offset = _check_int(setting, "package_body_offset", 0, 0)
        return partial(LengthSplitter, field, offset, body_offset, max_length)

    return None


def _check_int(setting, key, default, minimum):
    value = setting.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError("%s must be an int >= %d, got %r" % (key, minimum, value))
    return value


class _Splitter:
    """Shared state: the buffer holding the start of an incomplete packet."""

    __slots__ = ("_buf", "_max")

    def __init__(self, max_length):
        self._buf = bytearray()
        self._max = max_length

    @property
    def buffered(self):
        """Bytes held waiting for more data."""
        return len(self._buf)

    def _too_long(self, what, size, packets):
        return FramingError("%s of %d bytes is larger than package_max_length (%d)"
                            % (what, size, self._max), packets)

    def _joined(self, data, need):
        """The buffered start of a packet plus ``data``, as one ``bytes`` (the
        buffer is emptied); None while the total is still below ``need``."""
        if type(data) is not bytes:
            data = bytes(data)
        buf = self._buf
        if not buf:
            return data
        buf += data
        if len(buf) < need:
            return None
        data = bytes(buf)
        buf.clear()
        return data


class EofCheckSplitter(_Splitter):
    """open_eof_check: deliver the whole buffer once it ends with the EOF."""

    __slots__ = ("_eof",)

    def __init__(self, eof, max_length):
        super().__init__(max_length)
        self._eof = eof

    def feed(self, data):
        """Return ``[buffer]`` if the buffer now ends with the EOF, else []."""
        if type(data) is not bytes:
            data = bytes(data)
        buf = self._buf
        if buf:
            buf += data
            if not buf.endswith(self._eof):
                return self._wait()
            data = bytes(buf)
            buf.clear()
        elif not data.endswith(self._eof):
            buf += data
            return self._wait()
        if len(data) > self._max:
            raise self._too_long("packet", len(data), ())
        return [data]

    def _wait(self):
        # The packet must end after these bytes: if they already fill
        # package_max_length, it cannot fit.
        if len(self._buf) >= self._max:
            raise self._too_long("unterminated data", len(self._buf), ())
        return []


class EofSplitSplitter(_Splitter):
    """open_eof_split: one packet per EOF-terminated chunk, EOF included."""

    __slots__ = ("_eof", "_scan")

    def __init__(self, eof, max_length):
        super().__init__(max_length)
        self._eof = eof
        self._scan = 0   # where the EOF search resumes in the buffer

    def feed(self, data):
        """Return the EOF-terminated packets completed by ``data``."""
        if type(data) is not bytes:
            data = bytes(data)
        eof = self._eof
        buf = self._buf
        if buf:
            buf += data
            end = buf.find(eof, self._scan)
            if end < 0:
                return self._wait([])
            data = bytes(buf)
            buf.clear()
        else:
            end = data.find(eof)
        eof_size, max_length = len(eof), self._max
        packets = []
        append = packets.append
        start = 0
        while end >= 0:
            end += eof_size
            if end - start > max_length:
                raise self._too_long("packet", end - start, packets)
            append(data[start:end])
            start = end
            end = data.find(eof, start)
        if start < len(data):
            buf += memoryview(data)[start:]   # one copy, no intermediate bytes
        return self._wait(packets)

    def _wait(self, packets):
        rest = len(self._buf)
        if rest >= self._max:
            # No EOF yet, and the EOF must come after these bytes.
            raise self._too_long("unterminated data", rest, packets)
        # No whole EOF lies in the buffer: resume where one could start.
        self._scan = max(0, rest - len(self._eof) + 1)
        return packets


class LengthSplitter(_Splitter):
    """open_length_check: fixed-position length field, total = body_offset + length."""

    __slots__ = ("_unpack", "_offset", "_body", "_header", "_need")

    def __init__(self, field, offset, body_offset, max_length):
        super().__init__(max_length)
        self._unpack = field.unpack_from
        self._offset = offset
        self._body = body_offset
        self._header = offset + field.size   # bytes needed to read the length
        self._need = 0   # size the buffer must reach before parsing is worth it

    def feed(self, data):
        """Return the length-framed packets completed by ``data``."""
        data = self._joined(data, self._need)
        if data is None:
            return []
        unpack, offset, body, header = self._unpack, self._offset, self._body, self._header
        size = len(data)
        packets = []
        start = 0
        need = header
        while size - start >= header:
            length = unpack(data, start + offset)[0]
            total = body + length
            if length < 0 or total < header or total > self._max:
                raise self._bad_length(length, total, packets)
            if size - start < total:
                need = total
                break
            packets.append(data[start:start + total])
            start += total
        self._need = need
        if start < size:
            self._buf += memoryview(data)[start:]
        return packets

    def _bad_length(self, length, total, packets):
        if length < 0:
            return FramingError("negative length field (%d)" % length, packets)
        if total > self._max:
            return self._too_long("packet", total, packets)
        return FramingError("length field %d gives a %d-byte packet, shorter than its "
                            "own %d-byte header" % (length, total, self._header), packets)


class LengthFuncSplitter(_Splitter):
    """package_length_func: the user's function measures the packet at the front.

    The function gets ``bytes`` and returns the total packet length, 0 for
    "need more data" or -1 for "bad data". It is handed a prefix of the
    buffered data: first FUNC_PROBE bytes, doubled while it answers 0 and
    more is buffered. Length headers are short, so this keeps the cost per
    packet constant; passing the whole remaining buffer for every packet
    would copy O(n^2) bytes when many packets arrive in one read. A prefix is
    just "less has arrived so far", which the function must handle anyway.
    Once it has given a length, it is not asked again for that packet.
    """

    __slots__ = ("_func", "_need", "_measured")

    def __init__(self, func, max_length):
        super().__init__(max_length)
        self._func = func
        self._need = 0           # bytes the front packet needs (at least)
        self._measured = False   # _need is the function's answer, not a guess

    def feed(self, data):
        """Return the packets completed by ``data``, as measured by the function."""
        data = self._joined(data, self._need)
        if data is None:
            return []
        size = len(data)
        packets = []
        start = 0
        need, measured = self._need, self._measured
        while start < size:
            avail = size - start
            if measured:
                length, measured = need, False
            else:
                length = self._measure(data, start, avail, need, packets)
                if length == 0:
                    need = avail + 1   # it has seen every byte there is
                    break
                if length > self._max:
                    raise self._too_long("packet", length, packets)
                if length > avail:
                    need, measured = length, True
                    break
            packets.append(data[start:start + length])
            start += length
            need = 0
        self._need, self._measured = need, measured
        if start < size:
            self._buf += memoryview(data)[start:]
        return packets

    def _measure(self, data, start, avail, need, packets):
        """Ask the function for the length of the packet at ``start``: > 0 or 0."""
        func = self._func
        # need > 0: it answered 0 for that many bytes less one last time.
        probe = min(avail, max(FUNC_PROBE, need))
        while True:
            length = func(data[start:start + probe])
            if type(length) is int and length > 0:
                return length
            length = self._check_result(length, packets)
            if length or probe == avail:
                return length
            probe = min(avail, probe * 2)

    def _check_result(self, length, packets):
        """Slow path for a result that is not a positive int: 0 or raise."""
        if isinstance(length, bool) or not isinstance(length, int):
            raise FramingError("package_length_func returned %r, not an int" % (length,),
                               packets)
        if length == -1:
            raise FramingError("package_length_func rejected the data (returned -1)",
                               packets)
        if length < 0:
            raise FramingError("package_length_func returned %d" % length, packets)
        return int(length)   # 0, or a positive int subclass

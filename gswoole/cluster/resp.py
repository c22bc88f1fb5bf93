"""Redis's wire protocol (RESP2), sans-IO: commands out, replies in.

The cluster's hot path (a cross-node ``send`` is one PUBLISH, and the
receiving node's subscriber reads one pub/sub message per send) speaks
RESP on its own sockets (pubsub.py) instead of going through redis-py's
per-call machinery: a command is one ``bytes`` join, a reply is parsed from
a buffer that may hold many of them (pipelined PUBLISH replies, a burst of
pub/sub messages) or only part of one. redis-py keeps the rest (the
registry, the Lua refresh, the listings), where a few microseconds do not
matter.

Replies: ``+OK`` -> ``"OK"`` (str), ``-ERR ...`` -> ``RespError`` (a value,
not raised: replies stay in step with the commands that asked), ``:3`` ->
``3``, ``$n`` -> bytes (``$-1`` -> None), ``*n`` -> list (``*-1`` -> None).
"""

_CRLF = b"\r\n"


class RespError(Exception):
    """An error reply from Redis (``-ERR ...``), as a value."""

    def __eq__(self, other):
        return type(other) is RespError and other.args == self.args

    def __hash__(self):
        return hash(self.args)


class ProtocolError(ValueError):
    """Bytes that are not RESP: the connection can only be dropped."""


def _bulk(arg):
    if isinstance(arg, str):
        arg = arg.encode("utf-8")
    elif isinstance(arg, int) and not isinstance(arg, bool):
        arg = b"%d" % arg
    elif not isinstance(arg, (bytes, bytearray, memoryview)):
        raise TypeError("a Redis command argument is bytes, str or int, not %s"
                        % type(arg).__name__)
    return b"$%d\r\n%s\r\n" % (len(arg), arg)


def command(*args):
    """One command as RESP bytes: ``command("PUBLISH", channel, message)``."""
    if not args:
        raise ValueError("a Redis command needs at least its name")
    return b"*%d\r\n%s" % (len(args), b"".join(map(_bulk, args)))


class _Incomplete(Exception):
    pass


_INCOMPLETE = _Incomplete()


class Parser:
    """Feed it bytes as they come; take the complete replies out.

    ``feed(data)`` returns the list of replies that ``data`` completed (in
    order); a reply cut anywhere waits in the buffer for the next feed.
    """

    def __init__(self, max_bulk=512 * 1024 * 1024):
        self._buf = bytearray()
        self._need = 0           # bytes the incomplete reply needs at least
        self._max_bulk = max_bulk

    @property
    def pending(self):
        """Bytes of an incomplete reply held for the next feed."""
        return len(self._buf)

    def feed(self, data):
        if self._buf:
            self._buf += data
            if len(self._buf) < self._need:
                return []        # a long bulk string still arriving: no parsing yet
            buf = bytes(self._buf)
        else:
            buf = bytes(data)
        replies = []
        pos = 0
        end = len(buf)
        self._want = 0
        try:
            while pos < end:
                value, pos = self._parse(buf, pos)
                replies.append(value)
        except _Incomplete:
            pass
        self._buf = bytearray(buf[pos:]) if pos < end else bytearray()
        self._need = self._want - pos
        return replies

    def _line(self, buf, pos):
        eol = buf.find(_CRLF, pos)
        if eol < 0:
            if len(buf) - pos > 65536:
                raise ProtocolError("a RESP header line longer than 64 KiB")
            raise _INCOMPLETE
        return buf[pos + 1:eol], eol + 2

    def _int(self, text):
        try:
            return int(text)
        except ValueError:
            raise ProtocolError("not a RESP length or integer: %r" % text[:40]) from None

    def _parse(self, buf, pos):
        kind = buf[pos]
        line, after = self._line(buf, pos)
        if kind == 36:        # $ bulk string
            size = self._int(line)
            if size < 0:
                return None, after
            if size > self._max_bulk:
                raise ProtocolError("a RESP bulk string of %d bytes" % size)
            stop = after + size
            if len(buf) < stop + 2:
                self._want = stop + 2
                raise _INCOMPLETE
            if buf[stop:stop + 2] != _CRLF:
                raise ProtocolError("a RESP bulk string not followed by CRLF")
            return buf[after:stop], stop + 2
        if kind == 42:        # * array
            count = self._int(line)
            if count < 0:
                return None, after
            items = []
            for _ in range(count):
                item, after = self._parse(buf, after) if after < len(buf) else _raise()
                items.append(item)
            return items, after
        if kind == 58:        # : integer
            return self._int(line), after
        if kind == 43:        # + simple string
            return line.decode("utf-8", "replace"), after
        if kind == 45:        # - error
            return RespError(line.decode("utf-8", "replace")), after
        raise ProtocolError("not a RESP reply: starts with %r" % bytes(buf[pos:pos + 1]))


def _raise():
    raise _INCOMPLETE

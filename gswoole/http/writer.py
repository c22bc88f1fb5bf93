"""How a response is framed: the one decision both ``http.Server`` and the
WSGI adapter ask (sans-IO: bytes out, no socket).

A ``ResponseWriter`` is made per request from what the request said (method,
version, may the connection stay open). ``start()`` takes the handler's
status and headers and decides the body framing once, as h11's
``_body_framing`` does:

* no body: 1xx, 204 and 304 answers and any answer to HEAD. Body bytes given
  for them are dropped. 1xx and 204 never carry Content-Length (RFC 9110
  8.6); a 304's or a HEAD answer's describes the representation, so it is
  kept (and for HEAD, a known body length is announced as a GET would see it);
* Content-Length, the handler's (validated) or, when the whole body is known
  up front, its length; the writer never sends more than it says (the excess
  is dropped and counted in ``excess``) and a body that ends short leaves the
  connection to be closed (``must_close``), since the client would read the
  next response as the rest of this one;
* chunked, for a body of unknown length on HTTP/1.1;
* until close, for a body of unknown length on HTTP/1.0.

Hop-by-hop headers from the handler are interpreted, never copied:
``Connection: close`` ends the connection after this response,
``Transfer-Encoding``, ``Keep-Alive``, ``TE``, ``Trailer`` and
``Proxy-Connection`` are dropped (the writer frames the body itself), and
``Upgrade`` only goes out on a 101. The writer then adds ``Content-Length``,
``Transfer-Encoding: chunked`` and ``Connection`` as its decision needs.
"""

from email.utils import formatdate
from http import HTTPStatus

try:
    # The usual header lines made in one C call (gswoole/_http.c); optional.
    from .._http import fields as _fields
except ImportError:
    _fields = None

__all__ = ["ResponseWriter", "NO_BODY", "LENGTH", "CHUNKED", "UNTIL_CLOSE", "status_line",
           "date_header", "encode_headers", "chunk", "LAST_CHUNK", "CONTINUE"]

LAST_CHUNK = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

_REASONS = {s.value: s.phrase for s in HTTPStatus}
_STATUS_LINES = {}
_date = [0, b""]


def status_line(version, code, reason=None):
    """``b'HTTP/1.1 200 OK\\r\\n'``, cached for the common cases."""
    key = (version, code)
    if reason is None:
        line = _STATUS_LINES.get(key)
        if line is None:
            line = _STATUS_LINES[key] = ("HTTP/1.%d %d %s\r\n" % (
                version[1], code, _REASONS.get(code, "Unknown"))).encode("latin-1")
        return line
    return ("HTTP/1.%d %d %s\r\n" % (version[1], code, reason)).encode("latin-1")


def date_header(clock):
    """The Date and Server header lines, formatted once per second (``clock``
    is the wall clock in whole seconds)."""
    if _date[0] != clock:
        _date[0] = clock
        _date[1] = ("Date: %s\r\nServer: gswoole\r\n" % formatdate(clock, usegmt=True)) \
            .encode("latin-1")
    return _date[1]


def encode_headers(headers):
    """[(name, value), ...] -> b'Name: value\\r\\n...', rejecting header injection."""
    text = ""
    for name, value in headers:
        text += f"{name}: {value}\r\n"
    return _checked(text, len(headers)).encode("latin-1")


def _checked(text, lines):
    """``text``, ``lines`` header lines, unless a name or value smuggled a
    line break into it (then ValueError)."""
    # Exactly one CR and one LF per header, or a name/value smuggled a line break.
    if text.count("\n") != lines or text.count("\r") != lines:
        bad = [line for line in text.split("\r\n")[:-1] if "\r" in line or "\n" in line]
        raise ValueError("header %r contains a line break" % (bad[0] if bad else text,))
    return text

# Body framing modes.
NO_BODY = 0
LENGTH = 1
CHUNKED = 2
UNTIL_CLOSE = 3

# What a header name means to the writer (cached per spelling).
_ORDINARY = 0
_CONTENT_LENGTH = 1
_CONNECTION = 2
_HOP_BY_HOP = 3       # dropped
_UPGRADE = 4          # kept only on a 101
_DATE = 5
_SERVER = 6

_SPECIAL_NAMES = {
    "content-length": _CONTENT_LENGTH,
    "connection": _CONNECTION,
    "transfer-encoding": _HOP_BY_HOP,
    "keep-alive": _HOP_BY_HOP,
    "proxy-connection": _HOP_BY_HOP,
    "te": _HOP_BY_HOP,
    "trailer": _HOP_BY_HOP,
    "upgrade": _UPGRADE,
    "date": _DATE,
    "server": _SERVER,
}
_KINDS = {}
_KINDS_MAX = 1024


def _kind(name):
    kind = _KINDS.get(name)
    if kind is None:
        if name.__class__ is not str:
            raise TypeError("header names must be str, got %r" % (name,))
        kind = _SPECIAL_NAMES.get(name.lower(), _ORDINARY)
        if len(_KINDS) < _KINDS_MAX:
            _KINDS[name] = kind
    return kind


def _content_length(value):
    text = str(value).strip()
    if not text.isdigit() or not text.isascii():
        raise ValueError("invalid Content-Length %r" % (value,))
    return int(text)


def chunk(data):
    """One chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


class ResponseWriter:
    """Frames one response (see the module docstring).

    ``start(code, status_line, headers, date_line, body_length=None)`` returns
    the head; ``body(data)`` the bytes to send for a piece of the body;
    ``end(data)`` the last bytes. After ``end``, ``must_close`` says whether
    the connection has to close."""

    # One writer is made per request: the class holds the starting values,
    # and each instance stores only what it changes.
    code = 0
    mode = NO_BODY
    remaining = 0            # LENGTH: bytes still owed
    sent = 0                 # body bytes written (the access log's size)
    excess = 0               # body bytes dropped past Content-Length
    started = False
    ended = False
    _headers = _extra = ()

    def __init__(self, method, version, keep_alive):
        self.head_request = method == "HEAD"
        self.version = version
        self.keep_alive = keep_alive

    @property
    def must_close(self):
        """The connection cannot carry another response after this one."""
        return not self.keep_alive or (self.mode == LENGTH and self.remaining > 0)

    def start(self, code, status_line, headers, date_line, body_length=None):
        """The response head (bytes). ``body_length`` is the whole body's
        length when it is known now (a body given in one piece).

        Raises ValueError (an invalid Content-Length, a line break in a
        header) or TypeError (a name that is not str) before anything is
        decided, so the caller can still answer 500 instead."""
        if self.started:
            raise RuntimeError("the response head was already sent")
        # The usual answer: a body, on a kept-alive HTTP/1.1 connection. With
        # the handler's own Content-Length and no field to interpret it needs
        # nothing dropped and nothing added.
        usual = self.keep_alive and code >= 200 and code != 204 and code != 304 \
            and not self.head_request and self.version[1]
        if usual and _fields is not None:
            fast = _fields(headers, _KINDS)
            if fast is not None and fast[1] is not None:
                # ... its header lines made in C.
                self.code = code
                self.mode = LENGTH
                self.remaining = fast[1]
                self.started = True
                self._headers = headers
                return b"".join((status_line, date_line, fast[0], b"\r\n"))
        length = None
        close = False
        copy = False             # some header is interpreted rather than copied
        kinds = _KINDS
        text = ""                # the header lines, made in the same pass
        for name, value in headers:
            text += f"{name}: {value}\r\n"
            kind = kinds.get(name)
            if kind is None:
                kind = _kind(name)
            if kind == _ORDINARY:
                continue
            if kind == _CONTENT_LENGTH:
                value = int(value) if value.__class__ is str and value.isdigit() \
                    else _content_length(value)
                if length is not None and value != length:
                    raise ValueError("two different Content-Length headers")
                length = value
            elif kind == _DATE or kind == _SERVER:
                date_line = _without_our(date_line, kind)
            elif kind == _CONNECTION:
                close = close or "close" in str(value).lower()
                copy = True
            elif kind != _UPGRADE or code != 101:
                copy = True
        keep_alive = self.keep_alive and not close
        if usual and length is not None and not close and not copy:
            mode = LENGTH
            self.remaining = length
            kept = headers
            extra = ()
        else:
            kept = headers
            if copy:
                kept = _without_hop_by_hop(headers, code)
                text = None
            mode, keep_alive, kept, extra = self._frame(code, kept, length, body_length,
                                                        keep_alive)
            if len(kept) != len(headers):
                text = None
            if text is None:
                text = ""
                for name, value in kept:
                    text += f"{name}: {value}\r\n"
            for name, value in extra:
                text += f"{name}: {value}\r\n"
        lines = len(kept) + len(extra)
        if text.count("\n") != lines or text.count("\r") != lines:
            _checked(text, lines)    # raises: a line break was smuggled in
        head = b"".join((status_line, date_line, text.encode("latin-1"), b"\r\n"))
        self.code = code
        self.mode = mode
        self.keep_alive = keep_alive
        self.started = True
        self._headers = kept
        self._extra = extra
        return head

    def _frame(self, code, kept, length, body_length, keep_alive):
        """start()'s decision for anything but the usual answer: the body's
        framing mode, whether the connection stays open, the handler's
        headers to send and the ones the writer adds."""
        http10 = self.version[1] == 0
        extra = []
        if code >= 200 and code != 204 and code != 304 and not self.head_request:
            if length is not None:           # the handler's own length
                mode = LENGTH
                self.remaining = length
            elif body_length is not None:
                mode = LENGTH
                self.remaining = body_length
                extra.append(("Content-Length", body_length))
            elif not http10:
                mode = CHUNKED
                extra.append(("Transfer-Encoding", "chunked"))
            else:
                mode = UNTIL_CLOSE
                keep_alive = False       # the close is what ends the body
        elif code < 200 or code == 204:
            mode = NO_BODY
            if length is not None:           # never on a 1xx or 204 (RFC 9110 8.6)
                kept = _without_hop_by_hop(kept, code)
        else:                            # 304, or an answer to HEAD
            mode = NO_BODY
            if length is None and code != 304:
                if body_length is not None:
                    extra.append(("Content-Length", body_length))
                elif not http10:
                    extra.append(("Transfer-Encoding", "chunked"))
        if code == 101:
            extra.append(("Connection", "upgrade"))
        elif not keep_alive:
            extra.append(("Connection", "close"))
        elif http10:
            extra.append(("Connection", "keep-alive"))
        return mode, keep_alive, kept, extra

    @property
    def headers_sent(self):
        """The header fields of the head (less Date and Server), as sent."""
        return list(self._headers) + list(self._extra)

    def body(self, data):
        """The bytes to send for ``data`` (bytes), a piece of the body."""
        mode = self.mode
        if mode == LENGTH:
            remaining = self.remaining
            if len(data) > remaining:
                self.excess += len(data) - remaining
                data = data[:remaining]
            self.remaining = remaining - len(data)
        elif mode == CHUNKED:
            if not data:
                return b""           # an empty chunk would end the body
            self.sent += len(data)
            return chunk(data)
        elif mode == NO_BODY:
            return b""
        self.sent += len(data)
        return data

    def end(self, data=b""):
        """The last bytes of the response (the rest of the body, the last chunk)."""
        self.ended = True
        if self.mode == LENGTH and len(data) == self.remaining:
            # The usual case, a whole body that fits its length: body() inlined.
            self.remaining = 0
            self.sent += len(data)
            return data
        out = self.body(data) if data else b""
        if self.mode == CHUNKED:
            return out + LAST_CHUNK
        return out

    def file_count(self, count):
        """How many of a file's ``count`` bytes to send with sendfile (the
        head must have been started with ``body_length=count``). A shorter
        Content-Length of the handler's is a range of the file it wants,
        not a mistake: the rest is simply not sent."""
        if self.mode == NO_BODY:
            return 0
        if self.mode == LENGTH:
            count = min(count, self.remaining)
            self.remaining -= count
        self.sent += count
        return count


def _without_our(date_line, kind):
    """Our Date/Server lines less the one the handler set itself."""
    date, server = date_line.partition(b"Server: ")[::2]
    return (b"Server: " + server if server else b"") if kind == _DATE else date


def _without_hop_by_hop(headers, code):
    """``headers`` less those the writer interprets instead of copying (and
    less Content-Length on a 1xx or 204)."""
    kept = []
    for header in headers:
        kind = _kind(header[0])
        if kind == _ORDINARY or kind == _DATE or kind == _SERVER \
                or (kind == _CONTENT_LENGTH and code >= 200 and code != 204) \
                or (kind == _UPGRADE and code == 101):
            kept.append(header)
    return kept

"""Writing HTTP responses: head building shared by the HTTP and WSGI servers,
and Swoole's ``Response`` object.

A response's status line, headers and (small) body leave in one ``send``:
one syscall and one TCP segment, which is what keep-alive latency depends on.
"""

import os
from email.utils import formatdate
from http import HTTPStatus
from http.cookies import SimpleCookie

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
    """The Date header line, formatted once per second (``clock`` is an int)."""
    if _date[0] != clock:
        _date[0] = clock
        _date[1] = ("Date: %s\r\nServer: gswoole\r\n" % formatdate(clock, usegmt=True)) \
            .encode("latin-1")
    return _date[1]


def encode_headers(headers):
    """[(name, value), ...] -> b'Name: value\r\n...', rejecting header injection."""
    text = "".join([f"{name}: {value}\r\n" for name, value in headers])
    # Exactly one CR and one LF per header, or a name/value smuggled a line break.
    if text.count("\n") != len(headers) or text.count("\r") != len(headers):
        bad = [name for name, value in headers if "\r" in f"{name}{value}" or "\n" in f"{name}{value}"]
        raise ValueError("header %r contains a line break" % (bad[0] if bad else headers,))
    return text.encode("latin-1")


def chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Response:
    """Swoole's ``Response``: ``status``, ``header``, ``cookie``, ``write``,
    ``end``, ``sendfile``, ``redirect``. Methods return False once the
    response is finished (or the client is gone), as Swoole's do."""

    def __init__(self, conn_api, request):
        self._api = conn_api            # the HTTP server's per-worker glue
        self._request = request
        self.fd = request.fd
        self._status = 200
        self._reason = None
        self._headers = []
        self._cookies = None
        self._head_sent = False
        self._chunked = False
        self.finished = False
        self.sent = 0               # body bytes written (for the access log)

    # -- building -----------------------------------------------------

    def status(self, code, reason=None):
        if self._head_sent:
            return False
        if not isinstance(code, int) or not 100 <= code <= 999:
            raise ValueError("HTTP status must be an int in 100..999, got %r" % (code,))
        self._status = code
        self._reason = reason
        return True

    setStatusCode = status

    def header(self, name, value, format=True):
        if self._head_sent:
            return False
        if format:
            name = "-".join(part.capitalize() for part in name.split("-"))
        self._headers.append((name, value))
        return True

    setHeader = header

    def cookie(self, name, value="", expires=0, path="/", domain="", secure=False,
               httponly=False, samesite="", priority=""):
        if self._head_sent:
            return False
        cookie = SimpleCookie()
        cookie[name] = value
        morsel = cookie[name]
        if expires:
            morsel["expires"] = formatdate(expires, usegmt=True)
        if path:
            morsel["path"] = path
        if domain:
            morsel["domain"] = domain
        if secure:
            morsel["secure"] = True
        if httponly:
            morsel["httponly"] = True
        if samesite:
            morsel["samesite"] = samesite
        self._headers.append(("Set-Cookie", morsel.OutputString()))
        return True

    setCookie = cookie

    # -- sending ------------------------------------------------------

    def _head(self, length):
        request = self._request
        keep = self._api.keep_alive(request)
        parts = [status_line(request.version, self._status, self._reason),
                 self._api.date()]
        headers = self._headers
        if length is None:
            if request.version >= (1, 1):
                self._chunked = True
                headers = headers + [("Transfer-Encoding", "chunked")]
            else:
                keep = False   # HTTP/1.0 without a length: the close ends the body
        elif self._status not in (204, 304) and not (100 <= self._status < 200) \
                and not any(name.lower() == "content-length" for name, _ in headers):
            headers = headers + [("Content-Length", length)]
        if not keep:
            headers = headers + [("Connection", "close")]
        elif request.version < (1, 1):
            headers = headers + [("Connection", "keep-alive")]
        parts.append(encode_headers(headers))
        parts.append(b"\r\n")
        request.keep_alive = keep
        self._head_sent = True
        return b"".join(parts)

    def write(self, data):
        """Stream a piece of the body (chunked on HTTP/1.1)."""
        if self.finished:
            return False
        data = _bytes(data)
        if not data:
            return True
        out = b""
        if not self._head_sent:
            out = self._head(None)
        if self._request.method == "HEAD":
            return self._api.send(self.fd, out) if out else True
        self.sent += len(data)
        out += chunk(data) if self._chunked else data
        return self._send(out)

    def _send(self, out):
        if self._api.send(self.fd, out):
            return True
        self.finished = True
        self._api.abort(self.fd)
        return False

    def end(self, data=b""):
        """Finish the response; with nothing written yet, head and body go in one send."""
        if self.finished:
            return False
        data = _bytes(data)
        if self._request.method != "HEAD":
            self.sent += len(data)
        if not self._head_sent:
            out = self._head(len(data))
            if self._request.method != "HEAD":
                out += data
        elif self._chunked:
            out = (chunk(data) if data else b"") + LAST_CHUNK
            if self._request.method == "HEAD":
                out = b""
        else:
            out = data
        # Finished only now: if building the response raised (a bad header,
        # a body that is not bytes) the server can still answer with a 500.
        self.finished = True
        ok = self._send(out) if out else True
        self._api.finish(self._request)
        return ok

    def sendfile(self, path, offset=0, length=0):
        """Send a file as the whole body, zero-copy (os.sendfile)."""
        if self.finished or self._head_sent:
            return False
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if offset < 0 or offset > size:
                raise ValueError("sendfile offset %d outside the file (%d bytes)" % (offset, size))
            count = length or size - offset
            count = min(count, size - offset)
            if not any(n.lower() == "content-type" for n, _ in self._headers):
                self._headers.append(("Content-Type", _guess_type(path)))
            head = self._head(count)
            self.finished = True
            ok = self._send(head)
            if ok and self._request.method != "HEAD":
                ok = self._api.send_file(self.fd, f, offset, count)
                self.sent = count if ok else 0
                if not ok:
                    self._api.abort(self.fd)   # Content-Length promised, not delivered
        self._api.finish(self._request)
        return ok

    def redirect(self, url, code=302):
        self.status(code)
        self.header("Location", url)
        return self.end()

    def is_writable(self):
        return not self.finished and self._api.exist(self.fd)

    isWritable = is_writable

    def close(self):
        """Drop the connection without finishing the response."""
        self.finished = True
        self._request.cleanup()
        return self._api.close(self.fd)


def _bytes(data):
    if data.__class__ is bytes:
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError("response body must be bytes or str, not %s" % type(data).__name__)


def _guess_type(path):
    import mimetypes
    return mimetypes.guess_type(path)[0] or "application/octet-stream"

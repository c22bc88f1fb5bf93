"""Swoole's ``Response`` object: a thin adapter over ``ResponseWriter``.

The handler builds the status and headers; ``write`` and ``end`` hand the
body to the writer, which frames it (see writer.py), and send what it
returns. With nothing written before ``end``, status line, headers and body
leave in one ``send``: one syscall and one TCP segment, which is what
keep-alive latency depends on. Deciding whether the connection stays open,
the access log and the 500 for a handler that raised belong to the protocol
(server.py), once per request.
"""

import os
from email.utils import formatdate
from http.cookies import SimpleCookie

from .writer import status_line


class Response:
    """Swoole's ``Response``: ``status``, ``header``, ``cookie``, ``write``,
    ``end``, ``sendfile``, ``redirect``. Methods return False once the
    response is finished (or the client is gone), as Swoole's do."""

    def __init__(self, protocol, transport, request, writer):
        self._protocol = protocol        # frames the head (http/server.py)
        self._transport = transport
        self._request = request
        self._writer = writer
        self.fd = request.fd
        self._status = 200
        self._reason = None
        self._headers = []
        self.finished = False

    # -- building -----------------------------------------------------

    def status(self, code, reason=None):
        if self._writer.started:
            return False
        if not isinstance(code, int) or not (200 <= code <= 999 or code == 101):
            raise ValueError("HTTP status must be an int in 200..999 (a final response) "
                             "or 101 (a WebSocket handshake), got %r" % (code,))
        self._status = code
        self._reason = reason
        return True

    setStatusCode = status

    def header(self, name, value, format=True):
        if self._writer.started:
            return False
        if format:
            name = "-".join(part.capitalize() for part in name.split("-"))
        self._headers.append((name, value))
        return True

    setHeader = header

    def cookie(self, name, value="", expires=0, path="/", domain="", secure=False,
               httponly=False, samesite="", priority=""):
        if self._writer.started:
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

    def _head(self, body_length):
        return self._protocol.start(
            self._writer, self._status,
            status_line(self._request.version, self._status, self._reason),
            self._headers, body_length)

    def write(self, data):
        """Stream a piece of the body (chunked on HTTP/1.1, unless the
        handler set Content-Length)."""
        if self.finished:
            return False
        data = _bytes(data)
        if not data:
            return True
        writer = self._writer
        out = b"" if writer.started else self._head(None)
        out += writer.body(data)
        return self._send(out) if out else True

    def end(self, data=b""):
        """Finish the response; with nothing written yet, head and body go in one send."""
        if self.finished:
            return False
        data = _bytes(data)
        writer = self._writer
        out = b"" if writer.started else self._head(len(data))
        # Finished only once the head is built: if that raised (a bad header)
        # the server can still answer with a 500.
        self.finished = True
        out += writer.end(data)
        return self._send(out) if out else True

    def sendfile(self, path, offset=0, length=0):
        """Send a file as the whole body, zero-copy (os.sendfile)."""
        if self.finished or self._writer.started:
            return False
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if offset < 0 or offset > size:
                raise ValueError("sendfile offset %d outside the file (%d bytes)" % (offset, size))
            count = min(length or size - offset, size - offset)
            if not any(n.lower() == "content-type" for n, _ in self._headers):
                self._headers.append(("Content-Type", _guess_type(path)))
            head = self._head(count)
            self.finished = True
            ok = self._send(head)
            count = self._writer.file_count(count)
            if ok and count:
                ok = self._transport.write_file(f, offset, count)
                if not ok:
                    self._transport.abort()   # Content-Length promised, not delivered
            self._writer.end()
        return ok

    def _send(self, out):
        if self._transport.write(out):
            return True
        self.finished = True
        self._transport.abort()
        return False

    def redirect(self, url, code=302):
        self.status(code)
        self.header("Location", url)
        return self.end()

    def is_writable(self):
        return not self.finished and not self._transport.is_closing()

    isWritable = is_writable

    def close(self):
        """Drop the connection without finishing the response."""
        self.finished = True
        return self._transport.close()


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

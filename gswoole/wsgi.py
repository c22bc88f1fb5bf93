"""``gswoole.wsgi.Server(app, host, port)``: any PEP 3333 application on the
prefork gevent server.

The request arrives parsed and with its body already read (bounded by
``package_max_length``; larger bodies get 413 before the app runs), so
``wsgi.input`` is an in-memory stream and reading it never blocks. The
common case, a list with one body string, leaves in a single send together
with the status line and headers; iterables are streamed (chunked on
HTTP/1.1 when the app gives no Content-Length) and always ``close()``d.
"""

import io
import logging
import os
import sys
import time
from urllib.parse import unquote_to_bytes

from .http.access import access_log_enabled, log_access
from .http.response import LAST_CHUNK, chunk, encode_headers
from .http.server import Server as _HttpServer
from .http.server import _HttpProtocol
from .sockets import SOCK_TCP

log = logging.getLogger("gswoole")

_HEADER_KEYS = {}


def _environ_key(name):
    key = _HEADER_KEYS.get(name)
    if key is None:
        if name == "content-type":
            key = "CONTENT_TYPE"
        elif name == "content-length":
            key = "CONTENT_LENGTH"
        elif "_" in name:
            # "X_User" and "X-User" would both become HTTP_X_USER: a proxy that
            # strips one spelling lets a client smuggle the other. Dropped, as
            # gunicorn and nginx do by default.
            key = ""
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
        if len(_HEADER_KEYS) < 1000:
            _HEADER_KEYS[name] = key
    return key


class _EmptyInput(io.RawIOBase):
    """``wsgi.input`` of a request without a body: shared, stateless, read-only."""

    def readable(self):
        return True

    def readinto(self, buffer):
        return 0

    def read(self, size=-1):
        return b""

    def readline(self, size=-1):
        return b""

    def readlines(self, hint=-1):
        return []

    def __iter__(self):
        return iter(())


_EMPTY_INPUT = _EmptyInput()


class FileWrapper:
    """``wsgi.file_wrapper``: lets the server send a file with os.sendfile."""

    def __init__(self, filelike, blksize=65536):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        read = self.filelike.read
        while True:
            data = read(self.blksize)
            if not data:
                return
            yield data


class _WsgiProtocol(_HttpProtocol):
    def __init__(self, server, reactor):
        super().__init__(server, reactor)
        self.app = server.app
        listener = server._listeners[0]
        self.base_environ = {
            "SCRIPT_NAME": "",
            "SERVER_NAME": server.host if listener.is_tcp else "localhost",
            "SERVER_PORT": str(server.port),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
        }
        self.access = access_log_enabled()

    def environ(self, parsed, conn):
        env = self.base_environ.copy()
        path = parsed.path
        env["REQUEST_METHOD"] = parsed.method
        env["PATH_INFO"] = unquote_to_bytes(path).decode("latin-1") if "%" in path else path
        env["QUERY_STRING"] = parsed.query_string
        env["RAW_URI"] = parsed.raw_uri
        env["SERVER_PROTOCOL"] = "HTTP/1.1" if parsed.version == (1, 1) else "HTTP/1.0"
        remote = conn.remote
        if isinstance(remote, tuple):
            env["REMOTE_ADDR"] = remote[0]
            env["REMOTE_PORT"] = str(remote[1])
        else:
            env["REMOTE_ADDR"] = remote or ""
        body = parsed.body
        if body:
            env["wsgi.input"] = io.BytesIO(body)
            env["CONTENT_LENGTH"] = str(len(body))
        else:
            env["wsgi.input"] = _EMPTY_INPUT
        for name, value in parsed.headers:
            key = _environ_key(name)
            if key:
                if key in env and key.startswith("HTTP_"):
                    env[key] += "," + value
                else:
                    env[key] = value
        return env

    def handle_request(self, fd, parsed):
        conn = self.reactor.conns[fd]
        env = self.environ(parsed, conn)
        exchange = _Exchange(self, fd, parsed, parsed.keep_alive and not self.reactor.stopping)
        if self.access:
            exchange.started = time.time()
        try:
            result = self.app(env, exchange.start_response)
        except BaseException:   # gevent.Timeout is a BaseException too
            self._app_failed(exchange, env)
            return
        try:
            if result.__class__ is list and len(result) == 1 and not exchange.head_sent:
                exchange.finish(result[0])
            elif isinstance(result, FileWrapper) and exchange.can_sendfile(result):
                exchange.sendfile(result)
            else:
                for data in result:
                    if data:
                        exchange.write(data)
                exchange.finish(b"")
        except _ClientGone:
            # The client left or stopped reading mid-response: nothing to
            # report to it; reset so the partial body cannot pass for whole.
            exchange.done = True
            self.abort(fd)
        except BaseException:
            self._app_failed(exchange, env)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("error closing the response iterable of %s %s",
                                  env["REQUEST_METHOD"], env["RAW_URI"])
        if self.access:
            exchange.log_access(env)

    def _app_failed(self, exchange, env):
        log.exception("error in WSGI app (%s %s, fd=%d, worker #%d)", env["REQUEST_METHOD"],
                      env["RAW_URI"], exchange.fd, self.reactor.worker_id)
        if not exchange.head_sent:
            exchange.status = "500 Internal Server Error"
            exchange.headers = [("Content-Type", "text/plain")]
            exchange.finish(b"Internal Server Error\n")
        else:
            # Part of a response is out: cut the connection so the client
            # cannot take a truncated body for a complete one.
            exchange.done = True
            self.abort(exchange.fd)
        if self.access:
            exchange.log_access(env)


class _ClientGone(Exception):
    """A response could not be written: the connection is gone or stuck."""


class _Exchange:
    """One request/response of a WSGI app: start_response, write, finish."""

    # Class-level defaults: each request sets only what differs.
    status = None
    headers = None
    head_sent = False
    chunked = False
    length = None
    sent = 0
    done = False
    started = 0.0

    def __init__(self, protocol, fd, parsed, keep):
        self.protocol = protocol
        self.fd = fd
        self.parsed = parsed
        self.keep = keep

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called twice without exc_info")
        if status.__class__ is not str or len(status) < 4 or not status[:3].isdigit():
            raise ValueError("WSGI status must look like '200 OK', got %r" % (status,))
        self.status = status
        self.headers = headers
        return self.write

    def _head(self, body_length):
        status = self.status
        if status is None:
            raise AssertionError("the WSGI app returned without calling start_response()")
        headers = self.headers
        for name, value in headers:
            if len(name) == 14 and name.lower() == "content-length":
                self.length = int(value)
        version = self.parsed.version
        self.keep = self.keep and not self.protocol.reactor.stopping
        extra = ""
        if self.length is None and not (status[0] == "1" or status[:3] in ("204", "304")):
            if body_length is not None:
                self.length = body_length
                extra = "Content-Length: %d\r\n" % body_length
            elif version >= (1, 1):
                self.chunked = True
                extra = "Transfer-Encoding: chunked\r\n"
            else:
                self.keep = False   # the close marks the end of the body
        if not self.keep:
            extra += "Connection: close\r\n"
        elif version < (1, 1):
            extra += "Connection: keep-alive\r\n"
        head = b"".join((
            b"HTTP/1.1 " if version >= (1, 1) else b"HTTP/1.0 ",
            status.encode("latin-1"), b"\r\n",
            self.protocol.date(),
            encode_headers(headers),
            extra.encode("latin-1"),
            b"\r\n"))
        self.head_sent = True   # only once it is built: a bad header can still get a 500
        return head

    def write(self, data):
        """The PEP 3333 ``write`` callable, also used for iterable pieces."""
        if not isinstance(data, bytes):
            raise TypeError("WSGI body pieces must be bytes, got %s" % type(data).__name__)
        out = self._head(None) if not self.head_sent else b""
        if self.parsed.method != "HEAD" and data:
            if self.length is not None and self.sent + len(data) > self.length:
                # More than the app's Content-Length: the excess would be read
                # as the next response (response splitting). Drop it.
                data = data[:max(0, self.length - self.sent)]
            self.sent += len(data)
            out += chunk(data) if self.chunked else data
        if out:
            self._send(out)

    def _send(self, out):
        if not self.protocol.send(self.fd, out):
            raise _ClientGone()

    def finish(self, data):
        if data.__class__ is not bytes and not isinstance(data, bytes):
            raise TypeError("WSGI body pieces must be bytes, got %s" % type(data).__name__)
        if not self.head_sent:
            out = self._head(len(data))
            if self.parsed.method != "HEAD":
                if self.length is not None and len(data) > self.length:
                    data = data[:self.length]   # see write(): never past Content-Length
                out += data
                self.sent += len(data)
        else:
            if data:
                self.write(data)
            out = LAST_CHUNK if self.chunked and self.parsed.method != "HEAD" else b""
        if out:
            self._send(out)
        if self.length is not None and self.sent < self.length and self.parsed.method != "HEAD":
            # Less than the app's Content-Length: the client would wait for the
            # rest, or take the next response as the rest. Cut the connection.
            log.warning("WSGI app sent %d of the %d bytes its Content-Length promised (%s)",
                        self.sent, self.length, self.parsed.raw_uri)
            raise _ClientGone()
        self._done()

    def can_sendfile(self, wrapper):
        try:
            wrapper.filelike.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            return False
        return not self.head_sent

    def sendfile(self, wrapper):
        f = wrapper.filelike
        offset = f.tell() if hasattr(f, "tell") else 0
        size = os.fstat(f.fileno()).st_size - offset
        head = self._head(size if self.length is None else None)
        count = self.length if self.length is not None else size
        self._send(head)
        if self.parsed.method != "HEAD":
            if not self.protocol.send_file(self.fd, f, offset, count):
                raise _ClientGone()
            self.sent += count
        self._done()

    def _done(self):
        self.done = True
        self.protocol.response_done(self.fd, self.keep)

    def log_access(self, env):
        log_access(env.get("REMOTE_ADDR"), self.started, env["REQUEST_METHOD"],
                   env["RAW_URI"], env["SERVER_PROTOCOL"], (self.status or "500")[:3], self.sent)


class Server(_HttpServer):
    """Serve a WSGI ``app``: ``gswoole.wsgi.Server(app, "127.0.0.1", 8000).start()``."""

    protocol_class = _WsgiProtocol

    def __init__(self, app, host="127.0.0.1", port=8000, sock_type=SOCK_TCP):
        if not callable(app):
            raise TypeError("a WSGI app must be callable, got %r" % (app,))
        super().__init__(host, port, sock_type)
        self.app = app

    def _check_request_callback(self):
        pass  # the app is the handler


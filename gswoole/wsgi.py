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
from urllib.parse import unquote_to_bytes

from .http.server import ClientGone, _HttpProtocol
from .http.writer import ResponseWriter
from .http.server import Server as _HttpServer
from .sockets import SOCK_TCP
from .websocket.wsgi import WebSocket

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
    handler_name = "WSGI app"
    reads_upgrades = True      # environ["wsgi.websocket"] (see handle_upgrade)

    def __init__(self, host, setting, app, server_name, server_port):
        super().__init__(host, setting)
        self.app = app
        self.base_environ = {
            "SCRIPT_NAME": "",
            "SERVER_NAME": server_name,
            "SERVER_PORT": str(server_port),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
        }

    def handle_upgrade(self, transport, parsed):
        """A WebSocket upgrade request. The app gets the connection's socket,
        taken out of the reactor: as ``wsgi.websocket`` (gevent-websocket's
        API, handshake made on first use) and as ``gunicorn.socket`` (for
        apps that make the handshake themselves, like simple-websocket).
        When the app returns, the connection closes; if it used neither, its
        response is sent first (a refused upgrade)."""
        transport.pause_reading()
        sock = transport.detach(self.setting["send_timeout"] or 10.0)
        if sock is None:
            transport.abort()
            return
        env = self.environ(parsed, transport)
        ws = WebSocket(sock, env, parsed, self.setting, transport.parser.take_rest())
        env["wsgi.websocket"] = ws
        env["wsgi.websocket_version"] = env.get("HTTP_SEC_WEBSOCKET_VERSION", "")
        env["gunicorn.socket"] = sock
        writer = ResponseWriter(parsed.method, parsed.version, False)
        exchange = _Exchange(self, transport, parsed, writer)
        try:
            try:
                result = self.app(env, exchange.start_response)
            except StopIteration:
                # gunicorn's convention (simple-websocket, Flask-Sock): the
                # app took the socket and answered on it; send nothing.
                result = None
            try:
                if result is not None and not ws.handshake_done:
                    body = [data for data in result if data]
                    if not ws.handshake_done:
                        for data in body:
                            exchange.write(data)
                        exchange.finish(b"")
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except ClientGone:
            transport.abort()
        except BaseException:
            log.exception("error in WSGI app (WebSocket %s, fd=%d, worker #%d)",
                          parsed.raw_uri, transport.fd, self.host.worker_id)
            if not (ws.handshake_done or writer.started):
                transport.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0"
                                b"\r\nConnection: close\r\n\r\n")
        finally:
            ws.close()
            if ws.handshake_done:
                sock.close()
            transport.close()

    def connection_environ(self, transport):
        """What every request of a connection shares: the server's part of
        the environ, the peer's address and the scheme. Made on the
        connection's first request and kept on its transport."""
        env = self.base_environ.copy()
        if transport.tls:
            env["wsgi.url_scheme"] = "https"
            env["HTTPS"] = "on"
        remote = transport.get_extra_info("peername")
        if isinstance(remote, tuple):
            env["REMOTE_ADDR"] = remote[0]
            env["REMOTE_PORT"] = str(remote[1])
        else:
            env["REMOTE_ADDR"] = remote or ""
        transport.context = env
        return env

    def environ(self, parsed, transport):
        env = (transport.context or self.connection_environ(transport)).copy()
        path = parsed.path
        env["REQUEST_METHOD"] = parsed.method
        env["PATH_INFO"] = unquote_to_bytes(path).decode("latin-1") if "%" in path else path
        env["QUERY_STRING"] = parsed.query_string
        env["RAW_URI"] = parsed.raw_uri
        env["SERVER_PROTOCOL"] = "HTTP/1.1" if parsed.version == (1, 1) else "HTTP/1.0"
        body = parsed.body
        if body:
            env["wsgi.input"] = io.BytesIO(body)
            env["CONTENT_LENGTH"] = str(len(body))
        else:
            env["wsgi.input"] = _EMPTY_INPUT
        keys = _HEADER_KEYS
        for name, value in parsed.headers:
            key = keys.get(name) or _environ_key(name)
            if key:
                if key in env and key.startswith("HTTP_"):
                    env[key] += "," + value
                else:
                    env[key] = value
        return env

    def respond(self, transport, parsed, writer):
        """Run the app for one request (PEP 3333)."""
        env = self.environ(parsed, transport)
        exchange = _Exchange(self, transport, parsed, writer)
        result = self.app(env, exchange.start_response)
        if result.__class__ is list and len(result) == 1 and exchange.status is not None \
                and not writer.started and result[0].__class__ is bytes:
            # The usual answer, one body string: exchange.finish(), inlined.
            body = result[0]
            code, line = exchange.status
            head = self.start(writer, code, line, exchange.headers, len(body))
            if not transport.write(head + writer.end(body)):
                raise ClientGone()
            return
        try:
            if result.__class__ is list and len(result) == 1 and not writer.started:
                exchange.finish(result[0])
            elif isinstance(result, FileWrapper) and exchange.can_sendfile(result):
                exchange.sendfile(result)
            else:
                for data in result:
                    if data:
                        exchange.write(data)
                exchange.finish(b"")
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("error closing the response iterable of %s %s",
                                  parsed.method, parsed.raw_uri)


# status string -> (code, b"HTTP/1.1 " + status + CRLF) per version; bounded.
_STATUS = {}


def _status_line(status, version):
    key = (status, version)
    known = _STATUS.get(key)
    if known is None:
        if status.__class__ is not str or len(status) < 4 or not status[:3].isdigit() \
                or status[3] != " " or "\r" in status or "\n" in status:
            raise ValueError("WSGI status must look like '200 OK', got %r" % (status,))
        code = int(status[:3])
        if code < 200:
            raise ValueError("WSGI status %r is not a final response" % (status,))
        known = (code, ("HTTP/1.%d %s\r\n" % (version[1], status)).encode("latin-1"))
        if len(_STATUS) < 1000:
            _STATUS[key] = known
    return known


class _Exchange:
    """One WSGI request/response: ``start_response`` and the body, handed to
    the protocol's ``ResponseWriter``."""

    __slots__ = ("protocol", "transport", "parsed", "writer", "status", "headers")

    def __init__(self, protocol, transport, parsed, writer):
        self.protocol = protocol
        self.transport = transport
        self.parsed = parsed
        self.writer = writer
        self.status = None
        self.headers = None

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.writer.started:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called twice without exc_info")
        # (code, status line): checked here, so a bad status fails in the app's call
        version = self.parsed.version
        self.status = _STATUS.get((status, version)) or _status_line(status, version)
        self.headers = headers
        return self.write

    def _head(self, body_length):
        if self.status is None:
            raise AssertionError("the WSGI app returned without calling start_response()")
        code, line = self.status
        return self.protocol.start(self.writer, code, line, self.headers, body_length)

    def write(self, data):
        """The PEP 3333 ``write`` callable, also used for iterable pieces."""
        if data.__class__ is not bytes and not isinstance(data, bytes):
            raise TypeError("WSGI body pieces must be bytes, got %s" % type(data).__name__)
        writer = self.writer
        out = b"" if writer.started else self._head(None)
        out += writer.body(data)
        if out:
            self._send(out)

    def finish(self, data):
        if data.__class__ is not bytes and not isinstance(data, bytes):
            raise TypeError("WSGI body pieces must be bytes, got %s" % type(data).__name__)
        writer = self.writer
        out = b"" if writer.started else self._head(len(data))
        out += writer.end(data)
        if out:
            self._send(out)

    def _send(self, out):
        if not self.transport.write(out):
            raise ClientGone()

    def can_sendfile(self, wrapper):
        try:
            wrapper.filelike.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            return False
        return not self.writer.started

    def sendfile(self, wrapper):
        f = wrapper.filelike
        offset = f.tell() if hasattr(f, "tell") else 0
        size = os.fstat(f.fileno()).st_size - offset
        self._send(self._head(size))
        count = self.writer.file_count(size)
        if count and not self.transport.write_file(f, offset, count):
            raise ClientGone()
        self.writer.end()


class Server(_HttpServer):
    """Serve a WSGI ``app``: ``gswoole.wsgi.Server(app, "127.0.0.1", 8000).start()``."""

    def __init__(self, app, host="127.0.0.1", port=8000, sock_type=SOCK_TCP):
        if not callable(app):
            raise TypeError("a WSGI app must be callable, got %r" % (app,))
        super().__init__(host, port, sock_type=sock_type)
        self.app = app

    def _check_request_callback(self):
        pass  # the app is the handler

    def _make_protocol(self, reactor):
        main = self._listeners[0]
        return _WsgiProtocol(reactor, self.setting, self.app,
                             self.host if main.is_tcp else "localhost", self.port)


"""``gswoole.http.Server``: Swoole's HTTP server on the core reactor.

How this works. Each HTTP port gives its connections a ``_HttpSplitter`` as
framing: the reactor feeds it every ``recv`` in the hub, and it returns what
httptools (behind ``parser.RequestParser``) completed: parsed requests, a
100-continue marker, or an error. These go on the connection's ordered event
queue like any packet, so pipelined requests are answered in order by the one
greenlet that serves that connection, and a slow handler delays only its own
connection. The "receive" callback of this server is internal: it turns each
event into a response (``_HttpProtocol.handle``); subclasses (WSGI) override
``handle_request``.

Timeouts run from the reactor's once-a-second sweep, not from per-request
timers, so the hot path carries no timer work: the sweep notes when it first
sees a connection inside a request's headers (by the parser's request count),
and one still there ``http_header_timeout`` later gets 408 and is closed
(slowloris), as is one that stops sending in the middle of a body for that
long; an idle keep-alive connection is closed after
``http_keepalive_timeout``; a stopping worker closes idle connections at once
and answers in-flight requests with ``Connection: close``.
"""

import logging
import time

from ..callbacks import CallbackError
from ..errors import ServerStateError
from ..server import Server as _TcpServer
from ..sockets import SOCK_TCP
from .access import access_log_enabled, configure_access_log, log_access
from .parser import CONTINUE, HTTPError, ParsedRequest, RequestParser
from .request import Request
from .response import CONTINUE as CONTINUE_BYTES
from .response import Response, date_header

log = logging.getLogger("gswoole")


class _HttpProtocol:
    """One worker's HTTP glue between the reactor and Request/Response."""

    def __init__(self, server, reactor):
        self.server = server
        self.reactor = reactor
        self.setting = server.setting
        self.on_request = server._callbacks.get("request")
        self.upload_dir = self.setting["upload_tmp_dir"]
        self.access = access_log_enabled()
        self.send = reactor.send_wait   # a response is never cut for want of buffer
        self.send_file = reactor.send_file
        self.exist = reactor.exist
        self.close = reactor.close
        self._in_headers = {}            # (fd, request number) -> clock first seen in headers
        reactor.sweepers.append(self.sweep)
        reactor.stop_hooks.append(self.close_idle)

    def splitter(self):
        """The per-connection framing: the parser itself (``feed`` -> events)."""
        s = self.setting
        return RequestParser(limit_request_line=s["limit_request_line"],
                             limit_request_fields=s["limit_request_fields"],
                             limit_request_field_size=s["limit_request_field_size"],
                             max_body=s["package_max_length"])

    # -- per event (runs in the connection's greenlet) -----------------

    def handle(self, server, fd, reactor_id, event):
        if event.__class__ is ParsedRequest:
            self.handle_request(fd, event)
        elif event is CONTINUE:
            self.send(fd, CONTINUE_BYTES)
        else:
            self.send(fd, event.response_bytes())
            self.close(fd)

    def handle_request(self, fd, parsed):
        conn = self.reactor.conns[fd]
        remote = conn.remote
        client = (remote[0], remote[1], conn.listener.port) if isinstance(remote, tuple) \
            else (remote or "", 0, 0)
        request = Request(parsed, fd, client, self.upload_dir)
        response = Response(self, request)
        if self.access:
            started = time.time()
        try:
            self.on_request(request, response)
        except BaseException:   # gevent.Timeout is a BaseException too
            log.exception("error in request callback (%s %s, fd=%d, worker #%d)",
                          request.method, request.raw_uri, fd, self.reactor.worker_id)
            if not response._head_sent:
                response._headers = [("Content-Type", "text/plain")]
                response.finished = False
                response.status(500)
                response.end(b"Internal Server Error\n")
            else:
                # Part of the body is out: reset first, so neither a FIN (the
                # end of an HTTP/1.0 body) nor a kept-alive connection makes
                # the truncated body look complete.
                response.finished = True
                self.abort(fd)
                request.cleanup()
        else:
            if not response.finished:
                response.end()
        if self.access:
            log_access(client[0], started, request.method, request.raw_uri,
                       "HTTP/%d.%d" % request.version, response._status, response.sent)

    # -- used by Response ---------------------------------------------

    def keep_alive(self, request):
        return request.keep_alive and not self.reactor.stopping

    def date(self):
        return date_header(self.reactor.clock)

    def abort(self, fd):
        """Part of a response could not be sent: reset the connection so the
        client cannot take a truncated body for a whole one."""
        self.reactor.close(fd, reset=True)

    def finish(self, request):
        """A Response is complete (used by Response)."""
        request.cleanup()
        self.response_done(request.fd, request.keep_alive)

    def response_done(self, fd, keep_alive):
        """A response is out: the keep-alive clock restarts now, and the
        connection closes if the response ended it (or the worker stops)."""
        reactor = self.reactor
        conn = reactor.conns.get(fd)
        if conn is not None:
            conn.last_time = reactor.clock
            if not keep_alive or reactor.stopping:
                reactor.close(fd)

    # -- timeouts -----------------------------------------------------

    def sweep(self, reactor):
        clock = reactor.clock
        header_limit = clock - self.setting["http_header_timeout"]
        idle_limit = clock - self.setting["http_keepalive_timeout"]
        in_headers = {}
        for fd, conn in list(reactor.conns.items()):
            parser = conn.splitter
            if parser is None or conn.busy or conn.out_size or conn.eof:
                continue
            if parser.in_headers:
                key = (fd, parser.requests_started)
                since = in_headers[key] = self._in_headers.get(key, clock)
                if since <= header_limit:
                    self._time_out(reactor, fd)
            elif parser.idle:
                if conn.last_time <= idle_limit:
                    reactor.close(fd)
            elif conn.last_time <= header_limit:
                # Inside a body and silent for http_header_timeout: a slow
                # upload is fine, a stalled one must not hold the worker.
                self._time_out(reactor, fd)
        self._in_headers = in_headers

    @staticmethod
    def _time_out(reactor, fd):
        reactor.send(fd, HTTPError(408, "Request Timeout").response_bytes())
        reactor.close(fd)

    def close_idle(self, reactor):
        for fd, conn in list(reactor.conns.items()):
            parser = conn.splitter
            if parser is not None and not conn.busy and not conn.out_size and parser.idle:
                reactor.close(fd)


class Server(_TcpServer):
    """An HTTP/1.1 server: ``on("request", fn(request, response))``."""

    protocol_class = _HttpProtocol

    def __init__(self, host, port=0, sock_type=SOCK_TCP):
        super().__init__(host, port, sock_type)
        self._protocol = None

    def on(self, event, callback):
        from ..callbacks import canonical_event
        if canonical_event(event) in ("receive", "connect", "packet"):
            raise CallbackError("an HTTP server delivers 'request' events; %r is not "
                                "available on it" % event)
        return super().on(event, callback)

    def _check_startable(self):
        self._check_request_callback()
        super()._check_startable()

    def _check_request_callback(self):
        if "request" not in self._callbacks:
            raise ServerStateError("start() needs a 'request' callback: "
                                   "server.on('request', fn(request, response))")

    def _requires_receive(self):
        return False

    def start(self):
        if self.setting["access_log"]:
            configure_access_log(self.setting["access_log"])
        return super().start()

    def _attach_worker(self, worker):
        reactor = worker.reactor
        protocol = self.protocol_class(self, reactor)
        self._protocol = protocol
        for listener in self._listeners:
            if listener.on_receive is not None:
                continue   # a listen() port with its own receive/packet callback: not HTTP
            listener.half_close = True
            listener.splitter_factory = protocol.splitter
            listener.on_receive = protocol.handle
        super()._attach_worker(worker)

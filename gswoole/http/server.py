"""``gswoole.http.Server``: Swoole's HTTP server on the core reactor.

How this works. Each HTTP port gives its connections a ``RequestParser`` as
framing: the reactor feeds it every ``recv`` in the hub, and it returns what
httptools completed: parsed requests, a 100-continue marker, or an error.
These go on the connection's ordered event queue like any packet, so
pipelined requests are answered in order by the one greenlet that serves
that connection, and a slow handler delays only its own connection. The
"receive" callback of this server is internal: it turns each event into a
response (``_HttpProtocol.handle``).

Every request goes through ``handle_request``: one ``ResponseWriter``
(writer.py) frames the response, ``respond`` runs the handler (Swoole's
Request/Response here, a WSGI app in wsgi.py), and then one path decides
what a failure gets (a 500 if nothing was sent, a reset if part was), whether
the connection stays open, and writes the one access-log line.

Timeouts run from the reactor's once-a-second sweep, not from per-request
timers, so the hot path carries no timer work. The sweep notes when it first
sees a connection inside a request's headers or body (keyed by the parser's
request count): headers not complete ``http_header_timeout`` later get 408
and a close (slowloris), and so does a body that, after that same grace,
arrives slower than ``http_body_min_rate`` bytes a second on average. An
idle keep-alive connection is closed after ``http_keepalive_timeout``.

A stopping worker (reload, ``max_request``, shutdown) answers every request
that reaches it with ``Connection: close``. It closes a keep-alive connection
only when no request can be on its way: after answering one more, or once
the connection has been quiet (nothing received) for ``STOP_QUIET_TIME``;
closing one the moment the stop begins would discard a request the client
has already sent (the lingering close reads and drops it).
"""

import logging
import time

from ..callbacks import CallbackError
from ..errors import ServerStateError
from ..server import Server as _TcpServer
from ..sockets import SOCK_TCP
from ..swoole_names import BASE
from .access import access_log_enabled, configure_access_log, log_access
from .parser import CONTINUE, HTTPError, ParsedRequest, RequestParser
from .request import Request
from .response import Response
from .writer import CONTINUE as CONTINUE_BYTES
from .writer import LENGTH, ResponseWriter, date_header, status_line

log = logging.getLogger("gswoole")

STOP_QUIET_TIME = 0.5   # seconds without input before a stopping worker closes a keep-alive
_ERROR_BODY = b"Internal Server Error\n"


class ClientGone(Exception):
    """A response could not be written: the connection is gone or stuck."""


class _HttpProtocol:
    """One worker's HTTP protocol: requests in, responses out, through each
    connection's ``Transport`` (transport.py).

    ``host`` is what the protocol needs of the worker (the reactor, or a fake
    in tests): ``clock`` (monotonic seconds, for timeouts), ``wall_clock``
    (for the Date header), ``stopping``, ``worker_id``, ``loop`` (a timer
    while stopping), ``sweepers`` and ``stop_hooks`` (where the protocol
    registers its once-a-second sweep and its stop), ``transport(fd)`` and
    ``transports()``."""

    handler_name = "request callback"    # names the user's code in error logs
    reads_upgrades = False     # the parser stops at a WebSocket upgrade (subclasses that take it)

    def __init__(self, host, setting, on_request=None):
        self.host = host
        self.setting = setting
        self.on_request = on_request
        self.upload_dir = setting["upload_tmp_dir"]
        self.access = access_log_enabled()
        self._in_headers = {}            # (fd, request number) -> clock first seen in headers
        self._in_body = {}               # (fd, request number) -> (clock, body bytes) first seen
        self._quiet = None               # stopping: {fd: request number} of idle connections
        host.sweepers.append(self.sweep)
        host.stop_hooks.append(self.start_stopping)

    def splitter(self):
        """The per-connection framing: the parser itself (``feed`` -> events)."""
        s = self.setting
        return RequestParser(limit_request_line=s["limit_request_line"],
                             limit_request_fields=s["limit_request_fields"],
                             limit_request_field_size=s["limit_request_field_size"],
                             max_body=s["package_max_length"], websocket=self.reads_upgrades)

    # -- per event (runs in the connection's greenlet) -----------------

    def handle(self, server, fd, reactor_id, event):
        """The port's receive callback: one parser event of connection ``fd``."""
        transport = self.host.transport(fd)
        if event.__class__ is ParsedRequest:
            if event.websocket:    # only from parsers made with reads_upgrades
                self.handle_upgrade(transport, event)
            else:
                self.handle_request(transport, event)
        elif event is CONTINUE:
            transport.write(CONTINUE_BYTES)
        else:
            transport.write(event.response_bytes())
            transport.close()

    def handle_request(self, transport, parsed):
        writer = ResponseWriter(parsed.method, parsed.version, parsed.keep_alive)
        if self.access:
            started = time.time()
        try:
            self.respond(transport, parsed, writer)
        except ClientGone:
            # The client left or stopped reading mid-response: nothing to
            # tell it; reset so a partial body cannot pass for a whole one.
            transport.abort()
        except BaseException:   # gevent.Timeout is a BaseException too
            self._respond_failed(transport, parsed, writer)
        if writer.remaining or writer.excess:
            self._framing_mistake(transport, parsed, writer)
        # After every request: restart the keep-alive clock; close if the
        # response ended the connection (writer.must_close, spelled out).
        elif transport.touch() and (not writer.keep_alive or not writer.ended):
            transport.close()
        if self.access:
            self.log_request(transport, parsed, writer, started)

    @staticmethod
    def log_request(transport, parsed, writer, started):
        """The request's access-log line, with its headers and the response's
        for the {name}i, {name}o, f and a atoms."""
        remote = transport.get_extra_info("peername")
        log_access(remote[0] if isinstance(remote, tuple) else remote, started,
                   parsed.method, parsed.raw_uri, "HTTP/%d.%d" % parsed.version,
                   writer.code or "-", writer.sent, dict(parsed.headers),
                   {str(name).lower(): str(value) for name, value in writer.headers_sent})

    def handle_upgrade(self, transport, parsed):
        """A WebSocket upgrade request: protocols with ``reads_upgrades`` take
        it over; here (never reached: this parser does not stop at upgrades)
        it would be an ordinary request."""
        self.handle_request(transport, parsed)

    def respond(self, transport, parsed, writer):
        """Run the handler for one request (Swoole's Request and Response)."""
        remote = transport.get_extra_info("peername")
        client = (remote[0], remote[1], transport.get_extra_info("server_port")) \
            if isinstance(remote, tuple) else (remote or "", 0, 0)
        request = Request(parsed, transport.fd, client, self.upload_dir, transport.tls)
        response = Response(self, transport, request, writer)
        try:
            self.on_request(request, response)
            if not response.finished:
                response.end()
        finally:
            request.cleanup()

    def _respond_failed(self, transport, parsed, writer):
        log.exception("error in %s (%s %s, fd=%d, worker #%d)", self.handler_name,
                      parsed.method, parsed.raw_uri, transport.fd, self.host.worker_id)
        if not writer.started:
            head = self.start(writer, 500, status_line(parsed.version, 500),
                              [("Content-Type", "text/plain")], len(_ERROR_BODY))
            transport.write(head + writer.end(_ERROR_BODY))
        elif not writer.ended:
            # Part of the body is out: reset, so neither a FIN (the end of a
            # body framed by the close) nor a kept-alive connection makes the
            # truncated body look complete.
            transport.abort()

    def _framing_mistake(self, transport, parsed, writer):
        """A body that went past or fell short of its Content-Length: log it;
        a short one leaves the connection to be closed."""
        remaining = writer.remaining
        if writer.excess:
            log.error("%s %s: the handler sent %d body bytes past its Content-Length; "
                      "they were not sent", parsed.method, parsed.raw_uri, writer.excess)
        if remaining and writer.ended and writer.mode == LENGTH:
            log.error("%s %s: the response body ended %d bytes short of its "
                      "Content-Length; closing the connection", parsed.method,
                      parsed.raw_uri, remaining)
        if transport.touch() and (not writer.keep_alive or not writer.ended
                                  or (remaining and writer.mode == LENGTH)):
            transport.close()

    # -- used by the response adapters -----------------------------------

    def start(self, writer, code, line, headers, body_length=None):
        """The response head, from ``writer``; a stopping worker ends the
        connection with this response."""
        host = self.host
        if host.stopping:
            writer.keep_alive = False
        return writer.start(code, line, headers, date_header(host.wall_clock), body_length)

    # -- timeouts -----------------------------------------------------

    def sweep(self, host):
        clock = host.clock
        grace = self.setting["http_header_timeout"]
        min_rate = self.setting["http_body_min_rate"]
        header_limit = clock - grace
        idle_limit = clock - self.setting["http_keepalive_timeout"]
        in_headers = {}
        in_body = {}
        for fd, transport in host.transports():
            parser = transport.parser
            if parser.__class__ is not RequestParser or not transport.idle:
                continue   # busy, or no longer HTTP (a WebSocket)
            if parser.in_headers:
                key = (fd, parser.requests_started)
                since = in_headers[key] = self._in_headers.get(key, clock)
                if since <= header_limit:
                    self._time_out(transport)
            elif parser.idle:
                if transport.last_activity <= idle_limit:
                    transport.close()
            else:
                # Inside a body. A slow upload is fine, a trickle is not:
                # after the grace, the average rate since the body began must
                # reach http_body_min_rate (or the body must keep coming at
                # all, when the rate check is off).
                key = (fd, parser.requests_started)
                since, received = in_body[key] = self._in_body.get(
                    key, (clock, parser.body_received))
                if min_rate:
                    if since <= header_limit and \
                            parser.body_received - received < min_rate * (clock - since):
                        self._time_out(transport)
                elif transport.last_activity <= header_limit:
                    self._time_out(transport)
        self._in_headers = in_headers
        self._in_body = in_body

    @staticmethod
    def _time_out(transport):
        transport.send(HTTPError(408, "Request Timeout").response_bytes())
        transport.close()

    # -- stopping -----------------------------------------------------

    def start_stopping(self, host):
        """A graceful stop began: from now on idle keep-alive connections
        close once they have been quiet for STOP_QUIET_TIME (see the module
        docstring); busy ones close after their next response."""
        self._quiet = self._idle_connections()
        timer = host.loop.timer(STOP_QUIET_TIME, STOP_QUIET_TIME)
        timer.start(self._close_quiet)

    def _idle_connections(self):
        """{fd: (transport, request number)} of connections between requests
        with nothing queued either way."""
        idle = {}
        for fd, transport in self.host.transports():
            parser = transport.parser
            if parser.__class__ is RequestParser and parser.idle and transport.idle:
                idle[fd] = (transport, parser.requests_started)
        return idle

    def _close_quiet(self):
        now = self._idle_connections()
        before = self._quiet
        for fd, (transport, started) in now.items():
            seen = before.get(fd)
            if seen is not None and seen[1] == started:
                transport.close()
        self._quiet = now


class Server(_TcpServer):
    """An HTTP/1.1 server: ``on("request", fn(request, response))``."""

    def __init__(self, host, port=0, mode=BASE, sock_type=SOCK_TCP):
        super().__init__(host, port, mode, sock_type=sock_type)
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

    def _make_protocol(self, reactor):
        return _HttpProtocol(reactor, self.setting, self._callbacks["request"])

    def _attach_worker(self, worker):
        protocol = self._make_protocol(worker.reactor)
        self._protocol = protocol
        for listener in self._listeners:
            if listener.on_receive is not None:
                continue   # a listen() port with its own receive/packet callback: not HTTP
            listener.half_close = True
            listener.protocol = protocol
            listener.splitter_factory = protocol.splitter
            listener.on_receive = protocol.handle
        super()._attach_worker(worker)

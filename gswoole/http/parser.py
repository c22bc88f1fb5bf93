"""Sans-IO HTTP/1.x request parser: httptools (llhttp) plus the rules llhttp leaves out.

How this works. ``RequestParser.feed(data)`` hands the bytes to one
``httptools.HttpRequestParser``, whose callbacks are bound methods of the
``RequestParser`` itself. They collect the request line and headers, and at
``on_headers_complete`` turn them into a ``ParsedRequest``; the body is buffered
until ``on_message_complete``, which appends the finished request to the list
``feed()`` returns. A rule broken anywhere raises ``HTTPError`` inside the
callback; llhttp then stops and ``feed()`` returns the error as the last event.
Errors found by llhttp itself become ``HTTPError`` too (400, or 501/505/413
for an unknown method, an unsupported version, a numeric overflow). After an
error, or after a request that ends the connection, the parser is ``closed``
and ignores later data, like nginx.

The per-request Python work is a handful of attribute stores and one small
function call per header; everything per byte happens in C. Header names are
decoded and lower-cased once per distinct spelling (a small cache), values are
stripped and latin-1 decoded.

The usual request is cheaper still. Where the optional C helper
``gswoole._http`` is built (setup.py), ``feed()`` first offers whole request
heads of the plain kind (no body, no Expect or Upgrade, nothing unusual in a
byte; gswoole/_http.c lists what it takes) to its ``scan()``, which reads one
in a single call; whatever it declines goes to llhttp as described here, from
the first byte it declined. Its reading is a strict subset of llhttp's and
must equal the slow path's (tests/test_http_parser.py compares the two on
generated heads). Without the helper every request takes the httptools path.

Rules added on top of llhttp (gunicorn's request corpus shows what is needed):

* Limits, with gunicorn's names, defaults and meaning of 0:
  ``limit_request_line`` (default 4094; 0 means 8190): a longer request line
  gets 414, checked as URL pieces arrive so a huge line dripping in is cut
  early. ``limit_request_fields`` (100; 0 means 32768): more header fields
  get 431. ``limit_request_field_size`` (8190; 0 means 8190, as in gunicorn's
  ``limit_header_default_01`` case): a longer header line (name, value,
  ": " and CRLF) gets 431. Trailers get the same two limits.
  ``max_body`` (2 MiB; 0 disables): a larger body gets 413, up front from
  Content-Length (before any 100 Continue) or as chunked data arrives.
* Bounded buffering. httptools keeps a header line in memory until it is
  complete, so a line that never ends would grow forever. A request in
  progress may therefore send at most ``limit_request_field_size`` (+256 for
  framing) bytes in feeds that produce no progress (no URL piece, complete
  header, body data or message boundary): more gets 431. With the limits above this bounds what a
  connection can make us buffer to the request line, fields x field size and
  one recv.
* Framing (request smuggling): Content-Length with Transfer-Encoding, two
  Content-Length fields, or a non-numeric one: 400 (llhttp, re-checked here).
  Transfer-Encoding must end in exactly one "chunked" (400); other codings
  before it must be gzip, deflate, compress or identity (else 501) and, as in
  gunicorn, a coded body ends the connection after this request (the body is
  passed on still coded). Transfer-Encoding in an HTTP/1.0 request: 400
  (RFC 9112 6.1 calls its framing faulty). Bad chunk sizes and extensions are
  llhttp's 400s.
* Singleton fields: a second Host or Content-Type is 400 (ambiguous routing
  or content; gunicorn rejects both).
* Trailers may not carry fields that frame, route, authenticate or control the
  request (Host, Content-Length, Transfer-Encoding, Trailer, TE, Connection,
  Authorization, Cookie, Expect, Range, If-*, ...): 400.
* Header names are llhttp-validated tokens; names with "_" are kept (the
  WSGI layer drops them from environ, as gunicorn's default and nginx do).
* Versions: only HTTP/1.0 and HTTP/1.1; llhttp also takes 0.9 and 2.0, and
  an HTTP/2 preface: all 505.
* Methods: llhttp knows a fixed set (no custom methods, e.g. "-BLARGH"); an
  unknown one is 400 (see _LLHTTP_STATUS for why not RFC 9110's 501). CONNECT
  is 501: we are not a proxy. RTSP/ICE-only methods llhttp accepts with their
  own protocol are 501.
* Request target: origin-form ("/..."), absolute-form (split with urlsplit;
  no scheme/host, or unparsable, is 400), "*" only with OPTIONS (else 400).
  llhttp refuses authority-form for other methods and raw non-ASCII bytes.
* Expect: 100-continue on an HTTP/1.1 request with a body: ``CONTINUE`` is
  returned once, when the headers are complete and the body is not, so the
  server sends "100 Continue" only to a client that is still waiting.
  Other expectations are ignored (RFC 9110 10.1.1 allows that).
* Upgrade: a parser made with ``websocket=True`` (the WebSocket and WSGI
  servers) stops at a GET request asking for a WebSocket upgrade that has no
  body: the request is returned with ``websocket`` True, and what follows is
  no longer HTTP. The parser keeps those bytes (``take_rest()``, bounded by
  ``max_body``) for whoever takes the connection over, and parses nothing
  more. Any other Upgrade request is an ordinary request and parsing goes on. httptools stops at the end of its
  headers and skips its body; if it has one, ``feed()`` re-frames the rest
  of the stream with a synthetic header block carrying the same
  Content-Length or chunked coding, so llhttp still reads (and validates) the
  body into that request.
* Connection: close, or HTTP/1.0 without keep-alive: the request is returned
  with ``keep_alive`` False, the parser closes and ignores what follows.

* Host: an HTTP/1.1 request without one is 400 (RFC 9112 3.2).
* Protocol name: llhttp also reads RTSP/1.0 request lines (and ICE/1.0 ones
  with the SOURCE method, which is not served: 501) and reports only the
  version numbers. ``feed()`` screens the bytes for "RTSP/" (one substring
  search per feed; a request line split across feeds is carried over) and
  answers a request line that uses it with 400.
"""

import re
from http import HTTPStatus
from urllib.parse import urlsplit

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

try:
    # The common request head in one C call (gswoole/_http.c): optional, a
    # build without a C compiler reads every request through httptools.
    from .._http import scan as _scan
except ImportError:
    _scan = None

__all__ = ["RequestParser", "ParsedRequest", "HTTPError", "CONTINUE"]

# gunicorn's ceilings, used where its settings say 0 (or less).
MAX_REQUEST_LINE = 8190
MAX_HEADERS = 32768
DEFAULT_MAX_HEADERFIELD_SIZE = 8190

# Methods we serve, as llhttp reports them (bytes) -> str. Everything else
# llhttp knows (CONNECT, PRI, the RTSP methods) is answered 501.
_METHODS = {m.encode(): m for m in (
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH", "QUERY",
    "COPY", "LOCK", "MKCOL", "MOVE", "PROPFIND", "PROPPATCH", "SEARCH", "UNLOCK",
    "BIND", "REBIND", "UNBIND", "ACL", "REPORT", "MKACTIVITY", "CHECKOUT", "MERGE",
    "M-SEARCH", "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE", "PURGE", "MKCALENDAR",
    "LINK", "UNLINK")}

_VERSIONS = {"1.1": (1, 1), "1.0": (1, 0)}

# Fields that need a look at header time; everything else is just collected.
_SPECIAL = frozenset(("content-length", "transfer-encoding", "expect", "host", "content-type",
                      "connection", "proxy-connection"))
# Transfer codings that may precede the final "chunked" (gunicorn's set).
_CODINGS = frozenset(("gzip", "deflate", "compress", "identity"))
# RFC 9110 6.5.1: fields a sender must not put in trailers, because they frame,
# route, authenticate or control the request. (Content-Type is allowed: the
# corpus's valid case 012 sends it.)
_FORBIDDEN_TRAILERS = frozenset((
    "host", "content-length", "transfer-encoding", "trailer", "te", "connection",
    "keep-alive", "proxy-connection", "upgrade", "expect", "max-forwards",
    "authorization", "proxy-authorization", "cookie", "cache-control", "pragma",
    "range", "content-encoding", "content-range"))

# llhttp's error messages that deserve a status other than 400.
_LLHTTP_STATUS = {
    # An unknown method token is a 400, not RFC 9110's 501: llhttp stops at
    # its first unknown byte, before the line shows whether this is a request
    # line at all (a TLS handshake, garbage), and the answer must not depend
    # on how the bytes were chunked. Methods llhttp knows but we do not serve
    # (CONNECT, RTSP's) still get 501, from on_headers_complete.
    "Invalid method for HTTP/x.x request": 501,
    "Invalid HTTP version": 505,
    "Pause on PRI/Upgrade": 505,          # an HTTP/2 connection preface
    "Content-Length overflow": 413,
    "Chunk size overflow": 413,
}

# A request line whose protocol is RTSP, which llhttp reads as HTTP. The first
# token has no ":", so a header line never matches. (llhttp's other foreign
# protocol, ICE, only comes with the SOURCE method, which we do not serve.)
_FOREIGN_REQUEST_LINE = re.compile(rb"(?m)^[!#$%&'*+.^_`|~0-9A-Za-z-]+ [^ \r\n]+ (RTSP)/")

# Framing bytes allowed on top of one field in a window without progress.
_STALL_SLACK = 256

# Header name bytes -> lower-case str. Names repeat across requests, so
# decoding each spelling once saves two allocations per header; the size cap
# keeps a client that invents names from growing it.
_NAMES = {}
_NAMES_MAX = 512


class HTTPError(Exception):
    """A request the server refuses. ``status`` is the response status,
    ``reason`` a short fixed text (never client bytes)."""

    def __init__(self, status, reason=None):
        self.status = status
        self.reason = reason or _phrase(status)
        super().__init__(status, self.reason)

    def response_bytes(self):
        """A complete minimal response that also announces the close."""
        phrase = _phrase(self.status)
        text = phrase if self.reason == phrase else "%s: %s" % (phrase, self.reason)
        body = ("%d %s\n" % (self.status, text)).encode("latin-1", "replace")
        return b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n" \
               b"Connection: close\r\n\r\n%s" % (
                   self.status, phrase.encode("latin-1"), len(body), body)


def _phrase(status):
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class UpgradeOverflow(Exception):
    """A client sent more than ``max_body`` bytes after a WebSocket upgrade
    request, before the server answered it."""


class _Continue:
    __slots__ = ()

    def __repr__(self):
        return "CONTINUE"


#: Returned by ``feed()`` when a request with "Expect: 100-continue" has its
#: headers but not yet its body: the server should send "100 Continue".
CONTINUE = _Continue()


class _StopParsing(Exception):
    """Raised in a callback to make llhttp stop (the parser is closed)."""


class ParsedRequest:
    """One complete request. ``headers`` and ``trailers`` are lists of
    (lower-case name, value) in arrival order; ``body`` is de-chunked."""

    # Made once per request by the parser with object.__new__ and a store
    # for each field it sets (a third of what an __init__ call costs); the
    # class holds what most requests leave as it is.
    fragment = ""
    body = b""
    trailers = ()
    chunked = False
    expect_continue = False
    websocket = False        # a WebSocket upgrade (parsers made with websocket=True)

    def __init__(self, method, raw_uri, path, query_string, version, headers, keep_alive):
        self.method = method
        self.raw_uri = raw_uri
        self.path = path
        self.query_string = query_string
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive

    def __repr__(self):
        return "<ParsedRequest %s %s HTTP/%d.%d>" % (self.method, self.raw_uri, *self.version)


_new = object.__new__
_HTTP11 = _VERSIONS["1.1"]
_HTTP10 = _VERSIONS["1.0"]

# What on_header noted of the fields that need a look at header time.
_SEEN_HOST = 1
_SEEN_CONTENT_TYPE = 2
_SEEN_LENGTH = 4
_SEEN_TRANSFER_ENCODING = 8
_SEEN_EXPECT = 16
_SEEN_CONNECTION = 32
_FRAMING = _SEEN_LENGTH | _SEEN_TRANSFER_ENCODING | _SEEN_EXPECT
# A second copy of these is ambiguous: reject rather than guess which one counts.
_SINGLETON_BITS = {"host": _SEEN_HOST, "content-type": _SEEN_CONTENT_TYPE}


class RequestParser:
    """Bytes in, ``ParsedRequest`` / ``CONTINUE`` / ``HTTPError`` out (see the
    module docstring). One instance per connection.

    The common case, whole requests without a body, runs five httptools
    callbacks that each do a few stores; whatever is rare (a body, an
    Expect, a request cut across reads, trailers, an upgrade) is noted in
    ``_seen`` or found by ``feed`` and handled off that path."""

    def __init__(self, limit_request_line=4094, limit_request_fields=100,
                 limit_request_field_size=8190, max_body=2 * 1024 * 1024, websocket=False):
        if limit_request_line <= 0:
            limit_request_line = MAX_REQUEST_LINE
        if limit_request_fields <= 0 or limit_request_fields > MAX_HEADERS:
            limit_request_fields = MAX_HEADERS
        if limit_request_field_size <= 0:
            limit_request_field_size = DEFAULT_MAX_HEADERFIELD_SIZE
        self._max_line = limit_request_line
        # The shortest line around a URL is "GET " + " HTTP/1.1" (13 bytes), so
        # a URL this long already makes the line too long, whatever the method.
        self._max_url = limit_request_line - 13
        self._max_fields = limit_request_fields
        # llhttp gives name and value without ": " and CRLF; gunicorn counts the line.
        self._max_field = limit_request_field_size - 4
        # A stall window can hold one header (or trailer) line plus the framing
        # around it (" HTTP/1.1\r\n", a chunk-size line): allow some slack.
        self._max_stall = limit_request_field_size + _STALL_SLACK
        self._max_body = max_body if max_body > 0 else 1 << 62

        self.closed = False
        self._carry = b""             # an unfinished line, screened with the next feed
        self._hp = HttpRequestParser(self)
        self._events = []
        self._error = None            # the HTTPError a callback raised
        self._stalled = 0             # bytes fed since the last progress
        self._in_message = False
        self._headers_done = False
        self._continue_pending = False
        self._resume = None           # Upgrade request whose body is re-framed
        self._resume_framing = b""
        self._req = None
        self._websocket = websocket   # stop at a WebSocket upgrade request
        self.upgraded = False         # ... and it came: the rest is not HTTP
        self._rest = []               # bytes after it, for the next protocol
        self._rest_len = 0
        self._body = []               # the body's pieces (emptied when taken)
        self._body_len = 0
        self.requests_started = 0     # lets a caller tell one request's headers from the next
        # The request in progress (reset by on_message_begin):
        self._url = None              # the target's bytes so far
        self._headers = []
        self._seen = 0                # _SEEN_* bits
        self._content_length = None   # valid with _SEEN_LENGTH
        self._transfer_encoding = None  # valid with _SEEN_TRANSFER_ENCODING: [value, ...]
        self._expect = False          # valid with _SEEN_EXPECT: 100-continue asked

    # -- public -----------------------------------------------------------

    @property
    def idle(self):
        """True between requests: nothing of a next request is buffered."""
        return not self._in_message

    @property
    def in_headers(self):
        """True while a request has started but its headers are incomplete."""
        return self._in_message and not self._headers_done

    @property
    def body_received(self):
        """Body bytes of the current request received so far."""
        return self._body_len if self._headers_done else 0

    def feed(self, data):
        """Parse ``data`` (bytes). Returns a list of complete ``ParsedRequest``s,
        ``CONTINUE`` (at most once per request) and at most one ``HTTPError``,
        always last. Returns [] once the parser is closed."""
        if self.closed or self.upgraded:
            if self.upgraded:
                self._keep_rest(data)
            return []
        events = self._events = []
        if _scan is not None and not self._in_message and not self._carry:
            # Whole heads of the usual kind, read in C; the first one that is
            # not (or the rest of the bytes) goes to llhttp below.
            pos = 0
            while True:
                head = _scan(data, pos, _METHODS, self._max_url, self._max_line,
                             self._max_fields, self._max_field)
                if head is None:
                    break
                req = _new(ParsedRequest)
                req.method, raw_uri, minor, req.headers, keep_alive, pos = head
                req.raw_uri = raw_uri
                if "?" in raw_uri or "#" in raw_uri:
                    req.path, req.query_string, req.fragment = _origin_parts(raw_uri)
                else:
                    req.path = raw_uri
                    req.query_string = ""
                req.version = _HTTP11 if minor else _HTTP10
                req.keep_alive = keep_alive
                self.requests_started += 1
                events.append(req)
                if not keep_alive:
                    self.closed = True
                    return events
                if pos == len(data):
                    return events
            if pos:
                data = data[pos:]
        was_in_message = self._in_message
        if was_in_message:
            before = self._progress_mark()
        carry = self._carry
        seen = carry + data if carry else data
        if seen.find(b"TSP/") >= 0:     # (bytes' find() is faster than its "in")
            self._feed_screened(seen, len(carry))
        else:
            self._feed_llhttp(data)
        # What follows the last line break may be the start of a request
        # line that the next feed completes.
        if data.endswith(b"\n"):
            if carry:
                self._carry = b""
        else:
            self._carry = seen[max(seen.rfind(b"\n") + 1, len(seen) - self._max_line):]
        if self._in_message and not self.closed:
            # A request is open after this feed: did the feed get it anywhere?
            if was_in_message and self._progress_mark() == before:
                self._stalled += len(data)
                if self._stalled > self._max_stall:
                    self._fail(HTTPError(431, "header line or chunk framing too long"))
                    return events
            else:
                self._stalled = 0
            if self._continue_pending:
                self._continue_pending = False
                events.append(CONTINUE)
        return events

    def _progress_mark(self):
        """What a feed that makes progress changes: a new request, a URL
        piece, a header or trailer, the end of the headers, body bytes."""
        return (self.requests_started, len(self._url or b""), len(self._headers),
                self._headers_done, self._body_len, len(self._req.trailers)
                if self._headers_done and self._req is not None else 0)

    def _feed_llhttp(self, data):
        try:
            self._hp.feed_data(data)
        except HttpParserUpgrade as exc:
            self._feed_after_upgrade(data[exc.args[0]:])
        except HttpParserError as exc:
            if not self.closed:
                self._fail(self._error or _llhttp_error(exc))
            # else: llhttp's "data after Connection: close", or _StopParsing

    def _feed_after_upgrade(self, data):
        """llhttp stopped after an Upgrade request's headers: keep the rest for
        the next protocol (a WebSocket upgrade) or go on parsing it."""
        hp = self._hp
        while True:
            if self.upgraded:
                self._keep_rest(data)
                return
            if self._resume is not None:
                data = self._resume_framing + data
            elif self.closed or not data:
                return
            try:
                hp.feed_data(data)
                return
            except HttpParserUpgrade as exc:
                # Another Upgrade request: go on with what follows (see
                # _re_frame_upgrade).
                data = data[exc.args[0]:]
            except HttpParserError as exc:
                if not self.closed:
                    self._fail(self._error or _llhttp_error(exc))
                # else: llhttp's "data after Connection: close", or _StopParsing
                return

    def _feed_screened(self, seen, fed):
        """Feed ``seen`` (its first ``fed`` bytes were fed before), stopping
        at a request line whose protocol is not HTTP. Lines of that shape
        inside a body are data: only the parser's state tells them apart."""
        for match in _FOREIGN_REQUEST_LINE.finditer(seen):
            start = match.start()
            if start > fed:
                self._feed_llhttp(seen[fed:start])
                fed = start
            if self.closed:
                return
            if not self._in_message or (not self._headers_done and not self._headers):
                self._fail(HTTPError(400, "%s is not HTTP" % match.group(1).decode()))
                return
        if fed < len(seen):
            self._feed_llhttp(seen[fed:])

    def take_rest(self):
        """After a WebSocket upgrade request: the bytes received after it
        (they belong to the next protocol). Parsing stays stopped."""
        rest = b"".join(self._rest)
        self._rest = []
        return rest

    def _keep_rest(self, data):
        self._rest_len += len(data)
        if self._rest_len > self._max_body:
            raise UpgradeOverflow("%d bytes sent before the WebSocket handshake was "
                                  "answered" % self._rest_len)
        if data:
            self._rest.append(data)

    def feed_eof(self):
        """The peer closed. Returns None if no request was in progress, else
        an HTTPError(400) for the incomplete one. The parser is closed after."""
        if self.closed:
            return None
        self.closed = True
        if not self._in_message:
            return None
        self._in_message = False
        return HTTPError(400, "incomplete request")

    def release(self):
        """The connection is gone: drop llhttp's parser, which holds this
        one's callbacks (a reference cycle). The parser is closed after."""
        self.closed = True
        self._hp = None

    # -- internals --------------------------------------------------------

    def _fail(self, err):
        self._events.append(err)
        self.closed = True
        self._in_message = False
        self._continue_pending = False

    def _reject(self, status, reason):
        """Record an error for feed() and return it for the callback to raise."""
        err = self._error = HTTPError(status, reason)
        return err

    # -- httptools callbacks (names fixed by httptools) -------------------

    def on_message_begin(self):
        if self.closed:
            # A request we decided ends the connection (llhttp may disagree,
            # e.g. a gzip-coded body): parse nothing after it.
            raise _StopParsing
        self._in_message = True
        self._headers_done = False
        self.requests_started += 1
        self._url = None
        self._headers = []
        self._seen = 0

    def on_url(self, piece):
        url = self._url
        url = self._url = piece if url is None else url + piece
        if len(url) > self._max_url:
            raise self._reject(414, "request line too long")

    def on_header(self, name, value):
        if self._headers_done:
            return self._on_trailer(name, value)
        headers = self._headers
        if len(headers) >= self._max_fields:
            raise self._reject(431, "too many header fields")
        if len(name) + len(value) > self._max_field:
            raise self._reject(431, "header field too long")
        key = _NAMES.get(name) or _name(name)
        # llhttp drops the whitespace before a value, not the whitespace after.
        value = value.rstrip(b" \t").decode("latin-1")
        if key in _SPECIAL:
            if key == "host":    # in every request: _special_header's first case, inlined
                if self._seen & _SEEN_HOST:
                    raise self._reject(400, "duplicate host field")
                self._seen |= _SEEN_HOST
            else:
                self._special_header(key, value)
        headers.append((key, value))

    def on_headers_complete(self):
        self._headers_done = True
        if self._resume is not None:
            # The synthetic header block of a re-framed Upgrade body: carry on
            # with the real request (body buffers were set up for it).
            self._req = self._resume
            self._resume = None
            return
        hp = self._hp
        method = _METHODS.get(hp.get_method())
        if method is None:
            raise self._reject(501, "method not implemented")
        seen = self._seen
        keep_alive = hp.should_keep_alive()
        if keep_alive and not seen & _SEEN_CONNECTION:
            # llhttp keeps a request without a Connection field alive only
            # on HTTP/1.1 (1.0 needs "keep-alive"; 0.9 and 2.0 never are),
            # so the version is known without get_http_version(), which
            # formats a string each time.
            version = _HTTP11
        else:
            version = _VERSIONS.get(hp.get_http_version())
            if version is None:
                raise self._reject(505, "only HTTP/1.0 and HTTP/1.1 are supported")
        if version is _HTTP11 and not seen & _SEEN_HOST:
            raise self._reject(400, "HTTP/1.1 request without Host")
        url = self._url or b""
        # "METHOD SP target SP HTTP/x.y", as gunicorn measures it.
        if len(method) + len(url) + 10 > self._max_line:
            raise self._reject(414, "request line too long")
        req = self._req = _new(ParsedRequest)
        req.method = method
        req.raw_uri = raw_uri = url.decode("latin-1")
        if raw_uri[:1] == "/":                       # origin-form: the usual case
            if "?" in raw_uri or "#" in raw_uri:
                req.path, req.query_string, req.fragment = _origin_parts(raw_uri)
            else:
                req.path = raw_uri
                req.query_string = ""
        else:
            req.path, req.query_string, req.fragment = self._split_target(method, raw_uri)
        req.version = version
        req.headers = self._headers
        req.keep_alive = keep_alive
        if seen & _FRAMING:
            self._frame_body(req, hp)
        elif self._websocket and method == "GET" and hp.should_upgrade():
            self._check_websocket(req)

    def on_body(self, chunk):
        self._body_len += len(chunk)
        if self._body_len > self._max_body:
            raise self._reject(413, "request body too large")
        self._body.append(chunk)

    def on_message_complete(self):
        if self._resume is not None:
            return                      # llhttp skipped an Upgrade body: not complete yet
        req = self._req
        body = self._body
        if body:
            req.body = body[0] if len(body) == 1 else b"".join(body)
            self._body = []
        self._in_message = False
        self._continue_pending = False
        self._events.append(req)
        if req.websocket:
            self.upgraded = True
        elif not req.keep_alive:
            self.closed = True

    # -- rare paths -------------------------------------------------------

    def _on_trailer(self, name, value):
        req = self._req
        trailers = req.trailers
        if not trailers:
            trailers = req.trailers = []
        if len(trailers) >= self._max_fields:
            raise self._reject(431, "too many trailer fields")
        if len(name) + len(value) > self._max_field:
            raise self._reject(431, "trailer field too long")
        key = _NAMES.get(name) or _name(name)
        if key in _FORBIDDEN_TRAILERS or key.startswith("if-"):
            raise self._reject(400, "forbidden trailer field")
        trailers.append((key, value.strip(b" \t").decode("latin-1")))

    def _special_header(self, key, value):
        seen = self._seen
        if key == "connection" or key == "proxy-connection":   # llhttp reads both
            self._seen = seen | _SEEN_CONNECTION
        elif key == "host" or key == "content-type":
            bit = _SINGLETON_BITS[key]
            if seen & bit:
                raise self._reject(400, "duplicate %s field" % key)
            self._seen = seen | bit
        elif key == "content-length":
            # llhttp has validated it already; this guards against its leniencies.
            if seen & _SEEN_LENGTH or not value.isdigit():
                raise self._reject(400, "invalid Content-Length")
            self._content_length = int(value)
            self._seen = seen | _SEEN_LENGTH
        elif key == "transfer-encoding":
            if seen & _SEEN_TRANSFER_ENCODING:
                self._transfer_encoding.append(value)
            else:
                self._transfer_encoding = [value]
                self._seen = seen | _SEEN_TRANSFER_ENCODING
        else:   # expect
            self._expect = value.lower() == "100-continue"
            self._seen = seen | _SEEN_EXPECT

    def _frame_body(self, req, hp):
        """on_headers_complete for a request with Content-Length,
        Transfer-Encoding or Expect: check the framing, get ready for the
        body, note a 100-continue to send."""
        seen = self._seen
        version = req.version
        if seen & _SEEN_TRANSFER_ENCODING:
            req.keep_alive = self._check_transfer_encoding(version) and req.keep_alive
            req.chunked = True
        length = self._content_length if seen & _SEEN_LENGTH else None
        if length is not None and length > self._max_body:
            raise self._reject(413, "request body too large")
        # RFC 9110 10.1.1: a server must ignore 100-continue from HTTP/1.0.
        req.expect_continue = expect = bool(seen & _SEEN_EXPECT and self._expect
                                            and version is _HTTP11)
        self._body = []
        self._body_len = 0
        if req.chunked or length:
            if expect:
                self._continue_pending = True
            if hp.should_upgrade():
                self._re_frame_upgrade(req, length)
        elif self._websocket and req.method == "GET" and hp.should_upgrade():
            self._check_websocket(req)

    @staticmethod
    def _check_websocket(req):
        """A body-less GET with Upgrade: is it asking for a WebSocket?"""
        req.websocket = any(name == "upgrade" and "websocket" in value.lower()
                            for name, value in req.headers)

    def _check_transfer_encoding(self, version):
        """Validate the codings; returns False if the connection must close."""
        if version < (1, 1):
            raise self._reject(400, "Transfer-Encoding in an HTTP/1.0 request")
        if self._seen & _SEEN_LENGTH:
            raise self._reject(400, "both Content-Length and Transfer-Encoding")
        codings = [c.strip(" \t").lower() for c in ",".join(self._transfer_encoding).split(",")]
        codings = [c for c in codings if c]
        if not codings or codings[-1] != "chunked" or "chunked" in codings[:-1]:
            raise self._reject(400, "Transfer-Encoding must end in one chunked")
        for coding in codings[:-1]:
            if coding not in _CODINGS:
                raise self._reject(501, "transfer coding not implemented")
        # As gunicorn: a coded body reaches the app undecoded, so don't trust
        # the connection with a next request after it.
        return all(c == "identity" for c in codings[:-1])

    def _split_target(self, method, raw_uri):
        """path, query, fragment of an asterisk- or absolute-form target."""
        if raw_uri == "*":
            if method != "OPTIONS":
                raise self._reject(400, "'*' target is only for OPTIONS")
            return "*", "", ""
        try:
            parts = urlsplit(raw_uri)
        except ValueError:
            raise self._reject(400, "invalid request target") from None
        if not parts.scheme or not parts.netloc:
            raise self._reject(400, "invalid request target")
        return parts.path, parts.query, parts.fragment

    def _re_frame_upgrade(self, req, length):
        """An Upgrade request with a body: llhttp will report it complete now,
        without the body. Keep it open; feed() puts a header block framing
        the same body in front of the remaining bytes, and on_headers_complete
        of that block switches back to this request."""
        self._resume = req
        if req.chunked:
            self._resume_framing = b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        else:
            self._resume_framing = b"PUT / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % length


def _origin_parts(raw_uri):
    """path, query, fragment of an origin-form target that has "?" or "#"."""
    path, _, fragment = raw_uri.partition("#")
    path, _, query = path.partition("?")
    return path, query, fragment


def _name(raw):
    key = raw.decode("latin-1").lower()
    if len(_NAMES) < _NAMES_MAX:
        _NAMES[raw] = key
    return key


def _llhttp_error(exc):
    message = str(exc)
    return HTTPError(_LLHTTP_STATUS.get(message, 400), message or "bad request")

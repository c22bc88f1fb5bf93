"""Clients: ``Client`` (blocking style, cooperative) and ``AsyncClient`` (callbacks).

How this works
--------------
Both use gevent sockets, so a wait blocks only the calling greenlet; in a
plain script gevent creates its hub on first use. Framing is the server's:
``set()`` takes the same keys, and ``framing.make_splitter`` builds the
splitter for each connection, so a client and a server agree on what a
packet is by construction.

``Client`` follows Swoole's synchronous client: methods return False on
failure and leave the reason in ``errCode`` (an errno, or one of the codes
below) and ``errMsg``. Its ``timeout`` (setting, or connect's argument;
Swoole's 0.5 s by default) bounds connect, send and recv; a negative timeout
waits forever. With framing on, ``recv()`` returns exactly one packet and
keeps the rest for the next call.

``AsyncClient`` runs one greenlet per connection: it connects, calls
``connect``, then reads and calls ``receive`` per packet (or per read without
framing), and ends with exactly one of ``error`` (the connect failed) or
``close`` (the connection ended, whoever ended it). From ``connect()`` until
that last callback returns, the client sits in a module-level registry, so it
lives on even if the user keeps no reference to it, as in Swoole;
``live_async_clients()`` counts them (``Server()`` refuses to fork while any
are alive).

TLS: ``Client(SOCK_TCP | SSL)`` (and AsyncClient) connects, then does the
TLS handshake within the same timeout. It verifies the server's certificate
and host name by default, against the system's CAs or ``ssl_cafile``, for
``ssl_host_name`` (default: the host given to connect); ``ssl_verify_peer``
False turns that off (Swoole's default is off; ours is the safe one).
``ssl_cert_file``/``ssl_key_file`` present a client certificate.

Error codes besides errno values: ``DNS_LOOKUP_FAILED`` (704, Swoole's
SW_ERROR_DNSLOOKUP_RESOLVE_FAILED), ``SSL_VERIFY_FAILED`` (1014: the server's
certificate or host name did not verify), ``SSL_HANDSHAKE_FAILED`` (1018). A stream that breaks the framing rules
closes the connection with ``errno.EPROTO``; ``errMsg`` says what was wrong.
"""

import difflib
import errno
import inspect
import logging
import os
import socket as _stdsocket
from collections import deque

import ssl

import gevent
from gevent import socket
from gevent import ssl as gevent_ssl
from gevent.lock import Semaphore

from . import settings
from .callbacks import canonical_event
from .errors import CallbackError, ServerStateError, SettingError
from .framing import FramingError, make_splitter
from .sockets import _FAMILY, SOCK_TCP, SSL
from .usercode import log_user_error

__all__ = ["Client", "AsyncClient", "live_async_clients", "DNS_LOOKUP_FAILED",
           "SSL_VERIFY_FAILED", "SSL_HANDSHAKE_FAILED"]

log = logging.getLogger("gswoole")

DNS_LOOKUP_FAILED = 704      # Swoole's SW_ERROR_DNSLOOKUP_RESOLVE_FAILED
SSL_VERIFY_FAILED = 1014     # Swoole's SW_ERROR_SSL_VERIFY_FAILED
SSL_HANDSHAKE_FAILED = 1018  # Swoole's SW_ERROR_SSL_HANDSHAKE_FAILED
DEFAULT_TIMEOUT = 0.5        # Swoole's client default, seconds
READ_SIZE = 65536

FRAMING_KEYS = settings.names_in("client")
TLS_KEYS = ("ssl_verify_peer", "ssl_cafile", "ssl_host_name", "ssl_cert_file", "ssl_key_file")
CLIENT_KEYS = FRAMING_KEYS + ("timeout",) + TLS_KEYS   # timeout: the client's own, not the server's

_check_seconds = settings.seconds(minimum=float("-inf"))


def _to_bytes(data):
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError("data must be bytes or str, got %r" % (type(data).__name__,))


class _ClientBase:
    """What both clients share: socket type, settings, errors, addresses."""

    def _send_all(self, sock, data):
        """A whole stream write, or one datagram, within the I/O timeout."""
        if self._stream:
            _timed(self._io_timeout, sock.sendall, data)
            return len(data)
        return _timed(self._io_timeout, sock.send, data)

    def __init__(self, sock_type=SOCK_TCP):
        if sock_type & ~SSL not in _FAMILY:
            raise ValueError("unknown sock_type %r" % (sock_type,))
        self.type = sock_type
        self._family, self._socktype = _FAMILY[sock_type & ~SSL]
        self._stream = self._socktype == _stdsocket.SOCK_STREAM
        self._tls = bool(sock_type & SSL)
        if self._tls and not self._stream:
            raise ValueError("gswoole.SSL is for stream clients, not sock_type %r"
                             % (sock_type & ~SSL,))
        self.setting = {}
        self.errCode = 0
        self.errMsg = ""
        self._sock = None
        self._connected = False
        self._io_timeout = None     # this connection's limit, set by connect()

    # -- settings -------------------------------------------------------

    def set(self, *args, **kwargs):
        """``set(timeout=1.0, open_length_check=True, ...)`` or ``set({...})``.

        Takes the server's framing keys and ``timeout`` (seconds; negative
        means no timeout). Raises SettingError naming a key that is unknown
        or invalid, or a contradictory framing combination."""
        if len(args) > 1 or (args and not isinstance(args[0], dict)):
            raise TypeError("set() takes one dict or keyword arguments")
        values = dict(args[0]) if args else {}
        values.update(kwargs)
        checked = {}
        for name, value in values.items():
            if name == "timeout":
                try:
                    checked[name] = _check_seconds(value)
                except (TypeError, ValueError) as exc:
                    raise SettingError("setting 'timeout': %s" % exc) from None
            elif name in FRAMING_KEYS:
                checked[name] = settings.validate(name, value)
            elif name == "ssl_verify_peer":
                checked[name] = _checked(name, settings.boolean, value)
            elif name in TLS_KEYS:
                check = settings.optional_text if name == "ssl_host_name" \
                    else settings.optional_file
                checked[name] = _checked(name, check, value)
            else:
                near = difflib.get_close_matches(str(name), CLIENT_KEYS, n=3, cutoff=0.6)
                hint = "; did you mean %s?" % " or ".join(map(repr, near)) if near else ""
                raise SettingError("unknown client setting %r%s (a client takes %s)"
                                   % (name, hint, ", ".join(CLIENT_KEYS)))
        if self._connected and any(name in FRAMING_KEYS or name in TLS_KEYS
                                   for name in checked):
            raise ServerStateError("set(): framing and TLS options must be set before "
                                   "connect()")
        merged = dict(self.setting, **checked)
        try:
            make_splitter(merged)
        except ValueError as exc:
            raise SettingError(str(exc)) from None
        self.setting = merged
        return True

    def _timeout(self, value):
        """Resolve a timeout argument: None -> the default, negative -> forever (None)."""
        if value is None:
            value = self.setting.get("timeout", DEFAULT_TIMEOUT)
        else:
            value = _check_seconds(value)
        return None if value < 0 else value

    def _wait(self, timeout=None):
        """The limit for one operation: ``timeout`` if given, else the
        connection's (set at connect), else the setting's."""
        if timeout is not None:
            return self._timeout(timeout)
        if self._connected:
            return self._io_timeout
        return self._timeout(None)

    def _new_splitter(self):
        """A fresh splitter for a new connection, or None (no framing, or datagrams)."""
        if not self._stream:
            return None   # framing is a stream concept: a datagram is a packet
        factory = make_splitter(self.setting)
        return factory() if factory is not None else None

    # -- errors -----------------------------------------------------------

    def _fail(self, code, message=None):
        """Record an error and return False (Swoole's failure convention)."""
        self.errCode = code
        self.errMsg = message or os.strerror(code)
        return False

    def _fail_exc(self, exc):
        if isinstance(exc, ssl.SSLCertVerificationError):
            return self._fail(SSL_VERIFY_FAILED, "TLS: %s" % (exc.verify_message or exc))
        if isinstance(exc, ssl.SSLError):
            return self._fail(SSL_HANDSHAKE_FAILED, "TLS: %s" % (exc.reason or exc))
        if isinstance(exc, _stdsocket.gaierror):
            return self._fail(DNS_LOOKUP_FAILED, "DNS lookup failed: %s" % (exc.strerror or exc))
        if isinstance(exc, _stdsocket.timeout):
            return self._fail(errno.ETIMEDOUT)
        if isinstance(exc, OSError) and exc.errno:
            return self._fail(exc.errno, exc.strerror or os.strerror(exc.errno))
        return self._fail(errno.EIO, str(exc) or type(exc).__name__)

    # -- sockets ----------------------------------------------------------

    def _address(self, host, port):
        if self._family == _stdsocket.AF_UNIX:
            return host
        return (host, port)

    def _open_socket(self):
        sock = socket.socket(self._family, self._socktype)
        if self._family == _stdsocket.AF_UNIX and not self._stream:
            sock.bind("")   # Linux autobind: gives the server an address to reply to
        return sock

    def _tls_context(self):
        setting = self.setting
        # gevent's SSLContext makes cooperative sockets (its
        # create_default_context would make the standard library's,
        # which block the whole hub in a handshake).
        context = gevent_ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if setting.get("ssl_cafile"):
            context.load_verify_locations(cafile=setting["ssl_cafile"])
        else:
            context.load_default_certs()
        if not setting.get("ssl_verify_peer", True):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if setting.get("ssl_cert_file"):
            context.load_cert_chain(setting["ssl_cert_file"], setting.get("ssl_key_file"))
        return context

    def _connect(self, sock, host, port):
        """Connect ``sock`` (and do the TLS handshake on a TLS client) within
        the I/O timeout; returns the socket to use from now on."""
        _timed(self._io_timeout, sock.connect, self._address(host, port))
        if not self._tls:
            return sock
        try:
            context = self._tls_context()
        except ssl.SSLError:
            raise
        except (OSError, ValueError) as exc:   # a certificate file that does not load
            raise ssl.SSLError("cannot load the client's TLS files: %s" % exc) from None
        # The TLS socket takes the connection over (the plain one is detached).
        wrapped = context.wrap_socket(sock, server_hostname=self.setting.get("ssl_host_name")
                                      or host, do_handshake_on_connect=False)
        if self._sock is sock:
            self._sock = wrapped   # AsyncClient: close() during the handshake reaches it
        try:
            _timed(self._io_timeout, wrapped.do_handshake)
        except BaseException:
            wrapped.close()
            raise
        return wrapped

    def _drop_socket(self):
        sock, self._sock = self._sock, None
        self._connected = False
        if sock is not None:
            sock.close()

    def isConnected(self):
        """True between a successful connect() and the end of the connection."""
        return self._connected

    is_connected = isConnected

    def getsockname(self):
        """The local address, as the socket module gives it, or False."""
        return self._socket_call("getsockname")

    def getpeername(self):
        """The peer's address, or False (errCode ENOTCONN when not connected)."""
        return self._socket_call("getpeername")

    def _socket_call(self, name):
        if self._sock is None:
            return self._fail(errno.ENOTCONN)
        try:
            return getattr(self._sock, name)()
        except OSError as exc:
            return self._fail_exc(exc)


def _checked(name, check, value):
    try:
        return check(value)
    except (TypeError, ValueError) as exc:
        raise SettingError("setting %r: %s" % (name, exc)) from None


class _TimedOut(_stdsocket.timeout):
    """One of our operation timeouts expired (not a kernel ETIMEDOUT)."""


def _timed(seconds, func, *args):
    """Run ``func(*args)`` for at most ``seconds`` (None: no limit).

    Our own timer's expiry becomes ``_TimedOut`` (a socket.timeout); a
    gevent.Timeout that belongs to the caller passes through untouched."""
    if seconds is None:
        return func(*args)
    timer = gevent.Timeout(seconds)
    timer.start()
    try:
        return func(*args)
    except gevent.Timeout as exc:
        if exc is not timer:
            raise
        raise _TimedOut("timed out") from None
    finally:
        timer.close()


class Client(_ClientBase):
    """Swoole's synchronous client, cooperative: it blocks only this greenlet.

    ::

        client = gswoole.Client(gswoole.SOCK_TCP)
        client.set(open_length_check=True, package_length_type="N", package_body_offset=4)
        if not client.connect("127.0.0.1", 9501, timeout=1.0):
            print(client.errCode, client.errMsg)
        client.send(packet)
        reply = client.recv()     # one whole packet; b"" if the server closed; False on error
        client.close()

    A greenlet may send while another waits in recv; two greenlets must not
    recv (or send) on one client at the same time.
    """

    def __init__(self, sock_type=SOCK_TCP):
        super().__init__(sock_type)
        self._splitter = None
        self._packets = deque()   # complete packets not yet returned by recv()
        self._pending_error = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def connect(self, host, port=0, timeout=None):
        """Connect to ``host:port`` (``host`` is the path for unix sockets).

        ``timeout`` (seconds) bounds the connect and becomes this connection's
        send/recv timeout, as in Swoole. Returns True, or False with errCode
        (ECONNREFUSED, ETIMEDOUT, DNS_LOOKUP_FAILED, EISCONN, ...). For UDP it
        only sets the default peer."""
        if self._connected:
            return self._fail(errno.EISCONN)
        self._io_timeout = self._timeout(timeout)
        # A datagram socket that sendto() already used keeps its local port.
        sock = self._sock if self._sock is not None else self._open_socket()
        try:
            sock = self._connect(sock, host, port)
        except OSError as exc:
            if sock is not self._sock:
                sock.close()
            return self._fail_exc(exc)
        self._sock = sock
        self._connected = True
        self._splitter = self._new_splitter()
        self._packets.clear()
        self._pending_error = None
        return True

    def send(self, data):
        """Send all of ``data`` (bytes, or str as UTF-8); returns its length, or False.

        A stream send that fails or times out may have written part of the
        data, so the connection is closed."""
        data = _to_bytes(data)
        if not self._connected:
            return self._fail(errno.ENOTCONN)
        try:
            return self._send_all(self._sock, data)
        except OSError as exc:
            if self._stream:
                self._drop_socket()
            return self._fail_exc(exc)

    def sendto(self, host, port, data):
        """Send one datagram to ``host:port`` (UDP; for unix datagrams host is the
        path). Returns the bytes sent, or False."""
        data = _to_bytes(data)
        if self._stream:
            return self._fail(errno.EOPNOTSUPP, "sendto() is for UDP and unix datagram "
                                                "clients; use connect() and send()")
        if self._sock is None:
            self._sock = self._open_socket()
        try:
            return _timed(self._wait(), self._sock.sendto, data,
                          self._address(host, port))
        except OSError as exc:
            return self._fail_exc(exc)

    def recv(self, size=READ_SIZE, timeout=None):
        """Wait for data; returns bytes, b"" when the peer closed, or False.

        With framing set: exactly one whole packet (``size`` does not apply);
        packets that arrived with it are kept for the next calls. Without:
        what has arrived, up to ``size`` bytes (one datagram for UDP).
        False means errCode is set: ETIMEDOUT after ``timeout`` seconds
        (default: the connection's timeout; the connection stays usable),
        ENOTCONN, ECONNRESET, or EPROTO when the stream broke the framing
        rules (the connection is then closed, after the packets that came
        before the bad data have been returned)."""
        if self._packets:
            return self._packets.popleft()
        if self._pending_error is not None:
            code, message = self._pending_error
            self._pending_error = None
            return self._fail(code, message)
        sock = self._sock
        if sock is None or (self._stream and not self._connected):
            return self._fail(errno.ENOTCONN)
        try:
            return _timed(self._wait(timeout), self._recv, sock, size)
        except _TimedOut:
            return self._fail(errno.ETIMEDOUT)   # the connection stays usable
        except OSError as exc:
            if self._stream:
                self._drop_socket()
            return self._fail_exc(exc)

    def _recv(self, sock, size):
        splitter = self._splitter
        if splitter is None:
            data = sock.recv(size)
            if not data and self._stream:
                self._drop_socket()
            return data
        while True:
            data = sock.recv(READ_SIZE)
            if not data:
                self._drop_socket()   # an incomplete packet at EOF is dropped
                return b""
            try:
                packets = splitter.feed(data)
            except FramingError as exc:
                self._drop_socket()
                reason = "bad packet stream, connection closed: %s" % exc
                if not exc.packets:
                    return self._fail(errno.EPROTO, reason)
                self._pending_error = (errno.EPROTO, reason)
                packets = exc.packets
            if packets:
                self._packets.extend(packets)
                return self._packets.popleft()

    def recvfrom(self, size=READ_SIZE, timeout=None):
        """UDP: wait for one datagram; returns ``(data, address)`` or False."""
        if self._stream:
            return self._fail(errno.EOPNOTSUPP, "recvfrom() is for datagram clients")
        if self._sock is None:
            return self._fail(errno.ENOTCONN)
        try:
            return _timed(self._wait(timeout), self._sock.recvfrom, size)
        except OSError as exc:
            return self._fail_exc(exc)

    def close(self):
        """Close the connection; False if there was none."""
        if self._sock is None:
            return self._fail(errno.ENOTCONN)
        self._drop_socket()
        self._splitter = None
        self._packets.clear()
        self._pending_error = None
        return True


# -- AsyncClient ------------------------------------------------------------

# Every AsyncClient between connect() and its last callback: the strong
# references that keep a client alive when its user keeps none.
_live_clients = set()


def live_async_clients():
    """How many AsyncClients are alive (connecting or connected) in this process."""
    return len(_live_clients)


# event -> arguments passed to its callback
ASYNC_EVENTS = {
    "connect": ("client",),
    "receive": ("client", "data"),
    "error": ("client",),
    "close": ("client",),
}
REQUIRED_EVENTS = ("receive", "error")


def canonical_client_event(name):
    """"onReceive", "receive", "RECEIVE", "on_receive" -> "receive"; else CallbackError."""
    return canonical_event(name, ASYNC_EVENTS, "AsyncClient event")


class AsyncClient(_ClientBase):
    """Swoole's asynchronous client: callbacks run in the client's own greenlet.

    ::

        client = gswoole.AsyncClient(gswoole.SOCK_TCP)
        client.on("connect", lambda c: c.send(b"hello"))
        client.on("receive", lambda c, data: print(data))
        client.on("error", lambda c: print("connect failed:", c.errCode, c.errMsg))
        client.on("close", lambda c: print("closed"))
        client.connect("127.0.0.1", 9501)
        gevent.wait()             # in a plain script: run until the client is done

    Each connect() ends in exactly one of ``error`` (the connect failed;
    errCode says why) or ``close`` (after ``connect``, or when close() was
    called while connecting); errCode is set when the connection broke
    (ECONNRESET, EPROTO for a bad packet stream). No ``receive`` follows a
    close(). A callback that raises is logged and the client carries on.
    """

    def __init__(self, sock_type=SOCK_TCP):
        super().__init__(sock_type)
        self._callbacks = {}
        self._greenlet = None
        self._closing = False
        self._write_lock = Semaphore()

    def on(self, event, callback):
        """Register ``callback`` for ``connect``, ``receive``, ``error`` or ``close``."""
        event = canonical_client_event(event)
        if not callable(callback):
            raise CallbackError("callback for AsyncClient %r is not callable: %r"
                                % (event, callback))
        args = ASYNC_EVENTS[event]
        try:
            signature = inspect.signature(callback)
        except (TypeError, ValueError):
            signature = None   # no signature (some builtins): trust it
        if signature is not None:
            try:
                signature.bind(*args)
            except TypeError as exc:
                raise CallbackError("callback %r for AsyncClient %r cannot take the "
                                    "event's arguments (%s): %s"
                                    % (callback, event, ", ".join(args), exc)) from None
        self._callbacks[event] = callback
        return True

    def connect(self, host, port=0, timeout=None):
        """Start connecting in the client's greenlet; returns True at once.

        ``timeout`` bounds the connect and each send. Raises CallbackError if
        ``receive`` or ``error`` has no callback; returns False (EISCONN) if
        this client is already connecting or connected."""
        missing = [event for event in REQUIRED_EVENTS if event not in self._callbacks]
        if missing:
            raise CallbackError(
                "AsyncClient.connect() needs callbacks for %s: register them with "
                "client.on(%r, fn(%s)) first" % (" and ".join(map(repr, missing)), missing[0],
                                                  ", ".join(ASYNC_EVENTS[missing[0]])))
        if self._greenlet is not None:
            return self._fail(errno.EISCONN)
        self._io_timeout = self._timeout(timeout)
        self._closing = False
        self.errCode, self.errMsg = 0, ""
        _live_clients.add(self)
        self._greenlet = gevent.spawn(self._run, host, port)
        return True

    def send(self, data):
        """Send ``data`` (waits, in the calling greenlet only, until the kernel
        takes it); returns its length, or False with errCode. A stream send
        that fails or times out closes the connection."""
        data = _to_bytes(data)
        sock = self._sock
        if sock is None or not self._connected or self._closing:
            return self._fail(errno.ENOTCONN)
        with self._write_lock:
            try:
                return self._send_all(sock, data)
            except OSError as exc:
                if self._closing:
                    return self._fail(errno.ENOTCONN)
                self._fail_exc(exc)
                if self._stream:
                    self._shut()
                return False

    def close(self):
        """Close the connection; ``close`` runs in the client's greenlet. False if
        there is nothing to close."""
        if self._greenlet is None or self._closing:
            return self._fail(errno.ENOTCONN)
        self._shut()
        return True

    def isConnected(self):
        return self._connected and not self._closing

    is_connected = isConnected

    def _shut(self):
        self._closing = True
        if gevent.getcurrent() is not self._greenlet and self._sock is not None:
            # Wakes the client's greenlet out of connect() or recv() with EBADF.
            self._sock.close()

    # -- the client's greenlet -----------------------------------------

    def _run(self, host, port):
        ending = "close"
        try:
            if not self._closing:
                ending = self._connect_and_read(host, port)
        finally:
            # Released before the last callback, so that callback may connect again.
            self._drop_socket()
            self._greenlet = None
            _live_clients.discard(self)
        self._emit(ending)

    def _connect_and_read(self, host, port):
        """Returns the event that ends this connection: "error" or "close"."""
        try:
            sock = self._sock = self._open_socket()
            sock = self._sock = self._connect(sock, host, port)
        except OSError as exc:
            if self._closing:
                return "close"
            self._fail_exc(exc)
            return "error"
        self._connected = not self._closing
        if self._connected:
            self._emit("connect")
            self._read(sock)
        return "close"

    def _read(self, sock):
        """Deliver reads until EOF, an error or close()."""
        splitter = self._new_splitter()
        while not self._closing:
            try:
                data = sock.recv(READ_SIZE)
            except OSError as exc:
                if not self._closing:
                    self._fail_exc(exc)
                return
            if not data and self._stream:
                return
            if splitter is None:
                packets = [data]
            else:
                try:
                    packets = splitter.feed(data)
                except FramingError as exc:
                    self._deliver(exc.packets)
                    if not self._closing:
                        self._fail(errno.EPROTO,
                                   "bad packet stream, connection closed: %s" % exc)
                    return
            self._deliver(packets)

    def _deliver(self, packets):
        for packet in packets:
            if self._closing:
                return
            self._emit("receive", packet)

    def _emit(self, event, *args):
        callback = self._callbacks.get(event)
        if callback is None:
            return
        try:
            callback(self, *args)
        except BaseException:   # a gevent.Timeout too: the close event must still come
            log_user_error("AsyncClient %r callback %r", event, callback)

"""Socket types and listening sockets.

``Server(...)`` binds and listens at once, so ``server.port`` is known (also
for port 0) and a second server on the same address fails right there, not
at its ``start()``: two bound but unlistening SO_REUSEADDR sockets may share
a port on Linux. A client that connects before ``start()`` waits in the
backlog and is served once the workers are up.
"""

import errno
import os
import socket
import stat


class NamedInt(int):
    """An int with Swoole's number that prints as its name (``gswoole.SOCK_TCP``)."""

    def __new__(cls, value, name):
        self = int.__new__(cls, value)
        self.name = name
        return self

    def __repr__(self):
        return "gswoole.%s" % self.name


class SockType(NamedInt):
    """A socket type. Being its own type lets ``Server()`` tell a socket type
    given where Swoole's signature has the mode (the third argument); with
    the SSL flag it stays one (``SOCK_TCP | SSL``)."""

    def __or__(self, flag):
        return SockType(int(self) | flag, "%s | %r" % (self.name, flag)
                        if flag != SSL else self.name + " | gswoole.SSL")

    __ror__ = __or__


SOCK_TCP = SockType(1, "SOCK_TCP")
SOCK_UDP = SockType(2, "SOCK_UDP")
SOCK_TCP6 = SockType(3, "SOCK_TCP6")
SOCK_UDP6 = SockType(4, "SOCK_UDP6")
SOCK_UNIX_DGRAM = SockType(5, "SOCK_UNIX_DGRAM")
SOCK_UNIX_STREAM = SockType(6, "SOCK_UNIX_STREAM")

# A flag on a stream socket type (Swoole's SWOOLE_SSL): SOCK_TCP | SSL is a
# TLS port (docs/tls.md).
SSL = 512

_FAMILY = {
    SOCK_TCP: (socket.AF_INET, socket.SOCK_STREAM),
    SOCK_TCP6: (socket.AF_INET6, socket.SOCK_STREAM),
    SOCK_UNIX_STREAM: (socket.AF_UNIX, socket.SOCK_STREAM),
    SOCK_UDP: (socket.AF_INET, socket.SOCK_DGRAM),
    SOCK_UDP6: (socket.AF_INET6, socket.SOCK_DGRAM),
    SOCK_UNIX_DGRAM: (socket.AF_UNIX, socket.SOCK_DGRAM),
}



class Listener:
    """One bound address of the server.

    In the shared mode every worker inherits ``sock``. With reuse_port the
    master's ``sock`` only holds the port (bound, never listening) and each
    worker binds a socket of its own with ``open_worker_socket()``."""

    def __init__(self, host, port, sock_type):
        base = sock_type & ~SSL
        if base not in _FAMILY:
            raise ValueError("unknown sock_type %r" % (sock_type,))
        self.host = host
        self.sock_type = sock_type
        self.family, self.type = _FAMILY[base]
        self.is_stream = self.type == socket.SOCK_STREAM
        self.is_ssl = bool(sock_type & SSL)
        if self.is_ssl and not self.is_stream:
            raise ValueError("gswoole.SSL is for stream sockets (SOCK_TCP, SOCK_TCP6, "
                             "SOCK_UNIX_STREAM), not sock_type %r" % (base,))
        self.is_tcp = self.family in (socket.AF_INET, socket.AF_INET6)
        self.reuse_port = False
        # Set at start() from the server's and this port's configuration:
        self.splitter_factory = None   # framing
        self.half_close = False        # EOF still lets queued events answer (HTTP)
        self.on_connect = self.on_receive = self.on_close = None
        self.protocol = None           # the protocol object of the port (HTTP), if any
        self.ssl_context = None        # TLS ports: the server SSLContext (tls.py)
        self.ssl_setting = None        # ... and the settings it was built from
        self.ssl_stamp = None          # ... and its files' mtimes then (tls.refresh)
        self.sock = self._bind(port, reuse_port=False)
        if self.is_stream:
            self.sock.listen(128)   # start() sets the configured backlog
        self.address = self.sock.getsockname()
        self.port = self.address[1] if self.is_tcp else 0

    def _bind(self, port, reuse_port):
        sock = socket.socket(self.family, self.type)
        try:
            if self.family == socket.AF_UNIX:
                _remove_stale_unix_socket(self.host)
                sock.bind(self.host)
            else:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((self.host, port))
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, "cannot bind %s: %s" % (self.describe(port), exc.strerror)) \
                from None
        return sock

    def describe(self, port=None):
        if self.family == socket.AF_UNIX:
            return "unix:%s" % self.host
        port = self.port if port is None else port
        if self.family == socket.AF_INET6:
            return "[%s]:%s" % (self.host, port)
        return "%s:%s" % (self.host, port)

    def activate(self, backlog, reuse_port):
        """Called in the master at start(): listen, or prepare for reuse_port."""
        if reuse_port and self.is_tcp and self.is_stream:
            # The port was bound without SO_REUSEPORT; rebind it with the flag so
            # the workers can join. The master's socket never listens, so the
            # kernel never hands it a connection nobody would accept.
            self.sock.close()
            self.sock = self._bind(self.port, reuse_port=True)
            self.reuse_port = True
        elif self.is_stream:
            self.sock.listen(backlog)
        self.sock.setblocking(False)

    def open_worker_socket(self, backlog):
        """In a worker: the socket to accept from."""
        if not self.reuse_port:
            return self.sock
        sock = self._bind(self.port, reuse_port=True)
        sock.listen(backlog)
        sock.setblocking(False)
        return sock

    def close(self):
        self.sock.close()
        if self.family == socket.AF_UNIX:
            try:
                os.unlink(self.host)
            except OSError:
                pass


def _remove_stale_unix_socket(path):
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError("cannot bind unix:%s: the path exists and is not a socket" % path)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, OSError) as exc:
        if not isinstance(exc, ConnectionRefusedError) and exc.errno != errno.EPROTOTYPE:
            raise OSError("cannot bind unix:%s: %s" % (path, exc)) from None
        # Refused: left over by a process that died. EPROTOTYPE: a datagram
        # socket; nothing can tell whether it is alive, and binding over it
        # is what the caller asked for.
        os.unlink(path)
    else:
        raise OSError("cannot bind unix:%s: another server is listening there" % path)
    finally:
        probe.close()

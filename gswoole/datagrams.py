"""Datagram ports (UDP and unix datagram sockets) of one worker.

Every worker reads the shared datagram socket; the kernel gives each
datagram to one of them. A worker's packets run in order through a
connection-like queue (a ``Connection`` that is never in the session table),
drained by the reactor's runners like any connection's events.
"""

import logging
import socket as _stdsocket

from . import errors
from .connection import HOLD_DONE, HOLD_QUEUE, Connection, as_bytes

log = logging.getLogger("gswoole")

RECV_BATCH = 64             # datagrams read per wake-up
MAX_QUEUED_DATAGRAMS = 1024  # stop reading while this many wait for the callback


class DatagramPorts:
    """The datagram sockets of one worker: read into queues, ``sendto``."""

    def __init__(self, reactor):
        self.reactor = reactor
        self.queues = []

    def start(self, listener, sock):
        queue = Connection(0, sock, sock.fileno(), listener, None, self.reactor.clock)
        queue.reader = self.reactor.loop.io(sock.fileno(), 1)
        queue.on_readable = self._on_datagram
        queue.reader.start(self._on_datagram, queue)
        self.queues.append(queue)

    def stop(self):
        """A stopping worker stops reading: the other workers take the datagrams."""
        for queue in self.queues:
            queue.holds |= HOLD_DONE
            queue.reader.stop()

    def busy(self):
        return any(queue.busy for queue in self.queues)

    def _on_datagram(self, queue):
        recvfrom = queue.sock.recvfrom
        events = queue.events
        server_socket = queue.fileno
        for _ in range(RECV_BATCH):
            try:
                events.append(recvfrom(65536) + (server_socket,))
            except BlockingIOError:
                break
            except OSError as exc:
                log.warning("worker #%d: recvfrom failed: %s", self.reactor.worker_id, exc)
                break
        if events:
            if len(events) > MAX_QUEUED_DATAGRAMS:
                self.reactor.hold_reading(queue, HOLD_QUEUE)
            self.reactor.schedule(queue)

    def sendto(self, address, port, data, server_socket=-1):
        """Send one datagram from the server's UDP (or unix datagram) socket:
        the one a packet's ``client_info["server_socket"]`` names, else the
        first of the address's family."""
        if data.__class__ is not bytes:
            data = as_bytes(data)
        queues = self.queues
        if server_socket != -1:
            queues = [q for q in queues if q.sock.fileno() == server_socket]
        family = _family_of(address)
        for queue in queues:
            if queue.listener.family != family:
                continue
            target = address if family == _stdsocket.AF_UNIX else (address, port)
            try:
                queue.sock.sendto(data, target)
                return True
            except BlockingIOError:
                return errors.set_last_error(errors.OUTPUT_BUFFER_OVERFLOW)
            except OSError as exc:
                log.warning("worker #%d: sendto %s failed: %s", self.reactor.worker_id,
                            target, exc)
                return errors.set_last_error(errors.SESSION_NOT_EXIST)
        raise ValueError("sendto(%r): the server has no datagram socket for that address"
                         % (address,))


def _family_of(address):
    if ":" in address:
        return _stdsocket.AF_INET6
    try:
        _stdsocket.inet_aton(address)
    except OSError:
        return _stdsocket.AF_UNIX   # a path
    return _stdsocket.AF_INET

"""The echo servers under test, one per process; each prints its port when up.

    python bench/_servers.py gswoole|streamserver|epoll [--core N] [--framed]

``epoll`` is a bare epoll echo with no framework at all: the reference the
load generator's ceiling is measured against.

``--framed`` (gswoole and streamserver): a length-framed echo. A packet is a
4-byte big-endian body length, then the body; each whole packet is echoed
back, header included. gswoole frames with its own ``open_length_check``;
the StreamServer does the same by hand. The bare epoll echo has no framed
flavour: echoing bytes as they come is already a correct framed echo.
"""

import argparse
import os
import resource
import struct
import sys


HEADER = 4                     # the framed echo's length field: uint32, big-endian
body_length = struct.Struct(">I").unpack_from
MAX_PACKET = 2 * 1024 * 1024   # gswoole's default package_max_length, for both


def gswoole_echo(framed):
    import gswoole
    server = gswoole.Server("127.0.0.1", 0)
    server.set(worker_num=1, log_level="warning")
    if framed:
        server.set(open_length_check=True, package_length_type="N",
                   package_length_offset=0, package_body_offset=HEADER)
    # send() refuses data (False, get_last_error()) rather than wait, and
    # gswoole logs nothing when it does: tally refusals so a short echo is
    # explained, not just observed.
    refused = {}

    def echo(server, fd, reactor_id, data):
        if not server.send(fd, data):
            times, size, _ = refused.get(fd, (0, 0, 0))
            refused[fd] = times + 1, size + len(data), server.get_last_error()

    def report(server, fd, reactor_id):
        if fd in refused:
            times, size, error = refused.pop(fd)
            print("gswoole echo: fd %d: send() returned False %d time(s), last error %d; "
                  "%s bytes were not echoed" % (fd, times, error, format(size, ",")),
                  file=sys.stderr, flush=True)

    def framed_echo(server, fd, reactor_id, data):
        # Echoing is byte-transparent, so the load generator cannot see a
        # packet delivered in pieces or several packets delivered as one:
        # check here that each delivery is exactly one whole packet, and
        # close the connection (which fails the measurement) if it is not.
        # (About 0.1 us a packet, under 1% of what a round trip costs.)
        if len(data) < HEADER or len(data) - HEADER != body_length(data)[0]:
            print("gswoole framed echo: fd %d: received %d bytes %r..., not one whole packet; "
                  "closing the connection" % (fd, len(data), data[:8]),
                  file=sys.stderr, flush=True)
            server.close(fd)
            return
        echo(server, fd, reactor_id, data)

    server.on("receive", framed_echo if framed else echo)
    server.on("close", report)
    server.on("start", lambda s: print(s.port, flush=True))
    server.start()


def streamserver_echo(framed):
    import socket
    from gevent.server import StreamServer

    def echo(sock, address):
        while True:
            data = sock.recv(65536)
            if not data:
                break
            sock.sendall(data)

    def framed_echo(sock, address):
        """The length-framed echo as a gevent user would write it: recv into a
        buffer, echo every complete packet in it, keep the incomplete tail.

        TCP_NODELAY as gswoole sets it (open_tcp_nodelay): with Nagle on, the
        second of several packets echoed from one read would wait for the
        client's delayed ACK (40 ms)."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        recv, sendall = sock.recv, sock.sendall
        buf = bytearray()   # the start of an incomplete packet
        need = HEADER       # bytes buf must hold before a packet can be complete
        while True:
            data = recv(65536)
            if not data:
                break
            if buf:
                buf += data
                if len(buf) < need:
                    continue
                data = bytes(buf)
                buf.clear()
            size, start, need = len(data), 0, HEADER
            while size - start >= HEADER:
                end = start + HEADER + body_length(data, start)[0]
                if end - start > MAX_PACKET:
                    return   # not this protocol: hang up
                if end > size:
                    need = end - start
                    break
                # A read that is exactly one packet is sent as is, without a copy.
                sendall(data if end - start == size else data[start:end])
                start = end
            if start < size:
                buf += memoryview(data)[start:]

    # gevent's default backlog is 128; match gswoole's 511 so the idle test
    # measures memory, not SYN retransmits.
    server = StreamServer(("127.0.0.1", 0), framed_echo if framed else echo, backlog=511)
    server.start()
    print(server.server_port, flush=True)
    server.serve_forever()


def epoll_echo(framed):
    import select
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(511)
    print(listener.getsockname()[1], flush=True)
    ep = select.epoll()
    ep.register(listener.fileno(), select.EPOLLIN)
    conns = {}
    while True:
        for fd, _ in ep.poll():
            if fd == listener.fileno():
                sock, _ = listener.accept()
                sock.setblocking(False)
                conns[sock.fileno()] = sock
                ep.register(sock.fileno(), select.EPOLLIN)
                continue
            try:
                data = os.read(fd, 65536)
                if data:
                    os.write(fd, data)  # 64-byte echoes always fit the send buffer
                    continue
            except OSError:
                pass
            ep.unregister(fd)
            conns.pop(fd).close()


SERVERS = {"gswoole": gswoole_echo, "streamserver": streamserver_echo, "epoll": epoll_echo}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=sorted(SERVERS))
    parser.add_argument("--core", type=int)
    parser.add_argument("--framed", action="store_true",
                        help="length-framed echo (4-byte big-endian length, then the body)")
    args = parser.parse_args()
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})  # inherited by gswoole's forked worker
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    SERVERS[args.kind](args.framed)


if __name__ == "__main__":
    main()

"""The echo servers under test, one per process; each prints its port when up.

    python bench/_servers.py gswoole|streamserver|epoll [--core N]

``epoll`` is a bare epoll echo with no framework at all: the reference the
load generator's ceiling is measured against.
"""

import argparse
import os
import resource
import sys


def gswoole_echo():
    import gswoole
    server = gswoole.Server("127.0.0.1", 0)
    server.set(worker_num=1, log_level="warning")
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

    server.on("receive", echo)
    server.on("close", report)
    server.on("start", lambda s: print(s.port, flush=True))
    server.start()


def streamserver_echo():
    from gevent.server import StreamServer

    def echo(sock, address):
        while True:
            data = sock.recv(65536)
            if not data:
                break
            sock.sendall(data)

    # gevent's default backlog is 128; match gswoole's 511 so the idle test
    # measures memory, not SYN retransmits.
    server = StreamServer(("127.0.0.1", 0), echo, backlog=511)
    server.start()
    print(server.server_port, flush=True)
    server.serve_forever()


def epoll_echo():
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
    args = parser.parse_args()
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})  # inherited by gswoole's forked worker
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    SERVERS[args.kind]()


if __name__ == "__main__":
    main()

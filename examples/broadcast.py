"""A chat-style broadcast: a line from one client goes to every connection,
whichever worker owns it.

    python examples/broadcast.py [port]           # the server (default port 9501)
    python examples/broadcast.py client [port]    # the demonstration client

Protocol (lines):

    server: WELCOME <fd> worker #<id>\\n      on connect
    client: <text>\\n
    server: <fd>: <text>\\n                    to every connected client, sender included

The server has two workers, so the clients of one chat are spread over two
processes. get_client_list() lists the open fds of *every* worker, and
send(fd, data) works for any of them: a send for a connection another worker
owns is routed to that worker, which writes it. That is all a broadcast
needs. (get_client_list(start_fd, page_size) pages through the list, as in
Swoole, so a big server never builds one huge list.)
"""
import socket
import sys
import time


def serve(port):
    import gswoole

    server = gswoole.Server("127.0.0.1", port)
    server.set(worker_num=2)

    def broadcast(server, data):
        sent = 0
        start_fd = 0
        while True:
            fds = server.get_client_list(start_fd, 100)   # fds above start_fd, ascending
            if not fds:
                return sent
            for fd in fds:
                if server.send(fd, data):     # False: that client left meanwhile
                    sent += 1
            start_fd = fds[-1]

    def on_connect(server, fd, reactor_id):
        server.send(fd, b"WELCOME %d worker #%d\n" % (fd, server.worker_id))

    def on_receive(server, fd, reactor_id, data):
        session = server.session(fd)
        *lines, session["buf"] = (session.get("buf", b"") + data).split(b"\n")
        for line in lines:
            if line.strip():
                broadcast(server, b"%d: %s\n" % (fd, line.strip()))

    server.on("connect", on_connect)
    server.on("receive", on_receive)
    server.on("start", lambda server: print(
        "broadcast listening on 127.0.0.1:%d (master pid %d)" % (server.port, server.master_pid),
        flush=True))
    server.start()


class Member:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")
        words = self.file.readline().split()      # WELCOME <fd> worker #<id>
        self.fd, self.worker = int(words[1]), words[3].decode()

    def close(self):
        self.file.close()
        self.sock.close()


def client(port):
    # Join until the members sit on both workers (the kernel decides which
    # worker accepts a connection), at least four of them.
    members = []
    while len(members) < 4 or len({m.worker for m in members}) < 2:
        members.append(Member(port))
        if len(members) > 50:
            print("every connection landed on one worker; is worker_num 1?")
            break
    print("%d members: %s" % (len(members), ", ".join(
        "fd %d on worker %s" % (m.fd, m.worker) for m in members)))
    ok = True
    try:
        speakers = {}
        for m in members:
            speakers.setdefault(m.worker, m)      # one speaker on each worker
        for speaker in speakers.values():
            text = b"hello from fd %d at %.3f" % (speaker.fd, time.time())
            speaker.sock.sendall(text + b"\n")
            expected = b"%d: %s\n" % (speaker.fd, text)
            got = [m.file.readline() for m in members]
            heard = sum(line == expected for line in got)
            print("fd %d (worker %s) said %r: heard by %d of %d members" % (
                speaker.fd, speaker.worker, text.decode(), heard, len(members)))
            ok &= heard == len(members)
    finally:
        for m in members:
            m.close()
    print("OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    args = sys.argv[1:]
    mode = args.pop(0) if args and not args[0].isdigit() else "server"
    port = int(args[0]) if args else 9501
    {"server": serve, "client": client}[mode](port)

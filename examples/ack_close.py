"""The safest way to end a connection: the client acknowledges, then the
server closes.

    python examples/ack_close.py [port]           # the server (default port 9501)
    python examples/ack_close.py client [port]    # the demonstration client

Protocol:

    client: GET <bytes>\\n
    server: LEN <bytes>\\n<body>
    client: BYE\\n                (only after reading the whole body)
    server: close(fd)

Because the server closes only after the client says it has everything,
nothing the client still needs is in flight when the connection goes away,
whatever the network, proxies or linger settings do. A client that never says
BYE is closed by a timer after ACK_TIMEOUT_MS.
"""
import socket
import sys

ACK_TIMEOUT_MS = 5000


def serve(port):
    import gswoole

    server = gswoole.Server("127.0.0.1", port)
    server.set(worker_num=2, buffer_output_size=16 * 1024 * 1024)

    def give_up(fd):
        if server.exist(fd):
            print("fd %d never acknowledged; closing" % fd, flush=True)
            server.close(fd)

    def on_receive(server, fd, reactor_id, data):
        session = server.session(fd)
        buf = session.get("buf", b"") + data
        *lines, session["buf"] = buf.split(b"\n")
        for line in lines:
            words = line.split()
            if words[:1] == [b"GET"]:
                size = int(words[1])
                server.send(fd, b"LEN %d\n" % size)
                server.send(fd, b"z" * size)
                session["timer"] = server.after(ACK_TIMEOUT_MS, give_up, fd)
            elif words[:1] == [b"BYE"]:
                server.close(fd)          # the client has everything: nothing to lose

    def on_close(server, fd, reactor_id):
        timer = server.session(fd).get("timer")
        if timer:
            server.clear_timer(timer)

    server.on("receive", on_receive)
    server.on("close", on_close)
    server.on("start", lambda server: print(
        "ack_close listening on 127.0.0.1:%d (master pid %d)" % (server.port, server.master_pid),
        flush=True))
    server.start()


def client(port):
    size = 8 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        f = conn.makefile("rb")
        conn.sendall(b"GET %d\n" % size)
        header = f.readline().split()
        length = int(header[1])
        body = f.read(length)
        conn.sendall(b"BYE\n")            # acknowledge: now the server may close
        rest = f.read()                   # EOF
    print("received %d of %d bytes, then %s" % (len(body), length,
                                               "EOF" if rest == b"" else "more: %r" % rest[:20]))
    sys.exit(0 if len(body) == size and rest == b"" else 1)


if __name__ == "__main__":
    args = sys.argv[1:]
    mode = args.pop(0) if args and not args[0].isdigit() else "server"
    port = int(args[0]) if args else 9501
    {"server": serve, "client": client}[mode](port)

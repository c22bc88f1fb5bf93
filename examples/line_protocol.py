"""A line protocol with open_eof_split: each receive is exactly one line.

    python examples/line_protocol.py [port]          # the server (default port 9501)
    python examples/line_protocol.py client [port]   # the client (gswoole.Client, same framing)

Commands, one per line: "UPPER text", "ADD n n ...", "STATS" (how many
receive callbacks this connection has had), "QUIT". A line longer than
package_max_length (1 KiB here) is a broken stream: the server delivers the
lines before it, then closes the connection.

Neither side splits lines by hand: the server's framing settings give each
receive one line, however TCP cut or glued the bytes, and the client sets the
same options so that each recv() returns one line.
"""
import socket
import sys
import time

import gswoole

FRAMING = dict(open_eof_split=True, package_eof=b"\n", package_max_length=1024)


def on_receive(server, fd, reactor_id, line):
    session = server.session(fd)
    session["receives"] = session.get("receives", 0) + 1
    command, _, rest = line.rstrip(b"\r\n").decode("utf-8", "replace").partition(" ")
    command = command.upper()
    if command == "UPPER":
        reply = rest.upper()
    elif command == "ADD":
        try:
            reply = str(sum(int(n) for n in rest.split()))
        except ValueError:
            reply = "ERR ADD takes integers"
    elif command == "STATS":
        reply = "receives=%d" % session["receives"]
    elif command == "QUIT":
        server.send(fd, b"bye\n")
        server.close(fd)          # "bye" is delivered before the FIN
        return
    else:
        reply = "ERR unknown command %r" % command
    server.send(fd, reply.encode() + b"\n")


def on_close(server, fd, reactor_id):
    who = "the server" if reactor_id == -1 else "the client"
    print("fd %d closed by %s after %d line(s)"
          % (fd, who, server.session(fd).get("receives", 0)), flush=True)


def serve(port):
    server = gswoole.Server("127.0.0.1", port)
    server.set(worker_num=2, **FRAMING)
    server.on("receive", on_receive)
    server.on("close", on_close)
    server.on("start", lambda s: print("line_protocol listening on 127.0.0.1:%d (master pid %d)"
                                       % (s.port, s.master_pid), flush=True))
    server.start()


# -- client -----------------------------------------------------------------

def connect(port):
    client = gswoole.Client(gswoole.SOCK_TCP)
    client.set(FRAMING, timeout=5.0)
    if not client.connect("127.0.0.1", port):
        raise SystemExit("cannot connect: [%d] %s" % (client.errCode, client.errMsg))
    return client


def line(client):
    reply = client.recv()
    if reply is False:
        raise RuntimeError("recv failed: [%d] %s" % (client.errCode, client.errMsg))
    return reply


def run_client(port):
    client = connect(port)

    # Three commands in one write: three receives on the server, three replies.
    client.send(b"UPPER hello\nADD 1 2 39\nUPPER world\n")
    print("3 lines in 1 write ->", [line(client) for _ in range(3)])

    # One command dribbled in 14 writes, on a connection of its own: still one
    # receive (STATS, the second receive, says so).
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in b"UPPER dribble\n":
            raw.sendall(bytes([byte]))
            time.sleep(0.01)
        raw.sendall(b"STATS\n")
        answer = b""
        while answer.count(b"\n") < 2:
            answer += raw.recv(100)
    print("1 line in 14 writes ->", answer.split(b"\n")[:2])

    client.send(b"STATS\n")
    print("STATS              ->", line(client))
    client.send(b"QUIT\n")
    print("QUIT               ->", line(client), "then", line(client), "(EOF)")

    # A line over package_max_length: the line before it is answered, then the close.
    client = connect(port)
    client.send(b"UPPER before\n" + b"x" * 2000)
    print("too long a line    ->", line(client), "then", line(client),
          "(the server closed the connection)")
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    port = int(args[-1]) if args and args[-1].isdigit() else 9501
    if args[:1] == ["client"]:
        sys.exit(run_client(port))
    serve(port)

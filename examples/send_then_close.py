"""Send a large reply, close at once, and still deliver every byte.

    python examples/send_then_close.py [port]              # the server (default port 9501)
    python examples/send_then_close.py client [port]       # the demonstration client
    python examples/send_then_close.py naive [port]        # a plain-socket server WITHOUT
                                                           # lingering close, for comparison

The server answers the first bytes of a connection with a 4 MiB reply and
calls close(fd) straight after send(). The client keeps sending while it
reads, so the server always has unread input when it closes: the situation in
which a plain close() makes the kernel send an RST and the end of the reply is
lost. gswoole flushes the queued reply, shuts down writing and keeps reading
(and discarding) until the client's FIN or linger_time, so the client reads
all 4 MiB and then a clean EOF.

Sending "reset" as the first bytes asks for close(fd, reset=True) instead: the
queued output is dropped and the client sees ECONNRESET.

Run the client against the "naive" server to see the failure gswoole avoids:
it reads a truncated reply and ends with ECONNRESET.
"""
import os
import socket
import sys
import threading
import time

REPLY_SIZE = 4 * 1024 * 1024
REPLY = bytes(range(256)) * (REPLY_SIZE // 256)


def serve(port):
    import gswoole

    server = gswoole.Server("127.0.0.1", port)
    # One send() of 4 MiB must fit in the connection's output buffer (default
    # 2 MiB); otherwise send() returns False with error 1203.
    server.set(worker_num=2, buffer_output_size=8 * 1024 * 1024, linger_time=3.0)

    def on_receive(server, fd, reactor_id, data):
        session = server.session(fd)
        if session.get("answered"):
            return          # a receive can still be running when we close; ignore the rest
        session["answered"] = True
        if data.startswith(b"reset"):
            server.send(fd, REPLY)
            server.close(fd, reset=True)    # deliberate RST: queued output is dropped
        else:
            server.send(fd, REPLY)          # queued; returns at once
            server.close(fd)                # safe: the reply is flushed before the FIN

    def on_close(server, fd, reactor_id):
        who = "server" if reactor_id == -1 else "client"
        print("fd %d closed by %s" % (fd, who), flush=True)

    server.on("receive", on_receive)
    server.on("close", on_close)
    server.on("start", lambda server: print(
        "send_then_close listening on 127.0.0.1:%d (master pid %d)"
        % (server.port, server.master_pid), flush=True))
    server.start()


def serve_naive(port):
    """What many hand-written servers do: sendall(), then close() at once."""
    listener = socket.create_server(("127.0.0.1", port))
    print("naive server listening on 127.0.0.1:%d (pid %d); Ctrl-C to stop"
          % (listener.getsockname()[1], os.getpid()), flush=True)
    while True:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(REPLY)
        conn.close()     # unread input in our receive buffer -> the kernel sends RST


def fetch(port, first=b"GET the big thing\n", keep_sending=True):
    """Connect, send ``first``, keep sending junk, read to EOF.

    Returns (bytes_received, how_it_ended)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(first)
    stop = threading.Event()

    def keep_talking():
        try:
            while not stop.is_set():
                sock.sendall(b"x" * 4096)
                time.sleep(0.001)
        except OSError:
            pass        # the server closed or reset the connection

    sender = threading.Thread(target=keep_talking, daemon=True)
    if keep_sending:
        sender.start()
    received = bytearray()
    ended = "EOF"
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
            time.sleep(0.0005)   # a slow reader, so the reply is still in transit at close
    except ConnectionResetError:
        ended = "ECONNRESET"
    finally:
        stop.set()
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if keep_sending:
            sender.join(5)
        sock.close()
    return bytes(received), ended


def client(port):
    data, ended = fetch(port)
    whole = data == REPLY
    print("normal close: received %d of %d bytes, then %s -> %s"
          % (len(data), REPLY_SIZE, ended, "complete" if whole else "TRUNCATED"))
    data2, ended2 = fetch(port, first=b"reset\n", keep_sending=False)
    print("reset close:  received %d bytes, then %s" % (len(data2), ended2))
    ok = whole and ended == "EOF" and ended2 == "ECONNRESET"
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    args = sys.argv[1:]
    mode = args.pop(0) if args and not args[0].isdigit() else "server"
    port = int(args[0]) if args else 9501
    {"server": serve, "client": client, "naive": serve_naive}[mode](port)

"""When send() returns False, and what get_last_error() then says.

    python examples/send_errors.py [port]           # the server (default port 9501)
    python examples/send_errors.py client [port]    # the demonstration client

The server runs with a 1 MiB output buffer per connection and send_yield on,
with a 2 second send_timeout. Commands:

    stream N    send N MiB in 256 KiB pieces; with send_yield each send()
                that would overflow the buffer waits until the client has read
                enough (only this connection's callback waits)
    stall       send 256 KiB pieces to a client that reads nothing, until
                send() fails: after send_timeout, error 1009
    errors      run the other failure cases and report their codes:
                1203 (one send bigger than the buffer), 1003 (send after
                close(fd), before the close callback), 1004 (send to an fd
                whose connection is gone), 1005 (an fd that never existed)
    report      the result of the last "stall", sent on another connection

Without send_yield (the default), a send that would overflow fails with
1009 at once instead of waiting.
"""
import socket
import sys
import time

MiB = 1024 * 1024
PIECE = b"x" * (256 * 1024)


def serve(port):
    import gevent
    import gevent.socket

    import gswoole
    from gswoole import errors

    server = gswoole.Server("127.0.0.1", port)
    server.set(worker_num=1, buffer_output_size=1 * MiB, send_yield=True, send_timeout=2.0)
    last_stall = {"text": "no stall yet\n"}

    def failed(code):
        return "%d %s" % (code, errors.strerror(code))

    def on_receive(server, fd, reactor_id, data):
        words = data.decode().split()
        command = words[0] if words else ""
        if command == "stream":
            for _ in range(int(words[1]) * 4):
                if not server.send(fd, PIECE):
                    print("stream failed:", failed(server.get_last_error()), flush=True)
                    return
            server.send(fd, b"\nstreamed\n")
        elif command == "stall":
            sent, started = 0, time.monotonic()
            while server.send(fd, PIECE):
                sent += len(PIECE)
            last_stall["text"] = "stall: send() returned False after %d bytes and %.1f s: %s\n" % (
                sent, time.monotonic() - started, failed(server.get_last_error()))
        elif command == "errors":
            lines = []
            ok = server.send(fd, b"y" * (2 * MiB))
            lines.append("send of 2 MiB (> buffer_output_size): %s, %s"
                         % (ok, failed(server.get_last_error())))
            ok = server.send(10 ** 9, b"hello")
            lines.append("send to fd 1000000000 (never existed): %s, %s"
                         % (ok, failed(server.get_last_error())))
            # 1003 and 1004 need a connection that is closing or gone: open one
            # to ourselves, as if another client were connected.
            probe = gevent.socket.create_connection(("127.0.0.1", server.port))
            gevent.sleep(0.1)
            other = max(server.get_client_list())
            server.close(other)
            ok = server.send(other, b"hello")
            lines.append("send right after close(fd): %s, %s"
                         % (ok, failed(server.get_last_error())))
            gevent.sleep(0.1)      # the close callback has run: the fd is gone
            ok = server.send(other, b"hello")
            lines.append("send after the connection is gone: %s, %s"
                         % (ok, failed(server.get_last_error())))
            probe.close()
            server.send(fd, "\n".join(lines) + "\n")
        elif command == "report":
            server.send(fd, last_stall["text"])

    server.on("receive", on_receive)
    server.on("start", lambda server: print(
        "send_errors listening on 127.0.0.1:%d (master pid %d)" % (server.port, server.master_pid),
        flush=True))
    server.start()


def client(port):
    ok = True

    # send_yield: a 16 MiB stream through a 1 MiB buffer, read slowly, arrives whole.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"stream 16\n")
        received = 0
        f = conn.makefile("rb")
        while True:
            chunk = f.read1(65536)
            if not chunk or chunk.endswith(b"streamed\n"):
                received += len(chunk)
                break
            received += len(chunk)
            time.sleep(0.0005)
        body = received - len(b"\nstreamed\n")
        print("stream: received %d MiB through a 1 MiB buffer" % (body // MiB))
        ok = ok and body == 16 * MiB

    # A client that reads nothing: after send_timeout the send fails with 1009.
    stalled = socket.create_connection(("127.0.0.1", port), timeout=10)
    stalled.sendall(b"stall\n")
    time.sleep(3.0)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"report\n")
        report = conn.makefile("rb").readline().decode().strip()
    print(report)
    ok = ok and "1009" in report
    stalled.close()

    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"errors\n")
        f = conn.makefile("rb")
        lines = [f.readline().decode().strip() for _ in range(4)]
    for line in lines:
        print(line)
    codes = [line.split(", ")[-1].split()[0] for line in lines]
    ok = ok and codes == ["1203", "1005", "1003", "1004"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    args = sys.argv[1:]
    mode = args.pop(0) if args and not args[0].isdigit() else "server"
    port = int(args[0]) if args else 9501
    {"server": serve, "client": client}[mode](port)

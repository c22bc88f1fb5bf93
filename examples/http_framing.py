"""How gswoole frames HTTP responses: each rule of docs/http.md, with the
bytes a client receives.

    python examples/http_framing.py [port]          # the server (default port 9501)
    python examples/http_framing.py client [port]   # prints each response as sent

Every request is followed on the same connection by ``GET /next``: where the
connection stays open its answer arrives intact behind the first response,
and where the first response had to end the connection nothing follows it.
"""
import socket
import sys

import gswoole.http


def on_request(request, response):
    path = request.path
    if path == "/next":
        response.end("next")
    elif path == "/own-length-too-small":
        response.header("Content-Length", "5")
        response.end("helloworld")            # only "hello" goes out; an error is logged
    elif path == "/own-length-too-large":
        response.header("Content-Length", "20")
        response.end("helloworld")            # 10 of 20 bytes: the connection closes after
    elif path == "/own-length-then-write":
        response.header("Content-Length", "10")
        response.write("hello")               # not chunked: the length frames the body
        response.write("world")
    elif path == "/streamed":
        response.write("hello")               # no length: chunked on HTTP/1.1
        response.write("world")
    elif path == "/not-modified":
        response.status(304)
        response.end("a 304 has no body")     # dropped
    elif path == "/connection-close":
        response.header("Connection", "close")   # interpreted: the server closes after
        response.end("bye")
    elif path == "/transfer-encoding":
        response.header("Transfer-Encoding", "chunked")   # dropped: the server frames
        response.end("ok")
    else:
        response.status(404)
        response.end("no page %s\n" % path)


def serve(port):
    server = gswoole.http.Server("127.0.0.1", port)
    server.set(worker_num=1)
    server.on("request", on_request)
    server.on("start", lambda s: print("http_framing listening on 127.0.0.1:%d (master pid %d)"
                                       % (s.port, s.master_pid), flush=True))
    server.start()


# -- client -----------------------------------------------------------------

PAGES = ["/own-length-too-small", "/own-length-too-large", "/own-length-then-write",
         "/streamed", "/not-modified", "/connection-close", "/transfer-encoding"]


def wire(port, path):
    """The bytes sent for ``path`` + GET /next, until the server closes or
    the /next answer is complete."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: example\r\n\r\n"
                     b"GET /next HTTP/1.1\r\nHost: example\r\n\r\n" % path.encode())
        out = b""
        while not out.endswith(b"\r\n\r\nnext"):
            piece = sock.recv(65536)
            if not piece:
                break
            out += piece
        return out


def run_client(port):
    for path in PAGES:
        raw = wire(port, path)
        # Date and Server change every run; leave them out of the print.
        shown = b"\r\n".join(line for line in raw.split(b"\r\n")
                             if not line.startswith((b"Date:", b"Server:")))
        print("GET %s  (+ GET /next)" % path)
        for line in shown.decode("latin-1").split("\r\n"):
            print("    | " + line)
        kept = raw.endswith(b"\r\n\r\nnext")
        print("    -> %s\n" % ("kept open: /next answered" if kept else "closed after it"))
        expected_close = path in ("/own-length-too-large", "/connection-close")
        if kept == expected_close:
            print("UNEXPECTED for", path)
            return 1
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "client":
        sys.exit(run_client(int(args[1]) if len(args) > 1 else 9501))
    serve(int(args[0]) if args else 9501)

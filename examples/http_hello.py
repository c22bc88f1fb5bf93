"""gswoole.http.Server: Swoole's request/response API, and a client that uses it.

    python examples/http_hello.py [port]          # the server (default port 9501)
    python examples/http_hello.py client [port]   # the client (http.client and a raw socket)

Pages: /  /hello?name=X  /echo (POST a form, multipart or JSON)  /stream
(chunked, written piece by piece)  /source (this file, with sendfile)
/login (sets a cookie and redirects)  /whoami (reads it)  /info (request.server)
"""
import json
import re
import socket
import sys
import time

import gevent

import gswoole.http


def on_request(request, response):
    path = request.path
    if path == "/":
        response.header("Content-Type", "text/plain; charset=utf-8")
        response.end("hello from worker #%d\n" % server.worker_id)
    elif path == "/hello":
        response.end("hello, %s\n" % request.get.get("name", "world"))
    elif path == "/echo":
        files = {name: {"name": f["name"], "type": f["type"], "size": f["size"]}
                 for name, f in request.files.items()}
        response.header("Content-Type", "application/json")
        response.end(json.dumps({"method": request.method, "post": request.post,
                                 "files": files, "body_bytes": len(request.raw_content()),
                                 "content_type": request.header.get("content-type")}))
    elif path == "/stream":
        # No length is known in advance: each write() is one chunk on HTTP/1.1.
        for i in range(3):
            response.write("piece %d\n" % i)
            gevent.sleep(0.05)            # waits in this connection's greenlet only
        response.end()
    elif path == "/source":
        response.sendfile(__file__)       # zero-copy; Content-Type guessed from the name
    elif path == "/login":
        response.cookie("session", "abc123", path="/", httponly=True, samesite="Lax")
        response.redirect("/whoami")
    elif path == "/whoami":
        response.end("session=%s\n" % request.cookie.get("session", "-"))
    elif path == "/info":
        response.header("Content-Type", "application/json")
        response.end(json.dumps(request.server))
    else:
        response.status(404)
        response.end("no page %s\n" % path)
    # Returning without end() would also be fine: gswoole ends the response.


def serve(port):
    global server
    server = gswoole.http.Server("127.0.0.1", port)
    server.set(worker_num=2)
    server.on("request", on_request)
    server.on("start", lambda s: print("http_hello listening on 127.0.0.1:%d (master pid %d)"
                                       % (s.port, s.master_pid), flush=True))
    server.start()


# -- client -----------------------------------------------------------------

def raw_exchange(port, data, until_close=True, timeout=5):
    """Send raw bytes, return everything the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                return out
            out += piece
            if not until_close and out.count(b"\r\n\r\n") >= 1:
                return out


def run_client(port):
    import http.client
    from urllib.parse import urlencode

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    def get(method, url, body=None, headers=None):
        conn.request(method, url, body=body, headers=headers or {})
        response = conn.getresponse()
        return response, response.read()

    response, body = get("GET", "/")
    first_socket = conn.sock
    print("GET /            ->", response.status, body.decode().strip())
    response, body = get("GET", "/hello?name=gswoole")
    print("GET /hello       ->", response.status, body.decode().strip())
    print("                    (same TCP connection: %s)" % (conn.sock is first_socket))

    response, body = get("POST", "/echo", urlencode({"a": "1", "b": "two"}),
                         {"Content-Type": "application/x-www-form-urlencoded"})
    print("POST form        ->", json.loads(body)["post"])

    boundary = "gswoole-example"
    multipart = ("--{b}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n"
                 "--{b}\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"a.txt\"\r\n"
                 "Content-Type: text/plain\r\n\r\nfile body\r\n--{b}--\r\n").format(b=boundary)
    response, body = get("POST", "/echo", multipart,
                         {"Content-Type": "multipart/form-data; boundary=" + boundary})
    echoed = json.loads(body)
    print("POST multipart   ->", echoed["post"], echoed["files"])

    response, body = get("POST", "/echo", json.dumps({"x": 1}),
                         {"Content-Type": "application/json"})
    print("POST json        -> post=%s body_bytes=%d (read it with raw_content())"
          % (json.loads(body)["post"], json.loads(body)["body_bytes"]))

    response, body = get("GET", "/stream")
    print("GET /stream      ->", response.getheader("Transfer-Encoding"), body.decode().split())

    response, body = get("GET", "/source")
    print("GET /source      -> %s, %s bytes (sendfile)" % (response.getheader("Content-Type"),
                                                          len(body)))
    response, body = get("HEAD", "/source")
    print("HEAD /source     -> Content-Length %s, body %d bytes"
          % (response.getheader("Content-Length"), len(body)))

    response, body = get("GET", "/login")
    cookie = response.getheader("Set-Cookie")
    print("GET /login       ->", response.status, response.getheader("Location"), "|", cookie)
    response, body = get("GET", "/whoami", headers={"Cookie": cookie.split(";")[0]})
    print("GET /whoami      ->", body.decode().strip())

    response, body = get("GET", "/info?q=1")
    info = json.loads(body)
    print("GET /info        -> request_uri=%s query_string=%s server_port=%s"
          % (info["request_uri"], info["query_string"], info["server_port"]))
    response, body = get("GET", "/nope")
    print("GET /nope        ->", response.status)
    conn.close()

    # Pipelining: two requests in one write, two answers in order.
    answer = raw_exchange(port, b"GET /hello?name=one HTTP/1.1\r\nHost: x\r\n\r\n"
                                b"GET /hello?name=two HTTP/1.1\r\nHost: x\r\n"
                                b"Connection: close\r\n\r\n")
    print("pipelined        ->", re.findall(r"hello, \w+", answer.decode()))

    # Half-closed client (like nc -N): send, shut down writing, still get the answer.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /hello?name=half HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    print("half-closed      ->", data.split(b"\r\n\r\n", 1)[1].decode().strip())

    # Expect: 100-continue: the server says "go on" before the body is sent.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     b"Content-Type: application/octet-stream\r\nExpect: 100-continue\r\n"
                     b"Connection: close\r\n\r\n")
        interim = sock.recv(65536)
        sock.sendall(b"hello")
        final = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            final += piece
    print("100-continue     -> %s, then %s" % (interim.split(b"\r\n")[0].decode(),
                                               final.split(b"\r\n")[0].decode()))

    # Requests the server refuses: an answer with a status, then the close.
    bad = [
        ("too many headers", b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i
                                                            for i in range(101)) + b"\r\n"),
        ("CL and TE both", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("HTTP/2.0", b"GET / HTTP/2.0\r\n\r\n"),
    ]
    for label, data in bad:
        answer = raw_exchange(port, data)
        print("%-16s -> %s" % (label, answer.split(b"\r\n")[0].decode()))

    started = time.monotonic()
    assert raw_exchange(port, b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n"
                              b"\r\n").startswith(b"HTTP/1.1 413")
    print("huge body        -> 413 at once, before the body was sent (%.2f s)"
          % (time.monotonic() - started))
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    port = int(args[-1]) if args and args[-1].isdigit() else 9501
    if args[:1] == ["client"]:
        sys.exit(run_client(port))
    serve(port)

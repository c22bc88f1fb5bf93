"""A chat server: an HTML page and a WebSocket, on one port.

    python examples/chat/server.py [port]           # the server (default port 9502)
    python examples/chat/server.py client [port]    # two clients chat, from Python

Open http://127.0.0.1:9502/ in a few browser tabs and type. The page
(index.html, served by the ``request`` callback) opens a WebSocket to /ws;
each line a client sends is broadcast to every client, whichever of the two
workers owns its connection. ``broadcast`` makes the frame once, sends it to
this worker's connections and hands it to the other worker in one message.
"""
import os
import sys

import gswoole.websocket

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "index.html")


def on_request(request, response):
    if request.path == "/":
        response.header("Content-Type", "text/html; charset=utf-8")
        response.sendfile(PAGE)
    else:
        response.status(404)
        response.end("no page %s\n" % request.path)


def on_open(server, request):
    if request.path != "/ws":
        server.disconnect(request.fd, 4004, "no chat at %s" % request.path)
        return
    server.session(request.fd)["joined"] = True
    server.push(request.fd, "welcome, you are #%d (worker #%d)" % (request.fd, server.worker_id))
    server.broadcast("#%d joined" % request.fd)


def on_message(server, frame):
    if frame.opcode == gswoole.websocket.OPCODE_TEXT:
        server.broadcast("#%d: %s" % (frame.fd, frame.data[:1000]))


def on_close(server, fd, reactor_id):
    # close runs for every connection of the port, page loads included
    if server.session(fd).get("joined"):
        server.broadcast("#%d left" % fd)


def serve(port):
    server = gswoole.websocket.Server("127.0.0.1", port)
    server.set(worker_num=2, websocket_compression=True, websocket_ping_interval=30)
    server.on("request", on_request)
    server.on("open", on_open)
    server.on("message", on_message)
    server.on("close", on_close)
    server.on("start", lambda s: print("chat listening on 127.0.0.1:%d (master pid %d)"
                                       % (s.port, s.master_pid), flush=True))
    server.start()


def run_client(port):
    from websockets.sync.client import connect

    url = "ws://127.0.0.1:%d/ws" % port
    with connect(url, open_timeout=5) as alice, connect(url, open_timeout=5) as bob:
        print("alice:", alice.recv(5))
        print("bob:  ", bob.recv(5))
        alice.send("hello, bob")

        def until(ws, suffix):
            while True:
                line = ws.recv(5)
                if line.endswith(suffix):
                    return line
        print("bob sees:  ", until(bob, "hello, bob"))
        print("alice sees:", until(alice, "hello, bob"))
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    port = int(args[-1]) if args and args[-1].isdigit() else 9502
    if args[:1] == ["client"]:
        sys.exit(run_client(port))
    serve(port)

"""The hello-world apps that bench/http.py serves, one per interface.

    wsgi_app   gswoole, gunicorn -k gevent, gevent.pywsgi
    asgi_app   uvicorn

Both answer every request with 200, ``Content-Type: text/plain``,
``Content-Length: 13`` and "Hello, World!", and leave keep-alive to the server.

``python -m bench.http_apps HOST:PORT`` (from the repository root) serves
``wsgi_app`` with ``gevent.pywsgi.WSGIServer`` in this one process. The
servers import this module as ``bench.http_apps``, never with bench/ itself on
``sys.path``, where bench/http.py would shadow the standard library's ``http``.
"""

import sys

BODY = b"Hello, World!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def wsgi_app(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]


_ASGI_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(name.lower().encode(), value.encode()) for name, value in HEADERS],
}
_ASGI_BODY = {"type": "http.response.body", "body": BODY}


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send(_ASGI_START)
    await send(_ASGI_BODY)


def serve_pywsgi(address):
    import socket
    from gevent.pywsgi import WSGIServer
    host, _, port = address.rpartition(":")
    # log=None: no access log, as with the other servers.
    server = WSGIServer((host, int(port)), wsgi_app, log=None)
    # TCP_NODELAY, as the other servers have: pywsgi sends the headers and the
    # body in two writes, and without it Nagle holds the body back until the
    # client's delayed ACK (~40 ms) for the headers. Accepted sockets inherit
    # the option from the listener on Linux.
    server.init_socket()
    server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server.serve_forever()


if __name__ == "__main__":
    serve_pywsgi(sys.argv[1])

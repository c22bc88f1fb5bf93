"""The apps that bench/http.py serves, one per interface.

    wsgi_app        gswoole, granian (WSGI), bjoern, gunicorn -k gevent,
                    gevent.pywsgi
    asgi_app        uvicorn
    wsgi_io_app     the I/O-bound round: gswoole, granian, gunicorn -k gevent
    asgi_io_app     the I/O-bound round: uvicorn

The hello-world apps answer every request with 200, ``Content-Type:
text/plain``, ``Content-Length: 13`` and "Hello, World!", and leave keep-alive
to the server. The I/O-bound apps answer the same after waiting IO_WAIT
(20 ms, a database call) first.

How the I/O-bound apps wait, and why that is fair: ``wsgi_io_app`` calls
``time.sleep``, as an app calling a blocking database driver would, and each
server makes of it what it makes of any blocking call. gswoole-serve and
gunicorn -k gevent monkey-patch the process before importing the app, so the
call parks only the request's greenlet; granian runs WSGI apps in a pool of
blocking threads, so it parks one thread. ``asgi_io_app`` awaits
``asyncio.sleep``, as an async app awaiting an async driver would: uvicorn's
idiomatic form. No server is given code written for it alone.

``python -m bench.http_apps pywsgi HOST:PORT`` (from the repository root)
serves ``wsgi_app`` with ``gevent.pywsgi.WSGIServer`` in this one process;
``python -m bench.http_apps bjoern HOST:PORT [PROCESSES]`` serves it with
bjoern, in PROCESSES processes (default 1) that each listen on the port with
``SO_REUSEPORT`` (bjoern has no workers of its own). The servers import this
module as ``bench.http_apps``, never with bench/ itself on ``sys.path``, where
bench/http.py would shadow the standard library's ``http``.
"""

import asyncio
import os
import sys
import time

BODY = b"Hello, World!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]
IO_WAIT = 0.020  # seconds the I/O-bound apps wait per request


def wsgi_app(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]


def wsgi_io_app(environ, start_response):
    time.sleep(IO_WAIT)  # cooperative where the server monkey-patched time
    start_response("200 OK", HEADERS)
    return [BODY]


_ASGI_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(name.lower().encode(), value.encode()) for name, value in HEADERS],
}
_ASGI_BODY = {"type": "http.response.body", "body": BODY}


async def _lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    await send(_ASGI_START)
    await send(_ASGI_BODY)


async def asgi_io_app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    await asyncio.sleep(IO_WAIT)
    await send(_ASGI_START)
    await send(_ASGI_BODY)


def _host_port(address):
    host, _, port = address.rpartition(":")
    return host, int(port)


def serve_pywsgi(address):
    import socket
    from gevent.pywsgi import WSGIServer
    # log=None: no access log, as with the other servers.
    server = WSGIServer(_host_port(address), wsgi_app, log=None)
    # TCP_NODELAY, as the other servers have: pywsgi sends the headers and the
    # body in two writes, and without it Nagle holds the body back until the
    # client's delayed ACK (~40 ms) for the headers. Accepted sockets inherit
    # the option from the listener on Linux.
    server.init_socket()
    server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server.serve_forever()


def serve_bjoern(address, processes=1):
    """bjoern in ``processes`` processes: this one and ``processes - 1``
    forked children, each with its own listening socket on the same port
    (SO_REUSEPORT: the kernel spreads the connections), since bjoern has no
    workers. The children stay in this process's group, which is how
    bench/http.py stops them with it."""
    import bjoern
    host, port = _host_port(address)
    for _ in range(processes - 1):
        if os.fork() == 0:
            break
    bjoern.run(wsgi_app, host, port, reuse_port=processes > 1)


if __name__ == "__main__":
    server, address, *rest = sys.argv[1:]
    if server == "pywsgi":
        serve_pywsgi(address)
    elif server == "bjoern":
        serve_bjoern(address, int(rest[0]) if rest else 1)
    else:
        sys.exit("usage: python -m bench.http_apps pywsgi|bjoern HOST:PORT [PROCESSES]")

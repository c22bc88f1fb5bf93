"""HTTP/1.x on gswoole: request parser, Request/Response, HTTP server.

    import gswoole.http
    server = gswoole.http.Server("127.0.0.1", 9501)
    server.on("request", lambda request, response: response.end("hello"))
    server.start()
"""

from .request import Request
from .response import Response
from .server import Server

__all__ = ["Server", "Request", "Response"]

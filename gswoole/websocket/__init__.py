"""WebSocket on gswoole: Swoole's WebSocket server, and the sans-IO core
the WSGI server uses for ``environ["wsgi.websocket"]``.

    import gswoole.websocket
    server = gswoole.websocket.Server("127.0.0.1", 9502)
    server.on("message", lambda server, frame: server.push(frame.fd, frame.data))
    server.start()
"""

from .protocol import (OPCODE_BINARY, OPCODE_CLOSE, OPCODE_CONTINUATION, OPCODE_PING,
                       OPCODE_PONG, OPCODE_TEXT, Frame, accept_key)
from .server import Server

__all__ = ["Server", "Frame", "accept_key", "OPCODE_CONTINUATION", "OPCODE_TEXT",
           "OPCODE_BINARY", "OPCODE_CLOSE", "OPCODE_PING", "OPCODE_PONG"]

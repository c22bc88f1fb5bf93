"""Echo server: what the client sends comes back.

    python examples/echo.py            # listens on 127.0.0.1:9501
    printf 'hello\n' | nc -q1 127.0.0.1 9501
"""
import sys

import gswoole

port = int(sys.argv[1]) if len(sys.argv) > 1 else 9501
server = gswoole.Server("127.0.0.1", port)
server.set(worker_num=2)


def on_connect(server, fd, reactor_id):
    print("connect fd=%d on worker #%d" % (fd, reactor_id), flush=True)


def on_receive(server, fd, reactor_id, data):
    server.send(fd, data)


def on_close(server, fd, reactor_id):
    who = "server" if reactor_id == -1 else "client"
    print("close fd=%d (closed by %s)" % (fd, who), flush=True)


server.on("connect", on_connect)
server.on("receive", on_receive)
server.on("close", on_close)
server.on("start", lambda server: print("echo server on 127.0.0.1:%d, master pid %d"
                                        % (server.port, server.master_pid), flush=True))
server.start()

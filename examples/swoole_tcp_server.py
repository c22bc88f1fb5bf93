"""Swoole's first example (its docs, "TCP Server"), ported line by line.

    python examples/swoole_tcp_server.py [port]          # the server (default port 9501)
    python examples/swoole_tcp_server.py client [port]   # sends "hello", expects "Server: hello"

The PHP original, each line next to its port below:

    $server = new Swoole\\Server('127.0.0.1', 9501);
    $server->on('Connect', function ($server, $fd) {
        echo "Client: Connect.\\n";
    });
    $server->on('Receive', function ($server, $fd, $reactor_id, $data) {
        $server->send($fd, "Server: {$data}");
    });
    $server->on('Close', function ($server, $fd) {
        echo "Client: Close.\\n";
    });
    $server->start();

What changed: callbacks take every argument of their event (a PHP closure
may drop trailing ones, a Python function may not), so the connect and
close callbacks also take reactor_id; the data is bytes. Swoole's default
mode is PROCESS (BASE since Swoole 5); gswoole runs BASE either way
(docs/porting_from_swoole.md). The start callback is this example's own:
it prints where the server listens, for examples/check_examples.py.
"""
import socket
import sys

import gswoole


def serve(port):
    # $server = new Swoole\Server('127.0.0.1', 9501);
    server = gswoole.Server("127.0.0.1", port)

    # $server->on('Connect', function ($server, $fd) { echo "Client: Connect.\n"; });
    server.on("Connect", lambda server, fd, reactor_id: print("Client: Connect."))

    # $server->on('Receive', function ($server, $fd, $reactor_id, $data) {
    #     $server->send($fd, "Server: {$data}");
    # });
    server.on("Receive", lambda server, fd, reactor_id, data: server.send(fd, b"Server: " + data))

    # $server->on('Close', function ($server, $fd) { echo "Client: Close.\n"; });
    server.on("Close", lambda server, fd, reactor_id: print("Client: Close."))

    server.on("Start", lambda server: print("listening on 127.0.0.1:%d, master pid %d"
                                            % (server.port, server.master_pid), flush=True))
    # $server->start();
    server.start()


def client(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"hello")
        reply = b""
        while len(reply) < len(b"Server: hello"):
            chunk = conn.recv(100)
            if not chunk:
                break
            reply += chunk
    print(reply.decode())
    return 0 if reply == b"Server: hello" else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        sys.exit(client(int(sys.argv[2]) if len(sys.argv) > 2 else 9501))
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else 9501)

"""Swoole's ``confirm()`` example (its docs, Server methods), ported line by line.

    python examples/swoole_confirm.py [port]          # the server (default port 9501)
    python examples/swoole_confirm.py client [port]   # talks to it

With ``enable_delay_receive`` a new connection is not read until the
program confirms it: ``connect`` runs first and decides (check the source
address, a rate limit, ...); nothing the client sends reaches ``receive``
before that. This port adds one rule to show it: a client from a port that
is a multiple of 7 is held for a second before it is confirmed, and it is
confirmed from a timer, which may run in any worker (confirm, like send,
works for any fd from any worker).

The PHP original, each line next to its port below:

    $serv = new Swoole\\Server("127.0.0.1", 9501);
    $serv->set([
        'enable_delay_receive' => true,
    ]);
    $serv->on('Connect', function ($serv, $fd) {
        // Check $fd here and confirm if okay
        $serv->confirm($fd);
    });
    $serv->on('Receive', function ($serv, $fd, $reactor_id, $data) {
        $serv->send($fd, "Server: " . $data);
    });
    $serv->on('Close', function ($serv, $fd) {
        echo "Client: Close.\\n";
    });
    $serv->start();
"""
import socket
import sys
import time

import gswoole


def serve(port):
    # $serv = new Swoole\Server("127.0.0.1", 9501);
    serv = gswoole.Server("127.0.0.1", port)
    # $serv->set(['enable_delay_receive' => true]);
    serv.set({"enable_delay_receive": True, "worker_num": 2})

    # $serv->on('Connect', function ($serv, $fd) {
    def on_connect(serv, fd, reactor_id):
        # Check $fd here and confirm if okay
        if serv.getClientInfo(fd)["remote_port"] % 7 == 0:
            serv.after(1000, serv.confirm, fd)        # this port's own rule: later
            return
        # $serv->confirm($fd);
        serv.confirm(fd)
    serv.on("Connect", on_connect)

    # $serv->on('Receive', function ($serv, $fd, $reactor_id, $data) {
    #     $serv->send($fd, "Server: " . $data);
    # });
    serv.on("Receive", lambda serv, fd, reactor_id, data: serv.send(fd, b"Server: " + data))

    # $serv->on('Close', function ($serv, $fd) { echo "Client: Close.\n"; });
    serv.on("Close", lambda serv, fd, reactor_id: print("Client: Close."))

    serv.on("Start", lambda serv: print("listening on 127.0.0.1:%d, master pid %d"
                                        % (serv.port, serv.master_pid), flush=True))
    # $serv->start();
    serv.start()


def talk(port, local_port=0):
    conn = socket.socket()
    conn.bind(("127.0.0.1", local_port))
    conn.connect(("127.0.0.1", port))
    conn.settimeout(5)
    started = time.monotonic()
    conn.sendall(b"hello")
    reply = conn.recv(100)
    conn.close()
    return reply, time.monotonic() - started


def client(port):
    results = []
    for held in (False, True):
        for _ in range(100):   # a free local port that is (or is not) a multiple of 7
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            local = probe.getsockname()[1]
            probe.close()
            if (local % 7 == 0) != held:
                continue
            try:
                reply, took = talk(port, local)
            except OSError:
                continue      # taken meanwhile: pick another
            print("a client from port %d (%s): %r after %.2f s"
                  % (local, "held a second" if held else "confirmed at once", reply, took))
            results.append(reply == b"Server: hello" and (took >= 0.9) == held)
            break
    return 0 if results == [True, True] else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        sys.exit(client(int(sys.argv[2]) if len(sys.argv) > 2 else 9501))
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else 9501)

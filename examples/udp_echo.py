"""A UDP server (packet event, sendto) with an extra TCP port of its own.

    python examples/udp_echo.py [port]          # UDP on the port (default 9501), TCP on the same number
    python examples/udp_echo.py client [port]   # the client (gswoole.Client, SOCK_UDP and SOCK_TCP)

UDP datagrams: "ping" -> "pong from worker #N", "ports" -> the two port
numbers, anything else comes back as it is. The TCP port is added with
server.listen() and has its own framing (one line per receive) and its own
receive callback: it answers each line in upper case.
"""
import sys

import gswoole


def on_packet(server, data, client_info):
    # client_info: {"address": "127.0.0.1", "port": 54321}; answer with sendto().
    if data == b"ping":
        reply = b"pong from worker #%d" % server.worker_id
    elif data == b"ports":
        reply = b"udp %d tcp %d" % (server.port, server.ports[1].port)
    else:
        reply = data
    server.sendto(client_info["address"], client_info["port"], reply)


def on_tcp_line(server, fd, reactor_id, line):
    server.send(fd, b"tcp: " + line.upper())


def serve(port):
    server = gswoole.Server("127.0.0.1", port, sock_type=gswoole.SOCK_UDP)
    server.set(worker_num=2)
    server.on("packet", on_packet)
    try:
        # TCP and UDP port numbers are separate: the same number is free for TCP.
        tcp = server.listen("127.0.0.1", server.port, gswoole.SOCK_TCP)
    except OSError:
        tcp = server.listen("127.0.0.1", 0, gswoole.SOCK_TCP)
    tcp.set(open_eof_split=True, package_eof=b"\n")    # framing for this port only
    tcp.on("receive", on_tcp_line)                     # this port's own callback
    server.on("start", lambda s: print(
        "udp_echo listening on 127.0.0.1:%d (udp), 127.0.0.1:%d (tcp) (master pid %d)"
        % (s.port, tcp.port, s.master_pid), flush=True))
    server.start()


# -- client -----------------------------------------------------------------

def run_client(port):
    udp = gswoole.Client(gswoole.SOCK_UDP)
    udp.set(timeout=2.0)

    # Unconnected: sendto() any address, recvfrom() says who answered.
    udp.sendto("127.0.0.1", port, b"hello")
    print("sendto hello   ->", udp.recvfrom())

    udp.sendto("127.0.0.1", port, b"ports")
    reply, _ = udp.recvfrom()
    print("sendto ports   ->", reply)
    tcp_port = int(reply.split()[-1])

    # Connected: send()/recv() with the default peer. Every worker reads the
    # shared socket and the kernel gives each datagram to one of them.
    udp.connect("127.0.0.1", port)
    workers = set()
    for _ in range(20):
        udp.send(b"ping")
        workers.add(udp.recv())
    print("20 pings       ->", sorted(workers))
    udp.close()

    # The TCP port: one line per receive, its own callback.
    tcp = gswoole.Client(gswoole.SOCK_TCP)
    tcp.set(open_eof_split=True, package_eof=b"\n", timeout=2.0)
    if not tcp.connect("127.0.0.1", tcp_port):
        print("tcp connect failed: [%d] %s" % (tcp.errCode, tcp.errMsg))
        return 1
    tcp.send(b"one\ntwo\n")
    print("tcp one, two   ->", tcp.recv(), tcp.recv())
    tcp.close()
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    port = int(args[-1]) if args and args[-1].isdigit() else 9501
    if args[:1] == ["client"]:
        sys.exit(run_client(port))
    serve(port)

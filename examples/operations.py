"""Operations: the stuck-worker watchdog and the Prometheus metrics page.

    python examples/operations.py [port]          # the server (default port 9501)
    python examples/operations.py client [port]   # the client

The server echoes lines; the line "spin" makes its worker spin in a CPU loop
(a bug the event loop cannot preempt). With timeout=2 the master notices
that the worker's loop stopped turning, writes the worker's Python stack to
the log (it names spin_forever), kills it and forks a replacement. The
metrics page (metrics_bind, answered by the master) counts it. See
docs/operations.md.
"""
import socket
import sys
import time

import gswoole


def spin_forever():
    while True:
        pass


def on_receive(server, fd, reactor_id, data):
    if data.strip() == b"spin":
        spin_forever()
    elif data.strip() == b"metrics-port":
        server.send(fd, b"%d\n" % server.metrics_port)
    else:
        server.send(fd, data)


def serve(port):
    server = gswoole.Server("127.0.0.1", port)
    server.set(worker_num=2, timeout=2, metrics_bind="127.0.0.1:0")
    server.on("receive", on_receive)
    server.on("start", lambda s: print("operations listening on 127.0.0.1:%d (metrics on "
                                       "127.0.0.1:%d, master pid %d)"
                                       % (s.port, s.metrics_port, s.master_pid), flush=True))
    server.start()


# -- client -----------------------------------------------------------------

def ask(port, line):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(line + b"\n")
        return sock.recv(100)


def scrape(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    return data.split(b"\r\n\r\n", 1)[1].decode()


def sample(page, prefix):
    return [line for line in page.splitlines() if line.startswith(prefix)]


def run_client(port):
    metrics_port = int(ask(port, b"metrics-port"))
    page = scrape(metrics_port)
    print("metrics page     ->", len(page.splitlines()), "lines, e.g.")
    for line in sample(page, "gswoole_workers") + sample(page, "gswoole_worker_rss_bytes"):
        print("                   ", line)
    spinner = socket.create_connection(("127.0.0.1", port), timeout=5)
    spinner.sendall(b"spin\n")
    started = time.monotonic()
    while not sample(scrape(metrics_port), 'gswoole_worker_exits_total{kind="worker",'
                                           'cause="timeout"}'):
        if time.monotonic() - started > 10:
            print("the watchdog did not act")
            return 1
        time.sleep(0.2)
    print("stuck worker     -> killed and replaced after %.1f s (timeout=2)"
          % (time.monotonic() - started))
    print("                   ", sample(scrape(metrics_port), "gswoole_worker_exits_total")[0])
    spinner.close()
    print("echo             ->", ask(port, b"still here").decode().strip())
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    port = int(args[-1]) if args and args[-1].isdigit() else 9501
    if args[:1] == ["client"]:
        sys.exit(run_client(port))
    serve(port)

"""One database / redis connection per worker process, never one shared.

    python examples/per_process.py [port]            # the server (default port 9501)
    python examples/per_process.py client [port]     # the demonstration client
    python examples/per_process.py [port] --shared   # the mistake: one connection made
                                                     # before start(), shared by the workers

So that it runs without a real redis, the example starts a tiny stand-in
service (``fake_kv``, a line protocol: "ASK token" -> "token") in a child
process. Two resources are set up the two recommended ways:

* ``kv``: ``gswoole.per_process(factory)``, a lazy handle that connects on
  first use in each process (and again in a forked child);
* ``server.db``: an SQLite connection opened in ``workerStart``.

Each request asks the service for a fresh token and checks that the answer is
its own. With ``--shared`` the service connection is opened in the master
before start(), so every worker inherits the same socket: their requests and
answers interleave on it, and workers read each other's answers.
"""
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import uuid

DB_PATH = os.path.join(tempfile.gettempdir(), "gswoole-per-process-%d.sqlite" % os.getuid())


# -- the stand-in service (a child process, plain threads) ---------------------

def fake_kv():
    import socketserver
    import time

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                time.sleep(0.002)           # a little latency, as over a network
                self.wfile.write(line.split()[-1] + b"\n")

    socketserver.ThreadingTCPServer.daemon_threads = True
    service = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    print(service.server_address[1], flush=True)
    service.serve_forever()


def start_fake_kv():
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "fake-kv"],
                            stdout=subprocess.PIPE)
    port = int(proc.stdout.readline())
    return proc, ("127.0.0.1", port)


# -- a minimal client for it, as a redis client would be ------------------------

class KVClient:
    def __init__(self, address):
        import gevent.lock
        import gevent.socket
        self.sock = gevent.socket.create_connection(address)   # cooperative socket
        self.file = self.sock.makefile("rwb")
        self.created_in = os.getpid()
        # Greenlets of one worker share the connection; one request at a time.
        # (redis-py and DB drivers use a connection pool for the same reason.)
        self.lock = gevent.lock.Semaphore()

    def ask(self, token):
        with self.lock:
            self.file.write(b"ASK " + token + b"\n")
            self.file.flush()
            return self.file.readline().strip()


# -- the server ---------------------------------------------------------------

def serve(port, shared):
    import gswoole

    fake_proc, kv_address = start_fake_kv()
    if shared:
        kv = KVClient(kv_address)                 # WRONG: made in the master, before fork
    else:
        kv = gswoole.per_process(lambda: KVClient(kv_address))   # right: one per process

    server = gswoole.Server("127.0.0.1", port)
    server.set(worker_num=2)

    def on_worker_start(server, worker_id):
        if not shared:
            # Connect now rather than on the first request. (Also works around
            # a current gswoole issue: per_process guards the first creation
            # with a thread lock, which deadlocks the worker when two greenlets
            # hit a factory that yields, such as a network connect.)
            kv()
        # Right too: made in each worker after the fork.
        server.db = sqlite3.connect(DB_PATH, timeout=5)
        server.db.execute("CREATE TABLE IF NOT EXISTS asked (pid INTEGER, token TEXT)")

    def on_receive(server, fd, reactor_id, data):
        for _ in range(data.count(b"\n")):
            token = uuid.uuid4().hex.encode()
            answer = kv.ask(token)
            ok = answer == token
            with server.db:
                server.db.execute("INSERT INTO asked VALUES (?, ?)", (os.getpid(), token))
            server.send(fd, "%s worker=%d pid=%d kv_connection_made_in_pid=%d\n"
                        % ("ok" if ok else "WRONG_ANSWER", server.worker_id, os.getpid(),
                           kv.created_in))

    def on_shutdown(server):
        fake_proc.terminate()

    server.on("workerStart", on_worker_start)
    server.on("receive", on_receive)
    server.on("shutdown", on_shutdown)
    server.on("start", lambda server: print(
        "per_process listening on 127.0.0.1:%d (master pid %d)%s"
        % (server.port, server.master_pid, " [--shared: expect WRONG_ANSWER]" if shared else ""),
        flush=True))
    server.start()


def client(port):
    results = []

    def one_connection():
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            f = conn.makefile("rb")
            for _ in range(50):
                conn.sendall(b"ask\n")
                results.append(f.readline().decode().strip())

    threads = [threading.Thread(target=one_connection) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wrong = sum(1 for r in results if r.startswith("WRONG"))
    made_in = {}
    for r in results:
        fields = dict(item.split("=") for item in r.split()[1:])
        made_in[fields["pid"]] = fields["kv_connection_made_in_pid"]
    for pid, origin in sorted(made_in.items()):
        print("worker pid %s uses a kv connection made in pid %s%s"
              % (pid, origin, "" if pid == origin else "  <- inherited through fork"))
    print("%d requests, %d got another process's answer" % (len(results), wrong))
    sys.exit(0 if wrong == 0 and len(results) == 400 else 1)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "fake-kv":
        fake_kv()
    elif args and args[0] == "client":
        client(int(args[1]) if len(args) > 1 else 9501)
    else:
        shared = "--shared" in args
        args = [a for a in args if a != "--shared"]
        serve(int(args[0]) if args else 9501, shared)

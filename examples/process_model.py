"""The master, its workers, their titles, and the signals that manage them.

    python examples/process_model.py [port]           # the server (default port 9501)
    python examples/process_model.py client [port]    # the demonstration client

Two workers, max_wait_time 2 s. Commands:

    info      "worker=ID pid=PID master=PID"

The client, which runs on the same machine, then drives the master with
signals the way an operator would with ``kill``:

* lists the processes and their titles (what ``ps`` shows);
* USR1 (the same as HUP): reload the workers one after another, while a
  connection to an old worker stays open; that worker keeps serving it until
  max_wait_time and only then closes it;
* TTIN / TTOU: one worker more / one fewer.

Stop the server with TERM or INT (graceful: workers finish their open
connections, up to max_wait_time) or QUIT (fast: sockets closed at once).
"""
import os
import signal
import socket
import sys
import time


def serve(port):
    import gswoole

    server = gswoole.Server("127.0.0.1", port)
    server.set(worker_num=2, max_wait_time=2.0)

    def on_receive(server, fd, reactor_id, data):
        server.send(fd, "worker=%d pid=%d master=%d\n"
                    % (server.worker_id, os.getpid(), server.master_pid))

    server.on("receive", on_receive)
    server.on("workerStart", lambda server, worker_id: print(
        "workerStart #%d pid %d" % (worker_id, os.getpid()), flush=True))
    server.on("workerStop", lambda server, worker_id: print(
        "workerStop  #%d pid %d" % (worker_id, os.getpid()), flush=True))
    server.on("shutdown", lambda server: print("shutdown", flush=True))
    server.on("start", lambda server: print(
        "process_model listening on 127.0.0.1:%d (master pid %d)"
        % (server.port, server.master_pid), flush=True))
    server.start()


def title(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read().replace(b"\0", b" ").decode().strip()


def workers_of(master):
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == master and fields[0] != "Z":
                pids.append(int(entry))
    return {pid: title(pid) for pid in sorted(pids)}


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit("timed out")


def show(master):
    print("  %d  %s" % (master, title(master)))
    for pid, name in workers_of(master).items():
        print("  %d  %s" % (pid, name))


def client(port):
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = conn.makefile("rb")

    def ask():
        conn.sendall(b"info\n")
        return dict(item.split("=") for item in f.readline().decode().split())

    info = ask()
    master = int(info["master"])
    print("processes:")
    show(master)
    ok = title(master) == "gswoole: master process"
    ok = ok and sorted(workers_of(master).values()) == ["gswoole: worker process #0",
                                                        "gswoole: worker process #1"]

    old = set(workers_of(master))
    print("\nkill -USR1 %d  (reload; our connection is on worker pid %s)" % (master, info["pid"]))
    os.kill(master, signal.SIGUSR1)
    # The other worker is replaced at once; ours waits for our connection.
    new = wait_for(lambda: len(set(workers_of(master)) - old) == 2 and workers_of(master))
    still = ask()
    print("  during the reload our connection is still served by pid %s" % still["pid"])
    ok = ok and still["pid"] == info["pid"]
    started = time.monotonic()
    closed = f.readline() == b""       # the old worker closes it at max_wait_time
    print("  then the old worker closed it after %.1f s (max_wait_time=2)"
          % (time.monotonic() - started))
    conn.close()
    wait_for(lambda: set(workers_of(master)).isdisjoint(old))
    print("after the reload:")
    show(master)
    ok = ok and closed

    print("\nkill -TTIN %d" % master)
    os.kill(master, signal.SIGTTIN)
    wait_for(lambda: len(workers_of(master)) == 3)
    show(master)
    print("kill -TTOU %d" % master)
    os.kill(master, signal.SIGTTOU)
    wait_for(lambda: len(workers_of(master)) == 2)
    show(master)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    args = sys.argv[1:]
    mode = args.pop(0) if args and not args[0].isdigit() else "server"
    port = int(args[0]) if args else 9501
    {"server": serve, "client": client}[mode](port)

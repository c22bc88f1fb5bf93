"""Callbacks that examples/callback_styles.py names by string
("handlers:log_worker_error", "handlers:Greeter.on_connect")."""
import os


def log_worker_error(server, worker_id, worker_pid, exit_code, signal):
    # Runs in the master when a worker dies abnormally; the master replaces it.
    print("workerError: worker #%d (pid %d) exit_code=%d signal=%d; it is being replaced"
          % (worker_id, worker_pid, exit_code, signal), flush=True)


class Greeter:
    greeting = b"welcome"

    # "module:Class.method" has no instance to bind to, so the method must be
    # a classmethod or staticmethod (like Swoole's "Class::method").
    @classmethod
    def on_connect(cls, server, fd, reactor_id):
        server.send(fd, b"%s, fd %d, worker pid %d\n" % (cls.greeting, fd, os.getpid()))

"""Exceptions and Swoole-numbered error codes.

Calls that Swoole makes return ``false`` (``send``, ``close``, ``taskwait``)
return False here too, and leave the reason in a per-process "last error"
that ``Server.get_last_error()`` reads. The numbers are Swoole's, so code and
habits ported from Swoole keep working.
"""

# Swoole's error numbers (swoole_error.h).
SESSION_CLOSED_BY_SERVER = 1003   # the server is closing this connection
SESSION_CLOSED = 1004             # the connection is closed (peer or server)
SESSION_NOT_EXIST = 1005          # no such fd
OUTPUT_BUFFER_OVERFLOW = 1009     # queued output would pass buffer_output_size
DATA_LENGTH_TOO_LARGE = 1203      # one send larger than buffer_output_size
TASK_DISPATCH_FAIL = 2002        # a task could not be queued (task_backend 'redis': Redis down)
TASK_TIMEOUT = 2003
WORKER_EXIT_TIMEOUT = 9101        # a stopping worker hit max_wait_time

MESSAGES = {
    0: "success",
    SESSION_CLOSED_BY_SERVER: "session is closing (closed by server)",
    SESSION_CLOSED: "session is closed",
    SESSION_NOT_EXIST: "session does not exist",
    OUTPUT_BUFFER_OVERFLOW: "output buffer overflow",
    DATA_LENGTH_TOO_LARGE: "data is larger than buffer_output_size",
    TASK_DISPATCH_FAIL: "task could not be dispatched",
    TASK_TIMEOUT: "task timed out",
    WORKER_EXIT_TIMEOUT: "worker exit timeout, connections forcibly closed",
}

_last_error = 0


def set_last_error(code):
    """Record ``code`` as this process's last error and return False,
    so failure paths read ``return set_last_error(errors.SESSION_CLOSED)``."""
    global _last_error
    _last_error = code
    return False


def get_last_error():
    return _last_error


def strerror(code):
    return MESSAGES.get(code, "unknown error %d" % code)


class GSwooleError(Exception):
    """Base class of every exception gswoole raises on purpose."""


class SettingError(GSwooleError, ValueError):
    """A setting is unknown, of the wrong type or out of range."""


class CallbackError(GSwooleError, TypeError):
    """``on()`` was given an unknown event or a callback it cannot call."""


class ServerStateError(GSwooleError, RuntimeError):
    """A method was called in a process or state where it cannot work
    (``send`` in the master, ``set`` after ``start``, ...)."""


class EventLoopError(GSwooleError, RuntimeError):
    """``Server(...)`` was created after this process started async I/O.

    Forking a running gevent loop into workers leaves each child with copies
    of watchers and greenlets that belong to the parent; Swoole refuses the
    same way ("eventLoop has already been created, unable to start")."""


class TaskError(GSwooleError):
    """A task failed in its task worker: the ``task`` callback raised, or the
    task worker died while running it. ``remote_traceback`` holds the text."""

    def __init__(self, message, remote_traceback=""):
        super().__init__(message)
        self.remote_traceback = remote_traceback

    def __str__(self):
        base = super().__str__()
        if self.remote_traceback:
            return "%s\n\nRemote traceback:\n%s" % (base, self.remote_traceback)
        return base


class ClusterError(GSwooleError, RuntimeError):
    """The cluster cannot be joined at start: Redis unreachable, redis-py
    missing, or this node's ``node_id`` already live in the cluster."""

"""Prometheus metrics answered by the master (``metrics_bind``).

How this works. The figures come from the shared process table (each
worker's slot: connections, requests, tasks, heartbeat, loop lag, RSS; the
totals of dead processes in the header) and from the master's own counts of
worker starts and exits by cause. The master answers the scrape itself, in
its poll loop, so the page comes back while every worker is busy or stuck.
Each scrape is one short HTTP/1.0 exchange on a non-blocking socket that
the master's loop reads when it is readable; a client gets a few seconds to
send its request line, and a handful may be open at once.

With prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR set in
the environment) the application's own metrics, written by every worker into
that directory, are read and added to the same page, and the master marks
each exited worker dead (``mark_process_dead``) so its live gauges go away.
prometheus_client is needed only for that (the `metrics` extra); the
server's own metrics are written here without it.
"""

import _socket   # the C socket: gevent's patched one would start a hub in the master
import logging
import os
import socket
import time

from .errors import ServerStateError

log = logging.getLogger("gswoole")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_CLIENTS = 8
REQUEST_TIMEOUT = 5.0
MAX_REQUEST = 8192
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Counters:
    """The master's own counts (the slots cannot hold what happened to dead processes)."""

    def __init__(self):
        self.starts = {}     # kind -> n
        self.exits = {}      # (kind, cause) -> n

    def started(self, kind):
        self.starts[kind] = self.starts.get(kind, 0) + 1

    def exited(self, kind, cause):
        self.exits[(kind, cause)] = self.exits.get((kind, cause), 0) + 1


def _labels(**labels):
    if not labels:
        return ""
    return "{%s}" % ",".join('%s="%s"' % (k, str(v).replace("\\", "\\\\").replace('"', '\\"'))
                              for k, v in labels.items())


class _Page:
    def __init__(self):
        self.lines = []

    def family(self, name, kind, doc, samples):
        """``samples``: [(labels dict, value)] or [(suffix, labels, value)]."""
        self.lines.append("# HELP %s %s" % (name, doc))
        self.lines.append("# TYPE %s %s" % (name, kind))
        for sample in samples:
            suffix, labels, value = sample if len(sample) == 3 else ("",) + tuple(sample)
            self.lines.append("%s%s%s %s" % (name, suffix, _labels(**labels), _number(value)))

    def text(self):
        return "\n".join(self.lines) + "\n"


def _number(value):
    if isinstance(value, float):
        return repr(value)
    return str(value)


def render(shared, worker_num, counters, now_ms):
    """The server's metrics in Prometheus text format (a str)."""
    slots = shared.live_slots()
    totals = shared.retired_totals()
    events = [s for s in slots if s["worker_id"] < worker_num]
    tasks = [s for s in slots if s["worker_id"] >= worker_num]

    def total(name, among):
        return totals[name] + sum(s[name] for s in among)

    def per_process(field, scale=1):
        return [({"worker": s["worker_id"], "pid": s["pid"]},
                 s[field] / scale if scale != 1 else s[field]) for s in slots]

    page = _Page()
    page.family("gswoole_workers", "gauge", "Live worker processes, draining ones included.",
                [({"kind": "worker"}, len(events)), ({"kind": "task_worker"}, len(tasks))])
    page.family("gswoole_connections", "gauge", "Open connections per event worker process.",
                [({"worker": s["worker_id"], "pid": s["pid"]}, s["connection_num"])
                 for s in events])
    page.family("gswoole_connections_accepted_total", "counter",
                "Connections accepted since the server started.",
                [({}, total("accept_count", events))])
    page.family("gswoole_connections_closed_total", "counter",
                "Connections closed since the server started.",
                [({}, total("close_count", events))])
    page.family("gswoole_requests_total", "counter",
                "Requests (receive, packet and HTTP request events) since the server started.",
                [({}, total("request_count", events))])
    page.family("gswoole_worker_starts_total", "counter", "Worker processes forked.",
                [({"kind": kind}, n) for kind, n in sorted(counters.starts.items())])
    page.family("gswoole_worker_exits_total", "counter",
                "Worker processes that exited, by cause (max_request, memory, reload, "
                "timeout, error, ...).",
                [({"kind": kind, "cause": cause}, n)
                 for (kind, cause), n in sorted(counters.exits.items())])
    sent = totals["tasks_sent"] + sum(s["tasks_sent"] for s in slots)
    taken = totals["tasks_taken"] + sum(s["tasks_taken"] for s in slots)
    running = sum(1 for s in tasks if s["task_src_pid"])
    page.family("gswoole_task_queue_depth", "gauge", "Tasks sent and not yet taken by a task worker.",
                [({}, max(0, sent - taken))])
    page.family("gswoole_tasks_running", "gauge", "Task workers inside a task now.",
                [({}, running)])
    page.family("gswoole_task_duration_seconds", "summary", "Time task callbacks ran.",
                [("_count", {}, max(0, taken - running)),
                 ("_sum", {}, total("task_time_us", tasks) / 1e6)])
    page.family("gswoole_event_loop_lag_seconds", "gauge",
                "How late the worker's last heartbeat timer fired.",
                per_process("loop_lag_us", 1e6))
    page.family("gswoole_heartbeat_age_seconds", "gauge",
                "Time since the worker's event loop last turned (the watchdog's timeout "
                "applies to this; task workers inside a task are exempt).",
                [({"worker": s["worker_id"], "pid": s["pid"]},
                  max(0, now_ms - s["heartbeat_ms"]) / 1000.0) for s in slots])
    page.family("gswoole_worker_rss_bytes", "gauge", "Resident memory of each worker process.",
                per_process("rss_bytes"))
    return page.text() + app_metrics()


# -- prometheus_client's multiprocess mode -----------------------------------

def multiprocess_enabled():
    return bool(os.environ.get(MULTIPROC_ENV))


def app_metrics():
    """The application's metrics from PROMETHEUS_MULTIPROC_DIR, or ''."""
    if not multiprocess_enabled():
        return ""
    try:
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess
    except ImportError:
        return ""   # warned at start
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry).decode("utf-8")


def forget_process(pid):
    """Master, after reaping a worker: drop its live gauges (multiprocess mode)."""
    if not multiprocess_enabled():
        return
    try:
        from prometheus_client import multiprocess
    except ImportError:
        return
    try:
        multiprocess.mark_process_dead(pid)
    except OSError as exc:
        log.warning("prometheus mark_process_dead(%d) failed: %s", pid, exc)


def check_multiprocess():
    if multiprocess_enabled():
        try:
            import prometheus_client   # noqa: F401
        except ImportError:
            log.warning("%s is set but prometheus_client is not installed "
                        "(pip install 'gswoole[metrics]'): the app's metrics are left out",
                        MULTIPROC_ENV)


# -- the endpoint ------------------------------------------------------------

def parse_address(value):
    """'host:port' or '[v6]:port' -> (family, host, port); raises ValueError."""
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
        family = socket.AF_INET6
    else:
        host, sep, port = value.rpartition(":")
        family = socket.AF_INET
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError("expected HOST:PORT, got %r" % value)
    return family, host or "0.0.0.0", int(port)


class MetricsEndpoint:
    """The listening socket and the scrapes in progress, for the master's loop."""

    def __init__(self, address, render_page):
        family, host, port = parse_address(address)
        self.render_page = render_page
        sock = _socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(16)
        except OSError as exc:
            sock.close()
            raise ServerStateError("metrics_bind %s: %s" % (address, exc)) from None
        sock.setblocking(False)
        self.sock = sock
        self.port = sock.getsockname()[1]
        self.clients = {}     # fd -> [socket, bytes so far, deadline]

    def describe(self):
        host, port = self.sock.getsockname()[:2]
        return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)

    def fds(self):
        return [self.sock.fileno()] + list(self.clients)

    def next_deadline(self):
        return min((c[2] for c in self.clients.values()), default=None)

    def on_readable(self, fds, now):
        for fd in fds:
            if fd == self.sock.fileno():
                self._accept(now)
            elif fd in self.clients:
                self._read(fd)
        for fd, client in list(self.clients.items()):
            if client[2] <= now:
                self._drop(fd)

    def _accept(self, now):
        while len(self.clients) < MAX_CLIENTS:
            try:
                fd, _ = self.sock._accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("metrics endpoint: accept failed: %s", exc)
                return
            conn = _socket.socket(fileno=fd)
            conn.setblocking(False)
            self.clients[conn.fileno()] = [conn, b"", now + REQUEST_TIMEOUT]

    def _read(self, fd):
        client = self.clients[fd]
        try:
            data = client[0].recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(fd)
            return
        client[1] += data
        if b"\r\n\r\n" in client[1] or b"\n\n" in client[1]:
            self._answer(fd, client[1])
        elif len(client[1]) > MAX_REQUEST:
            self._respond(fd, 431, "request too large\n")

    def _answer(self, fd, request):
        parts = request.split(b"\r\n", 1)[0].split()
        if len(parts) < 2 or parts[0] not in (b"GET", b"HEAD"):
            self._respond(fd, 405, "only GET\n")
            return
        path = parts[1].split(b"?", 1)[0]
        if path not in (b"/", b"/metrics"):
            self._respond(fd, 404, "the metrics are at /metrics\n")
            return
        try:
            body = self.render_page()
        except Exception:
            log.exception("metrics endpoint: rendering the page failed")
            self._respond(fd, 500, "rendering the metrics failed; see the server log\n")
            return
        self._respond(fd, 200, body, head=parts[0] == b"HEAD")

    def _respond(self, fd, status, body, head=False):
        sock = self.clients[fd][0]
        payload = body.encode("utf-8")
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 431:
                  "Request Header Fields Too Large", 500: "Internal Server Error"}[status]
        head_bytes = ("HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                      "Connection: close\r\n\r\n" % (status, reason, CONTENT_TYPE,
                                                     len(payload))).encode("latin-1")
        # A page is some kilobytes: the socket buffer takes it at once; a
        # reader that does not drain it costs the master at most a second.
        try:
            sock.settimeout(1.0)
            sock.sendall(head_bytes if head else head_bytes + payload)
        except OSError:
            pass
        self._drop(fd)

    def _drop(self, fd):
        client = self.clients.pop(fd, None)
        if client is not None:
            client[0].close()

    def close(self):
        for fd in list(self.clients):
            self._drop(fd)
        self.sock.close()


def now_ms():
    return int(time.monotonic() * 1000)

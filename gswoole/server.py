"""The user's facade: ``Server``, ``set``, ``on``, ``start``, ``send``, ``close``, ...

One ``Server`` object exists in every process of a server: the master builds
it, and each forked worker gets a copy on which the worker methods (``send``,
``close``, ...) are bound to that worker's reactor. Attributes a user puts on
it are therefore per process, like everything not in shared memory.
"""

import logging
import os
import signal
import sys
import time

from . import callbacks as _callbacks
from . import errors, settings, swoole_settings
from .errors import (CallbackError, ClusterError, EventLoopError, ServerStateError,
                     SettingError)
from .framing import make_splitter
from .logs import configure_logging
from .master import Arbiter, daemonize, remove_pid_file, write_pid_file
from .proctitle import set_title
from .shared import SharedState
from .sockets import SOCK_TCP, SSL, Listener, SockType
from .swoole_names import (ALIASES, BASE, MODES, PROCESS, PROCESS_AS_BASE, WORKER_BUSY,
                           WORKER_EXIT, WORKER_IDLE)
from .tls import build_server_context, files_stamp
from .timers import Timer
from .task_worker import run_task_worker
from .user_process import Process, run_user_process
from .worker import run_worker

log = logging.getLogger("gswoole")


def check_event_loop():
    """Raise EventLoopError if this process already runs async I/O."""
    live = []
    if len(Timer):
        live.append("%d gswoole timer(s)" % len(Timer))
    if "gevent" in sys.modules:
        from gevent._hub_local import get_hub_if_exists
        hub = get_hub_if_exists()
        if hub is not None and hub.loop.activecnt > 0:
            live.append("a gevent loop with %d active watcher(s) or pending greenlet(s)"
                        % hub.loop.activecnt)
    from .client import live_async_clients
    if live_async_clients():
        live.append("%d AsyncClient(s)" % live_async_clients())
    if live:
        raise EventLoopError(
            "cannot create a Server: this process already runs async I/O (%s). Forking a "
            "live event loop into the workers would break them. Create greenlets, timers "
            "and clients in the workerStart callback instead, which runs in each worker "
            "after the fork." % ", ".join(live))


def _packet_adapter(on_packet):
    def packet(server, fd, reactor_id, datagram):
        data, address, server_socket = datagram
        if isinstance(address, tuple):
            info = {"address": address[0], "port": address[1]}
        else:
            info = {"address": address or "", "port": 0}
        info["server_socket"] = server_socket   # sendto(..., server_socket) answers from it
        on_packet(server, data, info)
    return packet


# What a port may set for itself; everything else is server-wide.
PORT_SETTINGS = settings.names_in("port")
PORT_EVENTS = ("connect", "receive", "close", "packet")


class Port:
    """One listening address (Swoole's ``Server\\Port``): ``server.listen()``
    returns one; ``server.ports[0]`` is the address given to ``Server()``."""

    def __init__(self, listener):
        self._listener = listener
        self.host = listener.host
        self.port = listener.port
        self.sock_type = listener.sock_type
        self.setting = {}
        self._callbacks = {}

    def set(self, *args, **kwargs):
        """Framing and TLS for this port only (PORT_SETTINGS); validated at once."""
        values = dict(args[0]) if args else {}
        values.update(kwargs)
        for name in values:
            if name not in PORT_SETTINGS and name in settings.BY_NAME:
                raise SettingError("%r is a server-wide setting; a port can set only %s"
                                   % (name, ", ".join(PORT_SETTINGS)))
        self.setting.update(settings.validate_all(values))
        return True

    def on(self, event, callback):
        """This port's own connect/receive/close/packet callback."""
        event, callback = _callbacks.resolve(event, callback)
        if event not in PORT_EVENTS:
            raise CallbackError("a port takes only %s callbacks; %r is server-wide"
                                % ("/".join(PORT_EVENTS), event))
        self._callbacks[event] = callback
        return True

    def describe(self):
        return self._listener.describe()

    def __repr__(self):
        return "<Port %s>" % self.describe()


# Methods a worker binds to its reactor (controls.py), a user process to a
# call to the owning worker: they act on one connection of any worker.
_CONNECTION_CONTROLS = ("pause", "resume", "confirm", "protect", "bind", "sendwait",
                        "sendfile")


class Connections:
    """``server.connections``: the fds of every event worker's open
    connections. Each iteration or ``len()`` asks the workers afresh."""

    __slots__ = ("_server",)

    def __init__(self, server):
        self._server = server

    def __iter__(self):
        return iter(self._server.get_client_list())

    def __len__(self):
        return len(self._server.get_client_list())

    def __contains__(self, fd):
        return self._server.exist(fd)

    def __repr__(self):
        return "<connections of %r>" % (self._server,)


class Server:
    """A TCP, UDP or unix socket server with Swoole's callbacks.

    ``Server(host, port=0, mode=gswoole.BASE, sock_type=gswoole.SOCK_TCP)``,
    Swoole's signature. ``mode`` PROCESS runs as BASE (logged at start).
    A socket type given third (``Server(host, port, gswoole.SOCK_UDP)``, as
    earlier gswoole took it) is taken as the socket type: gswoole's socket
    type constants are their own type, so it cannot be mistaken for a mode."""

    def __init__(self, host, port=0, mode=BASE, sock_type=SOCK_TCP):
        if isinstance(mode, SockType):
            if sock_type is not SOCK_TCP:
                raise TypeError("Server() got two socket types: %r third (Swoole's place "
                                "for the mode) and sock_type=%r" % (mode, sock_type))
            mode, sock_type = BASE, mode
        if isinstance(mode, bool) or mode not in MODES:
            raise ValueError("mode must be gswoole.BASE (1) or gswoole.PROCESS (2), got %r"
                             % (mode,))
        check_event_loop()
        listener = Listener(host, port, sock_type)
        self.host = host
        self.port = listener.port
        self.sock_type = sock_type
        self.mode = BASE                 # what runs, whatever was asked
        self._asked_mode = MODES[mode]
        self.setting = settings.defaults()
        self.master_pid = 0
        self.worker_id = -1
        self.worker_pid = 0
        self.taskworker = False
        self._ports = [Port(listener)]
        self._callbacks = {}
        self._started = False
        self._worker = None
        self._task_worker = None
        self._user_process = None
        self._user_processes = []
        self._shared = None

    # -- configuration (master, before start) -------------------------

    def set(self, *args, **kwargs):
        """``set(worker_num=2)`` or ``set({"worker_num": 2})``. Validates at once."""
        if len(args) > 1 or (args and not isinstance(args[0], dict)):
            raise TypeError("set() takes one dict or keyword arguments")
        values = dict(args[0]) if args else {}
        values.update(kwargs)
        if self._started:
            raise ServerStateError("set() must be called before start()")
        self.setting.update(settings.validate_all(values))
        return True

    def on(self, event, callback):
        """Register ``callback`` for ``event``; rejects what it cannot call."""
        if self._started:
            raise ServerStateError("on() must be called before start()")
        event, callback = _callbacks.resolve(event, callback)
        self._callbacks[event] = callback
        return True

    def listen(self, host, port, sock_type=SOCK_TCP):
        """Add another address before start(); returns its ``Port``, which
        can carry its own framing (``port.set``) and callbacks (``port.on``)."""
        if self._started:
            raise ServerStateError("listen() must be called before start()")
        port_ = Port(Listener(host, port, sock_type))
        self._ports.append(port_)
        return port_

    def add_process(self, process):
        """Add a user process (``gswoole.Process(callback)``) before start():
        started with the workers, restarted when it dies, stopped at
        shutdown. Returns its index (0, 1, ...)."""
        if self._started:
            raise ServerStateError("add_process() must be called before start()")
        if not isinstance(process, Process):
            raise TypeError("add_process() takes a gswoole.Process, got %r" % (process,))
        if process in self._user_processes:
            raise ValueError("this Process was already added")
        process.index = len(self._user_processes)
        self._user_processes.append(process)
        return process.index

    @property
    def ports(self):
        return list(self._ports)

    @property
    def _listeners(self):
        return [p._listener for p in self._ports]

    def _check_startable(self):
        """Resolve each port's callbacks and framing (port values over the
        server's), failing clearly on what cannot work."""
        for port in self._ports:
            listener = port._listener
            callbacks = dict(self._callbacks)
            callbacks.update(port._callbacks)
            setting = dict(self.setting)
            setting.update(port.setting)
            listener.on_connect = callbacks.get("connect")
            listener.on_close = callbacks.get("close")
            if listener.is_stream:
                listener.on_receive = callbacks.get("receive")
                if listener.on_receive is None and self._requires_receive():
                    raise ServerStateError(
                        "start() needs a 'receive' callback for the stream port %s: "
                        "server.on('receive', fn(server, fd, reactor_id, data))"
                        % listener.describe())
                try:
                    listener.splitter_factory = make_splitter(setting)
                except ValueError as exc:
                    raise SettingError("port %s: %s" % (listener.describe(), exc)) from None
                if listener.is_ssl:
                    # Built here, in the master, so a bad certificate fails start().
                    listener.ssl_setting = setting
                    listener.ssl_stamp = files_stamp(setting)
                    listener.ssl_context = build_server_context(setting, listener.describe())
            else:
                packet = callbacks.get("packet")
                if packet is None:
                    raise ServerStateError(
                        "start() needs a 'packet' callback for the datagram port %s: "
                        "server.on('packet', fn(server, data, client_info))"
                        % listener.describe())
                listener.on_receive = _packet_adapter(packet)
            if listener.is_stream and setting["enable_delay_receive"] \
                    and listener.on_connect is None:
                raise ServerStateError(
                    "enable_delay_receive: the stream port %s reads a connection only "
                    "once server.confirm(fd) is called, so it needs a 'connect' callback "
                    "that calls it" % listener.describe())
        if self.setting["cluster_redis"] and not self.setting["cluster_secret"]:
            raise SettingError("cluster_redis needs cluster_secret: the key (the same on every "
                               "node) that signs every message crossing Redis, so that access "
                               "to Redis is not code execution on every node")
        if self.setting["task_backend"] == "redis" and not self.setting["cluster_redis"]:
            raise SettingError("task_backend='redis' needs cluster_redis: the tasks go to a "
                               "stream on the cluster's Redis (docs/cluster.md)")
        if self.setting["task_worker_num"] and "task" not in self._callbacks:
            raise ServerStateError("task_worker_num is %d but there is no 'task' callback: "
                                   "server.on('task', fn(server, task_id, src_worker_id, data))"
                                   % self.setting["task_worker_num"])

    def _requires_receive(self):
        return True

    # -- running (master) ----------------------------------------------

    def start(self):
        """Fork the workers and supervise them; returns after shutdown."""
        if self._started:
            raise ServerStateError("start() was already called")
        check_event_loop()   # again: something may have started since Server(...)
        self._check_startable()
        self._started = True
        setting = self.setting
        configure_logging(setting)
        self._log_swoole_differences()
        node = self._join_cluster() if setting["cluster_redis"] else 0
        if setting["daemonize"]:
            daemonize(setting["log_file"])
        self.master_pid = os.getpid()
        pid_file = setting["pid_file"]
        if pid_file:
            write_pid_file(pid_file, self.master_pid)
        for listener in self._listeners:
            listener.activate(setting["backlog"], setting["enable_reuse_port"])
        self._shared = SharedState(node)
        set_title(setting["process_name"], "master process")
        log.info("gswoole master %d listening on %s with %d worker(s)", self.master_pid,
                 ", ".join(l.describe() for l in self._listeners), setting["worker_num"])
        first_user = setting["worker_num"] + setting["task_worker_num"]
        for process in self._user_processes:
            process.worker_id = first_user + process.index
        Timer._in_master = True
        try:
            # inside the try: a metrics_bind that cannot bind still removes the pid file
            arbiter = Arbiter(self, setting, self._callbacks, self._listeners, self._shared,
                              run_worker, run_task_worker, run_user_process,
                              self._user_processes)
            arbiter.run()
        finally:
            Timer._in_master = False
            for listener in self._listeners:
                listener.close()
            if pid_file:
                remove_pid_file(pid_file, self.master_pid)
        return True

    def _join_cluster(self):
        """Register this node (ClusterError if Redis does not answer) and
        add the node's cluster process, after the user's own processes."""
        try:
            from .cluster.link import register_node
        except ImportError as exc:
            raise ClusterError("cluster_redis needs redis-py (pip install "
                               "'gswoole[cluster]'): %s" % exc) from None
        from .cluster.node import run_cluster_process
        node = register_node(self.setting)
        process = Process(run_cluster_process)
        process.index = len(self._user_processes)
        self._user_processes.append(process)
        log.info("cluster node %d (%s) on %s", node, self.setting["node_id"] or "unnamed",
                 self.setting["cluster_redis"])
        return node

    def _log_swoole_differences(self):
        """One line for each thing asked the Swoole way that does nothing here."""
        if self._asked_mode == PROCESS:
            log.info(PROCESS_AS_BASE)
        seen = set()
        for where, setting in [("", self.setting)] + [
                (" (port %s)" % port.describe(), port.setting) for port in self._ports]:
            for name, value in setting.items():
                if name in settings.BY_NAME or (name, where) in seen:
                    continue
                seen.add((name, where))
                reason = swoole_settings.check(name, value)
                log.info("setting %s=%r%s does nothing in gswoole: %s", name, value, where,
                         reason)

    # -- inside a worker -------------------------------------------------

    def _attach_worker(self, worker):
        """Called in the forked worker: bind the worker methods to its reactor.

        Binding them as instance attributes keeps ``server.send`` one call
        deep on the hot path."""
        reactor = worker.reactor
        mailbox = worker.mailbox
        self._worker = worker
        self.worker_id = worker.worker_id
        self.worker_pid = os.getpid()
        self.send = reactor.send
        self.close = reactor.close
        self.exist = reactor.exist
        self.get_client_info = reactor.get_client_info
        self.session = reactor.session
        self.sendto = reactor.sendto
        self.task = mailbox.task
        self.taskwait = mailbox.taskwait
        self.taskwait_multi = mailbox.taskwait_multi
        self.send_message = mailbox.send_message
        for name in _CONNECTION_CONTROLS:
            setattr(self, name, getattr(reactor, name))

    def _attach_task_worker(self, task_worker):
        self._task_worker = task_worker
        self.worker_id = task_worker.worker_id
        self.worker_pid = os.getpid()
        self.taskworker = True
        self.finish = task_worker.finish
        self.send_message = task_worker.send_message

    def _attach_user_process(self, runner):
        self._user_process = runner
        self.worker_id = runner.worker_id
        self.worker_pid = os.getpid()
        self.send = runner.send
        self.close = runner.close
        self.exist = runner.exist
        self.get_client_info = runner.get_client_info
        self.send_message = runner.mailbox.send_message
        for name in _CONNECTION_CONTROLS:
            setattr(self, name, runner.routed(name))

    def _not_in_worker(self, name):
        raise ServerStateError("%s() works only inside a worker process (in a callback)"
                               % name)

    def send(self, fd, data):
        """Queue ``data`` for connection ``fd``; True, or False with get_last_error()."""
        self._not_in_worker("send")

    def close(self, fd, reset=False):
        """Close ``fd`` after flushing what was queued (reset=True: RST at once)."""
        self._not_in_worker("close")

    def exist(self, fd):
        self._not_in_worker("exist")

    def get_client_info(self, fd):
        self._not_in_worker("get_client_info")

    def get_client_list(self, start_fd=0, page_size=0, cluster=False):
        """Open fds above ``start_fd`` across all event workers, ascending;
        ``page_size`` 0 means all. ``cluster=True`` (with cluster_redis, in
        an event worker): across every live node of the cluster too."""
        fds = []
        for found in self._ask_event_workers("get_client_list", "get_client_list",
                                             start_fd, 0):
            if isinstance(found, list):
                fds.extend(found)
        if cluster and self._worker is not None and self._worker.reactor.cluster is not None:
            fds.extend(self._worker.reactor.cluster.client_list(start_fd))
        fds.sort()
        return fds[:page_size] if page_size else fds

    @property
    def connections(self):
        """Every open connection of every event worker, by fd: iterate it,
        ``len()`` it, ask ``fd in server.connections`` (Swoole's iterator)."""
        return Connections(self)

    def heartbeat(self, if_close_connection=True):
        """Find the connections of every event worker idle longer than
        heartbeat_idle_time (default twice heartbeat_check_interval), not
        protected, and close them unless ``if_close_connection`` is False.
        Returns their fds (ascending), or False when no idle time is set."""
        if not (self.setting["heartbeat_idle_time"] or self.setting["heartbeat_check_interval"]):
            return False
        fds = []
        for found in self._ask_event_workers("heartbeat", "heartbeat",
                                             bool(if_close_connection)):
            if isinstance(found, list):
                fds.extend(found)
        return sorted(fds)

    def _ask_event_workers(self, name, op, *args):
        """``op(*args)`` run by this worker's reactor and by every other live
        event worker's (a call to each); their answers in a list."""
        if self._worker is None and self._user_process is None:
            self._not_in_worker(name)
        answers = []
        mailbox = self._user_process.mailbox if self._worker is None else self._worker.mailbox
        if self._worker is not None:
            answers.append(getattr(self._worker.reactor, op)(*args))
        for slot in self._live_slots():
            if slot["worker_id"] < self.setting["worker_num"] and slot["pid"] != self.worker_pid:
                answers.append(mailbox.call(slot["pid"], slot["worker_id"], op, *args))
        return answers

    # -- connection controls (bound to the reactor in a worker) ---------------

    def pause(self, fd):
        """Stop reading ``fd`` (any worker's) until ``resume(fd)``; False if
        already paused. Data read before it may still arrive."""
        self._not_in_worker("pause")

    def resume(self, fd):
        """Read ``fd`` again after ``pause(fd)``; False if it was not paused."""
        self._not_in_worker("resume")

    def confirm(self, fd):
        """With ``enable_delay_receive``: start reading ``fd``; False if it
        is read already."""
        self._not_in_worker("confirm")

    def protect(self, fd, is_protected=True):
        """Keep ``fd`` from being closed by the heartbeat (False: allow it again)."""
        self._not_in_worker("protect")

    def bind(self, fd, uid):
        """Bind a non-zero int ``uid`` to ``fd`` (get_client_info shows it);
        False if it has one. Swoole's dispatch_mode 5 routing does not apply:
        a connection stays with the worker that accepted it."""
        self._not_in_worker("bind")

    def sendwait(self, fd, data):
        """Send ``data`` and wait (this greenlet only) until it is all written."""
        self._not_in_worker("sendwait")

    def sendfile(self, fd, filename, offset=0, length=0):
        """Send a file's bytes (``length`` 0: to its end) zero-copy, after
        what is queued; waits (this greenlet only) until written."""
        self._not_in_worker("sendfile")

    # -- processes -----------------------------------------------------------

    def get_worker_id(self):
        """This process's worker id (-1 in the master)."""
        return self.worker_id

    def get_master_pid(self):
        """The master's pid (0 before start)."""
        return self.master_pid

    def get_manager_pid(self):
        """gswoole has no manager process: the master forks and supervises
        the workers itself, so this is the master's pid."""
        return self.master_pid

    @property
    def manager_pid(self):
        return self.master_pid

    @property
    def type(self):
        """The main port's socket type (Swoole's ``$server->type``)."""
        return self.sock_type

    @property
    def ssl(self):
        """Whether the main port is TLS (Swoole's ``$server->ssl``)."""
        return bool(self.sock_type & SSL)

    def get_worker_pid(self, worker_id=-1):
        """The pid of worker ``worker_id`` (-1: this process); False if there
        is no such worker. A worker draining for a reload counts only when
        it has no replacement yet."""
        if worker_id in (-1, self.worker_id) and self.worker_id >= 0:
            return self.worker_pid
        if worker_id == -1:
            return False
        slots = [s for s in self._live_slots() if s["worker_id"] == worker_id]
        slots.sort(key=lambda s: s["retiring"])
        return slots[0]["pid"] if slots else False

    def get_worker_status(self, worker_id=-1):
        """gswoole.WORKER_BUSY (1), WORKER_IDLE (2) or WORKER_EXIT (3, a worker
        draining for a reload that has been replaced) of event or task worker
        ``worker_id`` (-1: this one); False for anything else. An event
        worker is busy while a connection's callbacks run or are queued, a
        task worker while it runs a task."""
        worker_num = self.setting["worker_num"]
        first_user = worker_num + self.setting["task_worker_num"]
        if worker_id in (-1, self.worker_id):
            if self._worker is not None:
                return self._worker.reactor.worker_status()
            if self._task_worker is not None:
                return WORKER_BUSY if self._task_worker.current is not None else WORKER_IDLE
            if worker_id == -1:
                return False
        if isinstance(worker_id, bool) or not isinstance(worker_id, int) \
                or not 0 <= worker_id < first_user:
            return False
        slots = [s for s in self._live_slots() if s["worker_id"] == worker_id]
        live = [s for s in slots if not s["retiring"]]
        if not live:
            return WORKER_EXIT if slots else False
        slot = live[0]
        if worker_id >= worker_num:
            return WORKER_BUSY if slot["task_src_pid"] else WORKER_IDLE
        mailbox = self._worker.mailbox if self._worker is not None else \
            self._user_process.mailbox if self._user_process is not None else None
        if mailbox is None:
            raise ServerStateError("get_worker_status() of an event worker can be asked in "
                                   "an event worker or a user process")
        return mailbox.call(slot["pid"], worker_id, "worker_status")

    # -- callbacks and deferred work -----------------------------------------

    def get_callback(self, event):
        """The callback registered for ``event`` (any spelling), or None."""
        return self._callbacks.get(_callbacks.canonical_event(event))

    @staticmethod
    def defer(callback, *args):
        """Run ``callback(*args)`` after the current loop iteration, in a
        greenlet of its own (Swoole's ``defer``); not in the master."""
        Timer.defer(callback, *args)

    # -- tasks and messages ------------------------------------------------

    def task(self, data, dst_worker_id=-1, callback=None):
        """Queue ``data`` for a task worker; returns the task id, or False.
        In a task worker it returns False (tasks do not nest)."""
        if self.taskworker:
            return False
        self._not_in_worker("task")

    def taskwait(self, data, timeout=0.5, dst_worker_id=-1):
        """Run a task and wait (this greenlet only) for its result; False on timeout."""
        if self.taskworker:
            return False
        self._not_in_worker("taskwait")

    def taskwait_multi(self, tasks, timeout=0.5):
        if self.taskworker:
            return False
        self._not_in_worker("taskwait_multi")

    def finish(self, data):
        """In a task worker: send ``data`` as the current task's result."""
        raise ServerStateError("finish() works only in a task worker, inside the task callback")

    def send_message(self, message, dst_worker_id):
        """Deliver ``message`` to worker ``dst_worker_id``'s pipeMessage callback."""
        self._not_in_worker("send_message")

    def session(self, fd):
        """A dict for per-connection state, freed after the close callback."""
        self._not_in_worker("session")

    def sendto(self, address, port, data, server_socket=-1):
        """Send a datagram from the server's UDP / unix datagram socket."""
        self._not_in_worker("sendto")

    @staticmethod
    def get_last_error():
        return errors.get_last_error()

    # -- timers ----------------------------------------------------------

    @staticmethod
    def tick(ms, callback, *args):
        return Timer.tick(ms, callback, *args)

    @staticmethod
    def after(ms, callback, *args):
        return Timer.after(ms, callback, *args)

    @staticmethod
    def clear_timer(timer_id):
        return Timer.clear(timer_id)

    # -- process control -------------------------------------------------

    def _master(self):
        if not self.master_pid:
            raise ServerStateError("the server is not running")
        return self.master_pid

    def reload(self, task_only=False):
        """Restart the workers one after another (task workers only with task_only)."""
        os.kill(self._master(), signal.SIGUSR2 if task_only else signal.SIGUSR1)
        return True

    def shutdown(self):
        """Graceful shutdown of the whole server."""
        os.kill(self._master(), signal.SIGTERM)
        return True

    def stop(self, worker_id=-1, wait_reactor=False):
        """Stop a worker gracefully (this one by default); the master replaces it."""
        if worker_id in (-1, self.worker_id):
            if self._worker is None:
                self._not_in_worker("stop")
            self._worker.retire()
            return True
        for slot in self._live_slots():
            if slot["worker_id"] == worker_id and not slot["retiring"]:
                os.kill(slot["pid"], signal.SIGUSR1)
                return True
        return False

    def _live_slots(self):
        if self._shared is None:
            raise ServerStateError("this needs a running server")
        if self._worker is not None:
            self._worker.publish()
        return self._shared.live_slots()

    def stats(self):
        """Server-wide figures (other workers' are at most a second old)."""
        slots = self._live_slots()
        worker_num = self.setting["worker_num"]
        first_user = worker_num + self.setting["task_worker_num"]
        events = [s for s in slots if s["worker_id"] < worker_num]
        tasks = [s for s in slots if worker_num <= s["worker_id"] < first_user]
        users = [s for s in slots if s["worker_id"] >= first_user]
        sent, taken = self._shared.retired_task_totals()
        sent += sum(s["tasks_sent"] for s in slots)
        taken += sum(s["tasks_taken"] for s in slots)
        tasking = sum(1 for s in tasks if s["task_src_pid"])
        result = {
            "start_time": min((s["start_time"] for s in slots), default=int(time.time())),
            "connection_num": sum(s["connection_num"] for s in events),
            "accept_count": sum(s["accept_count"] for s in events),
            "close_count": sum(s["close_count"] for s in events),
            "request_count": sum(s["request_count"] for s in events),
            "worker_num": sum(1 for s in events if not s["retiring"]),
            "task_worker_num": sum(1 for s in tasks if not s["retiring"]),
            "user_process_num": len(users),
            "tasking_num": tasking,
            "task_queue_num": max(0, sent - taken),
            "workers": {s["worker_id"]: {"pid": s["pid"], "request_count": s["request_count"],
                                         "connection_num": s["connection_num"],
                                         "task_count": s["tasks_taken"]}
                        for s in slots if not s["retiring"]},
        }
        if self._worker is not None:
            result["worker_request_count"] = self._worker.reactor.request_count
        return result


class _Alias:
    """An alias attribute: whatever the instance's (or class's) ``name`` is
    at the moment of the lookup, so in a worker it is the method bound there."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __get__(self, obj, owner=None):
        return getattr(owner if obj is None else obj, self.name)

    def __repr__(self):
        return "<alias of %s>" % self.name


for _alias, _name in ALIASES.items():
    setattr(Server, _alias, _Alias(_name))
del _alias, _name

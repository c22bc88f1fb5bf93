"""The master process (arbiter): forks, supervises, signals, reloads.

The loop is gunicorn's: signal handlers only queue the signal (a self-pipe
wakes the loop), and each turn of the loop handles queued signals, reads the
workers' control messages, reaps dead children and makes the worker set match
what it should be (respawns, reloads, kill deadlines).

The master never runs a gevent loop. It uses the unpatched ``select``,
``fork`` and ``waitpid`` (taken from ``posix`` and gevent's saved originals),
so it behaves the same whether or not the user monkey-patched the process.

Workers talk back over one pipe that all of them share; each message is a
single short line ("R <pid>" ready, "X <pid>" retiring and wants a
replacement), written atomically since it is under PIPE_BUF.
"""

import errno
import logging
import os
import posix
import signal
import sys
import time
from select import POLLIN

from . import logs, metrics, proctitle
from .channels import Channels
from .usercode import call_user
from .watchdog import DUMP_GRACE, RETIRE_REASONS, STACK_SIGNAL, Watchdog

log = logging.getLogger("gswoole")

HANDLED_SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGHUP",
                   "SIGTTIN", "SIGTTOU", "SIGCHLD", "SIGRTMIN")
KILL_MARGIN = 5.0          # past max_wait_time (+ close callbacks) before SIGKILL
READY_TIMEOUT = 30.0       # how long a reload waits for a replacement to come up
QUICK_DEATH = 2.0          # a worker that dies younger than this counts toward back-off
MAX_BACKOFF = 5.0


def _unpatched(module, name, default):
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched(module):
        return monkey.get_original(module, name)
    return default


class WorkerContext:
    """What a forked worker needs from the master."""

    def __init__(self, setting, callbacks, listeners, shared, master_pid, ctl_write, slot,
                 channels):
        self.slot = slot                 # this process's index in the shared process table
        self.channels = channels         # socketpairs to the other workers (channels.py)
        self.setting = setting
        self.callbacks = callbacks
        self.listeners = listeners
        self.shared = shared
        self.master_pid = master_pid
        self._ctl_write = ctl_write

    def tell_master(self, kind):
        try:
            os.write(self._ctl_write, b"%s %d\n" % (kind, os.getpid()))
        except OSError:
            pass  # master gone; the parent check will notice


class _Proc:
    __slots__ = ("worker_id", "pid", "slot", "started", "retiring", "kill_at", "cause")

    def __init__(self, worker_id, pid, slot):
        self.worker_id = worker_id
        self.pid = pid
        self.slot = slot
        self.started = time.monotonic()
        self.retiring = False
        self.kill_at = None
        self.cause = None   # why the master ends it: reload, timeout, shutdown, ...


def _signal_name(signum):
    """SIGKILL, or "signal 35" for one the signal module has no name for
    (the real-time signals)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return "signal %d" % signum


class Arbiter:
    def __init__(self, server, setting, callbacks, listeners, shared, run_worker,
                 run_task_worker, run_user_process=None, user_processes=()):
        self.server = server
        self.run_user_process = run_user_process
        self.user_processes = list(user_processes)   # ids follow the task workers
        self.run_task_worker = run_task_worker
        self.setting = setting
        self.callbacks = callbacks
        self.listeners = listeners
        self.shared = shared
        self.run_worker = run_worker   # (server, worker_id, context) in the child
        self.worker_num = setting["worker_num"]
        self.procs = {}                # pid -> _Proc, including retiring ones
        self.slots = {}                # worker_id -> pid of the current worker
        self.respawn_at = {}           # worker_id -> monotonic time
        self.quick_deaths = {}
        self.reload_queue = []
        self.replacing = {}            # new pid -> (old pid, give-up time): old serves till new is up
        self.reload_step = None        # new pid of the reload step in progress
        self.stopping = False
        self.stop_deadline = None
        self.ready = set()             # pids that said "R" (accepting), until they exit
        self.start_pending = True      # the start event waits for every event worker
        self.signal_queue = []
        self.watchdog = Watchdog(setting["timeout"])
        self.counters = metrics.Counters()
        self.metrics = None
        if setting["metrics_bind"]:
            self.metrics = metrics.MetricsEndpoint(setting["metrics_bind"], self.render_metrics)
            server.metrics_port = self.metrics.port   # known before fork, so in every worker
            log.info("metrics at http://%s/metrics", self.metrics.describe())
            metrics.check_multiprocess()
        import select
        self._poll = _unpatched("select", "poll", select.poll)
        # gevent's patched signal.signal keeps SIGCHLD for its own child
        # watchers and installs no real handler, so the master would learn of
        # a dead worker only at its next timeout.
        self._set_handler = _unpatched("signal", "signal", signal.signal)

    # -- main loop -------------------------------------------------------

    def run(self):
        self.pid = os.getpid()
        self._setup_pipes_and_signals()
        self.channels = Channels(self.worker_num, self.setting["task_worker_num"])
        try:
            for worker_id in range(self._total_workers()):
                self.spawn(worker_id)
            while not (self.stopping and not self.procs):
                self._wait()
                self._handle_signals()
                self._read_control()
                self._reap()
                self._manage()
            self._call("shutdown", self.server)
        finally:
            self._restore_signals()
            self.channels.close()
            if self.metrics:
                self.metrics.close()

    def render_metrics(self):
        return metrics.render(self.shared, self.worker_num, self.counters, metrics.now_ms())

    def _setup_pipes_and_signals(self):
        self.sig_r, self.sig_w = os.pipe()
        self.ctl_r, self.ctl_w = os.pipe()
        for fd in (self.sig_r, self.sig_w, self.ctl_r):
            os.set_blocking(fd, False)
            os.set_inheritable(fd, False)
        self.old_wakeup = signal.set_wakeup_fd(self.sig_w)
        self.old_handlers = {}
        self._signums = [getattr(signal, name) for name in HANDLED_SIGNALS]
        for name in HANDLED_SIGNALS:
            signum = getattr(signal, name)
            self.old_handlers[signum] = self._set_handler(signum, self._on_signal)

    def _restore_signals(self):
        for signum, handler in self.old_handlers.items():
            self._set_handler(signum, handler if handler is not None else signal.SIG_DFL)
        signal.set_wakeup_fd(self.old_wakeup)
        for fd in (self.sig_r, self.sig_w, self.ctl_r, self.ctl_w):
            os.close(fd)

    def _on_signal(self, signum, frame):
        if signum != signal.SIGCHLD:
            self.signal_queue.append(signum)

    def _wait(self):
        """Sleep until a signal, a control message or the next deadline.
        poll, not select: the master's descriptors can be past 1023 (many
        workers' socketpairs, or an application that opened many files)."""
        timeout = self._next_deadline() - time.monotonic()
        poller = self._poll()
        for fd in [self.sig_r, self.ctl_r] + (self.metrics.fds() if self.metrics else []):
            poller.register(fd, POLLIN)
        try:
            ready = [fd for fd, _ in poller.poll(max(0.0, min(timeout, 1.0)) * 1000)]
        except InterruptedError:
            ready = []
        if self.metrics:
            self.metrics.on_readable(ready, time.monotonic())
        try:
            while os.read(self.sig_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _next_deadline(self):
        times = list(self.respawn_at.values())
        times += [p.kill_at for p in self.procs.values() if p.kill_at is not None]
        times += [give_up for _, give_up in self.replacing.values()]
        if self.watchdog.timeout_ms:
            times.append(self.watchdog.next_check)
        if self.metrics and self.metrics.clients:
            times.append(self.metrics.next_deadline())
        return min(times) if times else time.monotonic() + 1.0

    def _call(self, event, *args):
        callback = self.callbacks.get(event)
        if callback is not None:
            call_user("%s callback" % event, callback, *args)

    # -- signals ---------------------------------------------------------

    def _handle_signals(self):
        while self.signal_queue:
            signum = self.signal_queue.pop(0)
            name = signal.Signals(signum).name.lower()
            getattr(self, "handle_" + name[3:])()

    def handle_term(self):
        if self.stopping:
            return
        log.info("master %d: graceful shutdown", self.pid)
        self.stop(graceful=True)

    def handle_int(self):
        if self.stopping:
            log.info("master %d: second interrupt, fast shutdown", self.pid)
            self.stop(graceful=False)
        else:
            self.handle_term()

    def handle_quit(self):
        log.info("master %d: fast shutdown", self.pid)
        self.stop(graceful=False)

    def handle_usr1(self):
        # User processes are not reloaded (as in Swoole): they only restart
        # when they die.
        self.reload([w for w in self.slots if w < self._first_user_id()])

    handle_hup = handle_usr1

    def handle_usr2(self):
        self.reload([w for w in self.slots if self.worker_num <= w < self._first_user_id()])

    def _renumbering(self, what):
        if self.setting["task_worker_num"] or self.user_processes:
            log.warning("%s ignored: it would renumber the task workers and user processes",
                        what)
            return True
        return False

    def handle_rtmin(self):
        """Reopen log files (logrotate's postrotate), here and in every worker."""
        logs.reopen_log_files()
        for pid in list(self.procs):
            self._signal(pid, signal.SIGRTMIN)
        log.info("log files reopened")

    def handle_ttin(self):
        if self.stopping or self._renumbering("TTIN"):
            return
        self.worker_num += 1
        log.info("TTIN: worker_num is now %d", self.worker_num)
        self.channels.add_worker(self.worker_num - 1)
        self.spawn(self.worker_num - 1)

    def handle_ttou(self):
        if self.stopping or self.worker_num <= 1 or self._renumbering("TTOU"):
            return
        self.worker_num -= 1
        log.info("TTOU: worker_num is now %d", self.worker_num)
        pid = self.slots.pop(self.worker_num, None)
        self.respawn_at.pop(self.worker_num, None)
        if pid is not None:
            self.procs[pid].cause = "scale_down"
            self._retire(pid, signal.SIGTERM)

    # -- actions ---------------------------------------------------------

    def stop(self, graceful):
        self.stopping = True
        self.reload_queue = []
        self.reload_step = None
        self.replacing.clear()
        self.respawn_at.clear()
        self.slots.clear()
        sig = signal.SIGTERM if graceful else signal.SIGQUIT
        wait = self.setting["max_wait_time"] + KILL_MARGIN if graceful else 2.0
        for pid in list(self.procs):
            self._signal(pid, sig)
            proc = self.procs.get(pid)
            if proc is not None:
                proc.cause = proc.cause or "shutdown"
                proc.kill_at = min(proc.kill_at or float("inf"), time.monotonic() + wait)

    def reload(self, worker_ids):
        if self.stopping:
            return
        log.info("reloading workers %s one after another", sorted(worker_ids))
        self.reload_queue.extend(w for w in sorted(worker_ids) if w not in self.reload_queue)

    def spawn(self, worker_id):
        self.respawn_at.pop(worker_id, None)
        slot = self.shared.alloc_slot(worker_id, int(time.time()))
        context = WorkerContext(self.setting, self.callbacks, self.listeners, self.shared,
                                self.pid, self.ctl_w, slot, self.channels)
        # Signals stay blocked across the fork: a TERM that reaches the child
        # before it has its own handlers would otherwise run the master's
        # handler there and be lost. The child unblocks once it is ready.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, self._signums)
        try:
            pid = posix.fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            self.shared.free_slot(slot)
            log.error("cannot fork worker #%d: %s; trying again in %.0f s", worker_id, exc,
                      MAX_BACKOFF)
            self.respawn_at[worker_id] = time.monotonic() + MAX_BACKOFF
            return None
        if pid == 0:
            self._become_worker(worker_id, context)   # never returns
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self.shared.set(slot, "pid", pid)
        self.counters.started(self._kind(worker_id))
        self.procs[pid] = _Proc(worker_id, pid, slot)
        self.slots[worker_id] = pid
        return pid

    def _become_worker(self, worker_id, context):
        code = 70
        try:
            for fd in (self.sig_r, self.sig_w, self.ctl_r):
                os.close(fd)
            if self.metrics:
                self.metrics.close()
            from .worker import reset_signals_after_fork
            reset_signals_after_fork()
            first_user = self._first_user_id()
            if worker_id >= first_user:
                process = self.user_processes[worker_id - first_user]
                kind, number = "user process", process.index

                def run(server, worker_id, context):
                    self.run_user_process(server, worker_id, context, process)
            elif worker_id >= self.worker_num:
                kind, number, run = "task worker", worker_id, self.run_task_worker
            else:
                kind, number, run = "worker", worker_id, self.run_worker
            logs.set_process_role(kind, number)
            proctitle.set_title(self.setting["process_name"], "%s #%d" % (
                kind if kind == "user process" else kind + " process", number))
            proctitle.drop_privileges(self.setting["user"], self.setting["group"])
            run(self.server, worker_id, context)
        except BaseException:
            log.exception("worker #%d failed to boot", worker_id)
        finally:
            os._exit(code)

    def _retire(self, pid, sig):
        proc = self.procs.get(pid)
        if proc is not None:
            self._mark_retiring(proc)
            self._signal(pid, sig)

    def _mark_retiring(self, proc):
        """The process drains and exits on its own; kill it only if it overstays."""
        proc.retiring = True
        proc.kill_at = time.monotonic() + self.setting["max_wait_time"] + KILL_MARGIN

    def _signal(self, pid, sig):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    # -- control pipe ----------------------------------------------------

    def _read_control(self):
        try:
            data = os.read(self.ctl_r, 65536)
        except BlockingIOError:
            return
        for line in data.splitlines():
            kind, _, pid = line.partition(b" ")
            try:
                pid = int(pid)
            except ValueError:
                continue
            if kind == b"R":
                self.ready.add(pid)
                self._replacement_ready(pid)
            elif kind == b"X":
                self._on_worker_retiring(pid)

    def _on_worker_retiring(self, pid):
        """A worker asks to retire (max_request, stop()): it keeps serving
        until its replacement is up, then gets TERM."""
        proc = self.procs.get(pid)
        if proc is None or proc.retiring or self.stopping:
            return
        if self.slots.get(proc.worker_id) == pid:
            reason = self.shared.get(proc.slot, "retire_reason")
            proc.cause = RETIRE_REASONS[reason] if 0 < reason < len(RETIRE_REASONS) else "stop"
            self._replace(proc.worker_id)

    def _replace(self, worker_id):
        """Fork a new worker for ``worker_id``; the old one keeps serving (and
        accepting) until the new one says it is ready. Returns the new pid."""
        old = self.slots[worker_id]
        new = self.spawn(worker_id)
        if new is None:   # fork failed: the old worker simply stays
            self.slots[worker_id] = old
            self.respawn_at.pop(worker_id, None)
            return None
        self.procs[old].retiring = True
        self.replacing[new] = (old, time.monotonic() + READY_TIMEOUT)
        return new

    def _replacement_ready(self, new):
        entry = self.replacing.pop(new, None)
        if entry is not None:
            self._retire(entry[0], signal.SIGTERM)
        if new == self.reload_step:
            self._end_reload_step()

    def _replacement_failed(self, new, worker_id):
        """The replacement died before it was ready: the old worker stays."""
        old, _ = self.replacing.pop(new)
        proc = self.procs.get(old)
        if proc is not None and not self.stopping:
            log.error("replacement of worker #%d died before it was ready; keeping pid %d",
                      worker_id, old)
            proc.retiring = False
            proc.cause = None
            self.slots[worker_id] = old
            self.respawn_at.pop(worker_id, None)
        if new == self.reload_step:
            self._end_reload_step()

    # -- reaping and managing -------------------------------------------

    def _reap(self):
        while True:
            try:
                pid, status = posix.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
            if pid == 0:
                return
            proc = self.procs.pop(pid, None)
            self.ready.discard(pid)
            if proc is None:
                continue
            self._on_exit(proc, status)

    def _on_exit(self, proc, status):
        code = os.waitstatus_to_exitcode(status)
        exit_code, signum = (code, 0) if code >= 0 else (0, -code)
        worker_id = proc.worker_id
        slot = self.shared.read_slot(proc.slot)
        self.shared.free_slot(proc.slot)
        how = "was killed by %s" % _signal_name(signum) if signum \
            else "exited with code %d" % exit_code
        if proc.cause == "timeout":
            cause = "timeout"
        else:
            cause = "error" if exit_code or signum else (proc.cause or "exit")
        self.counters.exited(self._kind(worker_id), cause)
        metrics.forget_process(proc.pid)
        if slot["task_src_pid"]:
            self._fail_task(slot, worker_id, how)   # even a clean exit (QUIT) mid-task
        is_user = worker_id >= self._first_user_id()
        if is_user:
            level = logging.ERROR if exit_code or signum else logging.INFO
            log.log(level, "user process #%d (pid %d) %s", worker_id - self._first_user_id(),
                    proc.pid, how)
        elif exit_code or signum:
            log.error("worker #%d (pid %d) %s", worker_id, proc.pid, how)
            self._call("workererror", self.server, worker_id, proc.pid, exit_code, signum)
        child_exit = getattr(self.server, "_child_exit_hook", None)   # gunicorn's hook (cli)
        if child_exit is not None:
            call_user("the child_exit hook", child_exit, worker_id, proc.pid,
                      worker_id >= self.worker_num, exit_code, signum)
        if proc.pid in self.replacing:
            self.slots.pop(worker_id, None)
            self._replacement_failed(proc.pid, worker_id)
            return
        if self.slots.get(worker_id) != proc.pid:
            return  # a retired or removed worker: its replacement is already there
        del self.slots[worker_id]
        if self.stopping:
            return
        lived = time.monotonic() - proc.started
        # A user process that returns at once would otherwise be forked in a
        # tight loop: its quick exits count even when clean.
        if lived < QUICK_DEATH and (exit_code or signum or is_user):
            deaths = self.quick_deaths.get(worker_id, 0) + 1
            self.quick_deaths[worker_id] = deaths
            delay = min(0.1 * 2 ** (deaths - 2), MAX_BACKOFF) if deaths > 1 else 0.0
        else:
            self.quick_deaths.pop(worker_id, None)
            delay = 0.0
        if delay:
            log.warning("%s #%d keeps dying at start; respawning in %.1f s",
                        "user process" if is_user else "worker", worker_id, delay)
        self.respawn_at[worker_id] = time.monotonic() + delay

    def _fail_task(self, slot, worker_id, how):
        """A task worker died mid-task: tell the sender now, not at its timeout."""
        from . import ipc
        message = "task worker #%d %s while running task %d" % (worker_id, how, slot["task_id"])
        pair = self.channels.worker_inboxes.get(slot["task_src_worker"])
        if pair is None:
            return
        datagram, memfd = ipc.encode(ipc.ERROR, worker_id, self.pid, slot["task_id"],
                                     (message, ""), slot["task_src_pid"],
                                     slot["task_src_worker"])
        ipc.send_blocking(pair[0], datagram, memfd, timeout=0.5, poll_fn=self._poll)

    def _manage(self):
        now = time.monotonic()
        for worker_id, when in list(self.respawn_at.items()):
            if when <= now and not self.stopping:
                if worker_id < self._total_workers():
                    self.spawn(worker_id)
                else:
                    del self.respawn_at[worker_id]
        for proc in list(self.procs.values()):
            if proc.kill_at is not None and proc.kill_at <= now:
                if proc.cause != "timeout":
                    log.error("worker #%d (pid %d) did not exit in time; killing it",
                              proc.worker_id, proc.pid)
                self._signal(proc.pid, signal.SIGKILL)
                proc.kill_at = None
        self._kill_stuck(now)
        for new, (old, give_up) in list(self.replacing.items()):
            if give_up <= now:
                log.warning("replacement pid %d not ready after %.0f s; stopping pid %d anyway",
                            new, READY_TIMEOUT, old)
                self._replacement_ready(new)
        if self.reload_queue and self.reload_step is None and not self.stopping:
            self._start_reload_step()
        if self.start_pending and not self.stopping and all(
                self.slots.get(w) in self.ready for w in range(self.worker_num)):
            # Like trio's task_status.started(): "started" once every event
            # worker has run workerStart and accepts, not merely forked.
            self.start_pending = False
            self._call("start", self.server)

    def _kill_stuck(self, now):
        """The watchdog (``timeout``): a worker whose event loop has not turned
        for that long gets its stack dumped (faulthandler, in the worker) and,
        DUMP_GRACE later, SIGKILL; its exit is a workerError and it is
        replaced as any dead worker is."""
        # User processes have no heartbeat (their code may block on purpose,
        # as in Swoole): the watchdog looks at workers and task workers only.
        first_user = self._first_user_id()
        watched = [proc for proc in self.procs.values() if proc.worker_id < first_user]
        for proc, idle in self.watchdog.stuck(watched, self.shared, now):
            log.error("worker #%d (pid %d): event loop stuck for %.1f s (timeout %g s); "
                      "its Python stack follows in its log; killing it", proc.worker_id,
                      proc.pid, idle, self.setting["timeout"])
            proc.cause = "timeout"
            self._signal(proc.pid, STACK_SIGNAL)
            proc.kill_at = now + DUMP_GRACE

    def _kind(self, worker_id):
        return "task_worker" if worker_id >= self.worker_num else "worker"

    def _total_workers(self):
        return self._first_user_id() + len(self.user_processes)

    def _first_user_id(self):
        return self.worker_num + self.setting["task_worker_num"]

    def _start_reload_step(self):
        while self.reload_queue:
            worker_id = self.reload_queue.pop(0)
            old = self.slots.get(worker_id)
            if old is None or self.procs[old].retiring:
                continue
            self.procs[old].cause = "reload"
            self.reload_step = self._replace(worker_id)
            if self.reload_step is not None:
                return

    def _end_reload_step(self):
        self.reload_step = None
        if not self.reload_queue:
            log.info("reload finished")


def write_pid_file(path, pid):
    tmp = "%s.%d.tmp" % (path, pid)
    with open(tmp, "w") as f:
        f.write("%d\n" % pid)
    os.replace(tmp, path)


def remove_pid_file(path, pid):
    try:
        with open(path) as f:
            if f.read().strip() != str(pid):
                return  # another master owns it now
        os.unlink(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            log.warning("cannot remove pid file %s: %s", path, exc)


def daemonize(log_file):
    """Detach: fork twice, new session, stdio to /dev/null (or the log file;
    "-", stderr, is /dev/null once detached)."""
    if posix.fork():
        os._exit(0)
    os.setsid()
    if posix.fork():
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    out = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if log_file not in (None, "-") else null
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    for fd in {null, out}:
        if fd > 2:
            os.close(fd)

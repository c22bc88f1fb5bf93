"""Per-process resources and monkey patching.

A database or redis connection opened before the fork would be shared by
every worker: their bytes interleave on one socket and answers go to the
wrong process. ``per_process(factory)`` hands each process its own, made on
first use and made again in a forked child.
"""

import os


def pid_alive(pid):
    """False once process ``pid`` has exited (a zombie counts as exited:
    it runs nothing, its parent just has not reaped it yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


class per_process:
    """A lazy handle: ``handle()`` (or any attribute of it) gives this
    process's resource, creating it with ``factory()`` on first use in each
    process."""

    def __init__(self, factory):
        if not callable(factory):
            raise TypeError("per_process() needs a callable factory, got %r" % (factory,))
        self._factory = factory
        self._pid = None
        self._value = None
        self._lock = None
        self._lock_pid = None

    def __call__(self):
        pid = os.getpid()
        if self._pid != pid:
            # A greenlet lock, made per process: a factory that waits on I/O
            # (any network connect) lets other greenlets run, and they must
            # wait for it rather than block the hub (a threading.Lock would)
            # or create a second resource.
            if self._lock_pid != pid:
                from gevent.lock import RLock
                self._lock = RLock()
                self._lock_pid = pid
            with self._lock:
                if self._pid != pid:
                    # A copy inherited from the parent is dropped unclosed on
                    # purpose: closing it would close the parent's connection.
                    self._value = self._factory()
                    self._pid = pid
        return self._value

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self(), name)

    @property
    def created(self):
        """True if this process already made its resource."""
        return self._pid == os.getpid()

    def __repr__(self):
        state = "created" if self.created else "not created in this process"
        return "<per_process %r (%s)>" % (self._factory, state)


def patch_all(**kwargs):
    """gevent monkey patching, once. Returns True if it patched now, False if
    the process was already patched. ``gswoole-serve`` calls it before it
    imports the user's module; importing gswoole patches nothing."""
    from gevent import monkey
    if monkey.is_module_patched("socket"):
        return False
    monkey.patch_all(**kwargs)
    return True

"""``Atomic`` and ``Lock``: counters and locks shared by a server's processes
(Swoole\\Atomic, Swoole\\Lock).

Both are made before ``server.start()`` and inherited through fork; each
owns one small shared segment (shm.py).

* ``Atomic``: a 64-bit signed word. ``add``/``sub``/``cmpset`` are CPU
  atomic instructions (or, on the fallback, a few microseconds under an
  fcntl lock that the kernel drops if its holder dies). ``wait``/``wakeup``
  are Swoole's: the value is used as a 0/1 flag; ``wakeup`` turns 0 into 1
  and wakes waiters, one ``wait`` turns that 1 back into 0 and returns True.
* ``Lock``: an fcntl record lock on the segment's file. It belongs to the
  process, and the kernel releases it when the process dies, however it dies:
  a SIGKILLed holder never leaves the others waiting. Inside a process, the
  greenlets (fcntl locks do not exclude each other within one process) queue
  on a gevent lock first. A waiter sleeps on a doorbell (shm.Doorbell) that
  ``unlock`` rings, and looks again every 0.1 s in case the holder died
  without ringing. Waiting never blocks the other greenlets of a worker.
"""

import fcntl
import math
import os

from . import shm

COUNT_AT = 8        # the doorbell's waiter count, after the value word


def _check_timeout(timeout, name):
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or math.isnan(timeout) or timeout < 0:
        raise ValueError("%s: timeout must be a number of seconds >= 0 (or None), got %r"
                         % (name, timeout))
    return float(timeout)


def _check_int(value, what):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("%s must be an int, got %r" % (what, value))
    if not -(1 << 63) <= value < (1 << 63):
        raise ValueError("%s does not fit in 64 bits: %d" % (what, value))
    return value


class Atomic:
    """A 64-bit signed counter shared by every process of a server::

        requests = gswoole.Atomic()
        requests.add()              # -> the new value
    """

    def __init__(self, value=0):
        _check_int(value, "Atomic value")
        self._segment = shm.Segment(4096, "gswoole-atomic")
        self._words = shm.make_words(self._segment)
        self._words.store(0, value)
        self._bell = shm.Doorbell(self._words, COUNT_AT)

    def add(self, value=1):
        """Add and return the new value (wraps at 64 bits, like C)."""
        return self._words.add(0, _check_int(value, "add()"))

    def sub(self, value=1):
        """Subtract and return the new value."""
        return self._words.add(0, -_check_int(value, "sub()"))

    def get(self):
        return self._words.load(0)

    def set(self, value):
        self._words.store(0, _check_int(value, "set()"))
        return True

    def cmpset(self, cmp_value, new_value):
        """Set ``new_value`` if the value is ``cmp_value``; True if it did."""
        return self._words.cas(0, _check_int(cmp_value, "cmpset()"),
                               _check_int(new_value, "cmpset()"))

    def wait(self, timeout=1.0):
        """Wait until the value is 1 (a ``wakeup``), take it back to 0 and
        return True; False after ``timeout`` seconds. Only the calling
        greenlet waits. Use the value as a 0/1 flag with wait/wakeup."""
        timeout = _check_timeout(timeout, "Atomic.wait()")
        if timeout is None:
            raise ValueError("Atomic.wait() needs a timeout; call it in a loop to wait longer")
        return self._bell.wait(timeout, lambda: self._words.cas(0, 1, 0))

    def wakeup(self, n=1):
        """Set the value from 0 to 1 and wake up to ``n`` waiters (one of
        them takes it). True; nothing happens if the value is not 0."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError("wakeup(n): n must be an int >= 1, got %r" % (n,))
        if self._words.cas(0, 0, 1):
            self._bell.ring(n)
        return True

    def __repr__(self):
        return "<gswoole.Atomic %d>" % self.get()


class _ProcessLocal:
    """The gevent locks of one process (made again after a fork)."""

    def __init__(self):
        from gevent.event import Event
        from gevent.lock import Semaphore
        self.pid = os.getpid()
        self.gate = Semaphore(1)      # writers (or the mutex) hold it while locked
        self.readers = 0              # greenlets of this process holding a read lock
        self.no_readers = Event()
        self.no_readers.set()
        self.writing = False


class Lock:
    """A lock shared by every process of a server, released by the kernel
    if its holder dies::

        lock = gswoole.Lock()                   # Lock.MUTEX
        with lock:
            ...
        rw = gswoole.Lock(gswoole.Lock.RWLOCK)
        rw.lock_read(); ...; rw.unlock()
    """

    RWLOCK = 1          # Swoole's numbers
    MUTEX = 3

    def __init__(self, type=MUTEX):
        if type not in (self.MUTEX, self.RWLOCK):
            raise ValueError("Lock type must be Lock.MUTEX or Lock.RWLOCK, got %r (Swoole's "
                             "FILELOCK, SEM and SPINLOCK are not provided: MUTEX does their "
                             "job and survives a dead holder)" % (type,))
        self.type = type
        self._segment = shm.Segment(4096, "gswoole-lock")
        self._words = shm.make_words(self._segment)
        self._bell = shm.Doorbell(self._words, COUNT_AT)
        self._local = None

    def _here(self):
        local = self._local
        if local is None or local.pid != os.getpid():
            local = self._local = _ProcessLocal()
        return local

    # -- the record lock (between processes) ---------------------------

    def _try_record(self, shared):
        try:
            fcntl.lockf(self._segment.fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
                        | fcntl.LOCK_NB, 1, 0)
            return True
        except OSError as exc:
            if exc.errno in (11, 13):   # EAGAIN, EACCES: held by another process
                return False
            raise

    def _take_record(self, shared, deadline):
        if self._try_record(shared):
            return True
        remaining = None if deadline is None else deadline - shm.monotonic()
        while remaining is None or remaining > 0:
            slice_ = 3600.0 if remaining is None else remaining
            if self._bell.wait(slice_, lambda: self._try_record(shared)):
                return True
            remaining = None if deadline is None else deadline - shm.monotonic()
        return False

    def _drop_record(self):
        fcntl.lockf(self._segment.fd, fcntl.LOCK_UN, 1, 0)
        self._bell.ring(1 << 16)   # readers may all go in; a writer retries

    # -- public ----------------------------------------------------------

    def lock(self, timeout=None):
        """Take the lock (exclusive). Waits up to ``timeout`` seconds (None:
        as long as it takes, i.e. until a live holder unlocks, since a dead
        one's lock is released by the kernel); True, or False on timeout."""
        timeout = _check_timeout(timeout, "Lock.lock()")
        deadline = None if timeout is None else shm.monotonic() + timeout
        local = self._here()
        if not local.gate.acquire(timeout=timeout):
            return False
        try:
            if not local.no_readers.wait(self._left(deadline)):
                local.gate.release()
                return False
            if not self._take_record(False, deadline):
                local.gate.release()
                return False
        except BaseException:
            local.gate.release()
            raise
        local.writing = True
        return True

    def lockwait(self, timeout=1.0):
        """Swoole's name: ``lock(timeout)``."""
        return self.lock(timeout if timeout is not None else 1.0)

    def trylock(self):
        """Take the lock if it is free now; True if taken."""
        local = self._here()
        if local.readers or not local.gate.acquire(blocking=False):
            return False
        if not self._try_record(False):
            local.gate.release()
            return False
        local.writing = True
        return True

    def lock_read(self, timeout=None):
        """Take a shared (read) lock: RWLOCK only. Several readers, in any
        processes, hold it together; a writer waits for all of them."""
        self._need_rw("lock_read")
        timeout = _check_timeout(timeout, "Lock.lock_read()")
        deadline = None if timeout is None else shm.monotonic() + timeout
        local = self._here()
        if not local.gate.acquire(timeout=timeout):
            return False
        try:
            if not local.readers and not self._take_record(True, deadline):
                return False
            local.readers += 1
            local.no_readers.clear()
            return True
        finally:
            local.gate.release()

    def trylock_read(self):
        self._need_rw("trylock_read")
        local = self._here()
        if not local.gate.acquire(blocking=False):
            return False
        try:
            if not local.readers and not self._try_record(True):
                return False
            local.readers += 1
            local.no_readers.clear()
            return True
        finally:
            local.gate.release()

    def unlock(self):
        """Release what this process holds (the exclusive lock, or one read
        lock). False if it holds nothing."""
        local = self._here()
        if local.writing:
            local.writing = False
            self._drop_record()
            local.gate.release()
            return True
        if local.readers:
            local.readers -= 1
            if not local.readers:
                self._drop_record()
                local.no_readers.set()
            return True
        return False

    def _need_rw(self, name):
        if self.type != self.RWLOCK:
            raise TypeError("%s() needs a Lock(Lock.RWLOCK)" % name)

    @staticmethod
    def _left(deadline):
        return None if deadline is None else max(0.0, deadline - shm.monotonic())

    def __enter__(self):
        self.lock()
        return self

    def __exit__(self, *exc):
        self.unlock()

    def __repr__(self):
        return "<gswoole.Lock %s>" % ("RWLOCK" if self.type == self.RWLOCK else "MUTEX")

"""Shared-memory building blocks for Table, Atomic and Lock.

How this works:

* A ``Segment`` is a memory file (memfd) mapped MAP_SHARED. Made before the
  master forks, every worker, task worker and user process inherits the same
  pages, and the file descriptor that fcntl record locks need.
* Words: 64-bit cells in a segment with ``load``, ``store``, ``add`` and
  ``cas``. ``CpuWords`` does them with the CPU's atomic instructions, called
  through ctypes in libatomic (gcc's runtime, the ``libatomic1`` package): no
  lock, so nothing can be left held by a process that dies. ``LockedWords``
  is the fallback (no libatomic, or a CPU other than x86-64): each operation
  holds an fcntl record lock on the word's own 8 bytes of the file, which the
  kernel drops when its holder dies.
* ``SeqLocks`` guard a Table's hash buckets. A lock word holds a sequence
  number in its high half and, while locked, the holder's pid in its low
  half. A writer takes it with one compare-and-swap and releases it with one
  store that bumps the sequence. Readers take no lock: they read the word,
  the data, and the word again, and retry if it changed or was locked (a
  seqlock), so they never see a half-written row. A waiter that finds the
  holder's pid dead (SIGKILL in the middle of a write) takes the lock over,
  so no lock stays held. This relies on x86-64's ordering of plain loads and
  stores, which is why ``CpuWords`` is used only there.
* ``RecordLocks`` are the fallback for SeqLocks: readers and writers both
  take an fcntl record lock on the bucket's word.
* A ``Doorbell`` lets a waiter in one process sleep until another process
  rings: a pipe made before the fork, plus a count of waiters in shared
  memory so that ringing costs nothing when nobody waits. Waiting is
  cooperative under gevent (only the waiting greenlet sleeps) and always
  has a timeout; waits are cut into short slices so that a condition changed
  without a ring (a lock released by the kernel because its holder died) is
  still noticed.
"""

import ctypes
import errno
import fcntl
import logging
import mmap
import os
import platform
import struct
import sys
import time
import weakref

from .process import pid_alive

log = logging.getLogger("gswoole")

WORD = struct.Struct("q")          # native: one 8-byte load/store, never byte by byte
PID_MASK = 0xFFFFFFFF
SEQ_MASK = 0x7FFFFFFF              # keeps a lock word a positive int64
LOCK_TIMEOUT = 5.0                 # a live process holding a row lock this long is stuck
RING_SLICE = 0.1                   # longest a doorbell waiter sleeps before looking again
FORCE_FALLBACK_ENV = "GSWOOLE_SHM_ATOMICS"   # "fcntl": use the lock-based fallback

_pid = os.getpid()
monotonic = time.monotonic


def _after_fork():
    global _pid
    _pid = os.getpid()
    for words in list(_LOCAL_LOCKED):
        words._reset_local_lock()


_LOCAL_LOCKED = weakref.WeakSet()
os.register_at_fork(after_in_child=_after_fork)


def _original(module, name):
    """The unpatched ``module.name`` (gevent may have monkey-patched it)."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched(module):
        return monkey.get_original(module, name)
    return getattr(__import__(module), name)


class Segment:
    """``size`` bytes of shared memory (zero-filled) and the file behind them."""

    def __init__(self, size, name="gswoole-shm"):
        try:
            self.fd = os.memfd_create(name, os.MFD_CLOEXEC)
        except (AttributeError, OSError):
            import tempfile
            handle = tempfile.TemporaryFile(prefix=name + "-")
            self.fd = os.dup(handle.fileno())
            handle.close()
        try:
            os.ftruncate(self.fd, size)
            self.map = mmap.mmap(self.fd, size, mmap.MAP_SHARED)
        except BaseException:
            os.close(self.fd)
            raise
        self.size = size


# -- words ------------------------------------------------------------------

_LIBATOMIC = []


def _libatomic():
    """libatomic's (compare_exchange_8, add_fetch_8), or None where CpuWords
    cannot be used. They are called without ``argtypes``: ctypes' argument
    conversion would double the cost of a lock; every argument passed is a
    ctypes object of the right type, or a small int (the memory orders)."""
    if not _LIBATOMIC:
        found = None
        if _x86_64():
            try:
                lib = ctypes.CDLL("libatomic.so.1")
            except OSError:
                lib = None
            if lib is not None:
                cas = lib.__atomic_compare_exchange_8
                cas.restype = ctypes.c_bool
                add = lib.__atomic_add_fetch_8
                add.restype = ctypes.c_int64
                found = (cas, add)
        _LIBATOMIC.append(found)
    return _LIBATOMIC[0]


def _x86_64():
    # The seqlock relies on x86-64's ordering of plain loads and stores.
    return platform.machine().lower() in ("x86_64", "amd64")


def _compiled():
    """The optional C helper gswoole._atomic (setup.py builds it when a C
    compiler is there), or None."""
    if not _x86_64():
        return None
    try:
        from . import _atomic
    except ImportError:
        return None
    return _atomic


def atomics_via():
    """How shared words get CPU atomics: "c" (the compiled helper), "ctypes"
    (libatomic through ctypes), or None (the fcntl fallback is used).
    GSWOOLE_SHM_ATOMICS=fcntl or =ctypes forces one of the slower ways."""
    forced = os.environ.get(FORCE_FALLBACK_ENV)
    if forced == "fcntl":
        return None
    if forced != "ctypes" and _compiled() is not None:
        return "c"
    return "ctypes" if _libatomic() is not None else None


def cpu_atomics_available():
    """True when shared words use CPU atomics (else the fcntl fallback)."""
    return atomics_via() is not None


_SEQ_CST = 5


class _Scratch:
    """Per-thread ctypes arguments for one call (threads must not share them)."""

    __slots__ = ("address", "expected", "expected_at", "value")

    def __init__(self):
        self.address = ctypes.c_void_p()
        self.expected = ctypes.c_int64()
        self.expected_at = ctypes.c_void_p(ctypes.addressof(self.expected))
        self.value = ctypes.c_int64()


_thread_local = _original("_thread", "_local")()


def _scratch():
    try:
        return _thread_local.scratch
    except AttributeError:
        scratch = _thread_local.scratch = _Scratch()
        return scratch


def _ctypes_atomics():
    """(cas(address, expected, new), add(address, delta)) over libatomic,
    with the compiled helper's signature."""
    lib_cas, lib_add = _libatomic()

    def cas(address, expected, new):
        try:
            scratch = _thread_local.scratch
        except AttributeError:
            scratch = _scratch()
        scratch.address.value = address
        scratch.expected.value = expected
        scratch.value.value = new
        return lib_cas(scratch.address, scratch.expected_at, scratch.value, _SEQ_CST, _SEQ_CST)

    def add(address, delta):
        scratch = _scratch()
        scratch.address.value = address
        scratch.value.value = delta
        return lib_add(scratch.address, scratch.value, _SEQ_CST)

    return cas, add


class CpuWords:
    """Lock-free 64-bit words of a segment (x86-64; the compiled helper or
    libatomic). ``cas_at`` and ``add_at`` take raw addresses: ``base`` plus
    an offset inside this segment."""

    kind = "cpu"

    def __init__(self, segment, via):
        self._map = segment.map
        self._view = memoryview(segment.map).cast("q")   # native: one load/store per word
        self._anchor = ctypes.c_char.from_buffer(segment.map)   # pins the mapping
        self.base = ctypes.addressof(self._anchor)
        self.via = via
        if via == "c":
            helper = _compiled()
            self.cas_at, self.add_at = helper.cas, helper.add
        else:
            self.cas_at, self.add_at = _ctypes_atomics()

    def load(self, offset):
        return self._view[offset >> 3]

    def store(self, offset, value):
        self._view[offset >> 3] = value

    def add(self, offset, delta):
        """Add ``delta`` (wrapping at 64 bits); returns the new value."""
        return self.add_at(self.base + offset, delta)

    def cas(self, offset, old, new):
        """Set the word to ``new`` if it is ``old``; True if it did."""
        return self.cas_at(self.base + offset, old, new)


def _wrap64(value):
    return (value + (1 << 63)) % (1 << 64) - (1 << 63)


class LockedWords:
    """The fallback: each operation holds an fcntl lock on the word's bytes
    (and a process-local lock, since fcntl locks do not exclude threads)."""

    kind = "fcntl"

    def __init__(self, segment):
        self._map = segment.map
        self._fd = segment.fd
        self._reset_local_lock()
        _LOCAL_LOCKED.add(self)

    def _reset_local_lock(self):
        self._local = _original("_thread", "RLock")()

    def lock(self, offset, shared=False):
        self._local.acquire()
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX, 8, offset)
        except BaseException:
            self._local.release()
            raise

    def unlock(self, offset):
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 8, offset)
        finally:
            self._local.release()

    def load(self, offset):
        self.lock(offset, shared=True)
        try:
            return WORD.unpack_from(self._map, offset)[0]
        finally:
            self.unlock(offset)

    def store(self, offset, value):
        self.lock(offset)
        try:
            WORD.pack_into(self._map, offset, value)
        finally:
            self.unlock(offset)

    def add(self, offset, delta):
        self.lock(offset)
        try:
            value = _wrap64(WORD.unpack_from(self._map, offset)[0] + delta)
            WORD.pack_into(self._map, offset, value)
            return value
        finally:
            self.unlock(offset)

    def cas(self, offset, old, new):
        self.lock(offset)
        try:
            if WORD.unpack_from(self._map, offset)[0] != old:
                return False
            WORD.pack_into(self._map, offset, new)
            return True
        finally:
            self.unlock(offset)


def make_words(segment):
    via = atomics_via()
    return CpuWords(segment, via) if via else LockedWords(segment)


# -- bucket locks ------------------------------------------------------------

def _pause(spins):
    """Back off while another process holds a bucket lock (for microseconds,
    normally). In a process with a gevent hub only this greenlet waits."""
    delay = 0 if spins < 256 else 0.0002
    hub = _running_hub()
    if hub is not None:
        from greenlet import getcurrent
        if getcurrent() is not hub:
            import gevent
            gevent.sleep(delay)
            return
    time.sleep(delay)


class SeqLocks:
    """Bucket locks over CpuWords: CAS to write, seqlock reads (see top)."""

    kind = "seqlock"

    def __init__(self, words):
        self.words = words
        self._view = words._view
        self._cas_at = words.cas_at
        self._base = words.base

    def lock(self, offset):
        word = self._view[offset >> 3]
        if not word & PID_MASK and self._cas_at(self._base + offset, word, word | _pid):
            return
        self._lock_slow(offset)

    def unlock(self, offset):
        """Release; returns the word now stored (the token readers will see)."""
        view = self._view
        i = offset >> 3
        word = view[i] = (((view[i] >> 32) + 1) & SEQ_MASK) << 32
        return word

    def begin_read(self, offset):
        """A token for ``end_read``; waits while a writer holds the bucket."""
        word = self._view[offset >> 3]
        if word & PID_MASK:
            word = self._wait_unlocked(offset)
        return word

    def end_read(self, offset, token):
        """True if nothing was written since ``begin_read``."""
        return self._view[offset >> 3] == token

    def _lock_slow(self, offset):
        words = self.words
        started = time.monotonic()
        spins = 0
        while True:
            word = words.load(offset)
            holder = word & PID_MASK
            if not holder:
                if words.cas(offset, word, word | _pid):
                    return
                continue
            spins += 1
            if spins < 32:
                continue
            _pause(spins)
            if spins % 8 == 0 and self._take_from_dead(offset, word, holder):
                return
            if time.monotonic() - started > LOCK_TIMEOUT:
                raise TimeoutError("a shared-memory lock has been held by live pid %d for "
                                   "%.0f s" % (holder, LOCK_TIMEOUT))

    def _take_from_dead(self, offset, word, holder):
        if holder == _pid or pid_alive(holder):
            return False
        taken = (((word >> 32) + 1) & SEQ_MASK) << 32 | _pid
        if self.words.cas(offset, word, taken):
            log.warning("pid %d died holding a shared-memory table lock; lock taken over "
                        "(the row it was writing may be incomplete)", holder)
            return True
        return False

    def _wait_unlocked(self, offset):
        started = time.monotonic()
        spins = 0
        while True:
            word = self.words.load(offset)
            holder = word & PID_MASK
            if not holder:
                return word
            spins += 1
            if spins < 32:
                continue
            _pause(spins)
            if spins % 8 == 0 and self._take_from_dead(offset, word, holder):
                self.unlock(offset)
                continue
            if time.monotonic() - started > LOCK_TIMEOUT:
                raise TimeoutError("a shared-memory lock has been held by live pid %d for "
                                   "%.0f s" % (holder, LOCK_TIMEOUT))


class RecordLocks:
    """Bucket locks over LockedWords: fcntl record locks for readers too."""

    kind = "fcntl"

    def __init__(self, words):
        self.words = words
        self.lock = words.lock
        self.unlock = words.unlock

    def begin_read(self, offset):
        self.words.lock(offset, shared=True)
        return 0

    def end_read(self, offset, token):
        self.words.unlock(offset)
        return True


def make_bucket_locks(words):
    return SeqLocks(words) if isinstance(words, CpuWords) else RecordLocks(words)


# -- waiting across processes -------------------------------------------------

def _running_hub():
    if "gevent" not in sys.modules:
        return None
    from gevent._hub_local import get_hub_if_exists
    return get_hub_if_exists()


def wait_readable(fd, timeout):
    """Wait up to ``timeout`` seconds for ``fd`` to be readable; True if it is.

    In a process with a gevent hub, only the calling greenlet waits. In one
    without (the master, a plain script) this is a plain poll: it must not
    start a hub there."""
    hub = _running_hub()
    if hub is not None:
        from greenlet import getcurrent
        if getcurrent() is not hub:
            from gevent.select import select
            return bool(select([fd], [], [], timeout)[0])
    poller = _original("select", "poll")()
    poller.register(fd, 1)   # POLLIN
    return bool(poller.poll(max(0, int(timeout * 1000))))


class Doorbell:
    """Sleep in one process until another rings (see top). ``count_at`` is
    a word of ``words`` that counts the waiters."""

    def __init__(self, words, count_at):
        self.words = words
        self.count_at = count_at
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def wait(self, timeout, ready):
        """Call ``ready()`` until it returns True (then True) or ``timeout``
        seconds pass (then False)."""
        if ready():
            return True
        deadline = time.monotonic() + timeout
        self.words.add(self.count_at, 1)
        try:
            while True:
                if ready():
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                if wait_readable(self.read_fd, min(remaining, RING_SLICE)):
                    try:
                        os.read(self.read_fd, 1)
                    except BlockingIOError:
                        pass   # another waiter took this ring
        finally:
            self.words.add(self.count_at, -1)

    def ring(self, n=1):
        """Wake up to ``n`` waiters; free when there are none."""
        waiting = self.words.load(self.count_at)
        if waiting > 0:
            try:
                os.write(self.write_fd, b"!" * min(n, waiting))
            except OSError as exc:
                if exc.errno != errno.EAGAIN:
                    raise
                # The pipe is full of rings nobody took yet: waiters wake anyway.

    @property
    def waiting(self):
        return self.words.load(self.count_at)

"""gswoole.Atomic and gswoole.Lock without a server: forked processes,
greenlets, dead holders (DESIGN section 9). Each test runs on the CPU
atomics and on the fcntl fallback."""

import os
import signal
import time

import gevent
import pytest

import gswoole
from gswoole import shm

from test_table import run_children

# "c": the compiled helper (when built), "ctypes": libatomic through ctypes,
# "fcntl": the lock-based fallback (GSWOOLE_SHM_ATOMICS picks one).
MODES = ((["c"] if shm._compiled() is not None else [])
         + (["ctypes"] if shm._libatomic() is not None else []) + ["fcntl"])


@pytest.fixture(params=MODES)
def mode(request, monkeypatch):
    monkeypatch.setenv(shm.FORCE_FALLBACK_ENV, request.param)
    return request.param


def test_atomic_operations(mode):
    a = gswoole.Atomic(5)
    assert a.get() == 5
    assert a.add() == 6 and a.add(4) == 10
    assert a.sub() == 9 and a.sub(9) == 0
    assert a.set(-7) and a.get() == -7
    assert a.cmpset(-7, 3) is True and a.get() == 3
    assert a.cmpset(-7, 4) is False and a.get() == 3
    a.set((1 << 63) - 1)
    assert a.add() == -(1 << 63)                       # wraps like C
    for bad in ("1", 1.5, True):
        with pytest.raises(TypeError):
            a.add(bad)
    with pytest.raises(ValueError):
        a.set(1 << 64)
    with pytest.raises(ValueError):
        a.wait(-1)
    with pytest.raises(ValueError):
        a.wait(None)
    with pytest.raises(ValueError):
        a.wakeup(0)


def test_atomic_adds_from_processes_are_exact(mode):
    a = gswoole.Atomic()
    run_children(4, lambda i: [a.add() for _ in range(5000)])
    assert a.get() == 20000


def test_atomic_wait_times_out_and_wakeup_is_a_flag(mode):
    a = gswoole.Atomic()
    started = time.monotonic()
    assert a.wait(0.2) is False
    assert 0.2 <= time.monotonic() - started < 2.0
    assert a.wakeup() and a.get() == 1
    assert a.wakeup() and a.get() == 1                 # already set: nothing changes
    assert a.wait(0) is True and a.get() == 0          # taken back to 0
    assert a.wait(0) is False


def test_atomic_wait_wakeup_across_processes(mode):
    a = gswoole.Atomic()
    ready = gswoole.Atomic()

    def body(i):
        ready.add()
        assert a.wait(10) is True

    pids = []
    for i in range(2):
        pid = os.fork()
        if pid == 0:
            try:
                body(i)
                os._exit(0)
            except BaseException:
                os._exit(1)
        pids.append(pid)
    signal.alarm(30)
    try:
        deadline = time.monotonic() + 10
        while a._bell.waiting < 2:                     # both children are asleep
            assert time.monotonic() < deadline
            time.sleep(0.005)
        woken = []
        for _ in range(2):
            a.wakeup()
            pid, status = os.wait()                    # one child, and only one, wakes
            woken.append(os.waitstatus_to_exitcode(status))
            assert a.get() == 0
        assert woken == [0, 0]
    finally:
        signal.alarm(0)


def test_wait_is_cooperative_under_gevent(mode):
    a = gswoole.Atomic()
    ticks = []

    def ticker():
        for _ in range(5):
            ticks.append(time.monotonic())
            gevent.sleep(0.01)
        a.wakeup()

    gevent.spawn(ticker)
    assert a.wait(5) is True
    assert len(ticks) == 5                             # ran while we waited


def test_lock_mutex_across_processes_and_greenlets(mode):
    lock = gswoole.Lock()
    table = gswoole.Table(4)
    table.column("n", gswoole.Table.TYPE_INT)
    table.create()
    table.set("n", {"n": 0})

    def body(i):
        gevent.reinit()                                # a forked child of this test process

        def bump():
            for _ in range(200):
                with lock:
                    value = table.get("n", "n")
                    gevent.sleep(0)                    # let the other greenlets try
                    table.set("n", {"n": value + 1})
        gevent.joinall([gevent.spawn(bump) for _ in range(4)], raise_error=True)

    run_children(2, body)
    assert table.get("n", "n") == 2 * 4 * 200


def test_lock_holder_killed_releases_the_lock(mode):
    lock = gswoole.Lock()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        lock.lock()
        os.write(w, b"x")
        time.sleep(60)
        os._exit(0)
    try:
        assert os.read(r, 1) == b"x"
        assert lock.trylock() is False
        assert lock.lock(timeout=0.1) is False
        os.kill(pid, signal.SIGKILL)
        started = time.monotonic()
        assert lock.lock(timeout=10) is True
        assert time.monotonic() - started < 5
        assert lock.unlock() is True and lock.unlock() is False
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
        os.close(w)


def test_waiting_for_a_lock_wakes_on_unlock(mode):
    lock = gswoole.Lock()
    assert lock.lock()
    pid = os.fork()
    if pid == 0:
        os._exit(0 if lock.lock(timeout=10) else 1)
    deadline = time.monotonic() + 10
    while lock._bell.waiting < 1:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    lock.unlock()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_rwlock(mode):
    rw = gswoole.Lock(gswoole.Lock.RWLOCK)
    assert rw.lock_read() and rw.lock_read()
    assert rw.trylock() is False
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                       # another process reads too, not writes
        ok = rw.trylock_read() and rw.unlock() and not rw.trylock()
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert rw.unlock() and rw.unlock()
    assert rw.trylock() is True
    assert rw.trylock_read() is False
    assert rw.unlock() is True and rw.unlock() is False
    os.close(r)
    os.close(w)
    mutex = gswoole.Lock()
    with pytest.raises(TypeError):
        mutex.lock_read()
    with pytest.raises(ValueError):
        gswoole.Lock(5)

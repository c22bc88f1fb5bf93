"""gswoole.Table without a server: the layout, the operations, capacity,
bad input, and forked processes racing on it (DESIGN section 9).

Every test that touches shared memory runs twice: with the CPU-atomics
seqlock and with the fcntl fallback (``GSWOOLE_SHM_ATOMICS=fcntl``)."""

import os
import signal
import struct
import traceback

import pytest

import gswoole
from gswoole import shm
from gswoole.table import TYPE_FLOAT, TYPE_INT, TYPE_STRING, TableLayout

# "c": the compiled helper (when built), "ctypes": libatomic through ctypes,
# "fcntl": the lock-based fallback (GSWOOLE_SHM_ATOMICS picks one).
MODES = ((["c"] if shm._compiled() is not None else [])
         + (["ctypes"] if shm._libatomic() is not None else []) + ["fcntl"])


@pytest.fixture(params=MODES)
def mode(request, monkeypatch):
    monkeypatch.setenv(shm.FORCE_FALLBACK_ENV, request.param)
    return request.param


def make(size=16, key_size=64):
    table = gswoole.Table(size, key_size=key_size)
    table.column("name", gswoole.Table.TYPE_STRING, 16)
    table.column("hits", gswoole.Table.TYPE_INT)
    table.column("score", gswoole.Table.TYPE_FLOAT)
    table.create()
    return table


def run_children(count, body, timeout=30):
    """Fork ``count`` children running ``body(i)``; each must exit 0."""
    pids = []
    for i in range(count):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                body(i)
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        pids.append(pid)
    signal.alarm(timeout)
    try:
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
    finally:
        signal.alarm(0)


# -- the layout (pure) ------------------------------------------------------------

def test_layout_offsets_and_sizes():
    columns = [("name", TYPE_STRING, 10), ("n", TYPE_INT, 8), ("x", TYPE_FLOAT, 8)]
    layout = TableLayout(1000, columns, 20)
    assert layout.buckets == 1024 and layout.mask == 1023
    assert layout.alloc_lock_at == 64 + 8 * 1024
    assert layout.rows_at % 8 == 0 and layout.row_size % 8 == 0
    assert layout.values_at == 8 + 24                     # row head, key padded to 8
    assert layout.values.size == 4 + 10 + 8 + 8
    assert layout.row_size == 64
    assert layout.total == layout.rows_at + 1000 * 64
    assert layout.row_at(3) == layout.rows_at + 3 * 64
    offset, cell, kind = layout.column_at["n"]
    assert offset == layout.values_at + 14 and cell.format == "<q" and kind == TYPE_INT


def test_layout_encode_plain_and_decode():
    layout = TableLayout(4, [("s", TYPE_STRING, 5), ("n", TYPE_INT, 8), ("x", TYPE_FLOAT, 8)], 8)
    packed = layout.encode_plain({"s": "héllo"[:4], "n": -3, "x": 0.5})
    assert packed == struct.pack("<I5sqd", 5, "héll".encode(), -3, 0.5)
    assert layout.decode(layout.values.unpack(packed)) == {"s": "héll", "n": -3, "x": 0.5}
    # anything unusual goes to the validating path: partial, extra, wrong types, too long
    for row in ({"s": "a", "n": 1}, {"s": "a", "n": 1, "x": 1.0, "y": 2},
                {"s": b"a", "n": 1, "x": 1.0}, {"s": "a", "n": 1.0, "x": 1.0},
                {"s": "a", "n": 1, "x": 1}, {"s": "toolong", "n": 1, "x": 1.0},
                {"s": "a", "n": 1 << 63, "x": 1.0}, {"t": "a", "n": 1, "x": 1.0}):
        assert layout.encode_plain(row) is None, row
    raw = struct.pack("<I5sqd", 2 | (1 << 31), b"\x00\xff", 7, 1.5)
    assert layout.decode(layout.values.unpack(raw)) == {"s": b"\x00\xff", "n": 7, "x": 1.5}


# -- schema and bad input -------------------------------------------------------------

def test_schema_errors():
    with pytest.raises(ValueError):
        gswoole.Table(0)
    with pytest.raises(ValueError):
        gswoole.Table(10, key_size=0)
    table = gswoole.Table(4)
    with pytest.raises(RuntimeError, match="create"):
        table.get("a")
    with pytest.raises(ValueError, match="at least one column"):
        table.create()
    with pytest.raises(ValueError, match="type"):
        table.column("a", 9)
    with pytest.raises(ValueError, match="size"):
        table.column("a", gswoole.Table.TYPE_STRING)
    table.column("a", gswoole.Table.TYPE_INT)
    with pytest.raises(ValueError, match="already"):
        table.column("a", gswoole.Table.TYPE_FLOAT)
    assert table.memory_size == 0
    table.create()
    assert table.memory_size > 0
    with pytest.raises(RuntimeError):
        table.column("b", gswoole.Table.TYPE_INT)
    with pytest.raises(RuntimeError):
        table.create()


def test_bad_values_raise_and_change_nothing(mode):
    table = make()
    table.set("k", {"name": "ok", "hits": 1, "score": 1.0})
    too_long = "x" * 17
    with pytest.raises(ValueError, match="at most 16 bytes"):
        table.set("k", {"name": too_long})
    with pytest.raises(ValueError, match="at most 16 bytes"):
        table.set("new", {"name": "é" * 9})          # 18 bytes in UTF-8
    with pytest.raises(ValueError, match="keys must be"):
        table.set("k" * 65, {"hits": 1})
    with pytest.raises(ValueError, match="keys must be"):
        table.get("")
    with pytest.raises(TypeError):
        table.set(("tuple",), {"hits": 1})
    with pytest.raises(ValueError, match="no column"):
        table.set("k", {"nope": 1})
    with pytest.raises(TypeError, match="TYPE_INT"):
        table.set("k", {"hits": "1"})
    with pytest.raises(TypeError, match="TYPE_FLOAT"):
        table.set("k", {"score": "1"})
    with pytest.raises(ValueError, match="64 bits"):
        table.set("k", {"hits": 1 << 63})
    with pytest.raises(TypeError):
        table.set("k", ["not", "a", "dict"])
    with pytest.raises(ValueError, match="no column"):
        table.get("k", "nope")
    assert table.get("k") == {"name": "ok", "hits": 1, "score": 1.0}
    assert not table.exists("new") and table.count() == 1


# -- operations ---------------------------------------------------------------------------

def test_set_get_partial_delete_iterate(mode):
    table = make()
    assert table.lock_kind == ("fcntl" if mode == "fcntl" else "seqlock")
    assert getattr(table._words, "via", "fcntl") == mode
    assert table.get("a") is None
    assert table.set("a", {"name": "ann", "hits": 3, "score": 1.5})
    assert table.get("a") == {"name": "ann", "hits": 3, "score": 1.5}
    assert table.get("a", "hits") == 3
    assert table.set("a", {"hits": 4})                       # other columns kept
    assert table.get("a") == {"name": "ann", "hits": 4, "score": 1.5}
    assert table.set("b", {"name": b"\x00raw"})              # new row: the rest is blank
    assert table.get("b") == {"name": b"\x00raw", "hits": 0, "score": 0.0}
    assert table.set(7, {"hits": 7}) and table.get("7", "hits") == 7   # int keys are strings
    assert "a" in table and table.exists(7) and not table.exists("c")
    assert table.count() == len(table) == table.len() == 3
    assert dict(table) == {"a": table.get("a"), "b": table.get("b"), "7": table.get("7")}
    assert table.delete("a") and not table.delete("a")
    assert table.get("a") is None and table.count() == 2
    assert table.set("ключ", {"name": "ü"}) and table.get("ключ", "name") == "ü"


def test_incr_decr(mode):
    table = make()
    assert table.incr("n", "hits") == 1                      # a missing key gets a row
    assert table.incr("n", "hits", 10) == 11
    assert table.decr("n", "hits", 2) == 9
    assert table.incr("n", "score", 0.25) == 0.25
    assert table.decr("n", "score", 1) == -0.75
    assert table.get("n") == {"name": "", "hits": 9, "score": -0.75}
    with pytest.raises(TypeError, match="string column"):
        table.incr("n", "name")
    with pytest.raises(TypeError):
        table.incr("n", "hits", 0.5)
    table.set("n", {"hits": (1 << 63) - 1})
    with pytest.raises(ValueError, match="64 bits"):
        table.incr("n", "hits")
    assert table.get("n", "hits") == (1 << 63) - 1


@pytest.mark.parametrize("size", [1, 7, 1000])
def test_exact_capacity(mode, size):
    table = make(size)
    for i in range(size):
        assert table.set("key-%d" % i, {"hits": i}) is True, i
    assert table.count() == size
    assert table.set("one-too-many", {"hits": 1}) is False
    assert table.incr("one-too-many", "hits") is False
    assert table.set("key-0", {"hits": -1})                  # updates still work when full
    assert all(table.get("key-%d" % i, "hits") == (i or -1) for i in range(size))
    assert table.delete("key-%d" % (size - 1))
    assert table.set("one-too-many", {"hits": 1}) is True    # a freed row is reused
    assert table.count() == size and len(dict(table)) == size


def test_rows_are_reused_after_many_deletes(mode):
    table = make(8)
    for round_ in range(50):
        for i in range(8):
            assert table.set("r%d-%d" % (round_, i), {"hits": i})
        assert table.count() == 8
        for i in range(8):
            assert table.delete("r%d-%d" % (round_, i))
        assert table.count() == 0


# -- processes -------------------------------------------------------------------------

def test_no_lost_updates_across_forked_processes(mode):
    table = make(64)
    per_child = 3000

    def body(i):
        for n in range(per_child):
            table.incr("shared", "hits")
            table.incr("k%d" % (n % 32), "hits")

    run_children(4, body)
    assert table.get("shared", "hits") == 4 * per_child
    assert sum(table.get("k%d" % i, "hits") for i in range(32)) == 4 * per_child


def test_readers_never_see_a_half_written_row(mode):
    table = gswoole.Table(4)
    table.column("a", gswoole.Table.TYPE_INT)
    table.column("s", gswoole.Table.TYPE_STRING, 64)
    table.column("b", gswoole.Table.TYPE_INT)
    table.create()
    table.set("row", {"a": 0, "s": "0", "b": 0})         # n = 0 in the pattern below
    writes = 20000

    def body(i):
        if i == 0:
            for n in range(1, writes + 1):
                digit = str(n % 10)
                table.set("row", {"a": n, "s": digit * (n % 64 + 1), "b": -n})
            table.set("done", {"a": 1})
        else:
            seen = 0
            while not table.exists("done"):
                row = table.get("row")
                n = row["a"]
                assert row["b"] == -n, row
                assert row["s"] == str(n % 10) * (n % 64 + 1), row
                seen += 1
            assert seen > 0

    run_children(3, body)


def test_a_writer_killed_holding_a_bucket_lock_does_not_wedge_the_table(mode):
    table = make(4)
    table.set("k", {"hits": 1})
    bucket = hash("k") & table._layout.mask
    lock_at = 64 + 8 * bucket
    pid = os.fork()
    if pid == 0:
        table._locks.lock(lock_at)      # and die holding it
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    signal.alarm(20)
    try:
        assert table.get("k", "hits") == 1
        assert table.incr("k", "hits") == 2
        assert table.set("k2", {"hits": 5})
    finally:
        signal.alarm(0)


# -- the remembered rows (per-process slot cache, seqlock tables) --------------------

def _same_bucket_keys(table, count):
    """``count`` keys that hash to one bucket of ``table``."""
    mask = table._layout.mask
    found = []
    i = 0
    while len(found) < count:
        key = "c%d" % i
        if hash(key) & mask == hash("c0") & mask:
            found.append(key)
        i += 1
    return found


def test_a_remembered_row_is_never_used_after_another_process_moved_the_key(mode):
    """The parent remembers where k1 lives; a child deletes k1, gives its row
    to k2 (same bucket, and another bucket) and puts k1 back in another row.
    The parent must then read and write k1's new row, never k2's."""
    table = make(4)
    k1, k2 = _same_bucket_keys(table, 2)
    for other in (k2, "elsewhere"):
        table.set(k1, {"name": "old", "hits": 1, "score": 1.0})
        assert table.get(k1) == {"name": "old", "hits": 1, "score": 1.0}   # remembered
        if mode != "fcntl":
            assert k1 in table._slots

        def body(i):
            assert table.delete(k1)
            assert table.set(other, {"name": "other", "hits": 2, "score": 2.0})
            assert table.set(k1, {"name": "new", "hits": 3, "score": 3.0})

        run_children(1, body)
        assert table.set(k1, {"name": "mine", "hits": 4, "score": 4.0})   # a set first
        assert table.get(other) == {"name": "other", "hits": 2, "score": 2.0}
        assert table.get(k1) == {"name": "mine", "hits": 4, "score": 4.0}
        run_children(1, body)
        assert table.get(k1) == {"name": "new", "hits": 3, "score": 3.0}  # then a get first
        assert table.get(k1, "hits") == 3
        assert table.get(other) == {"name": "other", "hits": 2, "score": 2.0}
        assert dict(table) == {k1: table.get(k1), other: table.get(other)}
        assert table.delete(other) and table.delete(k1) and table.count() == 0


def test_a_remembered_row_is_forgotten_on_delete_and_when_the_bucket_changes(mode):
    table = make(4)
    k1, k2 = _same_bucket_keys(table, 2)
    table.set(k1, {"hits": 1})
    table.set(k2, {"hits": 2})                 # same bucket: k1's remembered word is stale
    assert table.get(k1, "hits") == 1 and table.get(k2, "hits") == 2
    assert table.set(k1, {"name": "a", "hits": 5, "score": 0.5})
    assert table.delete(k1) and table.get(k1) is None and k1 not in table._slots
    assert table.set(k1, {"name": "b", "hits": 6, "score": 0.5})   # a new row
    assert table.get(k1, "hits") == 6 and table.get(k2, "hits") == 2
    for i in range(3):                         # the remembered slot used repeatedly
        assert table.set(k1, {"name": "c", "hits": i, "score": 0.0})
        assert table.get(k1, "hits") == i
    assert table.count() == 2


def test_the_slot_memory_is_bounded(mode, monkeypatch):
    monkeypatch.setattr("gswoole.table.SLOTS_LIMIT", 8)
    table = make(64)
    for i in range(64):
        assert table.set("k%d" % i, {"name": "v", "hits": i, "score": 0.0})
        assert len(table._slots) <= 8
    assert all(table.get("k%d" % i, "hits") == i for i in range(64))
    assert len(table._slots) <= 8


def test_two_writers_through_remembered_rows_and_readers_never_see_a_half_row(mode):
    table = gswoole.Table(4)
    table.column("a", gswoole.Table.TYPE_INT)
    table.column("s", gswoole.Table.TYPE_STRING, 64)
    table.column("b", gswoole.Table.TYPE_INT)
    table.create()
    table.set("row", {"a": 0, "s": "0", "b": 0})
    writes = 10000

    def body(i):
        if i < 2:
            sign = 1 if i == 0 else -1              # writers write different rows
            for n in range(1, writes + 1):
                v = sign * n
                table.set("row", {"a": v, "s": str(n % 10) * (n % 64 + 1), "b": -v})
            table.incr("done", "a")
        else:
            while table.get("done", "a") != 2:
                row = table.get("row")
                n = abs(row["a"])
                assert row["b"] == -row["a"], row
                assert row["s"] == str(n % 10) * (n % 64 + 1), row

    run_children(3, body)
    row = table.get("row")
    assert abs(row["a"]) == writes and row["b"] == -row["a"]


# -- the compiled helper ----------------------------------------------------------

def test_the_compiled_helper_is_built_in_ci():
    """CI installs with pip install -e, which builds gswoole._atomic with gcc;
    elsewhere it is optional (libatomic through ctypes is used instead)."""
    if not os.environ.get("GSWOOLE_CI"):
        pytest.skip("only CI requires the compiled helper (GSWOOLE_CI)")
    assert shm._compiled() is not None, "gswoole._atomic was not built (setup.py, gcc)"


@pytest.mark.skipif(shm._compiled() is None, reason="gswoole._atomic not built")
def test_compiled_helper_cas_and_add():
    import ctypes
    from gswoole import _atomic
    cell = ctypes.c_int64(5)
    address = ctypes.addressof(cell)
    assert _atomic.cas(address, 4, 9) is False and cell.value == 5
    assert _atomic.cas(address, 5, 9) is True and cell.value == 9
    assert _atomic.add(address, 1) == 10
    cell.value = (1 << 63) - 1
    assert _atomic.add(address, 1) == -(1 << 63)                  # wraps like C
    assert _atomic.add(address, 1 << 63) == 0                     # taken modulo 2**64
    assert _atomic.cas(address, 0, -1) is True and cell.value == -1
    with pytest.raises(TypeError):
        _atomic.cas(address, 1)
    with pytest.raises(TypeError):
        _atomic.add(address, 1.5)


def test_a_remembered_row_whose_key_does_not_match_is_looked_up_again(mode):
    table = make(4)
    table.set("k", {"name": "a", "hits": 1, "score": 0.0})
    if mode == "fcntl":
        assert not table._slots
        return
    table._slots["k"][4] = b"\x01\x00\x00\x00x"       # as if the row held key "x"
    assert table.set("k", {"name": "b", "hits": 2, "score": 0.0})
    assert table.get("k") == {"name": "b", "hits": 2, "score": 0.0}
    table._slots["k"][4] = b"\x01\x00\x00\x00x"
    assert table.get("k", "hits") == 2 and table.count() == 1

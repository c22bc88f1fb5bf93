"""``Table``: a fixed-schema hash table in shared memory (Swoole\\Table).

Made before ``server.start()``, it is seen by every worker, task worker and
user process (they inherit its mapping through fork).

Layout of the segment (``TableLayout`` computes it; it holds no memory):

    header      magic, size, buckets, row size, count, rows handed out, free list
    lock words  one per bucket, and one more for the row allocator (shm.py)
    bucket heads  int32 per bucket: first row of its chain + 1 (0: empty)
    rows        exactly ``size`` of them: next row + 1 (int32), key length
                (int32), the key (``key_size`` bytes), then the columns
                (int: int64, float: double, string: uint32 length + bytes)

A key hashes to a bucket; the bucket's rows form a chain. Everything about a
key (finding it, reading or changing its row, linking a new row in) happens
under its bucket's lock word, so each row's update is atomic; taking a row
from the allocator or giving one back also takes the allocator's word, always
after the bucket's. Readers use the bucket word as a seqlock and never take a
lock (shm.SeqLocks), or an fcntl read lock on the fallback (shm.RecordLocks).

Keys are hashed with Python's ``hash()`` of the key string: every process of
a server is forked from the master, so they share its hash seed.
"""

import struct

from . import shm

TYPE_INT = 1
TYPE_FLOAT = 2
TYPE_STRING = 3
_TYPE_NAMES = {TYPE_INT: "TYPE_INT", TYPE_FLOAT: "TYPE_FLOAT", TYPE_STRING: "TYPE_STRING"}

MAGIC = 0x67737754424C3031          # "gswTBL01"
HEADER = struct.Struct("<qqqqqqq")   # magic, size, buckets, row size, count, handed out, free head
COUNT_AT = 32
HANDED_OUT_AT = 40
FREE_HEAD_AT = 48
LOCKS_AT = 64
_KEY_LENGTH = struct.Struct("=i")   # a row's key length word, as _ints reads it
KEY_AT = 8          # a row: next row + 1 (int32), key length (int32), then the key
BYTES_FLAG = 1 << 31                # a string column's length word: value was bytes
MAX_KEY_SIZE = 65535
SLOTS_LIMIT = 1 << 16               # most keys one process remembers the row of (see _remember)
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 63) - 1


def _align8(n):
    return (n + 7) & ~7


class TableLayout:
    """Offsets and structs for a table of ``size`` rows and these columns
    (a list of ``(name, type, size)``). Pure: no memory, no locks."""

    def __init__(self, size, columns, key_size):
        self.size = size
        self.key_size = key_size
        self.columns = list(columns)
        buckets = 1
        while buckets < size:
            buckets <<= 1
        self.buckets = buckets
        self.mask = buckets - 1
        self.alloc_lock_at = LOCKS_AT + 8 * buckets
        self.heads_at = self.alloc_lock_at + 8
        self.values_at = KEY_AT + _align8(key_size)     # within a row
        fmt = "<"
        self.column_at = {}     # name -> (offset within the row, struct, type)
        offset = self.values_at
        for name, kind, length in self.columns:
            code = {TYPE_INT: "q", TYPE_FLOAT: "d"}.get(kind) or "I%ds" % length
            self.column_at[name] = (offset, struct.Struct("<" + code), kind)
            fmt += code
            offset += struct.calcsize("<" + code)
        self.values = struct.Struct(fmt)
        self.row_size = _align8(offset)
        self.rows_at = _align8(self.heads_at + 4 * buckets)
        self.total = self.rows_at + self.row_size * size
        self.encode_plain, self.decode = self._compile()

    def _compile(self):
        """Two functions generated for this schema (as namedtuple and
        dataclasses do), because a per-column loop doubles a get's cost:

        * ``encode_plain(row)``: packed column bytes for a dict that has
          exactly every column, with int/float/str values that fit; None
          for anything else (the caller's general path then validates).
        * ``decode(raw)``: the row dict from ``values.unpack`` output."""
        encode = ["def encode_plain(row):", "    if len(row) != %d:" % len(self.columns),
                  "        return None", "    try:"]
        packed = []
        decode = []
        names = []      # decode's locals, one per unpacked value
        position = 0
        for i, (name, kind, length) in enumerate(self.columns):
            encode.append("        v%d = row[%r]" % (i, name))
            if kind == TYPE_INT:
                encode.append("        if v%d.__class__ is not int or not %d <= v%d <= %d:"
                              % (i, _INT_MIN, i, _INT_MAX))
                packed.append("v%d" % i)
                decode.append("%r: r%d" % (name, position))
                names.append("r%d" % position)
                position += 1
            elif kind == TYPE_FLOAT:
                encode.append("        if v%d.__class__ is not float:" % i)
                packed.append("v%d" % i)
                decode.append("%r: r%d" % (name, position))
                names.append("r%d" % position)
                position += 1
            else:
                encode.append("        if v%d.__class__ is not str:" % i)
                encode.append("            return None")
                encode.append("        v%d = v%d.encode()" % (i, i))
                encode.append("        if len(v%d) > %d:" % (i, length))
                packed.append("len(v%d), v%d" % (i, i))
                decode.append("%r: (r%d[:r%d].decode('utf-8', 'replace') if r%d < %d "
                              "else r%d[:r%d & %d])"
                              % (name, position + 1, position, position, BYTES_FLAG,
                                 position + 1, position, BYTES_FLAG - 1))
                names += ["r%d" % position, "r%d" % (position + 1)]
                position += 2
            encode.append("            return None")
        encode += ["    except KeyError:", "        return None",
                   "    return pack(%s)" % ", ".join(packed)]
        source = "\n".join(encode) + "\ndef decode(raw):\n    %s, = raw\n    return {%s}\n" % (
            ", ".join(names), ", ".join(decode))
        namespace = {"pack": self.values.pack}
        exec(compile(source, "<gswoole.Table schema>", "exec"), namespace)
        return namespace["encode_plain"], namespace["decode"]

    def bucket_lock_at(self, bucket):
        return LOCKS_AT + 8 * bucket

    def head_at(self, bucket):
        return self.heads_at + 4 * bucket

    def row_at(self, index):
        return self.rows_at + self.row_size * index


class Table:
    """A shared hash table of exactly ``size`` rows with fixed columns::

        table = gswoole.Table(1024)
        table.column("name", gswoole.Table.TYPE_STRING, 32)
        table.column("hits", gswoole.Table.TYPE_INT)
        table.create()
        table.set("user:1", {"name": "ann", "hits": 1})
        table.incr("user:1", "hits")

    Keys are strings (an int key is taken as its decimal string, as in PHP) of
    at most ``key_size`` bytes in UTF-8.
    """

    TYPE_INT = TYPE_INT
    TYPE_FLOAT = TYPE_FLOAT
    TYPE_STRING = TYPE_STRING

    def __init__(self, size, key_size=64):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError("Table size must be a positive int, got %r" % (size,))
        if isinstance(key_size, bool) or not isinstance(key_size, int) \
                or not 1 <= key_size <= MAX_KEY_SIZE:
            raise ValueError("key_size must be an int in [1, %d], got %r"
                             % (MAX_KEY_SIZE, key_size))
        self.size = size
        self.key_size = key_size
        self._columns = []
        self._layout = None
        # key -> [bucket word index, bucket word, values offset, key offset, key bytes]
        # (see _remember); empty until create(), and always on the fcntl fallback.
        self._slots = {}
        self._slots_limit = 0

    # -- schema ---------------------------------------------------------

    def column(self, name, type, size=0):
        """Add a column before ``create()``: TYPE_INT (64-bit; ``size`` is
        ignored), TYPE_FLOAT (double) or TYPE_STRING of at most ``size`` bytes."""
        if self._layout is not None:
            raise RuntimeError("column() must be called before create()")
        if not isinstance(name, str) or not name:
            raise ValueError("a column name must be a non-empty str, got %r" % (name,))
        if any(name == existing for existing, _, _ in self._columns):
            raise ValueError("column %r is already defined" % name)
        if type not in _TYPE_NAMES:
            raise ValueError("column %r: type must be Table.TYPE_INT, TYPE_FLOAT or "
                             "TYPE_STRING, got %r" % (name, type))
        if type == TYPE_STRING:
            if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size < BYTES_FLAG:
                raise ValueError("string column %r needs a size in bytes >= 1, got %r"
                                 % (name, size))
        else:
            size = 8
        self._columns.append((name, type, size))
        return True

    def create(self):
        """Allocate the shared memory. Call it before ``server.start()`` so
        that every worker shares this table."""
        if self._layout is not None:
            raise RuntimeError("create() was already called")
        if not self._columns:
            raise ValueError("a table needs at least one column before create()")
        layout = TableLayout(self.size, self._columns, self.key_size)
        self._segment = shm.Segment(layout.total, "gswoole-table")
        self._map = self._segment.map
        HEADER.pack_into(self._map, 0, MAGIC, layout.size, layout.buckets, layout.row_size,
                         0, 0, 0)
        self._words = shm.make_words(self._segment)
        self._locks = shm.make_bucket_locks(self._words)
        self._seqlock = self._locks.kind == "seqlock"
        if self._seqlock:
            self._cas_at, self._words_base = self._words.cas_at, self._words.base
        # Native views: one aligned load or store per word (struct's "<q"
        # would copy byte by byte, and a reader could see half of a store).
        self._words_view = memoryview(self._map).cast("q")
        self._ints = memoryview(self._map).cast("i")
        self._layout = layout
        self._names = [name for name, _, _ in self._columns]
        self._kinds = [kind for _, kind, _ in self._columns]
        self._strings = [i for i, kind in enumerate(self._kinds) if kind == TYPE_STRING]
        self._empty = tuple(0 if kind == TYPE_INT else 0.0 if kind == TYPE_FLOAT else (0, b"")
                            for kind in self._kinds)
        self._spec = {name: (index, kind, length)
                      for index, (name, kind, length) in enumerate(self._columns)}
        self._blank = self._encode_values({}, self._empty_row())
        self._unpack_from = layout.values.unpack_from
        self._decode = layout.decode
        self._encode_plain = layout.encode_plain
        self._slots_limit = min(layout.size, SLOTS_LIMIT) if self._seqlock else 0
        return True

    @property
    def memory_size(self):
        """Bytes of shared memory the table takes (0 before create())."""
        return self._layout.total if self._layout is not None else 0

    @property
    def lock_kind(self):
        """How rows are guarded: "seqlock" (CPU atomics) or "fcntl"."""
        return self._ready().kind

    def _ready(self):
        if self._layout is None:
            raise RuntimeError("call create() before using the table")
        return self._locks

    # -- keys and values ---------------------------------------------------

    def _key(self, key):
        """(key bytes, hash) for a str or int key; ValueError/TypeError if bad."""
        if key.__class__ is not str:
            if isinstance(key, int) and not isinstance(key, bool):
                key = str(key)
            elif isinstance(key, str):
                key = str(key)
            else:
                raise TypeError("table keys are str (or int), got %r" % (key,))
        data = key.encode()
        if not data or len(data) > self.key_size:
            raise ValueError("table key %r is %d bytes; keys must be 1 to %d bytes in UTF-8"
                             % (key, len(data), self.key_size))
        return data, hash(key)

    def _empty_row(self):
        return list(self._empty)

    def _encode_values(self, row, values):
        """Packed column bytes: ``values`` (a list with one entry per column:
        a number, or (length word, bytes) for a string) updated with ``row``.
        Raises before any shared memory is touched."""
        if not isinstance(row, dict):
            raise TypeError("a table row is a dict of column -> value, got %r" % (row,))
        spec = self._spec
        for name, value in row.items():
            found = spec.get(name)
            if found is None:
                raise ValueError("no column %r in this table (columns: %s)"
                                 % (name, ", ".join(self._names)))
            index, kind, limit = found
            if kind == TYPE_INT:
                if value.__class__ is not int:
                    if isinstance(value, bool) or not isinstance(value, (int, float)) \
                            or (isinstance(value, float) and not value.is_integer()):
                        raise TypeError("column %r is TYPE_INT; got %r" % (name, value))
                    value = int(value)
                if not _INT_MIN <= value <= _INT_MAX:
                    raise ValueError("column %r: %d does not fit in 64 bits" % (name, value))
                values[index] = value
            elif kind == TYPE_FLOAT:
                if value.__class__ is not float:
                    if isinstance(value, bool) or not isinstance(value, (int, float)):
                        raise TypeError("column %r is TYPE_FLOAT; got %r" % (name, value))
                    value = float(value)
                values[index] = value
            else:
                if value.__class__ is str:
                    data = value.encode()
                    word = len(data)
                elif isinstance(value, (bytes, bytearray, memoryview)):
                    data = bytes(value)
                    word = len(data) | BYTES_FLAG
                else:
                    raise TypeError("column %r is TYPE_STRING; got %r" % (name, value))
                if len(data) > limit:
                    raise ValueError("column %r holds at most %d bytes; got %d (gswoole "
                                     "does not truncate)" % (name, limit, len(data)))
                values[index] = (word, data)
        if not self._strings:
            return self._layout.values.pack(*values)
        flat = []
        for value in values:
            if value.__class__ is tuple:
                flat.extend(value)
            else:
                flat.append(value)
        return self._layout.values.pack(*flat)

    def _raw_columns(self, raw):
        """Unpacked values regrouped per column (strings as (length, bytes))."""
        values = []
        position = 0
        for kind in self._kinds:
            if kind == TYPE_STRING:
                values.append((raw[position], raw[position + 1]))
                position += 2
            else:
                values.append(raw[position])
                position += 1
        return values

    # -- finding rows (under the bucket lock, or inside a seqlock read) ------

    def _lookup(self, bucket, data):
        """Row index of key ``data`` in ``bucket``'s chain, or -1. Bounded and
        range-checked, so a lock-free reader racing a writer cannot loop or
        read outside the table (its seqlock check then makes it retry).
        ``get`` has a copy of this loop written out."""
        layout = self._layout
        ints = self._ints
        mm = self._map
        size, rows_at, row_size = layout.size, layout.rows_at, layout.row_size
        length = len(data)
        index = ints[(layout.heads_at >> 2) + bucket] - 1
        steps = 0
        while 0 <= index < size and steps <= size:
            at = rows_at + row_size * index
            if ints[(at >> 2) + 1] == length and mm[at + KEY_AT:at + KEY_AT + length] == data:
                return index
            index = ints[at >> 2] - 1
            steps += 1
        return -1

    def _key_of(self, key):
        """(key bytes, hash); the common case (a short str) without a call."""
        if key.__class__ is str:
            data = key.encode()
            if 0 < len(data) <= self.key_size:
                return data, hash(key)
        return self._key(key)

    # -- operations ----------------------------------------------------------

    def get(self, key, column=None):
        """The row as a dict, or one column's value; None if the key is absent."""
        if key.__class__ is str:
            slot = self._slots.get(key)
            if slot is not None:
                # A remembered row (see _remember): valid while its bucket's
                # word is unchanged, which also brackets the read as a seqlock.
                words = self._words_view
                lock_i, token, at, key_at, data = slot
                mm = self._map
                if words[lock_i] == token and mm[key_at:key_at + len(data)] == data:
                    raw = self._unpack_from(mm, at)
                    if words[lock_i] == token:
                        if column is None:
                            return self._decode(raw)
                        row = self._decode(raw)
                        if column in row:
                            return row[column]
        layout = self._layout
        if layout is None:
            self._ready()
        # The hot path, written out: each call or struct access saved here is
        # a few percent of a get.
        if key.__class__ is str:
            data = key.encode()
            if not 0 < len(data) <= self.key_size:
                data, h = self._key(key)      # raises
            h = hash(key)
        else:
            data, h = self._key(key)
        if column is not None and column not in layout.column_at:
            raise ValueError("no column %r in this table (columns: %s)"
                             % (column, ", ".join(self._names)))
        bucket = h & layout.mask
        lock_at = LOCKS_AT + 8 * bucket
        lock_i = lock_at >> 3
        head_i = (layout.heads_at >> 2) + bucket
        mm, words, ints, locks, seqlock = self._map, self._words_view, self._ints, self._locks, \
            self._seqlock
        size, rows_at, row_size, values_at = (layout.size, layout.rows_at, layout.row_size,
                                              layout.values_at)
        length = len(data)
        while True:
            if seqlock:
                token = words[lock_i]
                if token & shm.PID_MASK:
                    token = locks.begin_read(lock_at)
            else:
                token = locks.begin_read(lock_at)
            found = -1
            index = ints[head_i] - 1
            steps = 0
            while 0 <= index < size and steps <= size:
                at = rows_at + row_size * index
                if ints[(at >> 2) + 1] == length and mm[at + KEY_AT:at + KEY_AT + length] == data:
                    found = index
                    raw = layout.values.unpack_from(mm, at + values_at)
                    break
                index = ints[at >> 2] - 1
                steps += 1
            if (words[lock_i] == token) if seqlock else locks.end_read(lock_at, token):
                break
        if found < 0:
            return None
        if seqlock and key.__class__ is str:
            self._remember(key, lock_i, token, rows_at + row_size * found, data)
        if column is None:
            return layout.decode(raw)
        return layout.decode(raw)[column]

    def exists(self, key):
        locks = self._ready()
        data, h = self._key_of(key)
        bucket = h & self._layout.mask
        lock_at = LOCKS_AT + 8 * bucket
        while True:
            token = locks.begin_read(lock_at)
            index = self._lookup(bucket, data)
            if locks.end_read(lock_at, token):
                return index >= 0

    __contains__ = exists

    def set(self, key, row):
        """Write the columns in ``row`` (a dict; other columns keep their
        values, or are 0/empty in a new row). False if the key is new and the
        table already holds ``size`` rows."""
        if key.__class__ is str and row.__class__ is dict:
            slot = self._slots.get(key)
            if slot is not None:
                packed = self._encode_plain(row)
                if packed is not None:
                    words = self._words_view
                    lock_i, token, at, key_at, data = slot
                    # Lock the bucket only if its word is still the remembered
                    # one (one CAS, no wait): then the chain, so the key's
                    # row, is unchanged (and the key check, exact under the
                    # lock, says so again).
                    if words[lock_i] == token and self._cas_at(self._words_base + (lock_i << 3),
                                                               token, token | shm._pid):
                        mm = self._map
                        mine = mm[key_at:key_at + len(data)] == data
                        try:
                            if mine:
                                mm[at:at + len(packed)] = packed
                        finally:
                            token = (((token >> 32) + 1) & shm.SEQ_MASK) << 32
                            words[lock_i] = token      # unlock
                            slot[1] = token
                        if mine:
                            return True
                        del self._slots[key]
        layout = self._layout
        if layout is None:
            self._ready()
        data, h = self._key_of(key)
        packed = layout.encode_plain(row) if row.__class__ is dict else None
        full = packed is not None
        if not full:
            packed = self._encode_values(row, self._empty_row())   # validates, or raises
            full = len(row) == len(self._names)
        bucket = h & layout.mask
        lock_at = LOCKS_AT + 8 * bucket
        locks = self._locks
        locks.lock(lock_at)
        try:
            index = self._lookup_or_link(bucket, data)
            if index < 0:
                return False
            at = layout.rows_at + layout.row_size * index + layout.values_at
            if not full:
                current = self._raw_columns(layout.values.unpack_from(self._map, at))
                packed = self._encode_values(row, current)
            self._map[at:at + len(packed)] = packed
        finally:
            token = locks.unlock(lock_at)
        if token is not None and key.__class__ is str:
            self._remember(key, lock_at >> 3, token, at - layout.values_at, data)
        return True

    def _remember(self, key, lock_i, token, row_at, data):
        """Remember where ``key``'s row is, so that the next get or set of it
        skips hashing and walking the chain. ``token`` is the bucket's word
        (unlocked) when the row was seen in the chain: while the word still
        has that value nobody has locked the bucket since, so the chain and
        the row are as they were. Any change by any process (a write, a
        delete, a takeover from a dead holder) bumps the word's sequence and
        the entry is ignored until a lookup refreshes it. The row's key
        (length word and bytes) is compared too, as a second check that costs
        little. Seqlock tables
        only (the fcntl fallback has no such word)."""
        slots = self._slots
        if len(slots) >= self._slots_limit:
            if not self._slots_limit:
                return
            slots.clear()
        slots[key] = [lock_i, token, row_at + self._layout.values_at, row_at + KEY_AT - 4,
                      _KEY_LENGTH.pack(len(data)) + data]

    def _lookup_or_link(self, bucket, data):
        """The row of key ``data`` in ``bucket``, linking a new one if it has
        none (the caller holds the bucket's lock). -1 when the table is full."""
        index = self._lookup(bucket, data)
        return index if index >= 0 else self._link_new(bucket, data)

    def _link_new(self, bucket, data):
        """Take a free row, write the key and blank columns, link it at the
        head of ``bucket``. The caller holds the bucket's lock. -1 when full."""
        layout = self._layout
        mm = self._map
        ints = self._ints
        index = self._allocate()
        if index < 0:
            return -1
        at = layout.row_at(index)
        head_i = (layout.heads_at >> 2) + bucket
        ints[at >> 2] = ints[head_i]
        ints[(at >> 2) + 1] = len(data)
        mm[at + KEY_AT:at + KEY_AT + len(data)] = data
        mm[at + layout.values_at:at + layout.values_at + len(self._blank)] = self._blank
        ints[head_i] = index + 1
        return index

    def _allocate(self):
        """A free row's index (counted in), or -1 when ``size`` rows are in use."""
        layout = self._layout
        words = self._words_view
        locks = self._locks
        locks.lock(layout.alloc_lock_at)
        try:
            count = words[COUNT_AT >> 3]
            if count >= layout.size:
                return -1
            free_head = words[FREE_HEAD_AT >> 3]
            if free_head:
                index = free_head - 1
                words[FREE_HEAD_AT >> 3] = self._ints[layout.row_at(index) >> 2]
            else:
                index = words[HANDED_OUT_AT >> 3]
                words[HANDED_OUT_AT >> 3] = index + 1
            words[COUNT_AT >> 3] = count + 1
            return index
        finally:
            locks.unlock(layout.alloc_lock_at)

    def _release(self, index):
        layout = self._layout
        words = self._words_view
        locks = self._locks
        locks.lock(layout.alloc_lock_at)
        try:
            at = layout.row_at(index)
            self._ints[at >> 2] = words[FREE_HEAD_AT >> 3]
            self._ints[(at >> 2) + 1] = 0
            words[FREE_HEAD_AT >> 3] = index + 1
            words[COUNT_AT >> 3] -= 1
        finally:
            locks.unlock(layout.alloc_lock_at)

    def delete(self, key):
        """Remove ``key``'s row; False if it was not there."""
        locks = self._ready()
        data, h = self._key_of(key)
        if key.__class__ is str:
            self._slots.pop(key, None)
        layout = self._layout
        ints = self._ints
        bucket = h & layout.mask
        lock_at = LOCKS_AT + 8 * bucket
        locks.lock(lock_at)
        try:
            index = self._lookup(bucket, data)
            if index < 0:
                return False
            # Unlink: whoever points at this row (the bucket head or the row
            # before it in the chain) now points at the row after it.
            link_i = (layout.heads_at >> 2) + bucket
            while ints[link_i] - 1 != index:
                link_i = layout.row_at(ints[link_i] - 1) >> 2
            ints[link_i] = ints[layout.row_at(index) >> 2]
            self._release(index)
            return True
        finally:
            locks.unlock(lock_at)

    def incr(self, key, column, by=1):
        """Add ``by`` to an int or float column atomically and return the new
        value; a missing key gets a new row (False if the table is full)."""
        return self._add(key, column, by)

    def decr(self, key, column, by=1):
        """Subtract ``by``; see ``incr``."""
        if isinstance(by, bool) or not isinstance(by, (int, float)):
            raise TypeError("decr() needs a number, got %r" % (by,))
        return self._add(key, column, -by)

    def _add(self, key, column, by):
        locks = self._ready()
        layout = self._layout
        spec = layout.column_at.get(column)
        if spec is None:
            raise ValueError("no column %r in this table (columns: %s)"
                             % (column, ", ".join(self._names)))
        offset, cell, kind = spec
        if kind == TYPE_STRING:
            raise TypeError("column %r is a string column; incr/decr need TYPE_INT or "
                            "TYPE_FLOAT" % column)
        if isinstance(by, bool) or not isinstance(by, (int, float)):
            raise TypeError("incr() needs a number, got %r" % (by,))
        if kind == TYPE_INT and not isinstance(by, int):
            if not by.is_integer():
                raise TypeError("column %r is TYPE_INT; cannot add %r" % (column, by))
            by = int(by)
        data, h = self._key_of(key)
        bucket = h & layout.mask
        lock_at = LOCKS_AT + 8 * bucket
        locks.lock(lock_at)
        try:
            index = self._lookup_or_link(bucket, data)
            if index < 0:
                return False
            at = layout.rows_at + layout.row_size * index + offset
            value = cell.unpack_from(self._map, at)[0] + by
            if kind == TYPE_INT and not _INT_MIN <= value <= _INT_MAX:
                raise ValueError("column %r of %r would pass 64 bits (%d)" % (column, key, value))
            cell.pack_into(self._map, at, value)
            return value
        finally:
            locks.unlock(lock_at)

    def count(self):
        """How many rows are in use."""
        locks = self._ready()
        at = self._layout.alloc_lock_at
        while True:
            token = locks.begin_read(at)
            count = self._words_view[COUNT_AT >> 3]
            if locks.end_read(at, token):
                return count

    def len(self):
        return self.count()

    __len__ = count

    def __iter__(self):
        """``(key, row)`` for every row. Each row is read whole; rows written
        while iterating may or may not be seen, as with Swoole's iterator."""
        locks = self._ready()
        layout = self._layout
        heads_i = layout.heads_at >> 2
        for bucket in range(layout.buckets):
            if self._ints[heads_i + bucket]:
                yield from self._bucket_rows(locks, bucket)

    def _bucket_rows(self, locks, bucket):
        layout = self._layout
        mm = self._map
        ints = self._ints
        lock_at = LOCKS_AT + 8 * bucket
        while True:
            token = locks.begin_read(lock_at)
            found = []
            index = ints[(layout.heads_at >> 2) + bucket] - 1
            while 0 <= index < layout.size and len(found) <= layout.size:
                at = layout.row_at(index)
                length = min(max(ints[(at >> 2) + 1], 0), self.key_size)
                found.append((mm[at + KEY_AT:at + KEY_AT + length],
                              layout.values.unpack_from(mm, at + layout.values_at)))
                index = ints[at >> 2] - 1
            if locks.end_read(lock_at, token):
                break
        for key, raw in found:
            yield key.decode("utf-8", "replace"), self._layout.decode(raw)

    def __repr__(self):
        state = "%d/%d rows" % (self.count(), self.size) if self._layout else "not created"
        return "<gswoole.Table %s, columns %s>" % (state, ", ".join(
            "%s:%s" % (name, _TYPE_NAMES[kind]) for name, kind, _ in self._columns))

"""The little state all processes of one server share: an anonymous shared
mapping created by the master before it forks.

* The session-id counter. ``fd`` must be unique across workers and never
  reused, so workers reserve ids in blocks from one counter. The counter is
  guarded by a POSIX record lock (``lockf``): the kernel drops it when its
  holder dies, so a SIGKILLed worker cannot wedge the others. Each block's
  owner (pid) goes into a table, which is how a call for an fd of another
  worker finds that worker.
* The process table: one slot per live worker *process* (not per worker id:
  while a worker drains for a reload, it and its replacement share the id but
  not the slot). The master hands slots out at fork and takes them back at
  reap; each process is the only writer of its own slot. Counters of dead
  processes are folded into totals in the header, so sums stay right across
  respawns. A slot also carries what the watchdog and the metrics read: the
  monotonic time the process's event loop last turned (``heartbeat_ms``,
  set by the master at fork and by the process's heartbeat timer after), the
  loop's lag, the RSS, and why the process asked to retire.
"""

import fcntl
import mmap
import struct
import tempfile
import time

from .cluster import first_fd

ID_BLOCK = 64
MAX_SLOTS = 4096
OWNER_ENTRIES = 1 << 16

SLOT_FIELDS = ("pid", "worker_id", "start_time", "retiring", "accept_count", "close_count",
               "connection_num", "request_count", "tasks_sent", "tasks_taken",
               "task_src_pid", "task_src_worker", "task_id", "heartbeat_ms", "loop_lag_us",
               "rss_bytes", "task_time_us", "retire_reason",
               # the Redis stream entry of the task running (task_backend "redis"), or 0
               "task_entry_ms", "task_entry_seq")
# Counters summed over dead processes too (folded into the header at reap).
RETIRED_TOTALS = ("tasks_sent", "tasks_taken", "accept_count", "close_count", "request_count",
                  "task_time_us")
_FIELD = {name: i * 8 for i, name in enumerate(SLOT_FIELDS)}
_SLOT = struct.Struct("q" * len(SLOT_FIELDS))
_Q = struct.Struct("q")
_OWNER = struct.Struct("qqq")      # block start, owner pid, owner worker id
# header: next session id, then RETIRED_TOTALS of dead processes
_HEADER = struct.Struct("q" * (1 + len(RETIRED_TOTALS)))
_OWNERS_AT = _HEADER.size
_SLOTS_AT = _OWNERS_AT + _OWNER.size * OWNER_ENTRIES


class SharedState:
    def __init__(self, node=0):
        """``node``: this server's node number in a cluster (0: none); its
        fds then start at ``cluster.first_fd(node)``, unique in the cluster."""
        self.node = node
        self._map = mmap.mmap(-1, _SLOTS_AT + _SLOT.size * MAX_SLOTS)
        _HEADER.pack_into(self._map, 0, first_fd(node) if node else 1,
                          *([0] * len(RETIRED_TOTALS)))
        self._lock_file = tempfile.TemporaryFile(prefix="gswoole-ids-")
        self._free = list(range(MAX_SLOTS - 1, -1, -1))   # master-only bookkeeping

    # -- session ids -------------------------------------------------------

    def reserve_ids(self, pid, worker_id):
        """Reserve the next block of session ids for ``pid``: returns ``(first, end)``."""
        fd = self._lock_file.fileno()
        fcntl.lockf(fd, fcntl.LOCK_EX)
        try:
            (first,) = _Q.unpack_from(self._map, 0)
            _Q.pack_into(self._map, 0, first + ID_BLOCK)
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)
        _OWNER.pack_into(self._map, self._owner_offset(first), first, pid, worker_id)
        return first, first + ID_BLOCK

    def _owner_offset(self, first):
        return _OWNERS_AT + _OWNER.size * ((first // ID_BLOCK) % OWNER_ENTRIES)

    def owner_of(self, fd):
        """(pid, worker id) of the process that accepted session ``fd``, or (0, -1)."""
        if not isinstance(fd, int) or fd <= 0:
            return 0, -1
        first = fd - (fd - 1) % ID_BLOCK
        start, pid, worker_id = _OWNER.unpack_from(self._map, self._owner_offset(first))
        return (pid, worker_id) if start == first else (0, -1)

    # -- the process table (slots) ---------------------------------------

    def alloc_slot(self, worker_id, start_time):
        """Master, before a fork: a slot for the new process (its pid is set
        once known); returns its index."""
        index = self._free.pop()
        _SLOT.pack_into(self._map, self._slot_offset(index), *([0] * len(SLOT_FIELDS)))
        self.set(index, "worker_id", worker_id)
        self.set(index, "start_time", start_time)
        self.set(index, "heartbeat_ms", monotonic_ms())   # booting counts as turning
        return index

    def free_slot(self, index):
        """Master, at reap: fold the dead process's counters into the totals."""
        slot = self.read_slot(index)
        header = _HEADER.unpack_from(self._map, 0)
        _HEADER.pack_into(self._map, 0, header[0], *(
            total + slot[name] for total, name in zip(header[1:], RETIRED_TOTALS)))
        _SLOT.pack_into(self._map, self._slot_offset(index), *([0] * len(SLOT_FIELDS)))
        self._free.append(index)

    def _slot_offset(self, index):
        return _SLOTS_AT + _SLOT.size * index

    def set(self, index, field, value):
        _Q.pack_into(self._map, self._slot_offset(index) + _FIELD[field], value)

    def get(self, index, field):
        return _Q.unpack_from(self._map, self._slot_offset(index) + _FIELD[field])[0]

    def write_slot(self, index, **fields):
        base = self._slot_offset(index)
        for field, value in fields.items():
            _Q.pack_into(self._map, base + _FIELD[field], value)

    def read_slot(self, index):
        return dict(zip(SLOT_FIELDS, _SLOT.unpack_from(self._map, self._slot_offset(index))))

    def live_slots(self):
        """Every live process's slot (dicts), master excluded."""
        found = []
        for index in range(MAX_SLOTS):
            if _Q.unpack_from(self._map, self._slot_offset(index))[0]:
                found.append(self.read_slot(index))
        return found

    def retired_totals(self):
        """{counter: sum over dead processes} for each of RETIRED_TOTALS."""
        return dict(zip(RETIRED_TOTALS, _HEADER.unpack_from(self._map, 0)[1:]))

    def retired_task_totals(self):
        totals = self.retired_totals()
        return totals["tasks_sent"], totals["tasks_taken"]


def monotonic_ms():
    """CLOCK_MONOTONIC in ms: one clock for every process of the machine."""
    return int(time.monotonic() * 1000)

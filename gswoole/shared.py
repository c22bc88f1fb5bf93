"""The little state all processes of one server share: an anonymous shared
mapping created by the master before it forks.

* The session-id counter. ``fd`` must be unique across workers and never
  reused, so workers reserve ids in blocks from one counter. The counter is
  guarded by a POSIX record lock (``lockf``): the kernel drops it when its
  holder dies, so a SIGKILLed worker cannot wedge the others.
* The worker table: one slot per worker id with its pid and the counters that
  ``stats()`` adds up. Workers publish their own slot; nobody else writes it.
"""

import fcntl
import mmap
import struct
import tempfile

ID_BLOCK = 64
MAX_SLOTS = 2048
SLOT_FIELDS = ("pid", "start_time", "accept_count", "close_count", "connection_num",
               "request_count", "task_count")
_SLOT = struct.Struct("q" * len(SLOT_FIELDS))
_HEADER = struct.Struct("q")  # next session id


class SharedState:
    def __init__(self):
        self._map = mmap.mmap(-1, _HEADER.size + _SLOT.size * MAX_SLOTS)
        _HEADER.pack_into(self._map, 0, 1)
        self._lock_file = tempfile.TemporaryFile(prefix="gswoole-ids-")

    def reserve_ids(self):
        """Reserve the next block of session ids: returns ``(first, end)``."""
        fd = self._lock_file.fileno()
        fcntl.lockf(fd, fcntl.LOCK_EX)
        try:
            (first,) = _HEADER.unpack_from(self._map, 0)
            _HEADER.pack_into(self._map, 0, first + ID_BLOCK)
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)
        return first, first + ID_BLOCK

    def _offset(self, worker_id):
        if not 0 <= worker_id < MAX_SLOTS:
            raise ValueError("worker id %d out of range" % worker_id)
        return _HEADER.size + _SLOT.size * worker_id

    def write_slot(self, worker_id, **fields):
        offset = self._offset(worker_id)
        values = dict(zip(SLOT_FIELDS, _SLOT.unpack_from(self._map, offset)))
        values.update(fields)
        _SLOT.pack_into(self._map, offset, *(values[name] for name in SLOT_FIELDS))

    def clear_slot(self, worker_id):
        _SLOT.pack_into(self._map, self._offset(worker_id), *([0] * len(SLOT_FIELDS)))

    def read_slot(self, worker_id):
        return dict(zip(SLOT_FIELDS, _SLOT.unpack_from(self._map, self._offset(worker_id))))

    def slots(self, count):
        """The first ``count`` slots that hold a live worker."""
        found = {}
        for worker_id in range(min(count, MAX_SLOTS)):
            slot = self.read_slot(worker_id)
            if slot["pid"]:
                found[worker_id] = slot
        return found

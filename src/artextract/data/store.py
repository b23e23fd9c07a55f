"""A crash-safe, growable, memory-mapped array store keyed by string ids.

Used by the prepared-image cache (uint8 pixels) and by the feature stores (float16 feature maps).

Layout of a store directory::

    data.bin     array [capacity, *item_shape] of dtype   (memory-mapped, grows in place)
    status.u8    uint8 [capacity]: 0 = not done, 1 = ok, 2 = failed
    index.json   {"item_shape": [...], "dtype": "...", "ids": [...], "capacity": N, "meta": {...}}
    failures.json  {id: reason}

Concurrent writers: a job holds the store's lock (:mod:`artextract.data.lock`) while it writes; under
``torchrun`` rank 0 reserves the slots of every id to do, and each rank then writes the data and status
bytes of its own disjoint slots (``MAP_SHARED`` maps of one file share the page cache) and its failures to
``failures.rank<R>.json``, which rank 0 merges into ``failures.json`` (:meth:`SlotStore.merge_failure_shards`).

Safety against interruption: ids are given slots and ``index.json`` is replaced atomically *before*
data is written; data of a batch is flushed *before* its status bytes are set and flushed. A job
killed at any point leaves slots with status 0, which the next run redoes; a slot marked 1 always
holds complete data.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..utils import atomic_write_text

EMPTY, OK, FAILED = 0, 1, 2


def read_index(directory: str | os.PathLike) -> dict | None:
    """A store's ``index.json`` (its ids, shape and ``meta``), or None when there is none or it is unreadable."""
    try:
        return json.loads((Path(directory) / "index.json").read_text())
    except (OSError, ValueError):
        return None


def read_failures(directory: str | os.PathLike) -> dict[str, str]:
    """A store's ``failures.json``: ``{id: reason}`` (empty when there is none or it is unreadable)."""
    try:
        return json.loads((Path(directory) / "failures.json").read_text())
    except (OSError, ValueError):
        return {}


def count_done(directory: str | os.PathLike, ids: Sequence[str]) -> tuple[int, int] | None:
    """``(done, len(ids))``: how many of ``ids`` the store holds, read from its index and status bytes
    without mapping its data (None when the store does not exist)."""
    info = read_index(directory)
    try:
        status = (Path(directory) / "status.u8").read_bytes()
    except OSError:
        return None
    if info is None:
        return None
    slot = {k: i for i, k in enumerate(info.get("ids", []))}
    done = sum(1 for k in ids if k in slot and slot[k] < len(status) and status[slot[k]] == OK)
    return done, len(ids)


class SlotStore:
    def __init__(self, directory: str | os.PathLike, item_shape: Sequence[int], dtype: str | np.dtype,
                 meta: dict | None = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.item_shape = tuple(int(s) for s in item_shape)
        self.dtype = np.dtype(dtype)
        self.meta = meta or {}
        self.failure_file = "failures.json"
        self._pending: list[int] = []
        self._load_index(meta)

    def _load_index(self, meta: dict | None = None) -> None:
        idx_path = self.dir / "index.json"
        if idx_path.exists():
            info = json.loads(idx_path.read_text())
            if tuple(info["item_shape"]) != self.item_shape or info["dtype"] != self.dtype.str:
                raise ValueError(
                    f"store {self.dir} holds items of shape {info['item_shape']} {info['dtype']}, "
                    f"not {list(self.item_shape)} {self.dtype.str}; delete it to rebuild"
                )
            if meta and info.get("meta") and info["meta"] != meta:
                raise ValueError(f"store {self.dir} was built with {info['meta']}, not {meta}; delete it to rebuild")
            self.ids: list[str] = info["ids"]
            self.capacity = int(info["capacity"])
        else:
            self.ids, self.capacity = [], 0
        self.slot = {k: i for i, k in enumerate(self.ids)}
        fail_path = self.dir / "failures.json"
        self.failures: dict[str, str] = json.loads(fail_path.read_text()) if fail_path.exists() else {}
        self._open()

    def reload(self) -> None:
        """Re-read the index and failures from disk (another job or rank may have written them); data
        put but not yet flushed is flushed first, and failures not yet flushed are dropped."""
        self._flush_data()
        self.data = self.status = None  # type: ignore[assignment]
        self._load_index()

    def shard(self, rank: int) -> None:
        """Write this process's failures to its own file (rank ``rank`` of a distributed job)."""
        if rank:
            self.failure_file = f"failures.rank{rank}.json"
            self.failures = {}

    def merge_failure_shards(self) -> None:
        """Fold every rank's failures file into ``failures.json`` (rank 0, after the ranks are done)."""
        shards = sorted(self.dir.glob("failures.rank*.json"))
        for p in shards:
            self.failures.update(json.loads(p.read_text()))
        if shards:
            self._write_json("failures.json", self.failures)
            for p in shards:
                p.unlink()

    # ------------------------------------------------------------------ files
    def _open(self) -> None:
        if self.capacity == 0:
            self.data = np.zeros((0, *self.item_shape), self.dtype)
            self.status = np.zeros(0, np.uint8)
            return
        nbytes = self.capacity * int(np.prod(self.item_shape)) * self.dtype.itemsize
        for p, n in ((self.dir / "data.bin", nbytes), (self.dir / "status.u8", self.capacity)):
            if not p.exists() or p.stat().st_size < n:
                with open(p, "ab") as f:
                    f.truncate(n)
        self.data = np.memmap(self.dir / "data.bin", self.dtype, "r+", shape=(self.capacity, *self.item_shape))
        self.status = np.memmap(self.dir / "status.u8", np.uint8, "r+", shape=(self.capacity,))

    def _write_json(self, name: str, obj) -> None:
        atomic_write_text(self.dir / name, json.dumps(obj))

    def reserve(self, ids: Sequence[str]) -> None:
        """Give slots to ids that have none (growing the files), then publish the index."""
        new = [k for k in dict.fromkeys(ids) if k not in self.slot]
        if not new:
            return
        self._flush_data()
        for i, k in enumerate(new, len(self.ids)):
            self.slot[k] = i
        self.ids = self.ids + new
        if len(self.ids) > self.capacity:
            self.capacity = max(len(self.ids), int(self.capacity * 1.25))
            self.data = self.status = None  # type: ignore[assignment]  # release the old maps
            self._open()
        self._write_json("index.json", {"item_shape": list(self.item_shape), "dtype": self.dtype.str,
                                        "ids": self.ids, "capacity": self.capacity, "meta": self.meta})

    # ------------------------------------------------------------------ queries
    def has(self, item_id: str) -> bool:
        i = self.slot.get(item_id)
        return i is not None and self.status[i] == OK

    def todo(self, ids: Sequence[str], retry_failed: bool = False) -> list[str]:
        return [k for k in ids if not self.has(k) and (retry_failed or k not in self.failures)]

    def slots(self, ids: Sequence[str]) -> np.ndarray:
        """Slot per id; -1 for ids without finished data."""
        out = np.full(len(ids), -1, dtype=np.int64)
        for j, k in enumerate(ids):
            i = self.slot.get(k)
            if i is not None and self.status[i] == OK:
                out[j] = i
        return out

    def get(self, item_id: str) -> np.ndarray:
        i = self.slot.get(item_id)
        if i is None or self.status[i] != OK:
            raise KeyError(f"{item_id}: {self.failures.get(item_id, 'not prepared')}")
        return np.asarray(self.data[i])

    def gather(self, ids: Sequence[str]) -> np.ndarray:
        s = self.slots(ids)
        if (s < 0).any():
            missing = [ids[j] for j in np.flatnonzero(s < 0)[:3]]
            raise KeyError(f"{int((s < 0).sum())} id(s) not in store {self.dir}, e.g. {missing}")
        return np.asarray(self.data[s])

    # ------------------------------------------------------------------ writing
    def put(self, item_id: str, value: np.ndarray) -> None:
        i = self.slot[item_id]
        self.data[i] = value
        self._pending.append(i)

    def written(self, item_id: str) -> None:
        """Another process wrote ``item_id``'s data into its slot through its own map of ``data.bin`` (the
        page cache is shared): mark it done at the next flush, after the data, as :meth:`put` does."""
        self._pending.append(self.slot[item_id])

    def fail(self, item_id: str, reason: str) -> None:
        self.failures[item_id] = reason

    def flush(self) -> None:
        """Make everything put so far durable, data first, then status, then the failures."""
        self._flush_data()
        self._write_json(self.failure_file, self.failures)

    def _flush_data(self) -> None:
        if self._pending and isinstance(self.data, np.memmap):
            self.data.flush()
            self.status[self._pending] = OK
            self.status.flush()
        self._pending.clear()

    def forget_failures(self) -> None:
        self.failures = {}
        self._write_json(self.failure_file, {})

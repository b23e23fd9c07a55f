"""Prepared-image cache: every image decoded and resized once into a memory-mapped uint8 array.

Layout of ``<cache_dir>/s<size>/``::

    images.u8    uint8 array [capacity, size, size, 3]   (memory-mapped, grows in place)
    status.u8    uint8 array [capacity]: 0 = not done, 1 = ok, 2 = failed
    index.json   {"size":..., "ids": [...], "capacity": ...}   slot i holds ids[i]
    failures.json  {id: reason}

Safety against interruption: ids are assigned to slots and ``index.json`` is replaced atomically
*before* pixels are written; pixels of a batch are flushed to disk *before* their status bytes are
set and flushed. A job killed at any point leaves slots whose status is 0, which the next run
redoes; a slot marked 1 always holds complete pixels. Preparing is incremental: only ids without a
finished slot are decoded.
"""
from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .catalog import Catalog
from .images import ImageLoadError, SkipReport, load_image, resize_center_crop

DEFAULT_SIZE = 256
EMPTY, OK, FAILED = 0, 1, 2


def default_cache_dir(catalog: Catalog) -> Path:
    if catalog.path is None:
        raise ValueError("catalogue has no path; save it first or pass a cache directory")
    return Path(catalog.path).with_suffix(".cache")


def _decode(args: tuple[str, str, int]) -> tuple[str, np.ndarray | None, str | None]:
    item_id, path, size = args
    try:
        img = load_image(path, draft_size=size)
        return item_id, np.asarray(resize_center_crop(img, size), dtype=np.uint8), None
    except ImageLoadError as exc:
        return item_id, None, exc.reason
    except Exception as exc:  # never let one file end the job
        return item_id, None, f"{type(exc).__name__}: {exc}"


@dataclass
class PrepareResult:
    added: int
    already: int
    failed: SkipReport


class PreparedCache:
    """Read access to a prepared cache (and the machinery to fill it)."""

    def __init__(self, root: str | os.PathLike, size: int = DEFAULT_SIZE):
        self.size = int(size)
        self.dir = Path(root) / f"s{self.size}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._load_index()

    # ------------------------------------------------------------------ index
    def _load_index(self) -> None:
        idx_path = self.dir / "index.json"
        if idx_path.exists():
            meta = json.loads(idx_path.read_text())
            if meta["size"] != self.size:
                raise ValueError(f"cache {self.dir} was built for size {meta['size']}, not {self.size}")
            self.ids: list[str] = meta["ids"]
            self.capacity = int(meta["capacity"])
        else:
            self.ids, self.capacity = [], 0
        self.slot = {k: i for i, k in enumerate(self.ids)}
        fail_path = self.dir / "failures.json"
        self.failures: dict[str, str] = json.loads(fail_path.read_text()) if fail_path.exists() else {}
        self._open_arrays()

    def _open_arrays(self) -> None:
        shape = (self.capacity, self.size, self.size, 3)
        img_path, st_path = self.dir / "images.u8", self.dir / "status.u8"
        if self.capacity == 0:
            self.images = np.zeros((0, self.size, self.size, 3), np.uint8)
            self.status = np.zeros(0, np.uint8)
            return
        for p, nbytes in ((img_path, int(np.prod(shape))), (st_path, self.capacity)):
            if not p.exists() or p.stat().st_size < nbytes:
                with open(p, "ab") as f:
                    f.truncate(nbytes)
        self.images = np.memmap(img_path, np.uint8, "r+", shape=shape)
        self.status = np.memmap(st_path, np.uint8, "r+", shape=(self.capacity,))

    def _write_json(self, name: str, obj) -> None:
        tmp = self.dir / (name + ".tmp")
        tmp.write_text(json.dumps(obj))
        os.replace(tmp, self.dir / name)

    def _reserve(self, new_ids: list[str]) -> None:
        if not new_ids:
            return
        self.ids = self.ids + new_ids
        need = len(self.ids)
        if need > self.capacity:
            self.capacity = max(need, int(self.capacity * 1.25))
        for i, k in enumerate(new_ids, len(self.ids) - len(new_ids)):
            self.slot[k] = i
        # grow the files first, then publish the index that refers to the new slots
        for name in ("images", "status"):
            arr = getattr(self, name)
            if isinstance(arr, np.memmap):
                arr.flush()
                del arr
        self.images = self.status = None  # type: ignore[assignment]
        self._open_arrays()
        self._write_json("index.json", {"size": self.size, "ids": self.ids, "capacity": self.capacity})

    # ------------------------------------------------------------------ queries
    def has(self, item_id: str) -> bool:
        i = self.slot.get(item_id)
        return i is not None and self.status[i] == OK

    def slots(self, ids: list[str]) -> np.ndarray:
        """Slot index per id; -1 for ids that are not (successfully) prepared."""
        out = np.full(len(ids), -1, dtype=np.int64)
        for j, k in enumerate(ids):
            i = self.slot.get(k)
            if i is not None and self.status[i] == OK:
                out[j] = i
        return out

    def get(self, item_id: str) -> np.ndarray:
        i = self.slot.get(item_id)
        if i is None or self.status[i] != OK:
            reason = self.failures.get(item_id, "not prepared")
            raise KeyError(f"{item_id}: {reason}")
        return np.asarray(self.images[i])

    # ------------------------------------------------------------------ filling
    def prepare(self, catalog: Catalog, *, workers: int | None = None, batch: int = 64,
                progress: bool = True, limit: int | None = None) -> PrepareResult:
        """Decode every catalogue image not yet in the cache. ``limit`` stops after that many
        (used by tests to simulate an interrupted run)."""
        all_ids = catalog.df["id"].tolist()
        paths = dict(zip(all_ids, (str(p) for p in catalog.image_paths())))
        todo = [k for k in all_ids if not self.has(k) and k not in self.failures]
        already = sum(1 for k in all_ids if self.has(k))
        report = SkipReport("prepare")
        for k in all_ids:
            if k in self.failures:
                report.add(k, self.failures[k])
        self._reserve([k for k in todo if k not in self.slot])
        if limit is not None:
            todo = todo[:limit]
        if not todo:
            return PrepareResult(0, already, report)
        workers = workers or min(4, os.cpu_count() or 1)
        added = 0
        bar = tqdm(total=len(todo), desc=f"prepare {self.size}px", unit="img", disable=not progress,
                   file=sys.stderr)
        args = [(k, paths[k], self.size) for k in todo]
        pending_ok: list[int] = []

        def commit() -> None:
            if not pending_ok:
                return
            self.images.flush()
            self.status[pending_ok] = OK
            self.status.flush()
            pending_ok.clear()

        def consume(results) -> None:
            nonlocal added
            for item_id, arr, err in results:
                i = self.slot[item_id]
                if err is not None:
                    report.add(item_id, err)
                    self.failures[item_id] = err
                else:
                    self.images[i] = arr
                    pending_ok.append(i)
                    added += 1
                bar.update(1)
                if len(pending_ok) >= batch:
                    commit()
                    self._write_json("failures.json", self.failures)

        try:
            if workers > 1 and len(args) > 32:
                with ProcessPoolExecutor(workers) as ex:
                    consume(ex.map(_decode, args, chunksize=8))
            else:
                consume(map(_decode, args))
        finally:
            commit()
            self._write_json("failures.json", self.failures)
            bar.close()
        return PrepareResult(added, already, report)

    def retry_failures(self) -> None:
        """Forget recorded failures so the next prepare tries those files again."""
        self.failures = {}
        self._write_json("failures.json", {})


def ensure_prepared(catalog: Catalog, size: int = DEFAULT_SIZE, cache_dir: str | os.PathLike | None = None,
                    progress: bool = True, log=print) -> PreparedCache:
    """Open the cache for ``catalog`` and prepare whatever is missing (saying so)."""
    cache = PreparedCache(cache_dir or default_cache_dir(catalog), size)
    missing = [k for k in catalog.df["id"] if not cache.has(k) and k not in cache.failures]
    if missing:
        log(f"preparing {len(missing)} image(s) not yet in the {size}px cache at {cache.dir}")
        res = cache.prepare(catalog, progress=progress)
        if len(res.failed):
            log(res.failed.summary())
    return cache

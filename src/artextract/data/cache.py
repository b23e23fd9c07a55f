"""Prepared-image cache: every image decoded and resized once into a memory-mapped uint8 array.

``<cache_dir>/s<size>/`` is a :class:`~artextract.data.store.SlotStore` of ``[size, size, 3]``
uint8 images (shorter side resized to ``size``, centre square kept). It is incremental (only ids
without finished pixels are decoded) and safe to kill at any moment (see ``store.py``). A job that
prepares holds the cache's lock (a second one waits for it, then finds the work done); under
``torchrun`` every rank decodes its share of the images into the one cache.
"""
from __future__ import annotations

import logging
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .catalog import Catalog
from .. import distributed
from .images import ImageLoadError, SkipReport, load_image, resize_center_crop
from .lock import job_lock
from .store import SlotStore

logger = logging.getLogger(__name__)

DEFAULT_SIZE = 256


def default_cache_dir(catalog: Catalog) -> Path:
    if catalog.path is None:
        raise ValueError("catalogue has no path; save it first or pass a cache directory")
    return Path(catalog.path).with_suffix(".cache")


def decode_resized(path: str | os.PathLike, size: int) -> np.ndarray:
    """The exact transform the cache stores: safe load, shorter side to ``size``, centre square."""
    return np.asarray(resize_center_crop(load_image(path, draft_size=size), size), dtype=np.uint8)


def _decode(args: tuple[str, str, int]) -> tuple[str, np.ndarray | None, str | None]:
    item_id, path, size = args
    try:
        return item_id, decode_resized(path, size), None
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
    """The prepared images of a catalogue at one size."""

    def __init__(self, root: str | os.PathLike, size: int = DEFAULT_SIZE):
        self.size = int(size)
        self.root = Path(root)
        self.store = SlotStore(self.root / f"s{self.size}", (self.size, self.size, 3), np.uint8)
        self.dir = self.store.dir

    @property
    def images(self) -> np.ndarray:
        return self.store.data

    @property
    def failures(self) -> dict[str, str]:
        return self.store.failures

    def has(self, item_id: str) -> bool:
        return self.store.has(item_id)

    def slots(self, ids) -> np.ndarray:
        return self.store.slots(ids)

    def get(self, item_id: str) -> np.ndarray:
        return self.store.get(item_id)

    def retry_failures(self) -> None:
        self.store.forget_failures()

    def prepare(self, catalog: Catalog, *, workers: int | None = None, batch: int = 64,
                progress: bool = True, limit: int | None = None, rank: int = 0, world: int = 1) -> PrepareResult:
        """Decode every catalogue image not yet in the cache, holding the cache's lock.

        Parameters
        ----------
        catalog : Catalog
            The paintings to prepare.
        workers : int, optional
            Decoding processes (default: up to 4).
        progress : bool
            Show a progress bar on stderr.
        limit : int, optional
            Stop after that many images (as an interrupted run would).
        rank, world : int
            This process's rank and the number of ranks under torchrun: rank ``r`` decodes ``todo[r::world]``.

        Returns
        -------
        PrepareResult
            Counts of images added and already there, and the report of those that failed.
        """
        with job_lock(self.dir, "prepared-image cache", rank):
            return self._prepare(catalog, workers=workers, batch=batch, progress=progress, limit=limit,
                                 rank=rank, world=world)

    def _prepare(self, catalog: Catalog, *, workers, batch, progress, limit, rank, world) -> PrepareResult:
        ids = catalog.df["id"].tolist()
        paths = dict(zip(ids, (str(p) for p in catalog.image_paths())))
        if rank == 0:
            self.store.reload()  # what another job finished while this one waited for the lock
            todo = self.store.todo(ids)
            self.store.reserve(todo)
        distributed.barrier(world)
        if rank != 0:
            self.store.reload()
            self.store.shard(rank)
        todo = distributed.broadcast(todo if rank == 0 else None, world)
        already = sum(1 for k in ids if self.store.has(k))
        report = SkipReport("prepare")
        for k in ids:
            if k in self.store.failures:
                report.add(k, self.store.failures[k])
        todo = todo[rank::world]
        if limit is not None:
            todo = todo[:limit]
        if not todo:
            self._merge(world, rank, report)
            return PrepareResult(0, already, report)
        workers = workers or min(4, os.cpu_count() or 1)
        args = [(k, paths[k], self.size) for k in todo]
        added = 0
        bar = tqdm(total=len(todo), desc=f"prepare {self.size}px", unit="img", disable=not progress,
                   file=sys.stderr)
        try:
            if workers > 1 and len(args) > 32:
                ex = ProcessPoolExecutor(workers)
                results = ex.map(_decode, args, chunksize=8)
            else:
                ex, results = None, map(_decode, args)
            for n, (item_id, arr, err) in enumerate(results, 1):
                if err is not None:
                    report.add(item_id, err)
                    self.store.fail(item_id, err)
                else:
                    self.store.put(item_id, arr)
                    added += 1
                bar.update(1)
                if n % batch == 0:
                    self.store.flush()
            if ex is not None:
                ex.shutdown()
        finally:
            self.store.flush()
            bar.close()
        self._merge(world, rank, report)
        return PrepareResult(added, already, report)

    def _merge(self, world: int, rank: int, report: SkipReport) -> None:
        """Under torchrun: wait for every rank, then rank 0 folds their failures into the store."""
        if world == 1:
            return
        distributed.barrier(world)
        if rank == 0:
            self.store.merge_failure_shards()
            seen = {r["id"] for r in report.skipped}
            for k, why in self.store.failures.items():
                if k not in seen:
                    report.add(k, why)
        distributed.barrier(world)


def ensure_prepared(catalog: Catalog, size: int = DEFAULT_SIZE, cache_dir: str | os.PathLike | None = None,
                    progress: bool = True, log=logger.info, rank: int = 0, world: int = 1) -> PreparedCache:
    """Open the cache for ``catalog`` and prepare whatever is missing (saying so); under torchrun every
    rank prepares its share (``rank``/``world``), and every rank returns the whole cache."""
    cache = PreparedCache(cache_dir or default_cache_dir(catalog), size)
    missing = distributed.broadcast(len(cache.store.todo(catalog.df["id"].tolist())) if rank == 0 else None, world)
    if missing:
        log(f"preparing {missing} image(s) not yet in the {size}px cache at {cache.dir}")
        res = cache.prepare(catalog, progress=progress and rank == 0, rank=rank, world=world)
        if len(res.failed) and rank == 0:
            log(res.failed.summary())
        if rank != 0:
            cache.store.reload()
    return cache

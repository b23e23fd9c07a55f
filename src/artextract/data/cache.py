"""Prepared-image cache: every image decoded and resized once into a memory-mapped uint8 array.

``<cache_dir>/s<size>/`` is a :class:`~artextract.data.store.SlotStore` of ``[size, size, 3]``
uint8 images (shorter side resized to ``size``, centre square kept). It is incremental (only ids
without finished pixels are decoded) and safe to kill at any moment (see ``store.py``). A job that
prepares holds the cache's lock (a second one waits for it, then finds the work done); under
``torchrun`` every rank decodes its share of the images into the one cache.

Where a catalogue's cache is (:func:`default_cache_dir`), in this order: the folder a command was given
(``--cache DIR``, :attr:`Catalog.cache_dir`); the folder ``artextract prepare --cache DIR`` recorded in
``CATALOG.cache-location`` beside the catalogue; else ``CATALOG`` with suffix ``.cache``. The feature
stores live in the same folder (``<cache>/features/``).
"""
from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .catalog import Catalog
from ..job import Job, resolve
from ..utils import atomic_write_text
from .images import ImageLoadError, SkipReport, load_image, resize_center_crop
from .lock import job_lock
from .store import SlotStore

logger = logging.getLogger(__name__)

DEFAULT_SIZE = 256
from ..workspace import LOCATION_SUFFIX, cache_location_file, default_cache_path, prepared_dir  # noqa: E402,F401
_said: set[str] = set()  # messages about the recorded location already logged by this process


def default_cache_dir(catalog: Catalog) -> Path:
    """The prepared-image cache folder of ``catalog`` (its feature stores are in it too).

    Parameters
    ----------
    catalog : Catalog

    Returns
    -------
    Path
        ``catalog.cache_dir`` when a command was given ``--cache``; else the folder that
        ``artextract prepare --cache DIR`` recorded in ``CATALOG.cache-location``; else ``CATALOG`` with
        suffix ``.cache``.

    Raises
    ------
    ValueError
        The catalogue has no path and no cache folder.
    """
    if getattr(catalog, "cache_dir", None):
        return Path(catalog.cache_dir)
    if catalog.path is None:
        raise ValueError("catalogue has no path; save it first or pass a cache directory")
    return recorded_cache_dir(catalog.path) or default_cache_path(catalog.path)


def _say_once(level: int, msg: str) -> None:
    """Log ``msg`` the first time this process comes to say it (the cache folder is looked up often)."""
    if msg not in _said:
        _said.add(msg)
        logger.log(level, msg)


def recorded_cache_dir(catalog_path: str | os.PathLike) -> Path | None:
    """The cache folder ``prepare --cache`` recorded for the catalogue at ``catalog_path``, or None.

    Parameters
    ----------
    catalog_path : str or PathLike

    Returns
    -------
    Path or None
        The folder named in ``CATALOG.cache-location`` (logged once per process: "using the prepared
        cache at DIR"); None when there is no such file or it cannot be read (with a warning).
    """
    f = cache_location_file(catalog_path)
    if not f.is_file():
        return None
    try:
        d = Path(json.loads(f.read_text(encoding="utf-8"))["cache"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _say_once(logging.WARNING, f"ignoring {f} ({exc}): using the default cache folder beside the catalogue")
        return None
    if not d.is_absolute():
        d = f.parent / d
    _say_once(logging.INFO, f"using the prepared cache at {d} (recorded in {f} by `artextract prepare --cache`)")
    if not d.is_dir():
        _say_once(logging.WARNING, f"the prepared cache {d} recorded in {f} does not exist (any more): commands "
                  f"that need it prepare it there again; run `artextract prepare --cache DIR` to choose another "
                  f"folder, or delete {f} for the default")
    return d


def record_cache_dir(catalog_path: str | os.PathLike, cache_dir: str | os.PathLike) -> Path | None:
    """Make ``cache_dir`` the catalogue's cache for later commands (what ``prepare --cache`` does).

    Parameters
    ----------
    catalog_path : str or PathLike
        The catalogue.
    cache_dir : str or PathLike
        The chosen cache folder; stored as an absolute path in ``CATALOG.cache-location``. The default
        folder (``CATALOG`` with suffix ``.cache``) removes the record instead.

    Returns
    -------
    Path or None
        The record written, or None when the default folder was chosen.

    Raises
    ------
    OSError
        The record cannot be written (e.g. a read-only folder).
    """
    f = cache_location_file(catalog_path)
    d = Path(cache_dir).resolve()
    if d == default_cache_path(catalog_path).resolve():
        f.unlink(missing_ok=True)
        return None
    atomic_write_text(f, json.dumps({"cache": str(d)}, indent=2) + "\n")
    return f


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


_MAPS: dict = {}  # in a worker process: the cache's data.bin, mapped once per (file, capacity)


def _decode_into(args: tuple[str, str, int, str, tuple, int]) -> tuple[str, bool, str | None]:
    """Decode one image in a worker process and write it straight into its slot of the cache's data file
    (no copy of the pixels through the pipe); the parent marks the slot done after its flush."""
    item_id, path, size, data_file, shape, slot = args
    try:
        arr = decode_resized(path, size)
    except ImageLoadError as exc:
        return item_id, False, exc.reason
    except Exception as exc:  # never let one file end the job
        return item_id, False, f"{type(exc).__name__}: {exc}"
    key = (data_file, shape)
    if key not in _MAPS:
        _MAPS.clear()
        _MAPS[key] = np.memmap(data_file, np.uint8, "r+", shape=shape)
    _MAPS[key][slot] = arr
    return item_id, True, None


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
        self.store = SlotStore(prepared_dir(self.root, self.size), (self.size, self.size, 3), np.uint8)
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
                limit: int | None = None, job: Job | None = None) -> PrepareResult:
        """Decode every catalogue image not yet in the cache, holding the cache's lock.

        Parameters
        ----------
        catalog : Catalog
            The paintings to prepare.
        workers : int, optional
            Decoding processes (default: up to 4).
        limit : int, optional
            Stop after that many images (as an interrupted run would).
        job : Job, optional
            The job (default: the current one); under torchrun each rank decodes its share of the images.

        Returns
        -------
        PrepareResult
            Counts of images added and already there, and the report of those that failed.
        """
        job = resolve(job)
        with job_lock(self.dir, "prepared-image cache", job.rank):
            return self._prepare(catalog, workers=workers, batch=batch, limit=limit, job=job)

    def _prepare(self, catalog: Catalog, *, workers, batch, limit, job: Job) -> PrepareResult:
        ids = catalog.df["id"].tolist()
        paths = dict(zip(ids, (str(p) for p in catalog.image_paths())))
        if job.is_main:
            self.store.reload()  # what another job finished while this one waited for the lock
            todo = self.store.todo(ids)
            self.store.reserve(todo)
        job.barrier()
        if not job.is_main:
            self.store.reload()
            self.store.shard(job.rank)
        todo = job.broadcast(todo if job.is_main else None)
        already = sum(1 for k in ids if self.store.has(k))
        report = SkipReport("prepare")
        for k in ids:
            if k in self.store.failures:
                report.add(k, self.store.failures[k])
        todo = job.shard(todo)
        if limit is not None:
            todo = todo[:limit]
        if not todo:
            self._merge(job, report)
            return PrepareResult(0, already, report)
        workers = workers or min(4, os.cpu_count() or 1)
        args = [(k, paths[k], self.size) for k in todo]
        added = 0
        bar = job.bar(total=len(todo), desc=f"prepare {self.size}px", unit="img")
        try:
            if workers > 1 and len(args) > 32:
                ex = ProcessPoolExecutor(workers)
                results = ex.map(_decode_into, self.worker_args(todo, paths), chunksize=8)
            else:
                ex, results = None, map(_decode, args)
            for n, (item_id, arr, err) in enumerate(results, 1):
                if err is not None:
                    report.add(item_id, err)
                    self.store.fail(item_id, err)
                else:
                    if arr is True:  # a worker wrote it into its slot
                        self.store.written(item_id)
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
        self._merge(job, report)
        return PrepareResult(added, already, report)

    def worker_args(self, ids, paths: dict[str, str]) -> list[tuple]:
        """What :func:`_decode_into` needs to write each of ``ids`` into its (reserved) slot."""
        self.store._flush_data()
        shape = (self.store.capacity, self.size, self.size, 3)
        data_file = str(self.store.dir / "data.bin")
        return [(k, paths[k], self.size, data_file, shape, self.store.slot[k]) for k in ids]

    def _merge(self, job: Job, report: SkipReport) -> None:
        """Under torchrun: wait for every rank, then rank 0 folds their failures into the store."""
        if job.world == 1:
            return
        job.barrier()
        if job.is_main:
            self.store.merge_failure_shards()
            seen = {r["id"] for r in report.skipped}
            for k, why in self.store.failures.items():
                if k not in seen:
                    report.add(k, why)
        job.barrier()


def ensure_prepared(catalog: Catalog, size: int = DEFAULT_SIZE, cache_dir: str | os.PathLike | None = None,
                    *, job: Job | None = None) -> PreparedCache:
    """Open the cache for ``catalog`` and prepare whatever is missing (saying so); under torchrun every
    rank prepares its share, and every rank returns the whole cache.

    Parameters
    ----------
    catalog : Catalog
        The paintings.
    size : int
        Side of the stored square.
    cache_dir : path, optional
        The cache folder (default: the catalogue's).
    job : Job, optional
        The job (default: the current one): its rank's share, messages and progress bar.

    Returns
    -------
    PreparedCache
    """
    job = resolve(job)
    cache = PreparedCache(cache_dir or default_cache_dir(catalog), size)
    missing = job.broadcast(len(cache.store.todo(catalog.df["id"].tolist())) if job.is_main else None)
    if missing:
        job.say(f"preparing {missing} image(s) not yet in the {size}px cache at {cache.dir}")
        res = cache.prepare(catalog, job=job)
        if len(res.failed):
            job.say(res.failed.summary())
        if not job.is_main:
            cache.store.reload()
    return cache

"""Per-painting descriptor records (faces, poses) kept beside an index, built lazily.

A store is a directory with ``meta.json`` (the model and settings that made the records) and
``records.jsonl``, one JSON object per painting, appended and flushed batch by batch. A job killed
mid-write leaves at most a torn last line, which is ignored (and that painting is redone); records
made with other settings are set aside and rebuilt, never mixed.
"""
from __future__ import annotations

import logging
import base64
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..job import Job, resolve
from ..utils import atomic_write_text

logger = logging.getLogger(__name__)


def encode_array(a: np.ndarray) -> str:
    """A float32 array as base64 text (for a JSON-lines record).

    Parameters
    ----------
    a : array_like

    Returns
    -------
    str
    """
    return base64.b64encode(np.ascontiguousarray(a, np.float32).tobytes()).decode("ascii")


def decode_array(s: str, shape: tuple[int, ...]) -> np.ndarray:
    """The inverse of :func:`encode_array`.

    Parameters
    ----------
    s : str
    shape : tuple of int

    Returns
    -------
    numpy.ndarray of float32
    """
    return np.frombuffer(base64.b64decode(s), np.float32).reshape(shape).copy()


class RecordStore:
    def __init__(self, directory: str | os.PathLike, meta: dict):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.meta = meta
        self.file = self.dir / "records.jsonl"
        meta_path = self.dir / "meta.json"
        if meta_path.exists():
            old = json.loads(meta_path.read_text())
            if old != meta and self.file.exists():
                os.replace(self.file, self.dir / "records.old.jsonl")  # made with other settings
        atomic_write_text(meta_path, json.dumps(meta, indent=2))
        self.records: dict[str, dict] = {}
        if self.file.exists():
            with open(self.file, encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a torn last line from an interrupted run
                    if isinstance(rec, dict) and "id" in rec:
                        self.records[str(rec["id"])] = rec
        self.version = 0  # bumped on every append, so derived matrices know when to rebuild

    def __len__(self) -> int:
        return len(self.records)

    def has(self, item_id: str) -> bool:
        return item_id in self.records

    def get(self, item_id: str) -> dict | None:
        return self.records.get(item_id)

    def todo(self, ids: Sequence[str]) -> list[str]:
        return [k for k in ids if k not in self.records]

    def append(self, records: list[dict]) -> None:
        if not records:
            return
        with open(self.file, "a", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        for r in records:
            self.records[str(r["id"])] = r
        self.version += 1

    def build(self, items: Sequence[tuple[str, str | None]], compute: Callable[[str | None], dict], *,
              what: str, batch: int = 32, job: Job | None = None) -> int:
        """Compute the records of ``(id, image path)`` pairs not in the store (saying so, with a progress bar
        of ``job``, default the current one); returns how many."""
        job = resolve(job)
        todo = [(k, p) for k, p in items if k not in self.records]
        if not todo:
            return 0
        job.say(f"{what} in {len(todo):,} painting(s) not yet done -> {self.dir}")
        bar = job.bar(total=len(todo), desc=what, unit="img")
        pending: list[dict] = []
        try:
            for k, p in todo:
                rec = compute(p)
                rec["id"] = k
                pending.append(rec)
                bar.update(1)
                if len(pending) >= batch:
                    self.append(pending)
                    pending = []
        finally:
            self.append(pending)
            bar.close()
        return len(todo)


def index_items(index, catalog=None) -> list[tuple[str, str | None]]:
    """``(id, image path)`` of every painting of ``index``; a ``catalog`` (object or path) given
    here overrides the stored paths (for images that moved).

    Parameters
    ----------
    index : EmbeddingIndex
    catalog : Catalog or str, optional

    Returns
    -------
    list of (str, str or None)
    """
    if index.path is None:
        from .index import SimilarityError

        raise SimilarityError("face and pose search keep their descriptors beside the index: save the index first")
    paths = list(index.paths)
    if catalog is not None:
        from ..data.catalog import Catalog

        cat = catalog if isinstance(catalog, Catalog) else Catalog.load(catalog)
        lookup = dict(zip(cat.ids, (str(p) for p in cat.image_paths())))
        paths = [lookup.get(k, p) for k, p in zip(index.ids, paths)]
    return list(zip(index.ids, paths))

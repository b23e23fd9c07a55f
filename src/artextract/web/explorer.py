"""What the web explorer serves: the catalogue, and the optional model run, similarity index,
outlier table and review store, each with a clear message when it is not configured.

The model and the index are imported lazily, so the explorer runs on a bare catalogue; but when
``--run``, ``--index`` or ``--outliers`` is given, it must load, or the server does not start.
"""
from __future__ import annotations

import hashlib
import logging
import os
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from PIL import Image

from .. import workspace
from ..data import thumbs
from ..data.catalog import Catalog, title_from_id
from ..errors import ArtExtractError
from .db import ReviewStore
from .images import LRU, ImageServer
from .map import CollectionMap, MapData
from .review import OutlierTable

log = logging.getLogger(__name__)

SIMILARITY_MODES = ("image", "face", "pose")
TITLE_COLUMNS = ("title", "name", "object_title")
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_UPLOAD_PIXELS = 50_000_000
DEFAULT_DECODE_BUDGET_PIXELS = 100_000_000
MAX_TEXT_QUERY = 300  # characters of a text search; artextract.similarity.api.MAX_TEXT_CHARS (not imported: torch)


class ExplorerError(ArtExtractError, ValueError):
    """A configured part (run, index, outliers, database) cannot be loaded."""


class FeatureUnavailable(ArtExtractError, RuntimeError):
    """A feature was used that this server was not started with; the message says how to enable it."""


def _quiet_find_similar() -> Callable[..., dict]:
    """:func:`~artextract.similarity.api.find_similar` without progress bars (a server has no terminal)."""
    import functools

    from ..job import Job
    from ..similarity.api import find_similar  # noqa: WPS433 (lazy by design)

    return functools.partial(find_similar, job=Job(progress=False))

@dataclass
class WebConfig:
    catalog: str | os.PathLike
    run: str | os.PathLike | None = None
    index: str | os.PathLike | None = None
    outliers: str | os.PathLike | list | None = None  # one CSV or several
    db: str | os.PathLike | None = None
    thumb_cache: str | os.PathLike | None = None  # "" disables the disk cache
    cache: str | os.PathLike | None = None  # prepared-image cache folder (--cache); default: default_cache_dir
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_upload_pixels: int = DEFAULT_MAX_UPLOAD_PIXELS
    decode_budget_pixels: int = DEFAULT_DECODE_BUDGET_PIXELS  # pixels of uploads decoding at once, all requests
    per_page: int = 48
    auth: bool = True  # ask for sign-in once the review database has users (False: --no-auth)
    login_delay: float = 0.5  # seconds of wait after the first failed sign-in, doubling with each
    map_sample: int = 5_000  # paintings the map's t-SNE lays out itself (the rest are placed among them)
    extra: dict = field(default_factory=dict)


def default_db_path(catalog_path: str | os.PathLike) -> Path:
    """The review database when ``--db`` is not given (:func:`artextract.workspace.review_db_path`)."""
    from ..workspace import review_db_path
    return review_db_path(catalog_path)


NOT_CONFIGURED = {
    "run": "No model run loaded: start the server with --run RUN_DIR to see predictions "
           "(train one with `artextract train --catalog CATALOG --out RUN_DIR`).",
    "index": "No similarity index loaded: start the server with --index INDEX_DIR to see similar paintings "
             "(build one with `artextract index`).",
    "outliers": "No outlier table loaded: start the server with --outliers FILE.csv to review flagged labels "
                "(make one with `artextract outliers`).",
}


class Explorer:
    """Everything the pages and the API read and write."""

    def __init__(self, config: WebConfig, *, run: Any = None, index: Any = None,
                 similar_fn: Callable[..., dict] | None = None):
        self.config = config
        self.catalog = Catalog.load(config.catalog, cache_dir=config.cache)
        df = self.catalog.df
        self.df = df
        self.tasks = self.catalog.tasks
        self.row_of = {k: i for i, k in enumerate(df["id"])}
        self.title_col = next((c for c in TITLE_COLUMNS if c in df.columns), None)
        self.meta_cols = [c for c in df.columns if c not in ("id", "path", "split", self.title_col, *self.tasks)]
        self._search = (df["id"].astype(str) + "\n" + (df[self.title_col].astype(str) if self.title_col else "")
                        ).str.lower()
        thumb_dir = config.thumb_cache
        if thumb_dir is None:
            thumb_dir = thumbs.default_dir(self.catalog)
        self.images = ImageServer(self.catalog, thumb_dir or None)
        self.db_path = Path(config.db) if config.db else default_db_path(config.catalog)
        try:
            self.reviews = ReviewStore(self.db_path)
        except Exception as exc:
            raise ExplorerError(f"review database {self.db_path}: {exc}; pass --db PATH to put it elsewhere") from exc

        # optional parts
        self.run = run
        self.run_error: str | None = None
        if run is None and config.run:
            self.run = self._load_run(config.run)
        self.index = index
        self.similar_fn = similar_fn
        if index is None and config.index:
            self.index, self.similar_fn = self._load_index(config.index)
        elif index is not None and similar_fn is None:
            self.similar_fn = _quiet_find_similar()
        self.outliers: OutlierTable | None = None
        if config.outliers:
            try:
                self.outliers = OutlierTable(config.outliers, self.catalog)
            except Exception as exc:
                raise ExplorerError(str(exc)) from exc
        self._model_lock = threading.Lock()
        # one lock per mode: the first face or pose search scans the whole index, and must not hold
        # up whole-image searches meanwhile
        self._index_locks = {m: threading.Lock() for m in SIMILARITY_MODES}
        self._text_lock = threading.Lock()
        self._text_why: str | None = None
        self._text_checked = False
        self._pred_cache = _ObjLRU(4096)
        self._sim_cache = _ObjLRU(2048)
        self.uploads = _ObjLRU(32)  # token -> recent uploaded image, for the face/pose tabs
        self.selections = _ObjLRU(256)  # token -> ids chosen on the map, for the gallery and the queue
        self.map = CollectionMap(self._map_data())

    # ------------------------------------------------------------------ loading
    @staticmethod
    def _load_run(path) -> Any:
        from ..training.inference import Run

        try:
            return Run.load(path)
        except Exception as exc:
            raise ExplorerError(f"cannot load the run {path}: {exc}") from exc

    @staticmethod
    def _load_index(path):
        from ..similarity.index import EmbeddingIndex

        try:
            return EmbeddingIndex.load(path), _quiet_find_similar()
        except Exception as exc:
            raise ExplorerError(f"cannot load the similarity index {path}: {exc}") from exc

    def _map_data(self) -> MapData:
        """What the collection map is drawn from: the index's embedding, else the run's, else none."""
        data = MapData(df=self.df, tasks=self.tasks, title_col=self.title_col, sample=self.config.map_sample,
                       flagged_ids=self.outliers.flagged_ids if self.outliers is not None else set())
        index, run = self.index, self.run
        if index is not None and getattr(index, "path", None) is not None:
            data.cache_file = workspace.map_layout_file(index_dir=index.path)
        elif run is not None:
            data.cache_file = workspace.map_layout_file(run_dir=run.path, catalog_path=self.catalog.path)
        if index is not None:
            data.embedding = lambda: (list(index.ids), index.vectors())
            data.cache_key = f"index|{len(index)}|{getattr(index, 'updated', '')}"
        elif run is not None:
            def embed():
                from ..job import Job

                with self._model_lock:
                    return run.embed_catalog(self.catalog, job=Job(progress=False))

            ids = "\n".join(map(str, self.df["id"]))
            data.embedding, data.source = embed, "run"
            data.cache_key = f"run|{hashlib.sha1(ids.encode()).hexdigest()}|{run.config.get('created', '')}"
        return data

    # ------------------------------------------------------------------ status
    def status(self) -> dict:
        return {
            "catalog": {"path": str(self.catalog.path), "rows": len(self.df), "source": self.catalog.source,
                        "tasks": {n: len(t.classes) for n, t in self.tasks.items()}},
            "run": {"loaded": self.run is not None, "path": str(self.config.run) if self.config.run else None,
                    "message": None if self.run is not None else NOT_CONFIGURED["run"]},
            "index": {"loaded": self.index is not None,
                      "path": str(self.config.index) if self.config.index else None,
                      "message": None if self.index is not None else NOT_CONFIGURED["index"]},
            "outliers": ({"loaded": True, **self.outliers.summary()} if self.outliers is not None
                         else {"loaded": False, "message": NOT_CONFIGURED["outliers"]}),
            "reviews": {"db": str(self.db_path), **self.reviews.counts()},
        }

    # ------------------------------------------------------------------ paintings
    def has(self, item_id: str) -> bool:
        return item_id in self.row_of

    def row(self, item_id: str) -> dict:
        return self.df.iloc[self.row_of[item_id]].to_dict()

    def title(self, row: dict) -> str:
        if self.title_col:
            v = row.get(self.title_col)
            if isinstance(v, str) and v.strip():
                return v
        return title_from_id(str(row["id"]))

    def summary(self, item_id: str, decisions: dict[str, dict] | None = None) -> dict:
        """Id, title, split and labels; ``decisions`` (task -> current decision of this painting)
        adds the labels corrected in review."""
        r = self.row(item_id)
        labels = {t: (r[t] if isinstance(r[t], str) else None) for t in self.tasks}
        out = {"id": item_id, "title": self.title(r), "split": r["split"], "labels": labels,
               "flagged": bool(self.outliers is not None and item_id in self.outliers.flagged_ids)}
        if decisions is not None:
            out["corrected"] = {t: d["label"] for t, d in decisions.items() if d["action"] != "keep"}
        return out

    def filter(self, *, q: str | None = None, split: str | None = None,
               labels: dict[str, str] | None = None, flagged: bool = False) -> list[str]:
        df = self.df
        mask = pd.Series(True, index=df.index)
        if q:
            mask &= self._search.str.contains(q.strip().lower(), regex=False)
        if split:
            mask &= df["split"] == split
        for task, label in (labels or {}).items():
            if task in self.tasks and label:
                if label == "__none__":
                    mask &= df[task].isna()
                else:
                    mask &= df[task] == label
        if flagged:
            ids = self.outliers.flagged_ids if self.outliers is not None else set()
            mask &= df["id"].isin(ids)
        return df.loc[mask, "id"].tolist()

    def metadata(self, item_id: str) -> dict:
        r = self.row(item_id)
        out = {}
        for c in self.meta_cols:
            v = r.get(c)
            if v is None or (isinstance(v, float) and v != v):
                continue
            if hasattr(v, "item"):
                try:
                    v = v.item()
                except (ValueError, AttributeError):
                    v = str(v)
            out[c] = v if isinstance(v, (int, float, bool)) else str(v)
        return out

    def neighbours(self, item_id: str) -> tuple[str | None, str | None]:
        i = self.row_of[item_id]
        ids = self.df["id"]
        return (ids.iat[i - 1] if i > 0 else None, ids.iat[i + 1] if i + 1 < len(ids) else None)

    # ------------------------------------------------------------------ predictions
    def predict_image(self, img: Image.Image, top_k: int = 3) -> dict:
        if self.run is None:
            raise FeatureUnavailable(NOT_CONFIGURED["run"])
        with self._model_lock:
            res = self.run.predict_images([img], top_k=top_k)[0]
        return _pred_json(res)

    def predict_id(self, item_id: str, top_k: int = 3) -> dict:
        if self.run is None:
            raise FeatureUnavailable(NOT_CONFIGURED["run"])
        key = (item_id, top_k)
        hit = self._pred_cache.get(key)
        if hit is not None:
            return hit
        img = self.images.load(item_id)
        res = self.predict_image(img, top_k)
        self._pred_cache.put(key, res)
        return res

    # ------------------------------------------------------------------ explanations
    def explain_png(self, item_id: str, task: str, label: str | None = None, method: str = "auto") -> tuple[bytes, dict]:
        """The heat-map overlay (PNG) of what drove the run's score for ``label`` of ``task`` on a
        painting, and what it shows (see :mod:`artextract.training.explain`)."""
        if self.run is None:
            raise FeatureUnavailable(NOT_CONFIGURED["run"])
        from ..training.explain import explain, overlay_png

        key = ("explain", item_id, task, label, method)
        hit = self._pred_cache.get(key)
        if hit is not None:
            return hit
        img = self.images.load(item_id)
        with self._model_lock:
            result = explain(self.run, img, task, label, method)
        out = (overlay_png(result), result.info())
        self._pred_cache.put(key, out)
        return out

    # ------------------------------------------------------------------ similarity
    def keep_selection(self, ids: list[str]) -> str:
        """Remember a set of catalogue ids chosen on the map; returns its token."""
        token = secrets.token_urlsafe(9)
        self.selections.put(token, [i for i in dict.fromkeys(ids) if i in self.row_of])
        return token

    def keep_upload(self, img: Image.Image) -> str:
        """Remember an uploaded image for a while (bounded) and return its token."""
        token = secrets.token_urlsafe(12)
        img = img.copy()
        img.thumbnail((2048, 2048), Image.Resampling.LANCZOS)
        self.uploads.put(token, img)
        return token

    def similar(self, *, item_id: str | None = None, image: Image.Image | None = None, mode: str = "image",
                k: int = 12) -> dict:
        if self.index is None or self.similar_fn is None:
            raise FeatureUnavailable(NOT_CONFIGURED["index"])
        if mode not in SIMILARITY_MODES:
            raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(SIMILARITY_MODES)}")
        key = (item_id, mode, k) if item_id is not None else None
        if key is not None:
            hit = self._sim_cache.get(key)
            if hit is not None:
                return hit
        with self._index_locks[mode]:
            if item_id is not None:
                res = self.similar_fn(self.index, id=item_id, k=k, mode=mode)
            else:
                res = self.similar_fn(self.index, image=image, k=k, mode=mode)
        res = self._enrich(dict(res or {}), mode)
        if key is not None:
            self._sim_cache.put(key, res)
        return res

    def text_search_message(self) -> str | None:
        """None when the loaded index ranks paintings by a text (its embedder has a text tower), else
        why not, in words. Checked once (an open_clip index loads its model here)."""
        if self.index is None or self.similar_fn is None:
            return NOT_CONFIGURED["index"]
        if not self._text_checked:
            with self._text_lock:
                if not self._text_checked:
                    from ..similarity.api import text_search_unavailable

                    try:
                        self._text_why = text_search_unavailable(self.index)
                    except Exception as exc:  # noqa: BLE001  (the gallery still renders; the message says why)
                        log.exception("cannot tell whether the index has a text tower")
                        self._text_why = f"text search is unavailable: {type(exc).__name__}: {exc}"
                    self._text_checked = True
        return self._text_why

    def search_text(self, text: str, k: int = 12) -> dict:
        """The ``k`` paintings the text describes best (an index with a text tower); raises
        FeatureUnavailable without an index, TextSearchUnavailable (a ValueError) without a text tower."""
        if self.index is None or self.similar_fn is None:
            raise FeatureUnavailable(NOT_CONFIGURED["index"])
        why = self.text_search_message()
        if why is not None:
            from ..similarity.embed import TextSearchUnavailable

            raise TextSearchUnavailable(why)
        key = ("text", text, k, None)  # four items: never the key of a painting's search
        hit = self._sim_cache.get(key)
        if hit is not None:
            return hit
        with self._index_locks["image"]:
            res = self.similar_fn(self.index, text=text, k=k, mode="image")
        res = self._enrich(dict(res or {}), "image")
        self._sim_cache.put(key, res)
        return res

    def _enrich(self, res: dict, mode: str) -> dict:
        results = []
        for i, r in enumerate(res.get("results") or []):
            rid = str(r.get("id"))
            item = {k: _jsonable(v) for k, v in r.items() if k not in ("id", "score", "rank", "path")}
            item.update(id=rid, score=_num(r.get("score")), rank=int(r.get("rank") or i + 1),
                        in_catalog=rid in self.row_of)
            if item["in_catalog"]:
                s = self.summary(rid)
                item.update(title=s["title"], labels=s["labels"], split=s["split"])
            results.append(item)
        out = {k: _jsonable(v) for k, v in res.items() if k not in ("results",)}
        out.update(mode=res.get("mode", mode), results=results, message=res.get("message"))
        out.setdefault("query", None)
        return out


def _jsonable(v):
    """Plain JSON types from what a search returns (numpy arrays and scalars, images, bytes)."""
    if v is None or isinstance(v, (str, bool, int)):
        return v
    if isinstance(v, float):
        return v if v == v and v not in (float("inf"), float("-inf")) else None
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "tolist"):  # numpy arrays and scalars
        return _jsonable(v.tolist())
    if isinstance(v, (bytes, bytearray)):
        return f"<{len(v)} bytes>"
    if isinstance(v, Image.Image):
        return f"<image {v.width}x{v.height}>"
    return str(v)


class _ObjLRU(LRU):
    """The LRU bounded by item count (values are small dicts)."""

    def __init__(self, max_items: int):
        super().__init__(max_items)

    def put(self, key, value) -> None:  # type: ignore[override]
        with self._lock:
            self._d.pop(key, None)
            self._d[key] = value
            while len(self._d) > self.max_bytes:
                self._d.popitem(last=False)


def _num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f else None


def _pred_json(res: dict) -> dict:
    return {task: [{"label": str(lbl), "prob": float(p)} for lbl, p in items] for task, items in res.items()}

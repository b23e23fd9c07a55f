"""The collection map: every painting a point, laid out from the index's (or the run's) embedding.

Two layouts:

- ``embedding``: the 2-D map of :func:`artextract.report.layout.embed_2d` (openTSNE of a bounded
  sample, the rest placed among it), computed once and cached beside the index or the run
  (:func:`artextract.workspace.map_layout_file`);
- ``timeline``: x is the year (a numeric ``year``/``date`` column) or, without one, the class of an
  ordered task (with a little jitter), and y is the embedding's first principal axis.

The payload is columnar and compact: coordinates are integers in ``[0, SCALE]``, colours are small
integer codes into a legend of at most ``MAX_COLOURS`` values (the rest is grey), and the parts
(``points``, ``xy``, ``color``) can be fetched on their own, so a page loads the points once and
then asks only for new coordinates or colours.

:class:`CollectionMap` is given a :class:`MapData` (the catalogue's rows and tasks, the flagged ids,
a function that returns the embedding, and where the layout is kept); the explorer builds it.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..errors import ArtExtractError

logger = logging.getLogger(__name__)

SCALE = 99_999            # coordinates are sent as integers in [0, SCALE]
MAX_COLOURS = 20          # legend entries with a colour; the rest is grey
NUMERIC_BINS = 10         # a numeric field with many values is coloured by its quantile bins
TITLE_CHARS = 80          # titles are cut to this length in the payload
YEAR_COLUMNS = ("year", "date", "year_start", "begin_year", "beginyear")
LAYOUTS = ("embedding", "timeline")
PARTS = ("points", "xy", "color")
OTHER, MISSING = -1, -2   # colour codes of the grey "other values" and of "no value"


class MapUnavailable(ArtExtractError, RuntimeError):
    """The map needs an embedding: an index or a run."""


def _write_npz(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


@dataclass
class MapData:
    """What the map is drawn from: the catalogue's rows, and the embedding when there is one.

    Parameters
    ----------
    df : pandas.DataFrame
        The catalogue's rows (``id``, the task columns, the other fields).
    tasks : dict
        Task name -> :class:`~artextract.data.catalog.TaskSpec` (its classes; ``ordered``).
    title_col : str, optional
        The column of the paintings' titles (titles are made from the ids without one).
    flagged_ids : set
        Ids of the paintings the outlier table flags.
    embedding : callable, optional
        Returns ``(ids, X [N, D])``, the embedding to lay out; None when there is none (no index, no run).
    source : str
        Where the embedding comes from (``index`` or ``run``), shown on the page.
    cache_file : Path, optional
        Where the layout is kept between starts (:func:`artextract.workspace.map_layout_file`).
    cache_key : str
        What the kept layout must have been computed from (a layout of another key is recomputed).
    sample : int, optional
        Largest number of paintings t-SNE lays out itself.
    """

    df: pd.DataFrame
    tasks: dict
    title_col: str | None = None
    flagged_ids: set = field(default_factory=set)
    embedding: Callable[[], tuple[list[str], np.ndarray]] | None = None
    source: str = "index"
    cache_file: Path | None = None
    cache_key: str = ""
    sample: int | None = None


class CollectionMap:
    """The map of one catalogue (layouts computed once, payload parts cached)."""

    def __init__(self, data: MapData):
        self.data = data
        self._lock = threading.Lock()
        self._layout: dict | None = None
        self._cache: dict[tuple, bytes] = {}

    # ------------------------------------------------------------------ layout
    def _need_embedding(self) -> None:
        if self.data.embedding is None or self.data.cache_file is None:
            raise MapUnavailable("The map needs an embedding: start the server with --index INDEX_DIR "
                                 "(or --run RUN_DIR).")

    def cache_path(self) -> Path:
        """The file the layout is kept in."""
        self._need_embedding()
        return self.data.cache_file

    def cache_key(self) -> str:
        """What the cache file must have been computed from (the index's count and update time, or
        the run and the catalogue's ids)."""
        return self.data.cache_key

    def layout(self) -> dict:
        """``{"ids", "xy" [N, 2], "pc1" [N], "source"}``, from the cache file or computed (and cached)."""
        with self._lock:
            if self._layout is not None:
                return self._layout
            path, key = self.cache_path(), self.data.cache_key
            if path.is_file():
                try:
                    z = np.load(path, allow_pickle=False)
                    if str(z["key"]) == key:
                        self._layout = {"ids": [str(i) for i in z["ids"]], "xy": z["xy"], "pc1": z["pc1"],
                                        "source": str(z["source"])}
                        return self._layout
                except (OSError, KeyError, ValueError) as exc:
                    logger.warning("map: ignoring the unreadable cache %s (%s)", path, exc)
            ids, X = self.data.embedding()
            logger.info("map: laying out %s paintings (once; the layout is cached)", f"{len(ids):,}")
            self._layout = compute_layout(ids, X, source=self.data.source, sample=self.data.sample)
            try:
                save_layout(path, self._layout, key)
                logger.info("map: layout of %s paintings cached in %s", f"{len(ids):,}", path)
            except OSError as exc:
                logger.warning("map: cannot cache the layout in %s (%s); it is kept in memory", path, exc)
            return self._layout

    def warm(self) -> None:
        """Load (or compute and cache) the layout and encode the points, in a background thread, so
        the first visitor of /map does not wait; failures are logged, and the page reports them."""
        def run():
            try:
                self.payload("embedding", None, ("points", "xy"))
            except MapUnavailable:
                pass
            except Exception:
                logger.exception("map: preparing the layout failed")

        threading.Thread(target=run, name="map-warm", daemon=True).start()

    # ------------------------------------------------------------------ payload
    def payload(self, layout: str = "embedding", color: str | None = None, parts=PARTS) -> bytes:
        """The JSON of the map (``parts`` of it), encoded once per (layout, colour, parts)."""
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}")
        if color and color not in self.fields():
            raise ValueError(f"cannot colour by {color!r}; fields: {', '.join(self.fields())}")
        bad = [p for p in parts if p not in PARTS]
        if bad:
            raise ValueError(f"unknown part(s) {', '.join(bad)}; parts are {', '.join(PARTS)}")
        key = (layout, color, tuple(parts))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        lay = self.layout()
        rows = self._rows(lay["ids"])
        head = {"n": len(rows), "layout": layout, "source": lay["source"],
                "not_on_map": int(len(self.data.df) - len(rows))}
        pieces = [_encode(head)[1:-1]]
        if "points" in parts:
            pieces.append(self._part(("points",), lambda: self._points(rows, lay["ids"])))
        if "xy" in parts:
            pieces.append(self._part(("xy", layout), lambda: self._xy(layout, lay, rows)))
        if "color" in parts:
            pieces.append(self._part(("color", color), lambda: {"color": self._colour(color, rows) if color else None}))
        data = b"{" + b",".join(pieces) + b"}"
        if len(self._cache) > 64:
            self._cache.clear()
        self._cache[key] = data
        return data

    def _part(self, key: tuple, make) -> bytes:
        """One part's members, encoded once (without the braces)."""
        hit = self._cache.get(("part", *key))
        if hit is None:
            hit = self._cache[("part", *key)] = _encode(make())[1:-1]
        return hit

    def fields(self) -> list[str]:
        """What the map can be coloured by: the tasks, then the other catalogue columns."""
        d = self.data
        skip = {"id", "path", d.title_col}
        return list(d.tasks) + [c for c in d.df.columns if c not in skip and c not in d.tasks]

    def _rows(self, ids: list[str]) -> np.ndarray:
        """Catalogue row of each laid-out painting (paintings not in the catalogue are left out)."""
        key = ("rows", len(ids))
        if getattr(self, "_rows_cache", (None,))[0] != key:
            self._rows_cache = (key, pd.Index(self.data.df["id"]).get_indexer(pd.Index(ids)).astype(np.int64))
        rows = self._rows_cache[1]
        return rows[rows >= 0] if (rows < 0).any() else rows

    def _points(self, rows: np.ndarray, ids: list[str]) -> dict:
        """Ids (their common prefix and suffix sent once, the rest joined by newlines), titles (joined
        by newlines), dates (the year, or the ordered class) and the positions of flagged paintings."""
        d = self.data
        df = d.df
        ids_col = pd.Series(df["id"].to_numpy()[rows], dtype=object).astype(str)
        if d.title_col:
            t = pd.Series(df[d.title_col].to_numpy()[rows], dtype=object)
            ok = t.fillna("").astype(str).str.strip().ne("").to_numpy(bool)
            t = t.where(ok, "").astype(str).str.slice(0, TITLE_CHARS)
        else:
            t, ok = pd.Series([""] * len(rows), dtype=object), np.zeros(len(rows), bool)
        if not ok.all():
            from ..data.catalog import title_from_id

            for i in np.flatnonzero(~ok).tolist():
                t.iat[i] = title_from_id(ids_col.iat[i])[:TITLE_CHARS]
        titles = t.str.replace("\n", " ", regex=False).str.replace("\r", " ", regex=False)
        ycol = self._year_col()
        if ycol is not None:
            v = pd.to_numeric(df[ycol], errors="coerce").to_numpy(dtype=float)[rows]
            dates = np.where(np.isnan(v), 0, v).astype(np.int64).tolist()
            for i in np.flatnonzero(np.isnan(v)).tolist():
                dates[i] = None
        elif "timeframe" in df.columns:
            dates = [s if isinstance(s, str) else None for s in df["timeframe"].to_numpy()[rows]]
        else:
            dates = [None] * len(rows)
        flagged_ids = d.flagged_ids
        flagged = np.flatnonzero(ids_col.isin(flagged_ids).to_numpy()).tolist() if flagged_ids else []
        prefix, suffix = _common_ends(ids_col.tolist())
        middles = ids_col.str.slice(len(prefix), -len(suffix) if suffix else None)
        return {"ids_prefix": prefix, "ids_suffix": suffix, "ids": "\n".join(middles.tolist()),
                "titles": "\n".join(titles.tolist()), "dates": dates, "flagged": flagged,
                "fields": self.fields()}

    def _year_col(self) -> str | None:
        if not hasattr(self, "_ycol"):
            self._ycol = _year_column(self.data.df)
        return self._ycol

    def _xy(self, layout: str, lay: dict, rows: np.ndarray) -> dict:
        keep = np.asarray(self._keep_mask(lay["ids"]))
        if layout == "embedding":
            xy = lay["xy"][keep]
            x, y = _scale_together(xy[:, 0], xy[:, 1])
            return {"x": x, "y": y, "x_axis": None, "y_axis": None}
        pc1 = lay["pc1"][keep]
        xs, axis = self._timeline_x(rows)
        return {"x": _scale(xs), "y": _scale(-pc1), "x_axis": axis,
                "y_axis": {"label": "the embedding's first principal axis"}}

    def _keep_mask(self, ids: list[str]) -> np.ndarray:
        self._rows(ids)
        return self._rows_cache[1] >= 0

    def _timeline_x(self, rows: np.ndarray) -> tuple[np.ndarray, dict]:
        d = self.data
        df = d.df
        rng = np.random.default_rng(0)
        jitter = rng.uniform(-0.35, 0.35, len(rows))
        ycol = self._year_col()
        if ycol is not None:
            x = pd.to_numeric(df[ycol], errors="coerce").to_numpy(dtype=float)[rows]
            label, ticks = ycol, None
            if np.isfinite(x).any():
                lo, hi = np.nanmin(x), np.nanmax(x)
                x = x + jitter * max(1.0, (hi - lo) / 200)
        else:
            task = next((t for t, s in d.tasks.items() if s.ordered), None)
            if task is None:
                raise ValueError("the timeline needs a year column or an ordered task (such as timeframe); "
                                 "this catalogue has neither")
            classes = d.tasks[task].classes
            code = {c: i for i, c in enumerate(classes)}
            x = np.array([code.get(v, np.nan) if isinstance(v, str) else np.nan for v in df[task].to_numpy()[rows]],
                         dtype=float) + jitter
            label, ticks = task, [[i, c] for i, c in enumerate(classes)]
        missing = ~np.isfinite(x)
        lo, hi = (np.nanmin(x), np.nanmax(x)) if (~missing).any() else (0.0, 1.0)
        gap = max(hi - lo, 1.0) * 0.06
        undated = lo - gap
        x = np.where(missing, undated + jitter * gap * 0.4, x)
        full_lo, full_hi = float(x.min()), float(x.max())

        def pos(v):
            return round((v - full_lo) / max(full_hi - full_lo, 1e-9) * SCALE)

        if ticks is None:
            step = _nice_step((hi - lo) / 8)
            start = np.ceil(lo / step) * step
            ticks = [[float(v), str(int(v))] for v in np.arange(start, hi + 1e-9, step)]
        tick_out = [[pos(v), lbl] for v, lbl in ticks]
        if missing.any():
            tick_out.insert(0, [pos(undated), "undated"])
        return x, {"label": label, "ticks": tick_out, "undated": int(missing.sum())}

    def _colour(self, field: str, rows: np.ndarray) -> dict:
        col = self.data.df[field].to_numpy()[rows]
        numeric = pd.api.types.is_numeric_dtype(self.data.df[field]) and not pd.api.types.is_bool_dtype(self.data.df[field])
        num = pd.Series(col, dtype=float) if numeric else None
        if num is not None and num.notna().any() and num.nunique() > MAX_COLOURS:
            bins = pd.qcut(num, NUMERIC_BINS, duplicates="drop")
            cats = [f"{iv.left:g} to {iv.right:g}" for iv in bins.cat.categories]
            codes = np.where(bins.cat.codes.to_numpy() < 0, MISSING, bins.cat.codes.to_numpy())
            counts = np.bincount(codes[codes >= 0], minlength=len(cats)).tolist()
            return {"field": field, "values": cats, "counts": counts, "codes": codes.tolist(),
                    "other": 0, "missing": int((codes == MISSING).sum()), "binned": True}
        text = pd.Series(col, dtype=object)
        missing = text.isna().to_numpy() | (text == "").to_numpy()
        if not pd.api.types.is_string_dtype(self.data.df[field]):
            text = text.where(~missing, None).map(lambda v: v if v is None or isinstance(v, str) else str(v))
        fcodes, uniques = pd.factorize(text.where(~missing, None), use_na_sentinel=True)
        counts_all = np.bincount(fcodes[fcodes >= 0], minlength=len(uniques))
        order = np.argsort(-counts_all, kind="stable")[:MAX_COLOURS]
        remap = np.full(len(uniques) + 1, OTHER, np.int64)
        remap[order] = np.arange(len(order))
        codes = np.where(missing, MISSING, remap[np.where(fcodes >= 0, fcodes, len(uniques))])
        top = [uniques[i] for i in order]
        return {"field": field, "values": [str(v) for v in top], "counts": [int(counts_all[i]) for i in order],
                "codes": codes.tolist(), "other": int((codes == OTHER).sum()),
                "missing": int((codes == MISSING).sum()), "binned": False}


def compute_layout(ids: list[str], X: np.ndarray, *, source: str = "index", seed: int = 0,
                   sample: int | None = None) -> dict:
    """Lay out an embedding for the map.

    Parameters
    ----------
    ids : list of str
        One id per row of ``X``.
    X : numpy.ndarray
        ``[N, D]`` embedding.
    source : str
        Where the embedding came from (``index`` or ``run``), shown on the page.
    seed : int
        Seed of :func:`~artextract.report.layout.embed_2d`.
    sample : int, optional
        Largest number of paintings t-SNE lays out itself (the layout module's default if None).

    Returns
    -------
    dict
        ``{"ids", "xy" [N, 2] float32, "pc1" [N] float32, "source"}``.
    """
    from ..report.layout import embed_2d

    X = np.asarray(X, np.float32)
    kw = {"seed": seed} if sample is None else {"seed": seed, "sample": sample}
    xy = embed_2d(X, **kw) if len(X) else np.zeros((0, 2), np.float32)
    return {"ids": list(ids), "xy": np.asarray(xy, np.float32), "pc1": first_axis(X, seed), "source": source}


def first_axis(X: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each row's coordinate on the first principal axis of ``X`` (fitted on at most 50,000 rows)."""
    if len(X) < 2:
        return np.zeros(len(X), np.float32)
    rng = np.random.default_rng(seed)
    fit = X if len(X) <= 50_000 else X[rng.choice(len(X), 50_000, replace=False)]
    mean = fit.mean(0)
    _, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
    axis = vt[0] * np.sign(vt[0][np.argmax(np.abs(vt[0]))])
    return ((X - mean) @ axis).astype(np.float32)


def save_layout(path: str | os.PathLike, layout: dict, key: str) -> None:
    """Write a layout to its cache file (atomically)."""
    _write_npz(Path(path), ids=np.array(layout["ids"], dtype=str), xy=layout["xy"], pc1=layout["pc1"],
               source=np.array(layout["source"]), key=np.array(key))


def _encode(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _common_ends(ids: list[str]) -> tuple[str, str]:
    """The longest prefix and suffix all ``ids`` share (not overlapping in the shortest id)."""
    if not ids:
        return "", ""
    import os.path

    prefix = os.path.commonprefix(ids)
    rest = [i[len(prefix):] for i in ids]
    suffix = os.path.commonprefix([r[::-1] for r in rest])[::-1]
    return prefix, suffix


def _year_column(df: pd.DataFrame) -> str | None:
    for c in YEAR_COLUMNS:
        if c in df.columns and pd.to_numeric(df[c], errors="coerce").notna().any():
            return c
    return None


def _scale(v: np.ndarray) -> list[int]:
    v = np.asarray(v, dtype=np.float64)
    lo, hi = float(v.min()), float(v.max())
    return np.rint((v - lo) / max(hi - lo, 1e-12) * SCALE).astype(np.int64).tolist() if len(v) else []


def _scale_together(x: np.ndarray, y: np.ndarray) -> tuple[list[int], list[int]]:
    """Both axes scaled by the same factor (a t-SNE map keeps its aspect), centred in the square."""
    if not len(x):
        return [], []
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    span = max(x.max() - x.min(), y.max() - y.min(), 1e-12)
    cx, cy = (x.max() + x.min()) / 2, (y.max() + y.min()) / 2
    fx = (x - cx) / span + 0.5
    fy = (cy - y) / span + 0.5
    return (np.rint(fx * SCALE).astype(np.int64).tolist(), np.rint(fy * SCALE).astype(np.int64).tolist())


def _nice_step(raw: float) -> float:
    if raw <= 0:
        return 1.0
    mag = 10 ** np.floor(np.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return float(m * mag)
    return float(10 * mag)

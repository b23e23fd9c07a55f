"""The outlier table behind the review queue, and exporting the corrected labels.

The queue is the rows of an ``artextract outliers`` CSV whose ``flagged`` column is true, ordered
by ``rank``. Columns beyond the known ones (per-method scores, neighbour evidence ...) are kept and
shown generically.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd

from ..data.catalog import Catalog
from ..errors import ArtExtractError, OptionError
from ..utils import csv_safe_frame, csv_unescape_frame
from .db import ReviewStore

REQUIRED = ("id", "task", "given_label", "suggested_label")
KNOWN = ("id", "task", "given_label", "suggested_label", "suggested_prob", "score", "rank", "flagged")
_TRUE = {"true", "1", "yes", "y", "t"}


class OutliersError(ArtExtractError, ValueError):
    """The outliers file is missing or malformed."""


def _to_bool(v) -> bool:
    if isinstance(v, bool):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return False
    if isinstance(v, (int, float)):
        return bool(v)
    return str(v).strip().lower() in _TRUE


def _clean(v):
    """A JSON-friendly scalar (NaN -> None, numpy -> python)."""
    if v is None:
        return None
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            v = v.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if v is pd.NA or v is pd.NaT:
        return None
    return v


class OutlierTable:
    """The rows of an outliers CSV, indexed for the painting pages and the review queue."""

    def __init__(self, path: str | os.PathLike | list, catalog: Catalog):
        paths = [Path(p) for p in path] if isinstance(path, (list, tuple)) else [Path(path)]
        if not paths:
            raise OutliersError("no outliers file given")
        self.path = paths[0] if len(paths) == 1 else paths
        self.paths = paths
        frames = []
        for p in paths:
            if not p.is_file():
                raise OutliersError(f"outliers file {p} does not exist; make one with `artextract outliers`")
            try:
                df = pd.read_csv(p, dtype={"id": str, "task": str, "given_label": str, "suggested_label": str},
                                 keep_default_na=True)
                df = csv_unescape_frame(df)   # `artextract outliers` writes labels like "=x" as "'=x"
            except Exception as exc:
                raise OutliersError(f"{p} is not a readable CSV: {exc}") from exc
            missing = [c for c in REQUIRED if c not in df.columns]
            if missing:
                raise OutliersError(f"{p} lacks the column(s) {', '.join(missing)}; expected at least "
                                    f"{', '.join(REQUIRED)} (the output of `artextract outliers`)")
            frames.append(df)
        # several files (one per task, say): one queue, the most suspicious of each file first
        df = pd.concat(frames, ignore_index=True, sort=False) if len(frames) > 1 else frames[0]
        df["flagged"] = df["flagged"].map(_to_bool) if "flagged" in df.columns else True
        if "rank" not in df.columns:
            df["rank"] = pd.NA
        df["rank"] = pd.to_numeric(df["rank"], errors="coerce")
        for c in ("score", "suggested_prob"):
            if c in df.columns:
                df[c] = pd.to_numeric(df[c], errors="coerce")
        known_ids = set(catalog.df["id"])
        self.unknown_ids = int((~df["id"].isin(known_ids)).sum())
        self.unknown_tasks = sorted(set(df["task"].dropna()) - set(catalog.tasks))
        df = df[df["id"].isin(known_ids) & df["task"].isin(list(catalog.tasks))].copy()
        # order: rank ascending; rows without a rank after, by score descending
        sort_cols, asc = ["rank"], [True]
        if "score" in df.columns:
            sort_cols.append("score")
            asc.append(False)
        df = df.sort_values(sort_cols, ascending=asc, na_position="last", kind="stable")
        # a decision is per (painting, task): the same pair listed twice is reviewed once, where it ranks best
        flagged_first = df.sort_values("flagged", ascending=False, kind="stable")
        keep = ~flagged_first.duplicated(["id", "task"], keep="first")
        df = df.loc[keep[keep].index.sort_values()] if not keep.all() else df
        df = df.sort_values(sort_cols, ascending=asc, na_position="last", kind="stable").reset_index(drop=True)
        self.df = df
        self.extra_columns = [c for c in df.columns if c not in KNOWN]
        q = df[df["flagged"]].reset_index(drop=True)
        self.queue = [self._row(r) for r in q.to_dict("records")]
        self._by_id: dict[str, list[dict]] = {}
        for r in df.to_dict("records"):
            self._by_id.setdefault(r["id"], []).append(self._row(r))
        self.flagged_ids = {r["id"] for r in self.queue}
        self.tasks = sorted({r["task"] for r in self.queue})

    def _row(self, r: dict) -> dict:
        out = {k: _clean(r.get(k)) for k in KNOWN}
        out["flagged"] = bool(r.get("flagged"))
        out["extra"] = {c: _clean(r.get(c)) for c in self.extra_columns}
        return out

    def for_id(self, item_id: str) -> list[dict]:
        return self._by_id.get(item_id, [])

    def summary(self) -> dict:
        return {"path": ", ".join(str(p) for p in self.paths), "rows": int(len(self.df)), "flagged": len(self.queue),
                "tasks": self.tasks, "extra_columns": self.extra_columns,
                "dropped_unknown_ids": self.unknown_ids, "dropped_unknown_tasks": self.unknown_tasks}


def evidence_ids(value, known_ids) -> list[str] | None:
    """If ``value`` lists catalogue ids (``a;b;c``, ``a|b``, a JSON list ...), return them."""
    if value is None or isinstance(value, (int, float, bool)):
        return None
    s = str(value).strip()
    if not s:
        return None
    items: list[str] | None = None
    if s.startswith("["):
        try:
            parsed = json.loads(s)
        except ValueError:
            try:
                parsed = json.loads(s.replace("'", '"'))
            except ValueError:
                parsed = None
        if isinstance(parsed, list):
            items = [str(x) for x in parsed]
    if items is not None:
        return items if items and all(t in known_ids for t in items) else None
    if s in known_ids:
        return [s]
    # ids may themselves hold commas or spaces: try one separator at a time, the likeliest first
    for sep in (";", "|", ",", " "):
        items = [t.strip() for t in s.split(sep) if t.strip()]
        if len(items) > 1 and all(t in known_ids for t in items):
            return items
    return None


# ---------------------------------------------------------------------- export
def corrected_catalog(catalog: Catalog, decisions: list[dict]) -> tuple[Catalog, dict]:
    """A copy of ``catalog`` with the accepted and relabelled decisions applied."""
    df = catalog.df.copy()
    pos = {k: i for i, k in enumerate(df["id"])}
    applied = kept = skipped = 0
    problems: list[str] = []
    for d in decisions:
        i = pos.get(d["id"])
        task = d["task"]
        if i is None or task not in catalog.tasks:
            skipped += 1
            problems.append(f"{d['id']}/{task}: not in this catalogue")
            continue
        if d["action"] == "keep":
            kept += 1
            continue
        label = d["label"]
        if label not in catalog.tasks[task].classes:
            skipped += 1
            problems.append(f"{d['id']}/{task}: label {label!r} is not a class of {task}")
            continue
        df.iat[i, df.columns.get_loc(task)] = label
        applied += 1
    extra = dict(catalog.extra)
    extra["reviewed"] = {"from": str(catalog.path) if catalog.path else None, "applied": applied, "kept": kept}
    out = Catalog(df, catalog.tasks, catalog.image_root, catalog.source, extra)
    return out, {"applied": applied, "kept": kept, "skipped": skipped, "problems": problems}


DECISION_COLUMNS = ["id", "task", "reviewer", "action", "given_label", "final_label", "suggested_label",
                    "decided_at"]


def decisions_frame(decisions: list[dict]) -> pd.DataFrame:
    """The decisions as the rows of the CSV export (one per reviewer and item)."""
    rows = [{"id": d["id"], "task": d["task"], "reviewer": d.get("reviewer") or "", "action": d["action"],
             "given_label": d.get("given_label"), "final_label": d.get("label"),
             "suggested_label": d.get("suggested_label"), "decided_at": d.get("decided_at")} for d in decisions]
    return pd.DataFrame(rows, columns=DECISION_COLUMNS)


def agreement(decisions: list[dict]) -> list[dict]:
    """Agreement between reviewers: per task and pair of reviewers, the items both decided, the
    share on which their final labels agree, and Cohen's kappa of those labels.

    Parameters
    ----------
    decisions : list of dict
        Each reviewer's current decision (:meth:`ReviewStore.current_by_reviewer`); decisions
        recorded without a reviewer are left out.

    Returns
    -------
    list of dict
        ``{"task", "reviewer_a", "reviewer_b", "items", "agreement", "kappa"}``, by task and pair;
        ``kappa`` is None where it is undefined (both reviewers gave one and the same label).
    """
    from itertools import combinations

    from sklearn.metrics import cohen_kappa_score

    labels: dict[str, dict[str, dict[str, str]]] = {}
    for d in decisions:
        who = d.get("reviewer") or ""
        if who and d.get("label") is not None:
            labels.setdefault(d["task"], {}).setdefault(who, {})[d["id"]] = d["label"]
    out = []
    for task in sorted(labels):
        by = labels[task]
        for a, b in combinations(sorted(by), 2):
            common = sorted(set(by[a]) & set(by[b]))
            if not common:
                continue
            ya, yb = [by[a][i] for i in common], [by[b][i] for i in common]
            agree = sum(x == y for x, y in zip(ya, yb)) / len(common)
            if len(set(ya) | set(yb)) < 2:
                kappa = None
            else:
                k = float(cohen_kappa_score(ya, yb))
                kappa = None if math.isnan(k) else k
            out.append({"task": task, "reviewer_a": a, "reviewer_b": b, "items": len(common),
                        "agreement": agree, "kappa": kappa})
    return out


def export_reviews(catalog: Catalog, store: ReviewStore, out: str | os.PathLike, fmt: str | None = None) -> dict:
    """Write the corrected catalogue (``.parquet``) or the decisions (``.csv``) to ``out``.

    The CSV has every reviewer's current decision (a ``reviewer`` column); the catalogue takes each
    item's latest decision, whoever made it.
    """
    out = Path(out)
    fmt = fmt or ("csv" if out.suffix.lower() == ".csv" else "catalog")
    decisions = store.current()
    if fmt == "csv":
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        every = store.current_by_reviewer()
        csv_safe_frame(decisions_frame(every)).to_csv(tmp, index=False)   # labels are shown, not run
        os.replace(tmp, out)
        return {"format": "csv", "path": str(out), "decisions": len(every)}
    if fmt not in ("catalog", "parquet"):
        raise OptionError(f"unknown export format {fmt!r}; use catalog or csv")
    if catalog.path is not None and out.resolve() == Path(catalog.path).resolve():
        raise OptionError("refusing to overwrite the input catalogue; choose another --out")
    cat, summary = corrected_catalog(catalog, decisions)
    cat.save(out)
    return {"format": "catalog", "path": str(out), "decisions": len(decisions), **summary}


def _split_parts(value, n: int) -> list[str] | None:
    if value is None or isinstance(value, (bool, int, float)):
        return None
    s = str(value).strip()
    for sep in ("|", ";", ","):
        parts = [p.strip() for p in s.split(sep)]
        if len(parts) == n:
            return parts
    return None


def evidence_view(extra: dict, known_ids) -> list[dict]:
    """The extra columns of an outlier row, ready to show: ``{"name", "value"}`` for plain values,
    ``{"name", "items": [{"id", "caption"}]}`` for a column that lists catalogue ids. Columns with
    the same prefix and as many parts (``neighbor_labels``, ``neighbor_similarities`` beside
    ``neighbor_ids``) become the captions of those ids instead of rows of their own."""
    ids_of = {c: evidence_ids(v, known_ids) for c, v in extra.items()}
    used: set[str] = set()
    merged: dict[str, list[dict]] = {}
    for c, ids in ids_of.items():
        if not ids:
            continue
        prefix = c.rsplit("_", 1)[0] if "_" in c else c
        captions: list[list[str]] = [[] for _ in ids]
        for s, sv in extra.items():
            if s == c or s in used or ids_of.get(s) or not s.startswith(prefix + "_"):
                continue
            parts = _split_parts(sv, len(ids))
            if parts is None:
                continue
            used.add(s)
            for i, part in enumerate(parts):
                try:
                    part = f"{float(part):.2f}"
                except ValueError:
                    part = part.replace("_", " ")
                captions[i].append(part)
        merged[c] = [{"id": i, "caption": " · ".join(cap)} for i, cap in zip(ids, captions)]
    rows = []
    for c, v in extra.items():
        if c in used:
            continue
        rows.append({"name": c, "items": merged[c]} if c in merged else {"name": c, "value": v})
    return rows

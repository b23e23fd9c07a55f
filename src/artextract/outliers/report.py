"""A self-contained HTML page of the paintings whose labels look wrong.

``write_report(catalog, df, out_dir)`` writes ``out_dir/index.html`` (the template
``templates/outliers.html``, styled like the explorer) and small JPEG thumbnails in ``out_dir/thumbs/``
(:class:`~artextract.data.thumbs.Thumbnailer`'s; no network, no CDN: the folder can be zipped and opened
anywhere). Each flagged painting is shown with its given and suggested label, its score, and a strip of
its nearest neighbours with their labels - the evidence a person needs to decide in seconds.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.catalog import Catalog
from ..data.thumbs import Thumbnailer
from ..render import write_page
from .detect import SEP

THUMB = 128          # side of a thumbnail file, in pixels
THUMBS = "thumbs"    # the thumbnails' folder beside index.html


class _ThumbFiles:
    """Writes each painting's thumbnail once into ``out_dir/thumbs/``; returns its path relative to the page
    (None without a usable image)."""

    def __init__(self, catalog: Catalog, out_dir: Path):
        self.maker = Thumbnailer(catalog, confined=False)
        self.dir = out_dir / THUMBS
        self.dir.mkdir(parents=True, exist_ok=True)
        self.done: dict[str, str | None] = {}

    def __call__(self, item_id: str) -> str | None:
        if item_id not in self.done:
            data = self.maker.try_thumbnail(item_id, THUMB)
            rel = None
            if data:
                name = hashlib.sha1(item_id.encode()).hexdigest()[:16] + ".jpg"
                (self.dir / name).write_bytes(data)
                rel = f"{THUMBS}/{name}"
            self.done[item_id] = rel
        return self.done[item_id]


def write_report(catalog: Catalog, df: pd.DataFrame, out_dir: str | os.PathLike, *, max_items: int = 150,
                 max_outliers: int = 30, title: str | None = None) -> Path:
    """Write ``out_dir/index.html`` (the template ``templates/outliers.html``) for the output of
    :func:`~artextract.outliers.detect.rank_label_issues`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    thumbs = _ThumbFiles(catalog, out)
    task = df.attrs.get("task") or (df["task"].iloc[0] if len(df) else "?")
    labels = dict(zip(df["id"], df["given_label"]))
    flagged = df[df["flagged"]].sort_values("rank")
    shown = flagged.head(max_items)
    novelty = None
    if "flag_novelty" in df.columns:
        odd = df[df["flag_novelty"]].sort_values("score_novelty", ascending=False).head(max_outliers)
        novelty = {"count": int(df["flag_novelty"].sum()), "items": [_item(r, thumbs, labels) for _, r in odd.iterrows()]}
    return write_page(out / "index.html", "outliers.html", title=title or f"Label check: {task}",
                      heading=title or f"Paintings whose {task} label may be wrong", checked=len(df),
                      method=str(df.attrs.get("method", "ensemble")), features=str(df.attrs.get("features", "features")),
                      flagged=len(flagged), shown=len(shown),
                      items=[_item(r, thumbs, labels) for _, r in shown.iterrows()], novelty=novelty)


def _item(r, thumbs: _ThumbFiles, labels: dict) -> dict:
    """One painting of the page: its thumbnail, labels, scores and the strip of its nearest neighbours."""
    nb_ids = [s for s in str(r["neighbor_ids"]).split(SEP) if s] if isinstance(r["neighbor_ids"], str) else []
    nb_sims = str(r.get("neighbor_similarities", "")).split(SEP)
    strip = []
    for j, nid in enumerate(nb_ids):
        lab = labels.get(nid, "?")
        strip.append({"id": nid, "thumb": thumbs(nid), "label": str(lab), "sim": nb_sims[j] if j < len(nb_sims) else "",
                      "cls": "same" if lab == r["given_label"] else ("sug" if lab == r["suggested_label"] else "")})
    scores = " · ".join(
        f"{m} {r[f'score_{m}']:.2f}" for m in ("cleanlab", "knn", "mahalanobis", "zscore", "novelty")
        if f"score_{m}" in r and pd.notna(r[f"score_{m}"]))
    note = r.get("note")
    ordered = (f"{r['class_distance']:.2f} class(es) off; likely {r['suggested_range']}"
               if isinstance(r.get("suggested_range"), str) else None)
    return {"id": str(r["id"]), "thumb": thumbs(r["id"]), "rank": int(r["rank"]), "score": f"{r['score']:.3f}",
            "given": str(r["given_label"]), "suggested": str(r["suggested_label"]),
            "prob": f"{r['suggested_prob']:.2f}", "split": str(r.get("split", "")), "scores": scores,
            "note": str(note) if note and not (isinstance(note, float) and np.isnan(note)) else None, "ordered": ordered, "neighbours": strip}


# ---------------------------------------------------------------------- one queue across tasks

#: Columns of :func:`issue_queue`'s table before the per-task columns.
QUEUE_COLUMNS = ["queue_rank", "suspect", "other_labels_agree", "other_labels"]


def label_agreement(catalog: Catalog, task: str, ids, given) -> tuple[np.ndarray, list[str]]:
    """How a painting's other labels agree with its ``task`` label.

    For every other task where the painting has a label ``v``, the share of the *other* paintings
    labelled ``v`` whose ``task`` label is the painting's given one ("artist Claude Monet: 0 of 24
    others are Baroque, most are Impressionism"). Returns the lowest share per painting (NaN when
    no other label says anything) and a text per painting."""
    df = catalog.df
    pos = {k: i for i, k in enumerate(df["id"])}
    rows = np.array([pos[k] for k in ids], dtype=np.int64)
    others = [t for t in catalog.tasks if t != task]
    lowest = np.full(len(rows), np.nan)
    texts = [[] for _ in rows]
    col = df[task].to_numpy(object)
    for t in others:
        ot = df[t].to_numpy(object)
        table = pd.crosstab(pd.Series(ot, name=t), pd.Series(col, name=task))   # labelled in both only
        totals = table.sum(axis=1)
        for j, (r, g) in enumerate(zip(rows, given)):
            v = ot[r]
            if not isinstance(v, str) or v not in table.index:
                continue
            same = int(table.at[v, g]) if g in table.columns else 0
            if col[r] == g:          # leave the painting itself out
                same -= 1
            n = int(totals[v]) - (1 if isinstance(col[r], str) else 0)
            if n <= 0:
                texts[j].append(f"{t} {v!r}: no other painting")
                continue
            share = same / n
            lowest[j] = share if np.isnan(lowest[j]) else min(lowest[j], share)
            row = table.loc[v].copy()
            if isinstance(col[r], str) and col[r] in row.index:
                row[col[r]] -= 1
            top = row.idxmax()
            txt = f"{t} {v!r}: {same} of {n} others {g!r}"
            if top != g and row[top] > 0:
                txt += f", most {top!r} ({int(row[top])})"
            texts[j].append(txt)
    return lowest, ["; ".join(x) for x in texts]


def issue_queue(catalog: Catalog, frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One review queue across tasks, from :func:`~artextract.outliers.detect.rank_label_issues`
    tables: every row names its suspect label (``task=label``) and says how the painting's other
    labels agree with it. Flagged rows first, then by score (each task's ensemble is a percentile
    rank, so scores compare across tasks); ``queue_rank`` numbers the result."""
    parts = []
    for df in frames:
        if not len(df):
            continue
        task = df["task"].iloc[0]
        d = df.copy()
        d["suspect"] = task + "=" + d["given_label"].astype(str)
        low, txt = label_agreement(catalog, task, d["id"].tolist(), d["given_label"].tolist())
        d["other_labels_agree"] = np.round(low, 3)
        d["other_labels"] = txt
        parts.append(d)
    if not parts:
        return pd.DataFrame(columns=QUEUE_COLUMNS)
    out = pd.concat(parts, ignore_index=True)
    out = out.sort_values(["flagged", "score"], ascending=[False, False], kind="stable").reset_index(drop=True)
    out.insert(0, "queue_rank", np.arange(1, len(out) + 1))
    rest = [c for c in out.columns if c not in QUEUE_COLUMNS]
    return out[["queue_rank"] + [c for c in rest if c == "id"] + QUEUE_COLUMNS[1:] +
               [c for c in rest if c not in ("queue_rank", "id")]]

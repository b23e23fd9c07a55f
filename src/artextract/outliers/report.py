"""A self-contained HTML page of the paintings whose labels look wrong.

``write_report(catalog, df, out_dir)`` writes ``out_dir/index.html`` and small JPEG thumbnails in
``out_dir/thumbs/`` (no network, no CDN: the folder can be zipped and opened anywhere). Each flagged
painting is shown with its given and suggested label, its score, and a strip of its nearest
neighbours with their labels - the evidence a person needs to decide in seconds.
"""
from __future__ import annotations

import hashlib
import html
import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..data.catalog import Catalog
from .detect import SEP

THUMB = 128

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem;color:#222;background:#fafafa}
h1{font-size:1.4rem;margin:0 0 .3rem} h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
.meta{color:#666;font-size:.9rem;margin-bottom:1rem}
.item{display:flex;gap:1rem;align-items:flex-start;background:#fff;border:1px solid #ddd;border-radius:6px;
      padding:.6rem;margin:.5rem 0}
.main{width:150px;flex:none} .main img{width:140px;height:140px;object-fit:cover;border-radius:4px;border:3px solid #c0392b}
.info{width:250px;flex:none;font-size:.88rem;line-height:1.45}
.given{color:#c0392b;font-weight:600} .sugg{color:#1e7e34;font-weight:600}
.id{font-family:monospace;font-size:.75rem;color:#555;word-break:break-all}
.strip{display:flex;gap:.4rem;flex-wrap:wrap}
.nb{width:104px;font-size:.72rem;text-align:center;color:#444}
.nb img{width:100px;height:100px;object-fit:cover;border-radius:3px;border:2px solid #ccc}
.nb.same img{border-color:#c0392b} .nb.sug img{border-color:#1e7e34}
.scores{color:#666;font-size:.75rem} .none{color:#888;font-style:italic}
"""


class _Thumbs:
    """Writes each painting's thumbnail once, from the prepared-image cache when it has it."""

    def __init__(self, catalog: Catalog, out_dir: Path):
        self.catalog = catalog
        self.dir = out_dir / "thumbs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.paths = dict(zip(catalog.df["id"], catalog.df["path"]))
        self.cache = None
        try:
            from ..data.cache import DEFAULT_SIZE, PreparedCache, default_cache_dir
            root = default_cache_dir(catalog)
            if (root / f"s{DEFAULT_SIZE}" / "index.json").exists():
                self.cache = PreparedCache(root, DEFAULT_SIZE)
        except Exception:
            self.cache = None
        self.done: dict[str, str | None] = {}

    def __call__(self, item_id: str) -> str | None:
        if item_id in self.done:
            return self.done[item_id]
        name = hashlib.sha1(item_id.encode()).hexdigest()[:16] + ".jpg"
        rel = f"thumbs/{name}"
        try:
            if self.cache is not None and self.cache.has(item_id):
                im = Image.fromarray(np.asarray(self.cache.get(item_id)))
            else:
                from ..data.images import load_image
                im = load_image(self.catalog.image_path(self.paths[item_id]), draft_size=THUMB)
            im.thumbnail((THUMB, THUMB))
            im.convert("RGB").save(self.dir / name, quality=82)
        except Exception:
            rel = None
        self.done[item_id] = rel
        return rel


def _img(src: str | None, alt: str) -> str:
    if src is None:
        return '<div class="none" style="width:100px;height:100px">no image</div>'
    return f'<img src="{html.escape(src)}" alt="{html.escape(alt)}" loading="lazy">'


def write_report(catalog: Catalog, df: pd.DataFrame, out_dir: str | os.PathLike, *, max_items: int = 150,
                 max_outliers: int = 30, title: str | None = None) -> Path:
    """Write ``out_dir/index.html`` for the output of :func:`~artextract.outliers.detect.rank_label_issues`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    thumbs = _Thumbs(catalog, out)
    task = df.attrs.get("task") or (df["task"].iloc[0] if len(df) else "?")
    labels = dict(zip(df["id"], df["given_label"]))
    flagged = df[df["flagged"]].sort_values("rank")
    shown = flagged.head(max_items)
    esc = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{esc(title or f'Label check: {task}')}</title><style>{CSS}</style></head><body>",
        f"<h1>{esc(title or f'Paintings whose {task} label may be wrong')}</h1>",
        f"<div class='meta'>{len(df)} labelled painting(s) checked with {esc(str(df.attrs.get('method', 'ensemble')))}"
        f" on {esc(str(df.attrs.get('features', 'features')))}; {len(flagged)} flagged"
        + (f", the first {len(shown)} shown" if len(shown) < len(flagged) else "")
        + ". Red border: the given label; green: the suggested one. The strip shows the nearest "
        "paintings in feature space with their labels.</div>",
        f"<h2>Flagged: label probably wrong ({len(flagged)})</h2>",
    ]
    if not len(shown):
        parts.append("<p class='none'>nothing flagged</p>")
    for _, r in shown.iterrows():
        parts.append(_item(r, thumbs, labels))
    if "flag_novelty" in df.columns:
        odd = df[df["flag_novelty"]].sort_values("score_novelty", ascending=False).head(max_outliers)
        parts.append(f"<h2>Fit no class: unlike anything else in the collection ({int(df['flag_novelty'].sum())})</h2>")
        if not len(odd):
            parts.append("<p class='none'>none</p>")
        for _, r in odd.iterrows():
            parts.append(_item(r, thumbs, labels))
    parts.append("</body></html>")
    path = out / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _item(r, thumbs: _Thumbs, labels: dict) -> str:
    esc = html.escape
    nb_ids = [s for s in str(r["neighbor_ids"]).split(SEP) if s] if isinstance(r["neighbor_ids"], str) else []
    nb_sims = str(r.get("neighbor_similarities", "")).split(SEP)
    strip = []
    for j, nid in enumerate(nb_ids):
        lab = labels.get(nid, "?")
        cls = "nb same" if lab == r["given_label"] else ("nb sug" if lab == r["suggested_label"] else "nb")
        sim = nb_sims[j] if j < len(nb_sims) else ""
        strip.append(f"<div class='{cls}'>{_img(thumbs(nid), nid)}<br>{esc(str(lab))}"
                     f"<br><span class='scores'>sim {esc(sim)}</span></div>")
    scores = " &middot; ".join(
        f"{m} {r[f'score_{m}']:.2f}" for m in ("cleanlab", "knn", "mahalanobis", "zscore", "novelty")
        if f"score_{m}" in r and pd.notna(r[f"score_{m}"]))
    note = f"<br><span class='scores'>{esc(str(r['note']))}</span>" if r.get("note") else ""
    if isinstance(r.get("suggested_range"), str):
        note += (f"<br><span class='scores'>{r['class_distance']:.2f} class(es) off; likely "
                 f"{esc(r['suggested_range'])}</span>")
    return (
        "<div class='item'>"
        f"<div class='main'>{_img(thumbs(r['id']), r['id'])}</div>"
        f"<div class='info'>#{int(r['rank'])} &middot; score {r['score']:.3f}<br>"
        f"given <span class='given'>{esc(str(r['given_label']))}</span><br>"
        f"suggested <span class='sugg'>{esc(str(r['suggested_label']))}</span> (p={r['suggested_prob']:.2f})<br>"
        f"<span class='id'>{esc(str(r['id']))}</span> &middot; {esc(str(r.get('split', '')))}<br>"
        f"<span class='scores'>{scores}</span>{note}</div>"
        f"<div class='strip'>{''.join(strip) or '<span class=none>no neighbours</span>'}</div>"
        "</div>"
    )


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

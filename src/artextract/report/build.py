"""One self-contained HTML report for a run: metrics, confusion matrices, a map of the collection,
flagged outliers with their neighbours, and similarity queries.

Everything (pictures included) is inlined, so ``report.html`` can be mailed or opened offline.
"""
from __future__ import annotations

import logging
import base64
import html
import io
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .. import workspace
from ..data.catalog import Catalog
from ..data.images import ImageLoadError, load_image, resize_center_crop
from ..utils import csv_unescape_frame

logger = logging.getLogger(__name__)

SECTIONS = ("metrics", "confusion", "map", "outliers", "similar", "next")


def _img_uri(img: Image.Image, fmt: str = "JPEG", quality: int = 82) -> str:
    buf = io.BytesIO()
    img.save(buf, fmt, quality=quality) if fmt == "JPEG" else img.save(buf, fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode()}"


def _file_uri(path: Path) -> str:
    return f"data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"


class _Thumbs:
    def __init__(self, cat: Catalog, size: int = 112):
        self.cat, self.size = cat, size
        self.paths = dict(zip(cat.df["id"], cat.df["path"]))
        self._memo: dict[str, str] = {}

    def __call__(self, item_id: str) -> str | None:
        if item_id not in self._memo:
            try:
                img = resize_center_crop(load_image(self.cat.image_root / self.paths[item_id]), self.size)
                self._memo[item_id] = _img_uri(img)
            except (ImageLoadError, KeyError):
                self._memo[item_id] = ""
        return self._memo[item_id] or None


def _esc(x) -> str:
    return html.escape("" if x is None or (isinstance(x, float) and np.isnan(x)) else str(x))


def _card(thumb: str | None, caption: str, cls: str = "") -> str:
    img = f'<img src="{thumb}" alt="">' if thumb else '<div class="noimg">no image</div>'
    return f'<figure class="card {cls}">{img}<figcaption>{caption}</figcaption></figure>'


def _map_png(emb: np.ndarray, labels: list, title: str, out: Path, seed: int = 0) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .layout import embed_2d

    x = embed_2d(emb, seed=seed)  # openTSNE of a bounded sample, the rest placed: bounded time at any size
    fig, ax = plt.subplots(figsize=(8, 6.5))
    lab = pd.Series(labels).fillna("(no label)")
    cats = sorted(lab.unique(), key=lambda s: (s == "(no label)", s))
    cmap = plt.get_cmap("tab20" if len(cats) > 10 else "tab10")
    for i, c in enumerate(cats):
        m = (lab == c).to_numpy()
        ax.scatter(x[m, 0], x[m, 1], s=14, alpha=0.8, color="#bbb" if c == "(no label)" else cmap(i % cmap.N),
                   label=c.replace("_", " "))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, markerscale=1.5)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#222;background:#faf8f5}
header{background:#2d2a26;color:#f4efe6;padding:24px 40px}header h1{margin:0;font-weight:600}
header p{margin:6px 0 0;color:#cfc6b8}main{padding:8px 40px 40px;max-width:1300px}
h2{border-bottom:2px solid #d9cfbf;padding-bottom:4px;margin-top:36px}
table{border-collapse:collapse;font-size:14px}td,th{padding:6px 12px;border-bottom:1px solid #e6dfd3;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#efe9df}
.grid{display:flex;flex-wrap:wrap;gap:18px}.grid img.cm{max-width:560px;border:1px solid #e6dfd3;background:#fff}
.row{display:flex;gap:10px;align-items:flex-start;padding:10px 0;border-bottom:1px solid #eee;flex-wrap:wrap}
.card{margin:0;width:120px;font-size:12px}.card img{width:112px;height:112px;object-fit:cover;border-radius:4px;
border:1px solid #ddd}.card.query img{border:3px solid #b5502d;width:108px;height:108px}
.card figcaption{margin-top:3px;line-height:1.3;word-break:break-word}
.noimg{width:112px;height:112px;background:#eee;display:flex;align-items:center;justify-content:center;color:#999}
.given{color:#a33}.sugg{color:#2a7a3a;font-weight:600}.muted{color:#888}.sep{width:18px}
code,pre{background:#efe9df;border-radius:4px;padding:2px 6px}pre{padding:12px;overflow-x:auto}
.note{background:#fff6e0;border-left:4px solid #e0b050;padding:8px 14px}
"""


def build_report(out_dir: str | Path, *, catalog: Catalog, run_dir: str | Path | None = None,
                 outliers_csv: str | Path | list | None = None, index_dir: str | Path | None = None,
                 split: str = "val", color_task: str | None = None, n_outliers: int = 12, n_queries: int = 4,
                 k: int = 6, seed: int = 0, title: str | None = None, next_steps: list[str] | None = None,
                 log=logger.info) -> Path:
    """Write ``out_dir/report.html`` and return its path."""
    out_dir = Path(out_dir)
    assets = out_dir / "report_assets"
    assets.mkdir(parents=True, exist_ok=True)
    thumbs = _Thumbs(catalog)
    labels = {t: dict(zip(catalog.df["id"], catalog.df[t])) for t in catalog.tasks}
    parts: list[str] = []
    info = catalog.info()
    synthetic = bool(catalog.extra.get("synthetic"))
    run = None
    if run_dir:
        from ..training.inference import Run
        run = Run.load(run_dir)

    # ---------------------------------------------------------------- metrics
    _metrics_section(parts, catalog, run, run_dir, split, log)

    # ---------------------------------------------------------------- map
    _map_section(parts, catalog, run, index_dir, color_task, labels, assets, seed, log)

    # ---------------------------------------------------------------- outliers
    parts.append('<h2 id="outliers">Paintings whose labels may not fit</h2>')
    index = None
    if index_dir:
        from ..similarity.index import EmbeddingIndex
        index = EmbeddingIndex.load(index_dir)
    _outliers_section(parts, outliers_csv, index, thumbs, labels, n_outliers, k)

    # ---------------------------------------------------------------- similar
    _similar_section(parts, catalog, index, thumbs, labels, n_queries, k, seed)

    # ---------------------------------------------------------------- next
    parts.append('<h2 id="next">Next steps</h2>')
    steps = next_steps or []
    parts.append("<pre>" + _esc("\n".join(steps)) + "</pre>" if steps else
                 "<p>Explore it in the browser: <code>artextract serve --catalog CATALOG --run RUN --index INDEX "
                 "--outliers FILE.csv</code></p>")

    doc = _page(parts, catalog, info, title, synthetic)
    path = out_dir / "report.html"
    path.write_text(doc, encoding="utf-8")
    return path


def _metrics_section(parts: list[str], catalog: Catalog, run, run_dir, split: str, log) -> None:
    """Append the metrics table and confusion matrices (evaluating the run first when its evaluation is not current)."""
    parts.append('<h2 id="metrics">Classification metrics</h2>')
    metrics = None
    if run is not None:
        edir = workspace.eval_dir(run_dir, split)
        mpath = edir / workspace.METRICS
        ev = workspace.evaluation_status(run_dir, split, catalog.path)
        if ev.status != workspace.COMPLETE:
            from ..training.evaluate import evaluate
            why = f"no {mpath} yet" if ev.status in (workspace.MISSING, workspace.PARTIAL) else \
                f"{edir} is stale: {ev.detail}"
            log(f"report: evaluating the run on {split} ({why})")
            evaluate(run, catalog, split, progress=False, log=log)
        metrics = json.loads(mpath.read_text())
        rows = []
        for t, m in metrics.items():
            if not m.get("n"):
                continue
            extra = (f"{m['mae_classes']:.2f} / {m['within_one']:.3f}" if "mae_classes" in m else "")
            rows.append(f"<tr><td>{_esc(t)}</td><td>{m['n']}</td><td>{m['accuracy']:.3f}</td><td>{m['top5']:.3f}</td>"
                        f"<td>{m['macro_f1']:.3f}</td><td>{m['balanced_accuracy']:.3f}</td><td>{extra}</td></tr>")
        parts.append(f"<p>{_esc(run.config.get('validation', ''))}. Backbone <code>{_esc(run.backbone_name)}</code>"
                     f"{' (fine-tuned)' if run.finetuned else ' (frozen)'}.</p>"
                     "<table><tr><th>task</th><th>n</th><th>top-1</th><th>top-5</th><th>macro-F1</th>"
                     "<th>balanced acc.</th><th>MAE / within one (ordered)</th></tr>" + "".join(rows) + "</table>")
        parts.append('<h2 id="confusion">Confusion matrices</h2><div class="grid">')
        for t in metrics:
            png = edir / f"confusion_{t}.png"
            if png.exists():
                parts.append(f'<img class="cm" src="{_file_uri(png)}" alt="confusion matrix {_esc(t)}">')
        parts.append("</div>")
    else:
        parts.append('<p class="note">No run given (<code>--run</code>): no metrics.</p>'
                     '<h2 id="confusion">Confusion matrices</h2><p class="muted">No run given.</p>')


def _map_section(parts: list[str], catalog: Catalog, run, index_dir, color_task: str | None, labels: dict,
                 assets: Path, seed: int, log) -> None:
    """Append the t-SNE map of the run's (else the index's) embeddings, coloured by ``color_task``."""
    parts.append('<h2 id="map">Map of the collection</h2>')
    color_task = color_task or ("style" if "style" in catalog.tasks else next(iter(catalog.tasks), None))
    emb_ids, emb = None, None
    if run is not None:
        emb_ids, emb = run.embed_catalog(catalog, progress=False, log=log)
        src = "the run's multi-task embedding"
    elif index_dir:
        from ..similarity.index import EmbeddingIndex
        idx = EmbeddingIndex.load(index_dir)
        emb_ids, emb = list(idx.ids), idx.vectors()
        src = "the index's embeddings"
    if emb is not None and len(emb) > 3:
        png = _map_png(emb, [labels[color_task].get(i) for i in emb_ids] if color_task else [None] * len(emb_ids),
                       f"t-SNE of {src}, coloured by {color_task}", assets / "map.png", seed)
        parts.append(f'<img class="cm" style="max-width:900px" src="{_file_uri(png)}" alt="embedding map">')
    else:
        parts.append('<p class="muted">No embeddings (give --run or --index).</p>')


def _outliers_section(parts: list[str], outliers_csv, index, thumbs: _Thumbs, labels: dict, n_outliers: int,
                      k: int) -> None:
    """Append, for each outlier file, its flagged paintings with their neighbours."""
    csvs = outliers_csv if isinstance(outliers_csv, list) else ([outliers_csv] if outliers_csv else [])
    if not csvs:
        parts.append('<p class="muted">No outlier file given (run <code>artextract outliers</code>, then '
                     '<code>--outliers FILE.csv</code>).</p>')
    for csv_path in csvs:
        df = csv_unescape_frame(pd.read_csv(csv_path, dtype={"id": str}))   # as `artextract outliers` wrote it
        task = str(df["task"].iloc[0]) if len(df) else "?"
        flagged = df[df["flagged"].astype(str).str.lower().isin(["true", "1"])] if "flagged" in df else df
        flagged = flagged.sort_values("rank").head(n_outliers) if "rank" in flagged else flagged.head(n_outliers)
        parts.append(f"<h3>{_esc(task)}: {int(df['flagged'].astype(str).str.lower().isin(['true', '1']).sum())} "
                     f"flagged of {len(df)} checked <span class='muted'>({_esc(Path(csv_path).name)})</span></h3>")
        for r in flagged.itertuples(index=False):
            rd = r._asdict()
            cap = (f"<b>#{_esc(rd.get('rank'))}</b> {_esc(rd['id'])}<br><span class='given'>given: {_esc(rd.get('given_label'))}</span>"
                   f"<br><span class='sugg'>suggested: {_esc(rd.get('suggested_label'))}</span>"
                   f"<br><span class='muted'>score {float(rd.get('score', 0)):.3f}</span>")
            cells = [_card(thumbs(rd["id"]), cap, "query"), '<div class="sep"></div>']
            neigh = []
            if index is not None and rd["id"] in index:
                neigh = [x["id"] for x in index.search_id(rd["id"], k=k)]
            else:
                col = next((c for c in df.columns if c.startswith("neighbo") and "id" in c), None)
                if col and isinstance(rd.get(col), str):
                    neigh = [s for s in rd[col].replace(";", "|").split("|") if s][:k]
            for nid in neigh:
                cells.append(_card(thumbs(nid), f"{_esc(nid)}<br>{_esc(labels.get(task, {}).get(nid))}"))
            parts.append('<div class="row">' + "".join(cells) + "</div>")


def _similar_section(parts: list[str], catalog: Catalog, index, thumbs: _Thumbs, labels: dict, n_queries: int,
                     k: int, seed: int) -> None:
    """Append a few seeded query paintings with their nearest neighbours in the index."""
    parts.append('<h2 id="similar">Similar paintings</h2>')
    if index is None:
        parts.append('<p class="muted">No index given (run <code>artextract index</code>, then '
                     '<code>--index DIR</code>).</p>')
    else:
        rng = np.random.default_rng(seed)
        pool = [i for i in index.ids if i in thumbs.paths]
        for q in rng.choice(pool, size=min(n_queries, len(pool)), replace=False):
            lab = " / ".join(str(labels[t].get(q)) for t in list(catalog.tasks)[:3] if labels[t].get(q))
            cells = [_card(thumbs(q), f"<b>query</b> {_esc(q)}<br>{_esc(lab)}", "query"), '<div class="sep"></div>']
            for x in index.search_id(q, k=k):
                nl = " / ".join(str(labels[t].get(x["id"])) for t in list(catalog.tasks)[:3] if labels[t].get(x["id"]))
                cells.append(_card(thumbs(x["id"]), f"{_esc(x['id'])}<br>{_esc(nl)}<br>"
                                   f"<span class='muted'>{x['score']:.3f}</span>"))
            parts.append('<div class="row">' + "".join(cells) + "</div>")


def _page(parts: list[str], catalog: Catalog, info: dict, title: str | None, synthetic: bool) -> str:
    """The whole HTML document: header, navigation and the sections."""
    tasks_s = ", ".join(f"{t} ({v['num_classes']} classes)" for t, v in info["tasks"].items())
    head = (f"<header><h1>{_esc(title or 'ArtExtract report')}</h1><p>{info['rows']:,} paintings · "
            f"{_esc(tasks_s)} · {_esc(catalog.source)} · {time.strftime('%Y-%m-%d %H:%M')}</p></header><main>")
    if synthetic:
        head += ('<p class="note">This collection is the <b>synthetic demo corpus</b>: generated pictures, not real '
                 "paintings. Run the same commands on WikiArt or NGA data for real results.</p>")
    nav = "<p>" + " · ".join(f'<a href="#{s}">{s}</a>' for s in SECTIONS) + "</p>"
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_esc(title or 'ArtExtract report')}"
            f"</title><style>{CSS}</style></head><body>{head}{nav}{''.join(parts)}</main></body></html>")

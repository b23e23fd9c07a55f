"""One self-contained HTML report for a run: metrics, confusion matrices, a map of the collection,
flagged outliers with their neighbours, and similarity queries.

Everything (pictures included) is inlined, so ``report.html`` can be mailed or opened offline.
"""
from __future__ import annotations

import base64
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.catalog import Catalog
from ..job import Job, resolve
from ..data.thumbs import Thumbnailer, jpeg_data_uri
from ..render import write_page

logger = logging.getLogger(__name__)

SECTIONS = ("metrics", "confusion", "map", "outliers", "similar", "next")


THUMB = 112   # side of a painting's thumbnail in the report, in pixels


def _file_uri(path: Path) -> str:
    return f"data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"


class _Thumbs:
    """Each painting's thumbnail as a ``data:`` URI (None without a usable image), made once."""

    def __init__(self, cat: Catalog, size: int = THUMB):
        self.maker = Thumbnailer(cat, confined=False)
        self.size = size
        self.paths = self.maker.paths
        self._memo: dict[str, str | None] = {}

    def __call__(self, item_id: str) -> str | None:
        if item_id not in self._memo:
            data = self.maker.try_thumbnail(item_id, self.size)
            self._memo[item_id] = jpeg_data_uri(data) if data else None
        return self._memo[item_id]


def _text(x) -> str:
    """A value as text for the page: empty for None and NaN."""
    return "" if x is None or (isinstance(x, float) and np.isnan(x)) else str(x)


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


def build_report(out_dir: str | Path, *, catalog: Catalog, run_dir: str | Path | None = None,
                 outliers_csv: str | Path | list | None = None, index_dir: str | Path | None = None,
                 split: str = "val", color_task: str | None = None, n_outliers: int = 12, n_queries: int = 4,
                 k: int = 6, seed: int = 0, title: str | None = None, next_steps: list[str] | None = None,
                 job: Job | None = None) -> Path:
    """Write ``out_dir/report.html`` (the template ``templates/report.html``) and return its path; ``job``
    (default: the current one) says what is evaluated or embedded on the way, without progress bars."""
    job = resolve(job).replace(progress=False)
    out_dir = Path(out_dir)
    assets = out_dir / "report_assets"
    assets.mkdir(parents=True, exist_ok=True)
    thumbs = _Thumbs(catalog)
    labels = {t: dict(zip(catalog.df["id"], catalog.df[t])) for t in catalog.tasks}
    run = None
    if run_dir:
        from ..artefacts import Run
        run = Run(run_dir).load()

    # ---------------------------------------------------------------- metrics
    metrics = _metrics_section(catalog, run, run_dir, split, job)

    # ---------------------------------------------------------------- map
    map_uri = _map_section(catalog, run, index_dir, color_task, labels, assets, seed, job)

    # ---------------------------------------------------------------- outliers
    index = None
    if index_dir:
        from ..artefacts import Index
        index = Index(index_dir).load()
    outliers = _outliers_section(outliers_csv, index, thumbs, labels, n_outliers, k)

    # ---------------------------------------------------------------- similar
    similar = _similar_section(catalog, index, thumbs, labels, n_queries, k, seed)

    # ---------------------------------------------------------------- next
    info = catalog.info()
    return write_page(out_dir / "report.html", "report.html", title=title or "ArtExtract report",
                      rows=info["rows"], tasks=", ".join(f"{t} ({v['num_classes']} classes)"
                                                         for t, v in info["tasks"].items()),
                      source=catalog.source, when=time.strftime("%Y-%m-%d %H:%M"),
                      synthetic=bool(catalog.extra.get("synthetic")), sections=SECTIONS, metrics=metrics,
                      map_uri=map_uri, outliers=outliers, similar=similar, next_steps="\n".join(next_steps or []))


def _metrics_section(catalog: Catalog, run, run_dir, split: str, job: Job) -> dict | None:
    """The metrics table and the confusion matrices (evaluating the run first when its evaluation is
    missing or stale); None without a run."""
    if run is None:
        return None
    from ..artefacts import Evaluation
    evaluation = Evaluation(run, catalog, split)
    metrics = evaluation.ensure(job)
    edir = evaluation.dir
    rows = []
    for t, m in metrics.items():
        if not m.get("n"):
            continue
        extra = (f"{m['mae_classes']:.2f} / {m['within_one']:.3f}" if "mae_classes" in m else "")
        rows.append([t, str(m["n"]), f"{m['accuracy']:.3f}", f"{m['top5']:.3f}", f"{m['macro_f1']:.3f}",
                     f"{m['balanced_accuracy']:.3f}", extra])
    confusion = [(t, _file_uri(edir / f"confusion_{t}.png")) for t in metrics
                 if (edir / f"confusion_{t}.png").exists()]
    return {"validation": _text(run.config.get("validation", "")), "backbone": run.backbone_name,
            "finetuned": bool(run.finetuned), "rows": rows, "confusion": confusion}


def _map_section(catalog: Catalog, run, index_dir, color_task: str | None, labels: dict, assets: Path, seed: int,
                 job: Job) -> str | None:
    """The t-SNE map of the run's (else the index's) embeddings, coloured by ``color_task``, as a ``data:``
    URI; None without embeddings."""
    color_task = color_task or ("style" if "style" in catalog.tasks else next(iter(catalog.tasks), None))
    emb_ids, emb = None, None
    if run is not None:
        emb_ids, emb = run.embed_catalog(catalog, job=job)
        src = "the run's multi-task embedding"
    elif index_dir:
        from ..similarity.index import EmbeddingIndex
        idx = EmbeddingIndex.load(index_dir)
        emb_ids, emb = list(idx.ids), idx.vectors()
        src = "the index's embeddings"
    if emb is None or len(emb) <= 3:
        return None
    png = _map_png(emb, [labels[color_task].get(i) for i in emb_ids] if color_task else [None] * len(emb_ids),
                   f"t-SNE of {src}, coloured by {color_task}", assets / "map.png", seed)
    return _file_uri(png)


def _outliers_section(outliers_csv, index, thumbs: _Thumbs, labels: dict, n_outliers: int, k: int) -> list[dict]:
    """For each outlier file, its flagged paintings with their neighbours."""
    from ..artefacts import OutlierTable
    csvs = outliers_csv if isinstance(outliers_csv, list) else ([outliers_csv] if outliers_csv else [])
    groups = []
    for csv_path in csvs:
        df = OutlierTable(csv_path).load()   # the labels as given (the CSV escapes them for spreadsheets)
        task = str(df["task"].iloc[0]) if len(df) else "?"
        flagged = df[df["flagged"].astype(str).str.lower().isin(["true", "1"])] if "flagged" in df else df
        flagged = flagged.sort_values("rank").head(n_outliers) if "rank" in flagged else flagged.head(n_outliers)
        rows = []
        for r in flagged.itertuples(index=False):
            rd = r._asdict()
            neigh = []
            if index is not None and rd["id"] in index:
                neigh = [x["id"] for x in index.search_id(rd["id"], k=k)]
            else:
                col = next((c for c in df.columns if c.startswith("neighbo") and "id" in c), None)
                if col and isinstance(rd.get(col), str):
                    neigh = [s for s in rd[col].replace(";", "|").split("|") if s][:k]
            rows.append({"id": _text(rd["id"]), "rank": _text(rd.get("rank")), "thumb": thumbs(rd["id"]),
                         "given": _text(rd.get("given_label")), "suggested": _text(rd.get("suggested_label")),
                         "score": f"{float(rd.get('score', 0)):.3f}",
                         "neighbours": [{"id": nid, "thumb": thumbs(nid),
                                         "label": _text(labels.get(task, {}).get(nid))} for nid in neigh]})
        groups.append({"task": task, "file": Path(csv_path).name, "checked": len(df), "rows": rows,
                       "flagged": int(df["flagged"].astype(str).str.lower().isin(["true", "1"]).sum())})
    return groups


def _similar_section(catalog: Catalog, index, thumbs: _Thumbs, labels: dict, n_queries: int, k: int,
                     seed: int) -> list[dict] | None:
    """A few seeded query paintings with their nearest neighbours in the index; None without an index."""
    if index is None:
        return None
    rng = np.random.default_rng(seed)
    pool = [i for i in index.ids if i in thumbs.paths]
    tasks = list(catalog.tasks)[:3]

    def label_line(item_id) -> str:
        return " / ".join(str(labels[t].get(item_id)) for t in tasks if labels[t].get(item_id))

    queries = []
    for q in rng.choice(pool, size=min(n_queries, len(pool)), replace=False):
        queries.append({"id": str(q), "thumb": thumbs(q), "labels": label_line(q),
                        "neighbours": [{"id": str(x["id"]), "thumb": thumbs(x["id"]), "labels": label_line(x["id"]),
                                        "score": f"{x['score']:.3f}"} for x in index.search_id(q, k=k)]})
    return queries

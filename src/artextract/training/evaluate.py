"""Evaluate a run on a catalogue split: metrics.json, confusion matrices, per-class tables."""
from __future__ import annotations

import logging
import json
from pathlib import Path

import numpy as np

from .. import workspace
from ..data.catalog import Catalog, CatalogError
from ..job import Job, resolve
from .inference import Run
from .metrics import per_class_table, plot_confusion, task_metrics, write_per_class_csv

logger = logging.getLogger(__name__)


def evaluation_ids(run: Run, cat: Catalog, split: str, *, job: Job | None = None) -> list[str]:
    """The ids to evaluate ``run`` on: the catalogue's ``split`` rows, else (``val``) the rows the run held out.

    Parameters
    ----------
    run : Run
    cat : Catalog
    split : str
    job : Job, optional
        The job (default: the current one): where the message about held-out rows goes.

    Returns
    -------
    list of str
    """
    job = resolve(job)
    ids = cat.df.loc[cat.df["split"] == split, "id"].tolist()
    if ids:
        return ids
    split_file = run.path / workspace.RUN_SPLIT
    same = Path(run.config.get("catalog", "")) == (cat.path.resolve() if cat.path else None)
    if split == "val" and split_file.exists() and same:
        if run.config.get("refit"):
            raise CatalogError(
                f"the catalogue has no val rows, and this run was refit on the paintings it had held out, so "
                f"none is unseen: train with --no-refit to evaluate on the held-out part, or give the catalogue "
                f"a val split (choose --split from {sorted(cat.df['split'].unique())})")
        held = json.loads(split_file.read_text())["val"]
        job.say(f"the catalogue has no {split} rows: evaluating on the {len(held)} paintings this run held out")
        return held
    raise CatalogError(f"the catalogue has no {split!r} rows; choose --split from "
                       f"{sorted(cat.df['split'].unique())}")


def evaluate(run: Run, cat: Catalog, split: str = "val", out_dir: str | Path | None = None, *,
             job: Job | None = None) -> dict:
    """Evaluate ``run`` on a split of ``cat``: ``metrics.json``, confusion matrices and per-class tables.

    Parameters
    ----------
    run : Run
    cat : Catalog
    split : str
    out_dir : path, optional
        Where the files go (default: the run's evaluation folder for ``split``).
    job : Job, optional
        The job (default: the current one): messages and progress bars.

    Returns
    -------
    dict
        The metrics of every task.
    """
    job = resolve(job)
    ids = evaluation_ids(run, cat, split, job=job)
    sub = cat.subset(cat.df["id"].isin(set(ids)))
    sub.path = cat.path
    got_ids, probs = run.predict_catalog(sub, job=job)
    pos = {k: i for i, k in enumerate(cat.df["id"])}
    rows = np.array([pos[k] for k in got_ids], dtype=np.int64)
    out_dir = Path(out_dir) if out_dir else workspace.eval_dir(run.path, split)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = {}
    for t, spec in run.tasks.items():
        if t not in cat.tasks:
            job.say(f"task {t}: not in this catalogue; skipped")
            continue
        lookup = {c: i for i, c in enumerate(spec.classes)}
        y = np.array([lookup.get(v, -2) if isinstance(v, str) else -1 for v in cat.df[t].to_numpy()[rows]])
        unknown = int((y == -2).sum())
        if unknown:
            job.say(f"task {t}: {unknown} painting(s) have labels the run never saw; they are left out")
            y[y == -2] = -1
        m = task_metrics(probs[t], y, spec.ordered)
        metrics[t] = m
        if m["n"]:
            plot_confusion(probs[t], y, spec.classes, f"{t} ({split}, n={m['n']}, acc {m['accuracy']:.3f})",
                           out_dir / f"confusion_{t}.png")
            write_per_class_csv(out_dir / f"per_class_{t}.csv", per_class_table(probs[t], y, spec.classes))
    (out_dir / workspace.METRICS).write_text(json.dumps(metrics, indent=2))
    workspace.write_evaluation_fingerprint(out_dir, run.path, cat.path, split)
    return metrics


def format_metrics(metrics: dict) -> str:
    lines = [f"{'task':<12}{'n':>6}{'top-1':>8}{'top-5':>8}{'macro-F1':>10}{'bal.acc':>9}  ordered"]
    for t, m in metrics.items():
        if not m["n"]:
            lines.append(f"{t:<12}{0:>6}  (no labelled paintings)")
            continue
        extra = f"  MAE {m['mae_classes']:.2f} classes, within-one {m['within_one']:.3f}" if "mae_classes" in m else ""
        lines.append(f"{t:<12}{m['n']:>6}{m['accuracy']:>8.3f}{m['top5']:>8.3f}{m['macro_f1']:>10.3f}"
                     f"{m['balanced_accuracy']:>9.3f}{extra}")
    return "\n".join(lines)

"""``artextract outliers``: paintings whose labels do not fit (label issues) and paintings that fit no
class (:mod:`artextract.outliers.detect`)."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from ...utils import csv_safe_frame
from ..base import UserError, add_command
from ..options import (DEFAULT_BACKBONE, add_backbone_options, add_cache_option, add_json_option,
                       add_progress_option, add_seed_option, pretrained)

logger = logging.getLogger(__name__)

DEFAULT_FOLDS = 5
DEFAULT_C = 1e-3
SUMMARY_TOP = 5   # flagged paintings shown in the summary


def _shard_features(args, cat) -> bool:
    """Under torchrun: every rank computes its share of the features into the stores; True on the ranks
    other than 0, whose work is then done (rank 0 goes on with the stored features)."""
    from ...job import distributed_job

    with distributed_job() as job:
        if job.world == 1:
            return False
        from ...artefacts import FeatureStore, Run

        if args.run:
            Run(args.run).load()._feature_set(cat, job=job)
        else:
            from ...outliers.detect import parse_backbones

            for name in parse_backbones(args.backbone):
                for view in ("center", "flip") if args.flip else ("center",):
                    FeatureStore(cat, name, view=view, pretrained=pretrained(args), weights=args.weights).ensure(job)
    return not job.is_main


def _features(args, cat):
    """The features the checks read: the run's embedding (``--run``), else the backbones' stored features,
    each store built first where it is missing."""
    from ...artefacts import FeatureStore, Run
    from ...outliers.detect import backbone_features, parse_backbones, run_features

    if args.run:
        return run_features(cat, args.run, run=Run(args.run).load())  # a missing run names `artextract train`
    for name in parse_backbones(args.backbone):
        for view in ("center", "flip") if args.flip else ("center",):
            FeatureStore(cat, name, view=view, pretrained=pretrained(args), weights=args.weights).ensure()
    return backbone_features(cat, args.backbone, flip=args.flip, pretrained=pretrained(args), weights=args.weights)


def _cmd_outliers(args) -> int:
    import pandas as pd

    from ...data.catalog import Catalog
    from ...outliers.detect import UncheckableTask, context_tasks, labelled_rows, rank_label_issues, summarize

    cat = Catalog.load(args.catalog, cache_dir=args.cache)
    if _shard_features(args, cat):
        return 0
    tasks = list(cat.tasks) if args.task == "all" else [t.strip() for t in args.task.split(",") if t.strip()]
    if not tasks:
        raise UserError("--task needs a task name (or 'all')")
    context = None if args.context == "none" else args.context
    for t in tasks:
        cat.task(t)  # unknown task: a clear CatalogError before any work
        context_tasks(cat, t, context)  # likewise an unknown --context field
    checkable, skipped = [], []
    for t in tasks:
        try:
            labelled_rows(cat, t)
            checkable.append(t)
        except UncheckableTask as exc:
            if len(tasks) == 1:
                raise
            skipped.append(str(exc))
    for msg in skipped:
        logger.warning(f"skipped: {msg}")
    if not checkable:
        raise UserError("no task can be checked:\n  " + "\n  ".join(skipped))
    t0 = time.time()
    feats = _features(args, cat)
    frames, summaries = [], []
    for t in checkable:
        df = rank_label_issues(cat, t, feats, method=args.method, k=args.k, folds=args.folds, seed=args.seed,
                               C=args.C, context=context)
        if df.attrs.get("context"):
            logger.info(f"{t}: the other fields {', '.join(df.attrs['context'])} are used as evidence too "
                        "(--context none: image only)")
        if not args.json:
            print(summarize(df))
        frames.append(df)
        page = None
        if args.report:
            from ...outliers.report import write_report

            rdir = Path(args.report) if len(checkable) == 1 else Path(args.report) / t
            page = write_report(cat, df, rdir)
            logger.info(f"report: {page}")
        summaries.append(_task_summary(df, page))
    if args.task == "all" and len(frames) > 1:
        from ...outliers.report import issue_queue

        out = issue_queue(cat, frames)   # one queue across every task
    else:
        out = pd.concat(frames, ignore_index=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    csv_safe_frame(out).to_csv(args.out, index=False)   # a label like "=x" is shown, not run, by spreadsheets
    logger.info(f"wrote {args.out} ({len(out)} rows, {int(out['flagged'].sum())} flagged) in {time.time() - t0:.1f}s")
    if args.json:
        print(json.dumps({"out": str(args.out), "rows": len(out), "flagged": int(out["flagged"].sum()),
                          "tasks": summaries, "skipped": skipped}, indent=2))
    return 0


def _task_summary(df, page) -> dict:
    """The JSON summary of one task's table (what :func:`summarize` prints)."""
    top = df[df["flagged"]].head(SUMMARY_TOP)
    return {
        "task": df.attrs.get("task"), "method": df.attrs.get("method"), "features": df.attrs.get("features"),
        "checked": len(df), "flagged": int(df["flagged"].sum()), "novelty": int(df["flag_novelty"].sum()),
        "context": list(df.attrs.get("context") or []), "report": str(page) if page else None,
        "top": [{"rank": int(r["rank"]), "id": r["id"], "given_label": r["given_label"],
                 "suggested_label": r["suggested_label"], "suggested_prob": float(r["suggested_prob"])}
                for _, r in top.iterrows()],
    }


def register(sub) -> None:
    """Add ``outliers`` to ``sub``, the ``artextract`` sub-commands."""
    from ...outliers.methods import CHOICES, method_help

    p = add_command(
        sub, "outliers", "find paintings whose labels do not fit (label issues) and paintings that fit no class",
        "artextract outliers --catalog wikiart.parquet --task style --out style_issues.csv --report style_report",
        description="Score every painting that has a TASK label for how likely that label is wrong, with an "
        "ensemble of the original study's z-score, Mahalanobis distance to class centres, k-NN label "
        "disagreement and confident learning (cleanlab) on out-of-fold probabilities, plus a label-free "
        "novelty score. One CSV row per labelled painting, most suspicious first, with the suggested label "
        "and the nearest neighbours as evidence.")
    p.add_argument("--catalog", required=True, help="catalogue file (.parquet)")
    p.add_argument("--task", required=True,
                   help="task to check, several joined by commas, or 'all': one queue across every task, each row "
                   "naming its suspect label (task=label) with how the painting's other labels agree")
    src = p.add_mutually_exclusive_group()
    add_backbone_options(p, backbone_group=src,
                         backbone_help=f"backbone whose cached features are used (default {DEFAULT_BACKBONE}); "
                         "join several with + to concatenate them, e.g. mobilenet_v2+efficientnet_lite2")
    src.add_argument("--run", default=None, help="use the embedding of a trained run directory instead")
    p.add_argument("--flip", action="store_true", help="also use the mirrored image's features (slower, slightly better)")
    p.add_argument("--method", choices=CHOICES, default="ensemble",
                   help="which score sets rank and flagged (every method's score is in the CSV anyway): "
                   + method_help())
    p.add_argument("--k", type=int, default=None,
                   help="neighbours for k-NN disagreement (default: paintings/25, between 10 and 50)")
    p.add_argument("--context", default="auto",
                   help="other catalogue fields whose given labels the out-of-fold classifier also reads, "
                   "comma-separated; 'auto' (default): every other task; 'none': the image alone")
    p.add_argument("--folds", type=int, default=DEFAULT_FOLDS,
                   help=f"folds for out-of-fold probabilities (default {DEFAULT_FOLDS})")
    p.add_argument("--C", type=float, default=DEFAULT_C,
                   help=f"inverse L2 strength of the out-of-fold logistic regression (default {DEFAULT_C:g})")
    add_seed_option(p, help="seed of the folds (default 0)")
    p.add_argument("--out", required=True, help="CSV to write")
    p.add_argument("--report", default=None, help="folder for an HTML page of the flagged paintings")
    add_cache_option(p)
    add_progress_option(p)
    add_json_option(p, "the summary per task (the full table is the CSV)")
    p.set_defaults(func=_cmd_outliers)

"""Sub-commands: ``outliers`` (labels that do not fit, paintings that fit no class) and
``duplicates`` (the same painting present twice)."""
from __future__ import annotations

import time
from pathlib import Path

from ..cli import UserError, add_command


def _load(path: str):
    from ..data.catalog import Catalog

    return Catalog.load(path)


def _features(args, cat):
    from .detect import backbone_features, run_features

    if args.run:
        return run_features(cat, args.run, progress=not args.quiet)
    from ..models.backbones import WeightsUnavailable

    try:
        return backbone_features(cat, args.backbone, flip=args.flip, pretrained=args.pretrained != "none",
                                 weights=args.weights, progress=not args.quiet)
    except (WeightsUnavailable, ValueError) as exc:
        raise UserError(str(exc)) from None


def _cmd_outliers(args) -> int:
    import pandas as pd

    from .detect import UncheckableTask, context_tasks, find_label_issues, labelled_rows, summarize

    cat = _load(args.catalog)
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
        print(f"skipped: {msg}")
    if not checkable:
        raise UserError("no task can be checked:\n  " + "\n  ".join(skipped))
    t0 = time.time()
    feats = _features(args, cat)
    frames = []
    for t in checkable:
        df = find_label_issues(cat, t, feats, method=args.method, k=args.k, folds=args.folds, seed=args.seed,
                               C=args.C, context=context)
        if df.attrs.get("context"):
            print(f"{t}: the other fields {', '.join(df.attrs['context'])} are used as evidence too (--context none: image only)")
        print(summarize(df))
        frames.append(df)
        if args.report:
            from .report import write_report

            rdir = Path(args.report) if len(checkable) == 1 else Path(args.report) / t
            page = write_report(cat, df, rdir)
            print(f"report: {page}")
    if args.task == "all" and len(frames) > 1:
        from .report import issue_queue

        out = issue_queue(cat, frames)   # one queue across every task
    else:
        out = pd.concat(frames, ignore_index=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(args.out, index=False)
    print(f"wrote {args.out} ({len(out)} rows, {int(out['flagged'].sum())} flagged) in {time.time() - t0:.1f}s")
    return 0


def _cmd_duplicates(args) -> int:
    from .duplicates import find_duplicates, summarize_duplicates

    cat = _load(args.catalog)
    backbone = None if args.backbone == "none" else args.backbone
    from ..models.backbones import WeightsUnavailable

    try:
        df = find_duplicates(cat, backbone=backbone, phash_max=args.phash_max, dhash_max=args.dhash_max,
                             cosine_min=args.cosine_min, progress=not args.quiet)
    except (WeightsUnavailable, ValueError) as exc:
        raise UserError(str(exc)) from None
    print(summarize_duplicates(df))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.out, index=False)
        print(f"wrote {args.out} ({len(df)} pairs)")
    return 0


def register(sub) -> None:
    from .detect import CHOICES
    from .duplicates import COSINE_MIN, DHASH_MAX, PHASH_MAX

    p = add_command(
        sub, "outliers", "find paintings whose labels do not fit (label issues) and paintings that fit no class",
        "artextract outliers --catalog wikiart.parquet --task style --out style_issues.csv --report style_report",
        description="Score every painting that has a TASK label for how likely that label is wrong, with an "
        "ensemble of the original study's z-score, Mahalanobis distance to class centres, k-NN label "
        "disagreement and confident learning (cleanlab) on out-of-fold probabilities, plus a label-free "
        "novelty score. One CSV row per labelled painting, most suspicious first, with the suggested label "
        "and the nearest neighbours as evidence.")
    p.add_argument("--catalog", required=True)
    p.add_argument("--task", required=True,
                   help="task to check, several joined by commas, or 'all': one queue across every task, each row "
                   "naming its suspect label (task=label) with how the painting's other labels agree")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--backbone", default="mobilenet_v2",
                     help="backbone whose cached features are used (default mobilenet_v2); join several with + "
                     "to concatenate them, e.g. mobilenet_v2+efficientnet_lite2")
    src.add_argument("--run", default=None, help="use the embedding of a trained run directory instead")
    p.add_argument("--pretrained", choices=("imagenet", "none"), default="imagenet",
                   help="'none': random-init backbone (smoke tests only)")
    p.add_argument("--weights", default=None, help="weights file for the backbone")
    p.add_argument("--flip", action="store_true", help="also use the mirrored image's features (slower, slightly better)")
    p.add_argument("--method", choices=CHOICES, default="ensemble",
                   help="which score sets rank and flagged (every method's score is in the CSV anyway)")
    p.add_argument("--k", type=int, default=None,
                   help="neighbours for k-NN disagreement (default: paintings/25, between 10 and 50)")
    p.add_argument("--context", default="auto",
                   help="other catalogue fields whose given labels the out-of-fold classifier also reads, "
                   "comma-separated; 'auto' (default): every other task; 'none': the image alone")
    p.add_argument("--folds", type=int, default=5, help="folds for out-of-fold probabilities (default 5)")
    p.add_argument("--C", type=float, default=1e-3, help="inverse L2 strength of the out-of-fold logistic regression")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="CSV to write")
    p.add_argument("--report", default=None, help="folder for an HTML page of the flagged paintings")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_outliers)

    d = add_command(
        sub, "duplicates", "find the same painting present twice, within a split and across splits (leaks)",
        "artextract duplicates --catalog wikiart.parquet --out duplicates.csv",
        description="Find near-duplicate pairs with perceptual hashes (pHash, dHash) of the prepared images and "
        "cosine similarity of backbone embeddings. Pairs in different splits are train/validation leaks.")
    d.add_argument("--catalog", required=True)
    d.add_argument("--out", default=None, help="CSV of pairs to write")
    d.add_argument("--backbone", default="mobilenet_v2", help="embedding backbone, or 'none' for hashes only")
    d.add_argument("--phash-max", type=int, default=PHASH_MAX,
                   help=f"pHash Hamming distance (of 64 bits) that, with --dhash-max, means the same picture "
                   f"(default {PHASH_MAX})")
    d.add_argument("--dhash-max", type=int, default=DHASH_MAX, help=f"the same for dHash (default {DHASH_MAX})")
    d.add_argument("--cosine-min", type=float, default=COSINE_MIN,
                   help=f"embedding cosine that alone means the same picture (default {COSINE_MIN})")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=_cmd_duplicates)

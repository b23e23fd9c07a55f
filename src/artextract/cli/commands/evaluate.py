"""``artextract evaluate``: a trained run's per-task metrics, confusion matrices and per-class tables."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from ... import workspace
from ..base import add_command
from ..options import add_cache_option, add_json_option

logger = logging.getLogger(__name__)


def _cmd_evaluate_classifier(args) -> int:
    from ...artefacts import Run
    from ...data.catalog import Catalog
    from ...training.evaluate import evaluate, format_metrics

    run = Run(args.run).load()
    metrics = evaluate(run, Catalog.load(args.catalog, cache_dir=args.cache), args.split, args.out)
    out_dir = Path(args.out) if args.out else workspace.eval_dir(run.path, args.split)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(format_metrics(metrics))
        logger.info(f"metrics, confusion matrices and per-class tables in {out_dir}")
    return 0


def register(sub) -> None:
    """Add ``evaluate`` to ``sub``, the ``artextract`` sub-commands."""
    p = add_command(sub, "evaluate", "per-task metrics, confusion matrices and per-class tables",
                    "artextract evaluate --run runs/wikiart --catalog wikiart.parquet --split val --json")
    p.add_argument("--run", required=True, help="trained run folder (from `artextract train`)")
    p.add_argument("--catalog", required=True, help="catalogue whose SPLIT rows are evaluated")
    p.add_argument("--split", default="val", help="split to evaluate: train, val or test (default val)")
    p.add_argument("--out", default=None, help="output folder (default RUN/eval-SPLIT)")
    add_cache_option(p)
    add_json_option(p, "the metrics")
    p.set_defaults(func=_cmd_evaluate_classifier)

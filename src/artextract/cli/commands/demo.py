"""``artextract demo``: the whole pipeline on the synthetic demo corpus, then a report
(:func:`artextract.demo_pipeline.run_demo`). Each step is an ordinary ``artextract`` command, run
through :func:`artextract.cli.main` in this process."""
from __future__ import annotations

import logging
import time

from ...defaults import DEFAULT_BACKBONE
from ...demo_pipeline import DEMO_EPOCHS, DEMO_N
from ..base import UserError, add_command
from ..options import add_cache_option, add_progress_option

logger = logging.getLogger(__name__)


def _step(name: str, argv: list[str]) -> None:
    """Run one step of the demo: the command line ``artextract ARGV``, said and timed on stderr."""
    from .. import main

    logger.info("\n== %s: artextract %s", name, " ".join(argv))
    t0 = time.time()
    rc = main(argv)
    if rc != 0:
        raise UserError(f"demo step '{name}' failed (exit {rc})")
    logger.info("   (%.1fs)", time.time() - t0)


def _cmd_demo(args) -> int:
    from ...demo_pipeline import run_demo

    t0 = time.time()
    path, nxt = run_demo(args.out, _step, n=args.n, epochs=args.epochs, backbone=args.backbone, fresh=args.fresh,
                         cache=args.cache)
    print(f"\nDone in {time.time() - t0:.0f}s. Report: {path}\n")
    print("\n".join(nxt))
    return 0


def register(sub) -> None:
    """Add ``demo`` to ``sub``, the ``artextract`` sub-commands."""
    p = add_command(sub, "demo", "run the whole pipeline on the synthetic demo corpus and write a report",
                    "artextract demo --out demo-output",
                    description="Generate the synthetic corpus, prepare, train, evaluate, find outliers, index, "
                    "evaluate retrieval, and write OUT/report.html. Re-running reuses what is done.")
    p.add_argument("--out", default="demo-output", help="demo folder (default demo-output)")
    p.add_argument("--n", type=int, default=DEMO_N, help=f"number of synthetic paintings (default {DEMO_N})")
    p.add_argument("--epochs", type=int, default=DEMO_EPOCHS, help=f"training epochs (default {DEMO_EPOCHS})")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE,
                   help=f"backbone of the classifier, see `artextract backbones` (default {DEFAULT_BACKBONE})")
    p.add_argument("--fresh", action="store_true", help="delete OUT first (not a --cache folder outside it)")
    add_cache_option(p, help="prepared-image cache folder of the demo corpus, e.g. --cache /scratch/demo.cache "
                     "(recorded by its prepare step and used by every step); default: the folder recorded for "
                     "OUT/data/catalog.parquet, else OUT/data/catalog.cache")
    add_progress_option(p)
    p.set_defaults(func=_cmd_demo)

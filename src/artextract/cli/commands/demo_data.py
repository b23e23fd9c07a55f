"""``artextract demo-data``: generate the synthetic demo corpus (:mod:`artextract.data.demo`)."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from ..base import add_command
from ..options import add_seed_option

logger = logging.getLogger(__name__)


def _cmd_demo_data(args) -> int:
    from ...data.demo import generate_demo

    t0 = time.time()
    cat = generate_demo(args.out, n=args.n, size=args.size, seed=args.seed)
    logger.info("wrote %d synthetic paintings and %s in %.1fs (planted wrong labels: %s)", len(cat),
                Path(args.out) / "catalog.parquet", time.time() - t0, Path(args.out) / "planted_errors.csv")
    return 0


def register(sub) -> None:
    """Add ``demo-data`` to ``sub``, the ``artextract`` sub-commands."""
    from ...data.demo import DEFAULT_IMAGE_SIZE, DEFAULT_N

    p = add_command(sub, "demo-data", "generate the synthetic demo corpus (deterministic, seconds)",
                    "artextract demo-data --out demo --n 300")
    p.add_argument("--out", required=True, help="folder for the images, catalog.parquet and planted_errors.csv")
    p.add_argument("--n", type=int, default=DEFAULT_N, help=f"number of synthetic paintings (default {DEFAULT_N})")
    p.add_argument("--size", type=int, default=DEFAULT_IMAGE_SIZE,
                   help=f"side of the generated images in pixels (default {DEFAULT_IMAGE_SIZE})")
    add_seed_option(p, help="seed of the corpus (default 0: the same corpus every time)")
    p.set_defaults(func=_cmd_demo_data)

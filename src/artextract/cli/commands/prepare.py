"""``artextract prepare``: decode and resize every image of a catalogue once into the prepared-image cache."""
from __future__ import annotations

import logging
import time

from ..base import add_command
from ..options import PREPARE_CACHE_HELP, add_cache_option, add_progress_option

logger = logging.getLogger(__name__)


def _cmd_prepare(args) -> int:
    from ...artefacts import PreparedImages
    from ...data.cache import record_cache_dir
    from ...data.catalog import Catalog
    from ...job import distributed_job

    # under torchrun every rank decodes its share into the one cache
    with distributed_job() as job:
        cat = Catalog.load(args.catalog)
        if args.cache and job.is_main:  # recorded first: a later command finds it even if this run is killed
            try:
                if record_cache_dir(cat.path, args.cache) is not None:
                    logger.info(f"recorded {args.cache} as the cache of {args.catalog}: later commands on it use "
                                "that folder without --cache")
            except OSError as exc:
                logger.warning(f"cannot record the cache folder beside {args.catalog} ({exc}): pass "
                               f"--cache {args.cache} to the other commands too")
        cache = PreparedImages(cat, args.size, args.cache).open()  # prepare builds it, reporting as it goes
        if args.retry_failed and job.is_main:
            cache.retry_failures()
        job.barrier()
        t0 = time.time()
        res = cache.prepare(cat, workers=args.workers, job=job)
        dt = time.time() - t0
    if not job.is_main:
        return 0
    logger.info(f"cache {cache.dir}: {res.added} added, {res.already} already prepared"
                + (f", {res.added / dt:.1f} img/s" if res.added and dt > 0 else ""))
    if len(res.failed):
        logger.warning(res.failed.summary())
        path = res.failed.write(cache.dir / "skip_report.json")
        logger.warning("skip report: %s (fix the files and run again with --retry-failed)", path)
    return 0


def register(sub) -> None:
    """Add ``prepare`` to ``sub``, the ``artextract`` sub-commands."""
    from ...data.cache import DEFAULT_SIZE

    p = add_command(sub, "prepare", "decode and resize every image once into the prepared-image cache",
                    "artextract prepare --catalog wikiart.parquet --size 256",
                    description="Decode every image once into a memory-mapped uint8 cache that training and "
                    "embedding read instead of JPEGs. Incremental and safe to interrupt: run it again to resume. "
                    "With --cache DIR the cache goes to DIR, and DIR is recorded beside the catalogue "
                    "(CATALOG.cache-location) so that train, outliers, duplicates, index, evaluate, report, "
                    "serve and demo use it too; their own --cache overrides it for one run.")
    p.add_argument("--catalog", required=True, help="catalogue file (.parquet)")
    p.add_argument("--size", type=int, default=DEFAULT_SIZE, help=f"side of the stored square (default {DEFAULT_SIZE})")
    add_cache_option(p, help=PREPARE_CACHE_HELP)
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: cores, at most 4)")
    p.add_argument("--retry-failed", action="store_true", help="try again the files that failed before")
    add_progress_option(p)
    p.set_defaults(func=_cmd_prepare)

"""Sub-commands for data: ingest, catalog info, prepare, demo-data."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from ..cli_base import UserError, add_command
from ..cli_options import PREPARE_CACHE_HELP, VAL_FRACTION, add_cache_option, add_json_option, add_seed_option

logger = logging.getLogger(__name__)


def _cmd_ingest_wikiart(args) -> int:
    from .wikiart import ingest_wikiart

    t0 = time.time()
    cat, report = ingest_wikiart(args.labels, args.images)
    if len(cat) == 0:
        raise UserError(
            f"none of the {report.rows_listed:,} listed images were found under {args.images}; "
            "point --images at the folder that holds the style folders (Impressionism/, Baroque/, ...)"
        )
    cat, period_msgs = _period(cat, args)
    cat.save(args.out)
    logger.info(report.summary())
    for m in period_msgs:
        logger.info(m)
    logger.info("wrote %s (%s paintings) in %.1fs", args.out, f"{len(cat):,}", time.time() - t0)
    return 0


def _cmd_ingest_csv(args) -> int:
    from .tabular import ingest_csv

    cat, msgs = ingest_csv(args.csv, args.images, id_col=args.id_col, path_col=args.path_col,
                           tasks=[t.strip() for t in args.tasks.split(",") if t.strip()], split_col=args.split_col,
                           ordered=[t.strip() for t in args.ordered.split(",") if t.strip()], seed=args.seed,
                           val_fraction=args.val_fraction, encoding=args.encoding)
    cat, period_msgs = _period(cat, args)
    msgs += period_msgs
    cat.save(args.out)
    for m in msgs:
        logger.info(m)
    logger.info("wrote %s (%s paintings)", args.out, f"{len(cat):,}")
    return 0


def _cmd_ingest_folder(args) -> int:
    from .folder import ingest_folder

    t0 = time.time()
    cat, msgs, skipped = ingest_folder(args.images, task=args.task, val_fraction=args.val_fraction,
                                       seed=args.seed, workers=args.workers)
    cat, period_msgs = _period(cat, args)
    msgs += period_msgs
    cat.save(args.out)
    for m in msgs:
        logger.info(m)
    if len(skipped):
        report = skipped.write(Path(args.out).with_suffix(".skipped.json"))
        logger.info("skip report: %s", report)
    logger.info("wrote %s (%s paintings) in %.1fs", args.out, f"{len(cat):,}", time.time() - t0)
    return 0


def _period(cat, args):
    from .periods import apply_period_arguments

    return apply_period_arguments(cat, args)


def _cmd_info(args) -> int:
    from .catalog import Catalog, format_info

    info = Catalog.load(args.catalog).info(check_files=args.check_files)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def _cmd_prepare(args) -> int:
    from .cache import PreparedCache, default_cache_dir, record_cache_dir
    from .catalog import Catalog

    from .. import distributed

    rank, world = distributed.init()  # under torchrun every rank decodes its share into the one cache
    cat = Catalog.load(args.catalog)
    if args.cache and rank == 0:  # recorded first: a later command finds it even if this run is killed
        try:
            if record_cache_dir(cat.path, args.cache) is not None:
                logger.info(f"recorded {args.cache} as the cache of {args.catalog}: later commands on it use "
                            "that folder without --cache")
        except OSError as exc:
            logger.warning(f"cannot record the cache folder beside {args.catalog} ({exc}): pass "
                           f"--cache {args.cache} to the other commands too")
    cache = PreparedCache(args.cache or default_cache_dir(cat), args.size)
    if args.retry_failed and rank == 0:
        cache.retry_failures()
    distributed.barrier(world)
    t0 = time.time()
    res = cache.prepare(cat, workers=args.workers, rank=rank, world=world)
    dt = time.time() - t0
    distributed.shutdown(world)
    if rank != 0:
        return 0
    logger.info(f"cache {cache.dir}: {res.added} added, {res.already} already prepared"
                + (f", {res.added / dt:.1f} img/s" if res.added and dt > 0 else ""))
    if len(res.failed):
        logger.warning(res.failed.summary())
        path = res.failed.write(cache.dir / "skip_report.json")
        logger.warning("skip report: %s (fix the files and run again with --retry-failed)", path)
    return 0


def _cmd_demo_data(args) -> int:
    from .demo import generate_demo

    t0 = time.time()
    cat = generate_demo(args.out, n=args.n, size=args.size, seed=args.seed)
    logger.info("wrote %d synthetic paintings and %s in %.1fs (planted wrong labels: %s)", len(cat),
                Path(args.out) / "catalog.parquet", time.time() - t0, Path(args.out) / "planted_errors.csv")
    return 0


def register(sub) -> None:
    """Add ``ingest``, ``catalog``, ``prepare`` and ``demo-data`` (and the NGA commands).

    Parameters
    ----------
    sub : argparse subparsers action

    Returns
    -------
    None
    """
    from . import iiif_cli, nga_cli
    from .cache import DEFAULT_SIZE
    from .folder import DEFAULT_TASK
    from .periods import add_period_arguments

    p = add_command(sub, "ingest", "import a collection's labels and images into a catalogue",
                    "artextract ingest wikiart --labels 'WikiArt Dataset' --images wikiart --out wikiart.parquet")
    isub = p.add_subparsers(dest="source", metavar="SOURCE", required=True)

    w = add_command(isub, "wikiart", "import the ArtGAN WikiArt label files and images",
                    "artextract ingest wikiart --labels ../shared/data/wikiart_labels "
                    "--images ../shared/data/wikiart_sample --out wikiart.parquet",
                    description="Import the ArtGAN WikiArt splits (artist 23, genre 10, style 27 classes) "
                    "into one catalogue row per painting. A painting is val if any task lists it as val.")
    w.add_argument("--labels", required=True, help="folder with artist_train, genre_train.csv, style_class.txt, ...")
    w.add_argument("--images", required=True, help="folder with the style folders (may hold only a subset)")
    w.add_argument("--out", required=True, help="catalogue to write (.parquet)")
    add_period_arguments(w)
    w.set_defaults(func=_cmd_ingest_wikiart)

    c = add_command(isub, "csv", "import any CSV of images with categorical label columns",
                    "artextract ingest csv --csv paintings.csv --images imgs --path-col file "
                    "--tasks school,century --ordered century --out mine.parquet")
    c.add_argument("--csv", required=True, help="CSV file with a header row, one row per image")
    c.add_argument("--images", required=True, help="image root that the path column is relative to")
    c.add_argument("--path-col", default="path", help="column with the image path (default path)")
    c.add_argument("--id-col", default=None, help="column with a unique id (default: the path column)")
    c.add_argument("--tasks", default="", help="comma-separated label columns")
    c.add_argument("--ordered", default="", help="comma-separated tasks whose classes are ordered (sorted order)")
    c.add_argument("--split-col", default=None, help="column with train/val/test; else a seeded stratified split")
    c.add_argument("--val-fraction", type=float, default=VAL_FRACTION,
                   help=f"validation share of the seeded split, without --split-col (default {VAL_FRACTION})")
    c.add_argument("--encoding", default=None,
                   help="text encoding of the CSV, e.g. --encoding cp1252 or --encoding utf-16 (default: from its "
                   "byte order mark, else UTF-8, else Windows-1252 with a message)")
    add_seed_option(c, help="seed of the split (default 0)")
    c.add_argument("--out", required=True, help="catalogue to write (.parquet)")
    add_period_arguments(c)
    c.set_defaults(func=_cmd_ingest_csv)

    f = add_command(isub, "folder", "import a folder with one sub-folder of images per class (ImageFolder layout)",
                    "artextract ingest folder --images my_paintings --task style --out mine.parquet",
                    description="Import DIR/CLASS/image.jpg (torchvision's ImageFolder layout) into one catalogue "
                    "row per readable image; the first folder level is the label (deeper folders keep it). "
                    "Files that cannot be decoded are reported, listed in OUT.skipped.json and left out. "
                    "The split is seeded and stratified on the label.")
    f.add_argument("--images", required=True, help="folder with one sub-folder per class")
    f.add_argument("--task", default=DEFAULT_TASK, help=f"name of the label task (default {DEFAULT_TASK})")
    f.add_argument("--val-fraction", type=float, default=VAL_FRACTION,
                   help=f"validation share of each class (default {VAL_FRACTION})")
    add_seed_option(f, help="seed of the split (default 0)")
    f.add_argument("--workers", type=int, default=4, help="threads that check the images decode (default 4)")
    f.add_argument("--out", required=True, help="catalogue to write (.parquet)")
    add_period_arguments(f)
    f.set_defaults(func=_cmd_ingest_folder)

    dsub = nga_cli.register(isub, sub)
    iiif_cli.register(isub, dsub)

    p = add_command(sub, "catalog", "inspect a catalogue", "artextract catalog info wikiart.parquet")
    csub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    i = add_command(csub, "info", "rows per task and split, classes present, images missing on disk",
                    "artextract catalog info demo/catalog.parquet --json")
    i.add_argument("catalog", help="catalogue file (.parquet)")
    i.add_argument("--check-files", action="store_true",
                   help="also look for every image file on disk and count the missing ones (slow for large collections)")
    add_json_option(i, "the summary")
    i.set_defaults(func=_cmd_info)

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
    p.set_defaults(func=_cmd_prepare)

    from .demo import DEFAULT_IMAGE_SIZE, DEFAULT_N

    p = add_command(sub, "demo-data", "generate the synthetic demo corpus (deterministic, seconds)",
                    "artextract demo-data --out demo --n 300")
    p.add_argument("--out", required=True, help="folder for the images, catalog.parquet and planted_errors.csv")
    p.add_argument("--n", type=int, default=DEFAULT_N, help=f"number of synthetic paintings (default {DEFAULT_N})")
    p.add_argument("--size", type=int, default=DEFAULT_IMAGE_SIZE,
                   help=f"side of the generated images in pixels (default {DEFAULT_IMAGE_SIZE})")
    add_seed_option(p, help="seed of the corpus (default 0: the same corpus every time)")
    p.set_defaults(func=_cmd_demo_data)

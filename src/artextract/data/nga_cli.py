"""Sub-commands for the National Gallery of Art: ``ingest nga`` and ``download nga``."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from ..cli_base import UserError, add_command
from ..cli_options import VAL_FRACTION, add_progress_option, add_seed_option

logger = logging.getLogger(__name__)


def _cmd_ingest_nga(args) -> int:
    from .nga import ingest_nga

    t0 = time.time()
    from .periods import apply_period_arguments

    cat, msgs = ingest_nga(args.opendata, args.images, classification=args.classification, seed=args.seed,
                           val_fraction=args.val_fraction, with_artist=not args.no_artist,
                           artist_min_count=args.artist_min_count, catalog_path=args.out)
    if len(cat) == 0:
        raise UserError(f"no {args.classification} object with an image or an image URL in {args.opendata}")
    cat, period_msgs = apply_period_arguments(cat, args)
    msgs += period_msgs
    cat.save(args.out)
    for m in msgs:
        logger.info(m)
    logger.info(f"wrote {args.out} ({len(cat):,} objects, image root {cat.image_root}) in {time.time() - t0:.1f}s")
    return 0


def _cmd_download_nga(args) -> int:
    from .catalog import Catalog
    from .download import DownloadOptions, download_nga

    cat = Catalog.load(args.catalog)
    root = cat.image_root.resolve()
    out = Path(args.out).resolve() if args.out else root
    if args.size < 1:
        raise UserError("--size must be a positive number of pixels")
    opts = DownloadOptions(size=args.size, base_url=args.base_url, workers=args.workers, rate=args.rate,
                           retries=args.retries, backoff=args.backoff, timeout=args.timeout,
                           progress=not args.no_progress)
    summary = download_nga(cat, out, opts, report_path=args.report)
    return finish_download(args, cat, summary, root, out)


def finish_download(args, cat, summary, root: Path, out: Path) -> int:
    """Print a download's summary, update the catalogue's image root if asked; the exit status."""
    if summary.aborted and not (summary.downloaded or summary.already_present):
        raise UserError(summary.aborted)  # nothing to show but the reason (e.g. no network)
    logger.info(summary.summary())
    if out != root:
        if args.update_catalog:
            cat.image_root = out
            cat.save(args.catalog)
            logger.info(f"catalogue {args.catalog}: image root is now {out}")
        else:
            logger.warning(f"note: the catalogue still looks for images in {root}; pass --update-catalog "
                  f"(or --out {root}) so that it uses {out}")
    if summary.aborted:
        raise UserError(summary.aborted + "; run the same command again to resume")
    return 0 if not summary.failed else 1


def add_download_options(n) -> None:
    """The options every ``download`` source shares."""
    n.add_argument("--update-catalog", action="store_true",
                   help="rewrite the catalogue's image root to --out (when --out is not already its image root)")
    n.add_argument("--workers", type=int, default=4, help="concurrent requests (default 4)")
    n.add_argument("--rate", type=float, default=5.0, help="at most this many requests per second (default 5)")
    n.add_argument("--retries", type=int, default=5, help="retries per image after the first attempt (default 5)")
    n.add_argument("--backoff", type=float, default=1.0,
                   help="first retry delay in seconds, doubled on each retry (default 1)")
    n.add_argument("--timeout", type=float, default=30.0, help="connect/read timeout per request (default 30 s)")
    n.add_argument("--report", default=None, help="JSON report path (default OUT/download_report.json)")
    add_progress_option(n)


def register(ingest_sub, top_sub):
    """Add ``ingest nga`` and the ``download`` command with its ``nga`` source.

    Parameters
    ----------
    ingest_sub : argparse subparsers action
        The sources of ``artextract ingest``.
    top_sub : argparse subparsers action
        The top-level commands (``download`` goes there).

    Returns
    -------
    argparse subparsers action
        The sources of ``artextract download``, for the other sources.
    """
    from .periods import add_period_arguments

    p = add_command(
        ingest_sub, "nga", "import the National Gallery of Art open data (objects.csv, published_images.csv)",
        "artextract ingest nga --opendata opendata/data --out nga.parquet && "
        "artextract download nga --catalog nga.parquet",
        description="Import NGA open data (github.com/NationalGalleryOfArt/opendata) into a catalogue: one row per "
        "object of the chosen classification that has a primary published image (joined on "
        "published_images.depictstmsobjectid = objects.objectid; alternate views are ignored).\n"
        "Tasks: timeframe (20 ordered classes from visualbrowsertimespan, blank = missing) and artist "
        "(from attribution). Metadata: title, displaydate, beginyear, endyear, attribution, medium, uuid, "
        "iiifurl. Images are <objectid>.jpg under the image root: --images if given, else the folder "
        "nga_images next to --out, to be filled by `artextract download nga`. The split is seeded and "
        "stratified on timeframe.",
    )
    p.add_argument("--opendata", required=True,
                   help="folder with objects.csv and published_images.csv (or the repository root with data/)")
    p.add_argument("--images", default=None,
                   help="folder of <objectid>.jpg images (default: nga_images next to --out, for the downloader)")
    p.add_argument("--out", required=True, help="catalogue to write (.parquet)")
    p.add_argument("--classification", default="Painting",
                   help="objects.classification to keep, case-insensitive; comma-separated list, or 'all' "
                   "(default: Painting)")
    p.add_argument("--no-artist", action="store_true", help="do not make the artist task")
    p.add_argument("--artist-min-count", type=int, default=1,
                   help="label artist only for attributions with at least this many objects (default 1: all)")
    add_period_arguments(p)
    p.add_argument("--val-fraction", type=float, default=VAL_FRACTION,
                   help=f"validation share of the seeded split, stratified on timeframe (default {VAL_FRACTION})")
    add_seed_option(p, help="seed of the split (default 0)")
    p.set_defaults(func=_cmd_ingest_nga)

    d = add_command(top_sub, "download", "download the images of a catalogue (NGA, any IIIF collection)",
                    "artextract download nga --catalog nga.parquet --size 512")
    dsub = d.add_subparsers(dest="source", metavar="SOURCE", required=True)
    n = add_command(
        dsub, "nga", "download NGA images over IIIF for every row of an NGA catalogue (resumable)",
        "artextract download nga --catalog nga.parquet --out nga_images --size 512 --update-catalog",
        description="Fetch {iiifurl}/full/!SIZE,SIZE/0/default.jpg for every catalogue row and save it as "
        "<objectid>.jpg (the NGA serves at most 4096 px: larger sizes are capped). Polite (bounded concurrency, global rate limit), retries timeouts, 5xx, 429 "
        "(honouring Retry-After) and dropped connections with exponential backoff, and verifies that every "
        "file decodes before keeping it. Safe to interrupt: run the same command again to resume; complete "
        "files are kept, broken ones fetched again. Without network it stops at the first request.\n"
        "By default images go to the catalogue's image root, so the catalogue can be trained on right away. "
        "With --out elsewhere, --update-catalog makes the catalogue use that folder.\n"
        "A JSON report (downloaded, already present, failed with reasons) is written to "
        "OUT/download_report.json. Exit status: 0 all present, 1 some failed (run again to retry them), "
        "2 stopped (no network).",
    )
    n.add_argument("--catalog", required=True, help="an NGA catalogue (from `artextract ingest nga`)")
    n.add_argument("--out", default=None, help="folder for <objectid>.jpg (default: the catalogue's image root)")
    n.add_argument("--size", type=int, default=512, help="fit images in a SIZE x SIZE box (default 512)")
    n.add_argument("--base-url", default=None,
                   help="replaces the https://api.nga.gov/iiif prefix of the IIIF URLs (mirrors, tests)")
    add_download_options(n)
    n.set_defaults(func=_cmd_download_nga)
    return dsub

"""``artextract download SOURCE``: fetch the images of a catalogue (``nga``, ``iiif``), resumably.

:func:`register` builds the ``download`` sub-parser; each source adds its sub-command through its own
``_register_<source>`` function, with the options every source shares (:func:`add_download_options`).
The downloaders are :mod:`artextract.data.download`.
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..base import UserError, add_command
from ..options import add_progress_option, parse_rewrites

logger = logging.getLogger(__name__)


def add_download_options(parser) -> None:
    """The options every ``download`` source shares.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The source's parser.

    Returns
    -------
    None
    """
    parser.add_argument("--update-catalog", action="store_true",
                        help="rewrite the catalogue's image root to --out (when --out is not already its image root)")
    parser.add_argument("--workers", type=int, default=4, help="concurrent requests (default 4)")
    parser.add_argument("--rate", type=float, default=5.0, help="at most this many requests per second (default 5)")
    parser.add_argument("--retries", type=int, default=5,
                        help="retries per image after the first attempt (default 5)")
    parser.add_argument("--backoff", type=float, default=1.0,
                        help="first retry delay in seconds, doubled on each retry (default 1)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="connect/read timeout per request (default 30 s)")
    parser.add_argument("--report", default=None, help="JSON report path (default OUT/download_report.json)")
    add_progress_option(parser)


def _target(args):
    """The catalogue, its image root and the folder the images go to (``--out``, else that root)."""
    from ...data.catalog import Catalog

    cat = Catalog.load(args.catalog)
    root = cat.image_root.resolve()
    out = Path(args.out).resolve() if args.out else root
    if args.size < 1:
        raise UserError("--size must be a positive number of pixels")
    return cat, root, out


def _finish(args, cat, summary, root: Path, out: Path) -> int:
    """Say a download's summary, update the catalogue's image root if asked; the exit status."""
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


# ---------------------------------------------------------------------- nga
def _cmd_download_nga(args) -> int:
    from ...data.download import DownloadOptions, download_nga

    cat, root, out = _target(args)
    opts = DownloadOptions(size=args.size, base_url=args.base_url, workers=args.workers, rate=args.rate,
                           retries=args.retries, backoff=args.backoff, timeout=args.timeout,
                           progress=not args.no_progress)
    summary = download_nga(cat, out, opts, report_path=args.report)
    return _finish(args, cat, summary, root, out)


def _register_nga(dsub) -> None:
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


# ---------------------------------------------------------------------- iiif
def _cmd_download_iiif(args) -> int:
    from ...data.download import DownloadOptions, download_iiif

    cat, root, out = _target(args)
    opts = DownloadOptions(size=args.size, rewrite=parse_rewrites(args.rewrite), workers=args.workers,
                           rate=args.rate, retries=args.retries, backoff=args.backoff, timeout=args.timeout,
                           progress=not args.no_progress)
    summary = download_iiif(cat, out, opts, report_path=args.report, read_info=not args.no_info)
    return _finish(args, cat, summary, root, out)


def _register_iiif(dsub) -> None:
    d = add_command(
        dsub, "iiif", "download the images of an IIIF catalogue (resumable)",
        "artextract download iiif --catalog museum.parquet --size 512",
        description="Fetch every row's image from its IIIF image service as "
        "{service}/full/!SIZE,SIZE/0/default.jpg, honouring the service's info.json (read once per service): "
        "maxWidth, maxHeight and maxArea, and for a level 0 service one of its listed sizes; an image that "
        "already fits is asked for whole (max on an Image API 3 server, full on a version 2 one). Rows "
        "without a service are fetched from their direct image URL. Polite (bounded concurrency, global rate "
        "limit), retries timeouts, 5xx, 429 (honouring Retry-After) and dropped connections with exponential "
        "backoff, and verifies that every file decodes before keeping it. Safe to interrupt: run the same "
        "command again to resume. A JSON report is written to OUT/download_report.json. Exit status: 0 all "
        "present, 1 some failed (run again to retry them), 2 stopped (no network).")
    d.add_argument("--catalog", required=True, help="an IIIF catalogue (from `artextract ingest iiif`)")
    d.add_argument("--out", default=None, help="folder for the images (default: the catalogue's image root)")
    d.add_argument("--size", type=int, default=512, help="fit images in a SIZE x SIZE box (default 512)")
    d.add_argument("--rewrite", action="append", default=None, metavar="PREFIX=REPLACEMENT",
                   help="fetch URLs starting with PREFIX from REPLACEMENT instead (mirrors, tests); may be repeated")
    d.add_argument("--no-info", action="store_true",
                   help="do not read info.json: request !SIZE,SIZE from every service")
    add_download_options(d)
    d.set_defaults(func=_cmd_download_iiif)


# ---------------------------------------------------------------------- the verb
SOURCES = (_register_nga, _register_iiif)


def register(sub) -> None:
    """Add ``download`` and its sources to ``sub``, the ``artextract`` sub-commands."""
    d = add_command(sub, "download", "download the images of a catalogue (NGA, any IIIF collection)",
                    "artextract download nga --catalog nga.parquet --size 512")
    dsub = d.add_subparsers(dest="source", metavar="SOURCE", required=True)
    for add_source in SOURCES:
        add_source(dsub)

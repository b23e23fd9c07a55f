"""Sub-commands for IIIF collections: ``ingest iiif`` and ``download iiif``."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from ..cli_base import UserError, add_command

logger = logging.getLogger(__name__)


def _csv_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _rewrites(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise UserError(f"--rewrite needs PREFIX=REPLACEMENT; got {p!r}")
        old, new = p.split("=", 1)
        if not old:
            raise UserError(f"--rewrite needs a non-empty PREFIX; got {p!r}")
        out[old] = new
    return out


def _cmd_ingest_iiif(args) -> int:
    from .iiif import REPORT_SUFFIX, ingest_iiif
    from .periods import apply_period_arguments

    t0 = time.time()
    if args.max_depth < 0:
        raise UserError("--max-depth must be 0 or more")
    cat, report = ingest_iiif(args.sources, images=args.images, catalog_path=args.out, tasks=_csv_list(args.tasks),
                              ordered=_csv_list(args.ordered), lang=args.lang or None,
                              all_canvases=args.all_canvases, max_depth=args.max_depth, seed=args.seed,
                              val_fraction=args.val_fraction, rewrite=_rewrites(args.rewrite),
                              timeout=args.timeout, retries=args.retries)
    cat, msgs = apply_period_arguments(cat, args)
    report.messages += msgs
    cat.save(args.out)
    out = Path(args.out)
    rpath = Path(args.report) if args.report else out.with_name(out.stem + REPORT_SUFFIX)
    report.write(rpath)
    logger.info(report.summary())
    logger.info("wrote %s (%s row(s), image root %s) in %.1fs; get the images with `artextract download iiif "
                "--catalog %s`", args.out, f"{len(cat):,}", cat.image_root, time.time() - t0, args.out)
    return 1 if report.failures else 0


def _cmd_download_iiif(args) -> int:
    from .catalog import Catalog
    from .download import DownloadOptions, download_iiif
    from .nga_cli import finish_download

    cat = Catalog.load(args.catalog)
    root = cat.image_root.resolve()
    out = Path(args.out).resolve() if args.out else root
    if args.size < 1:
        raise UserError("--size must be a positive number of pixels")
    opts = DownloadOptions(size=args.size, rewrite=_rewrites(args.rewrite), workers=args.workers, rate=args.rate,
                           retries=args.retries, backoff=args.backoff, timeout=args.timeout,
                           progress=not args.no_progress)
    summary = download_iiif(cat, out, opts, report_path=args.report, read_info=not args.no_info)
    return finish_download(args, cat, summary, root, out)


def register(ingest_sub, download_sub) -> None:
    from .iiif import DEFAULT_MAX_DEPTH
    from .periods import add_period_arguments

    p = add_command(
        ingest_sub, "iiif", "import IIIF Presentation manifests and collections (API 2.1 and 3.0)",
        "artextract ingest iiif https://example.org/iiif/collection.json --out museum.parquet "
        "--tasks creator --period-from date && artextract download iiif --catalog museum.parquet",
        description="Read IIIF manifests and collections (files or http(s) URLs, Presentation API 2.1 or 3.0; "
        "collections followed recursively, each document once) into a catalogue with one row per manifest "
        "(--all-canvases: per canvas). The painting is the first canvas with a painting annotation that has "
        "an image (a Choice gives its first item). title is the manifest's label; every metadata pair becomes "
        "a column named by its lower-cased label (repeated labels joined with '; '); language maps are "
        "resolved by --lang, then none, then en, then the first language; HTML is stripped. Rows keep rights, "
        "required_statement (v3) or attribution and license (v2), nav_date, manifest_id, canvas_id, the image "
        "service (image_service, image_service_version, image_service_profile) and the direct image_url.\n"
        "Sources that fail (malformed JSON, unknown type, no image, HTTP errors) are listed in an ingest "
        "report (CATALOG.ingest_report.json beside --out) and the others go on. Exit status: 0 every source "
        "read, 1 some failed (the catalogue holds the rest), 2 nothing usable.")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="manifest or collection: a file or an http(s) URL")
    p.add_argument("--out", required=True, help="catalogue to write (.parquet)")
    p.add_argument("--images", default=None, help="image root (default: the folder iiif_images next to --out)")
    p.add_argument("--tasks", default="", help="comma-separated fields (columns) that become classification tasks")
    p.add_argument("--ordered", default="", help="comma-separated tasks whose classes are ordered (sorted order)")
    p.add_argument("--lang", default="en", help="preferred language of labels and values (default en)")
    p.add_argument("--all-canvases", action="store_true", help="one row per canvas with an image, not per manifest")
    p.add_argument("--max-depth", type=int, default=DEFAULT_MAX_DEPTH,
                   help=f"how many collection levels to follow (default {DEFAULT_MAX_DEPTH})")
    p.add_argument("--rewrite", action="append", default=None, metavar="PREFIX=REPLACEMENT",
                   help="read URLs starting with PREFIX from REPLACEMENT instead (a mirror URL or a local folder); "
                   "may be repeated")
    add_period_arguments(p)
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="validation share of the seeded split, stratified on the first task (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    p.add_argument("--timeout", type=float, default=30.0, help="connect/read timeout per request (default 30 s)")
    p.add_argument("--retries", type=int, default=3, help="retries per document after the first attempt (default 3)")
    p.add_argument("--report", default=None, help="ingest report path (default: beside --out)")
    p.set_defaults(func=_cmd_ingest_iiif)

    from .nga_cli import add_download_options

    d = add_command(
        download_sub, "iiif", "download the images of an IIIF catalogue (resumable)",
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

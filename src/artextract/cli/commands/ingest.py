"""``artextract ingest SOURCE``: import a collection's labels and images into a catalogue.

:func:`register` builds the ``ingest`` sub-parser; each source (``wikiart``, ``csv``, ``folder``,
``nga``, ``iiif``) adds its sub-command through its own ``_register_<source>`` function. The importers
themselves are ``artextract.data.<source>``.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from ..base import UserError, add_command
from ..options import VAL_FRACTION, add_seed_option, parse_rewrites

logger = logging.getLogger(__name__)


def _csv_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _finish(cat, args, **kw):
    """Add the period task (``--period-from``), save to ``--out`` and log: the end every source shares."""
    from ...data.ingest import finish_ingest

    return finish_ingest(cat, args.out, period_from=args.period_from, period_bins=args.period_bins,
                         period_name=args.period_name, **kw)


# ---------------------------------------------------------------------- wikiart
def _cmd_ingest_wikiart(args) -> int:
    from ...data.wikiart import ingest_wikiart

    t0 = time.time()
    cat, report = ingest_wikiart(args.labels, args.images)
    if len(cat) == 0:
        raise UserError(
            f"none of the {report.rows_listed:,} listed images were found under {args.images}; "
            "point --images at the folder that holds the style folders (Impressionism/, Baroque/, ...)"
        )
    _finish(cat, args, messages=[report.summary()], t0=t0)
    return 0


def _register_wikiart(isub) -> None:
    from ...data.periods import add_period_arguments

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


# ---------------------------------------------------------------------- csv
def _cmd_ingest_csv(args) -> int:
    from ...data.tabular import ingest_csv

    cat, msgs = ingest_csv(args.csv, args.images, id_col=args.id_col, path_col=args.path_col,
                           tasks=[t.strip() for t in args.tasks.split(",") if t.strip()], split_col=args.split_col,
                           ordered=[t.strip() for t in args.ordered.split(",") if t.strip()], seed=args.seed,
                           val_fraction=args.val_fraction, encoding=args.encoding)
    _finish(cat, args, messages=msgs)
    return 0


def _register_csv(isub) -> None:
    from ...data.periods import add_period_arguments

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


# ---------------------------------------------------------------------- folder
def _cmd_ingest_folder(args) -> int:
    from ...data.folder import ingest_folder

    t0 = time.time()
    cat, msgs, skipped = ingest_folder(args.images, task=args.task, val_fraction=args.val_fraction,
                                       seed=args.seed, workers=args.workers)
    _finish(cat, args, messages=msgs, report=skipped, report_label="skip report", t0=t0,
            report_path=Path(args.out).with_suffix(".skipped.json") if len(skipped) else None)
    return 0


def _register_folder(isub) -> None:
    from ...data.folder import DEFAULT_TASK
    from ...data.periods import add_period_arguments

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


# ---------------------------------------------------------------------- nga
def _cmd_ingest_nga(args) -> int:
    from ...data.nga import ingest_nga

    t0 = time.time()
    cat, msgs = ingest_nga(args.opendata, args.images, classification=args.classification, seed=args.seed,
                           val_fraction=args.val_fraction, with_artist=not args.no_artist,
                           artist_min_count=args.artist_min_count, catalog_path=args.out)
    if len(cat) == 0:
        raise UserError(f"no {args.classification} object with an image or an image URL in {args.opendata}")
    _finish(cat, args, messages=msgs, noun="objects", show_root=True, t0=t0)
    return 0


def _register_nga(isub) -> None:
    from ...data.periods import add_period_arguments

    p = add_command(
        isub, "nga", "import the National Gallery of Art open data (objects.csv, published_images.csv)",
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


# ---------------------------------------------------------------------- iiif
def _cmd_ingest_iiif(args) -> int:
    from ...data.iiif import REPORT_SUFFIX, ingest_iiif

    t0 = time.time()
    if args.max_depth < 0:
        raise UserError("--max-depth must be 0 or more")
    cat, report = ingest_iiif(args.sources, images=args.images, catalog_path=args.out, tasks=_csv_list(args.tasks),
                              ordered=_csv_list(args.ordered), lang=args.lang or None,
                              all_canvases=args.all_canvases, max_depth=args.max_depth, seed=args.seed,
                              val_fraction=args.val_fraction, rewrite=parse_rewrites(args.rewrite),
                              timeout=args.timeout, retries=args.retries)
    out = Path(args.out)
    _finish(cat, args, messages=report.messages, report=report, summary=True, noun="row(s)", show_root=True, t0=t0,
            report_path=Path(args.report) if args.report else out.with_name(out.stem + REPORT_SUFFIX),
            hint=f"get the images with `artextract download iiif --catalog {args.out}`")
    return 1 if report.failures else 0


def _register_iiif(isub) -> None:
    from ...data.iiif import DEFAULT_MAX_DEPTH
    from ...data.periods import add_period_arguments

    p = add_command(
        isub, "iiif", "import IIIF Presentation manifests and collections (API 2.1 and 3.0)",
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


# ---------------------------------------------------------------------- the verb
SOURCES = (_register_wikiart, _register_csv, _register_folder, _register_nga, _register_iiif)


def register(sub) -> None:
    """Add ``ingest`` and its sources (in the order of ``artextract ingest --help``) to ``sub``, the ``artextract`` sub-commands."""
    p = add_command(sub, "ingest", "import a collection's labels and images into a catalogue",
                    "artextract ingest wikiart --labels 'WikiArt Dataset' --images wikiart --out wikiart.parquet")
    isub = p.add_subparsers(dest="source", metavar="SOURCE", required=True)
    for add_source in SOURCES:
        add_source(isub)

"""Sub-commands for data: ingest, catalog info, prepare, demo-data."""
from __future__ import annotations

import importlib
import importlib.util
import json
import time
from pathlib import Path

from ..cli import UserError, add_command


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
    print(report.summary())
    for m in period_msgs:
        print(m)
    print(f"wrote {args.out} ({len(cat):,} paintings) in {time.time() - t0:.1f}s")
    return 0


def _cmd_ingest_csv(args) -> int:
    from .tabular import ingest_csv

    cat, msgs = ingest_csv(args.csv, args.images, id_col=args.id_col, path_col=args.path_col,
                           tasks=args.tasks.split(",") if args.tasks else [], split_col=args.split_col,
                           ordered=args.ordered.split(",") if args.ordered else [], seed=args.seed,
                           val_fraction=args.val_fraction)
    cat, period_msgs = _period(cat, args)
    msgs += period_msgs
    cat.save(args.out)
    for m in msgs:
        print(m)
    print(f"wrote {args.out} ({len(cat):,} paintings)")
    return 0


def _period(cat, args):
    from .periods import apply_period_arguments

    return apply_period_arguments(cat, args)


def _cmd_info(args) -> int:
    from .catalog import Catalog, format_info

    info = Catalog.load(args.catalog).info()
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def _cmd_prepare(args) -> int:
    from .cache import PreparedCache, default_cache_dir
    from .catalog import Catalog

    cat = Catalog.load(args.catalog)
    cache = PreparedCache(args.cache or default_cache_dir(cat), args.size)
    if args.retry_failed:
        cache.retry_failures()
    t0 = time.time()
    res = cache.prepare(cat, workers=args.workers)
    dt = time.time() - t0
    print(f"cache {cache.dir}: {res.added} added, {res.already} already prepared"
          + (f", {res.added / dt:.1f} img/s" if res.added and dt > 0 else ""))
    if len(res.failed):
        print(res.failed.summary())
        path = res.failed.write(cache.dir / "skip_report.json")
        print(f"skip report: {path} (fix the files and run again with --retry-failed)")
    return 0


def _cmd_demo_data(args) -> int:
    from .demo import generate_demo

    t0 = time.time()
    cat = generate_demo(args.out, n=args.n, size=args.size, seed=args.seed)
    print(f"wrote {len(cat)} synthetic paintings and {Path(args.out) / 'catalog.parquet'} "
          f"in {time.time() - t0:.1f}s (planted wrong labels: {Path(args.out) / 'planted_errors.csv'})")
    return 0


def register(sub) -> None:
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
    c.add_argument("--csv", required=True)
    c.add_argument("--images", required=True, help="image root that the path column is relative to")
    c.add_argument("--path-col", default="path")
    c.add_argument("--id-col", default=None, help="defaults to the path column")
    c.add_argument("--tasks", default="", help="comma-separated label columns")
    c.add_argument("--ordered", default="", help="comma-separated tasks whose classes are ordered (sorted order)")
    c.add_argument("--split-col", default=None, help="column with train/val/test; else a seeded stratified split")
    c.add_argument("--val-fraction", type=float, default=0.2)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", required=True)
    add_period_arguments(c)
    c.set_defaults(func=_cmd_ingest_csv)

    if importlib.util.find_spec("artextract.data.nga_cli") is not None:
        dsub = importlib.import_module("artextract.data.nga_cli").register(isub, sub)
        importlib.import_module("artextract.data.iiif_cli").register(isub, dsub)

    p = add_command(sub, "catalog", "inspect a catalogue", "artextract catalog info wikiart.parquet")
    csub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    i = add_command(csub, "info", "rows per task and split, classes present, images missing on disk",
                    "artextract catalog info demo/catalog.parquet --json")
    i.add_argument("catalog")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_cmd_info)

    p = add_command(sub, "prepare", "decode and resize every image once into the prepared-image cache",
                    "artextract prepare --catalog wikiart.parquet --size 256",
                    description="Decode every image once into a memory-mapped uint8 cache that training and "
                    "embedding read instead of JPEGs. Incremental and safe to interrupt: run it again to resume.")
    p.add_argument("--catalog", required=True)
    p.add_argument("--size", type=int, default=256, help="side of the stored square (default 256)")
    p.add_argument("--cache", default=None, help="cache folder (default: CATALOG with suffix .cache)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: cores, at most 4)")
    p.add_argument("--retry-failed", action="store_true", help="try again the files that failed before")
    p.set_defaults(func=_cmd_prepare)

    p = add_command(sub, "demo-data", "generate the synthetic demo corpus (deterministic, seconds)",
                    "artextract demo-data --out demo --n 300")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo_data)

"""Sub-commands of the web explorer: ``serve`` and ``review export``."""
from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

from ..cli import UserError, add_command


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cmd_serve(args) -> int:
    import uvicorn

    from .app import create_app
    from .explorer import Explorer, ExplorerError, WebConfig

    if args.max_upload_mb <= 0 or args.max_upload_mpx <= 0:
        raise UserError("--max-upload-mb and --max-upload-mpx must be positive")
    cfg = WebConfig(catalog=args.catalog, run=args.run, index=args.index, outliers=args.outliers, db=args.db,
                    thumb_cache="" if args.no_thumb_cache else args.thumb_cache,
                    max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                    max_upload_pixels=int(args.max_upload_mpx * 1_000_000))
    try:
        explorer = Explorer(cfg)
    except ExplorerError as exc:
        raise UserError(str(exc)) from exc
    app = create_app(explorer=explorer)
    if not _is_loopback(args.host):
        print(f"warning: listening on {args.host}: anyone who can reach this machine can browse the catalogue "
              "and record review decisions (there is no login)", file=sys.stderr)
    st = explorer.status()
    print(f"catalogue {st['catalog']['path']} ({st['catalog']['rows']:,} paintings); "
          f"model: {'yes' if st['run']['loaded'] else 'no'}, index: {'yes' if st['index']['loaded'] else 'no'}, "
          f"outliers: {st['outliers'].get('flagged', 0) if st['outliers']['loaded'] else 'no'}; "
          f"reviews in {explorer.db_path}")
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"ArtExtract explorer on http://{host}:{args.port}/  (API docs: /docs; Ctrl+C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.log_level == "debug")
    return 0


def _cmd_review_export(args) -> int:
    from ..data.catalog import Catalog
    from .db import ReviewStore, ReviewStoreError
    from .explorer import default_db_path
    from .review import export_reviews

    cat = Catalog.load(args.catalog)
    db = Path(args.db) if args.db else default_db_path(args.catalog)
    if not db.exists():
        raise UserError(f"no review database at {db}; review in `artextract serve` first, or pass --db")
    try:
        store = ReviewStore(db, create=False)
    except ReviewStoreError as exc:
        raise UserError(str(exc)) from exc
    fmt = args.format if args.format != "auto" else None
    try:
        res = export_reviews(cat, store, args.out, fmt)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if res["format"] == "csv":
        print(f"wrote {res['path']}: {res['decisions']} decision(s)")
    else:
        print(f"wrote {res['path']}: {len(cat):,} paintings, {res['applied']} label(s) changed, "
              f"{res['kept']} kept, {res['skipped']} skipped")
        for p in res["problems"][:10]:
            print(f"  skipped {p}")
    return 0


def register(sub) -> None:
    p = add_command(sub, "serve", "the web explorer: gallery, predictions, similar paintings, review queue",
                    "artextract serve --catalog demo/catalog.parquet --run runs/demo --index index/demo "
                    "--outliers outliers.csv",
                    description="Start the local web explorer (FastAPI, server-rendered pages, JSON API under "
                    "/api documented at /docs). Every asset is served by this process, so it works offline. "
                    "--run, --index and --outliers are optional; the pages say what each one adds.")
    p.add_argument("--catalog", required=True)
    p.add_argument("--run", default=None, help="trained run folder (predictions), from `artextract train`")
    p.add_argument("--index", default=None, help="similarity index folder, from `artextract index`")
    p.add_argument("--outliers", default=None, metavar="FILE.csv", nargs="+",
                   help="outlier table(s) from `artextract outliers` (the review queue); several files "
                   "(one per task, say) make one queue")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--db", default=None,
                   help="review database (SQLite; default: CATALOG's folder, <name>.reviews.sqlite)")
    p.add_argument("--thumb-cache", default=None, help="thumbnail folder (default: CATALOG.cache/web-thumbs)")
    p.add_argument("--no-thumb-cache", action="store_true", help="keep thumbnails in memory only")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload accepted (default 20 MB)")
    p.add_argument("--max-upload-mpx", type=float, default=50.0,
                   help="largest uploaded image in megapixels (default 50); larger is refused as a possible bomb")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=_cmd_serve)

    p = add_command(sub, "review", "work with the label decisions made in the explorer's review queue",
                    "artextract review export --catalog demo/catalog.parquet --out demo/reviewed.parquet")
    rsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    e = add_command(rsub, "export", "write the corrected catalogue (.parquet) or the decisions (.csv)",
                    "artextract review export --catalog demo/catalog.parquet --out reviewed.parquet",
                    description="Apply the review decisions (accepted suggestions and new labels; kept labels "
                    "stay) to the catalogue and write a new catalogue, or write the decisions as CSV "
                    "(id, task, action, given_label, final_label, suggested_label, decided_at). Safe to run "
                    "while the server is running.")
    e.add_argument("--catalog", required=True)
    e.add_argument("--db", default=None, help="review database (default: as `artextract serve`)")
    e.add_argument("--out", required=True, help="output .parquet (corrected catalogue) or .csv (decisions)")
    e.add_argument("--format", choices=["auto", "catalog", "csv"], default="auto",
                   help="default: from the --out suffix")
    e.set_defaults(func=_cmd_review_export)

"""``artextract serve``: the web explorer (gallery, predictions, similar paintings, review queue),
built by :func:`artextract.web.app.create_app`."""
from __future__ import annotations

import ipaddress
import sys

from ..base import UserError, add_command
from ..options import add_cache_option


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cmd_serve(args) -> int:
    from ...extras import require

    require("web", "fastapi", "uvicorn", "jinja2", "python_multipart", "argon2", feature="artextract serve")
    import uvicorn

    from ...web.app import create_app
    from ...web.explorer import Explorer, WebConfig

    if args.max_upload_mb <= 0 or args.max_upload_mpx <= 0 or args.decode_budget_mpx <= 0:
        raise UserError("--max-upload-mb, --max-upload-mpx and --decode-budget-mpx must be positive")
    from ...web.middleware import hosts_for_bind, split_host

    bad = [h for h in args.allowed_host or [] if split_host(h) is None]
    if bad:
        raise UserError(f"--allowed-host takes a host name or address with an optional port (e.g. art.example.org "
                        f"or art.example.org:8443), not {bad[0]!r}")
    cfg = WebConfig(catalog=args.catalog, run=args.run, index=args.index, outliers=args.outliers, db=args.db,
                    thumb_cache="" if args.no_thumb_cache else args.thumb_cache, cache=args.cache,
                    max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                    max_upload_pixels=int(args.max_upload_mpx * 1_000_000),
                    decode_budget_pixels=int(args.decode_budget_mpx * 1_000_000), auth=not args.no_auth)
    explorer = Explorer(cfg)
    has_users = explorer.reviews.has_users()
    if args.no_auth:
        print(f"warning: --no-auth: anyone who can reach {args.host}:{args.port} can browse the catalogue and "
              "record review decisions without signing in", file=sys.stderr)
    elif not _is_loopback(args.host) and not has_users:
        raise UserError(f"refusing to listen on {args.host} with no users: add one with `artextract users add NAME "
                        f"--catalog {args.catalog}` (then everyone signs in), or pass --no-auth to serve "
                        "without sign-in")
    hosts, any_ip = hosts_for_bind(args.host, args.port)
    hosts += args.allowed_host or []
    app = create_app(explorer=explorer, allowed_hosts=hosts, ip_port=args.port if any_ip else None)
    if explorer.index is not None or explorer.run is not None:
        explorer.map.warm()  # the collection map's layout: loaded from its cache, or computed once
    st = explorer.status()
    print(f"catalogue {st['catalog']['path']} ({st['catalog']['rows']:,} paintings); "
          f"model: {'yes' if st['run']['loaded'] else 'no'}, index: {'yes' if st['index']['loaded'] else 'no'}, "
          f"outliers: {st['outliers'].get('flagged', 0) if st['outliers']['loaded'] else 'no'}; "
          f"reviews in {explorer.db_path}; sign-in: "
          f"{'required' if has_users and not args.no_auth else 'off'}", file=sys.stderr)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"answers to Host: {', '.join(hosts)}{', and any IP address' if any_ip else ''} (add names with "
          "--allowed-host)", file=sys.stderr)
    print(f"ArtExtract explorer on http://{host}:{args.port}/  (API docs: /docs; Ctrl+C stops)", file=sys.stderr,
          flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.log_level == "debug")
    return 0


def register(sub) -> None:
    """Add ``serve`` to ``sub``, the ``artextract`` sub-commands."""
    p = add_command(sub, "serve", "the web explorer: gallery, predictions, similar paintings, review queue",
                    "artextract serve --catalog demo/catalog.parquet --run runs/demo --index index/demo "
                    "--outliers outliers.csv",
                    description="Start the local web explorer (FastAPI, server-rendered pages, JSON API under "
                    "/api documented at /docs). Every asset is served by this process, so it works offline. "
                    "--run, --index and --outliers are optional; the pages say what each one adds.")
    p.add_argument("--catalog", required=True, help="the catalogue to explore (.parquet)")
    p.add_argument("--run", default=None, help="trained run folder (predictions), from `artextract train`")
    p.add_argument("--index", default=None, help="similarity index folder, from `artextract index`")
    p.add_argument("--outliers", default=None, metavar="FILE.csv", nargs="+",
                   help="outlier table(s) from `artextract outliers` (the review queue); several files "
                   "(one per task, say) make one queue")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--allowed-host", action="append", default=None, metavar="HOST",
                   help="a host name the server also answers to, repeatable, e.g. --allowed-host art.example.org "
                   "behind a reverse proxy (NAME: on any port; NAME:PORT: on that port). Requests for any other "
                   "Host are refused with 400; the --host address on --port is always answered (on loopback also "
                   "localhost, 127.0.0.1 and [::1])")
    p.add_argument("--db", default=None,
                   help="review database (SQLite; default: <name>.reviews.sqlite in CATALOG's folder, or in the "
                   "workspace's reviews/ folder with --workspace)")
    add_cache_option(p)
    p.add_argument("--thumb-cache", default=None,
                   help="thumbnail folder (default: web-thumbs in the prepared-image cache folder, see --cache)")
    p.add_argument("--no-thumb-cache", action="store_true", help="keep thumbnails in memory only")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload accepted (default 20 MB)")
    p.add_argument("--max-upload-mpx", type=float, default=50.0,
                   help="largest uploaded image in megapixels (default 50); larger is refused as a possible bomb")
    p.add_argument("--decode-budget-mpx", type=float, default=100.0,
                   help="megapixels of uploads decoded at full size at one time, across all requests (default "
                   "100, about 0.1-0.4 GB); an upload that does not fit waits for others to finish, e.g. "
                   "--decode-budget-mpx 50 on a small machine")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="server log level (default info)")
    p.add_argument("--no-auth", action="store_true",
                   help="serve without sign-in even if users exist, and allow a non-loopback --host without "
                   "users (a warning is printed)")
    p.set_defaults(func=_cmd_serve)

"""Sub-commands of the web explorer: ``serve``, ``users`` and ``review export|agreement``."""
from __future__ import annotations

import getpass
import ipaddress
import json
import sys
from pathlib import Path

from ..cli_base import UserError, add_command
from ..cli_options import add_cache_option


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cmd_serve(args) -> int:
    from ..extras import require

    require("web", "fastapi", "uvicorn", "jinja2", "python_multipart", "argon2", feature="artextract serve")
    import uvicorn

    from .app import create_app
    from .explorer import Explorer, WebConfig

    if args.max_upload_mb <= 0 or args.max_upload_mpx <= 0 or args.decode_budget_mpx <= 0:
        raise UserError("--max-upload-mb, --max-upload-mpx and --decode-budget-mpx must be positive")
    from .middleware import hosts_for_bind, split_host

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


def _store(args, create: bool = False):
    """The review database of ``--catalog`` (or ``--db``)."""
    from .db import ReviewStore
    from .explorer import default_db_path

    if not Path(args.catalog).is_file():
        raise UserError(f"no catalogue at {args.catalog}")
    db = Path(args.db) if args.db else default_db_path(args.catalog)
    if not create and not db.exists():
        raise UserError(f"no review database at {db}; review in `artextract serve` first, or pass --db")
    return ReviewStore(db, create=create)


def _cmd_users_add(args) -> int:
    from ..extras import require

    require("web", "fastapi", "argon2", feature="artextract users add")  # the password hash (web.auth)
    store = _store(args, create=True)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise UserError("no terminal to ask for the password: pass it on stdin with --password-stdin")
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise UserError("the two passwords differ")
    store.add_user(args.name, password)
    print(f"added {args.name} to {store.path}; the explorer now asks everyone to sign in", file=sys.stderr)
    return 0


def _cmd_users_list(args) -> int:
    store = _store(args, create=True)
    users = store.users()
    if args.json:
        print(json.dumps(users))
        return 0
    if not users:
        print(f"no users in {store.path} (sign-in is off)", file=sys.stderr)
        return 0
    print(f"{'name':<24} {'created (UTC)':<20} {'tokens':>6} {'decisions':>9}")
    for u in users:
        print(f"{u['name']:<24} {u['created_at'][:19].replace('T', ' '):<20} {u['tokens']:>6} {u['decisions']:>9}")
    return 0


def _cmd_users_remove(args) -> int:
    store = _store(args)
    if not store.remove_user(args.name):
        raise UserError(f"no user {args.name!r} in {store.path}")
    print(f"removed {args.name} (their tokens and sessions; their decisions stay)", file=sys.stderr)
    return 0


def _cmd_users_token(args) -> int:
    store = _store(args)
    token = store.new_token(args.name)
    print(token)
    print("keep it secret: it is shown once (only its hash is stored); send it as "
          "`Authorization: Bearer TOKEN`", file=sys.stderr)
    return 0


def _cmd_review_agreement(args) -> int:
    from .review import agreement

    store = _store(args)
    rows = agreement(store.current_by_reviewer())
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no item was decided by two reviewers", file=sys.stderr)
        return 0
    print(f"{'task':<14} {'reviewer A':<16} {'reviewer B':<16} {'items':>6} {'agree':>7} {'kappa':>7}")
    for r in rows:
        kappa = "—" if r["kappa"] is None else f"{r['kappa']:.3f}"
        print(f"{r['task']:<14} {r['reviewer_a']:<16} {r['reviewer_b']:<16} {r['items']:>6} "
              f"{r['agreement'] * 100:>6.1f}% {kappa:>7}")
    return 0


def _cmd_review_export(args) -> int:
    from ..data.catalog import Catalog
    from .review import export_reviews

    cat = Catalog.load(args.catalog)
    store = _store(args)
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
                   help="review database (SQLite; default: CATALOG's folder, <name>.reviews.sqlite)")
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

    p = add_command(sub, "users", "the reviewers who may sign in to the explorer",
                    "artextract users add alice --catalog demo/catalog.parquet",
                    description="Reviewer accounts, stored in the review database (argon2 password hashes). "
                    "Once one exists, `artextract serve` asks everyone to sign in, and every decision records "
                    "its reviewer.")
    usub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    def user_cmd(name, help, example, func, with_name=True):
        c = add_command(usub, name, help, example)
        if with_name:
            c.add_argument("name", metavar="NAME", help="the reviewer's name (letters, digits, _.@-)")
        c.add_argument("--catalog", required=True, help="the catalogue the explorer serves")
        c.add_argument("--db", default=None, help="review database (default: as `artextract serve`)")
        c.set_defaults(func=func)
        return c

    c = user_cmd("add", "add a reviewer (asks for the password twice)",
                 "echo 's3cret-pass' | artextract users add alice --catalog demo/catalog.parquet --password-stdin",
                 _cmd_users_add)
    c.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    c = user_cmd("list", "list the reviewers", "artextract users list --catalog demo/catalog.parquet",
                 _cmd_users_list, with_name=False)
    c.add_argument("--json", action="store_true", help="print one JSON document")
    user_cmd("remove", "remove a reviewer with their tokens and sessions (their decisions stay)",
             "artextract users remove alice --catalog demo/catalog.parquet", _cmd_users_remove)
    user_cmd("token", "print a new API token for a reviewer (for Authorization: Bearer TOKEN)",
             "artextract users token alice --catalog demo/catalog.parquet", _cmd_users_token)

    p = add_command(sub, "review", "work with the label decisions made in the explorer's review queue",
                    "artextract review export --catalog demo/catalog.parquet --out demo/reviewed.parquet")
    rsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    e = add_command(rsub, "export", "write the corrected catalogue (.parquet) or the decisions (.csv)",
                    "artextract review export --catalog demo/catalog.parquet --out reviewed.parquet",
                    description="Apply the review decisions (accepted suggestions and new labels; kept labels "
                    "stay) to the catalogue and write a new catalogue, or write the decisions as CSV "
                    "(id, task, reviewer, action, given_label, final_label, suggested_label, decided_at; one row "
                    "per reviewer and item; the catalogue takes each item's latest decision). Safe to run "
                    "while the server is running.")
    e.add_argument("--catalog", required=True, help="the catalogue that was reviewed")
    e.add_argument("--db", default=None, help="review database (default: as `artextract serve`)")
    e.add_argument("--out", required=True, help="output .parquet (corrected catalogue) or .csv (decisions)")
    e.add_argument("--format", choices=["auto", "catalog", "csv"], default="auto",
                   help="default: from the --out suffix")
    e.set_defaults(func=_cmd_review_export)

    g = add_command(rsub, "agreement", "how often two reviewers agree: items both decided and Cohen's kappa, per task",
                    "artextract review agreement --catalog demo/catalog.parquet --json",
                    description="For every task and pair of reviewers: the items both decided, the share with the "
                    "same final label, and Cohen's kappa of their labels (undefined when both gave one and the "
                    "same label).")
    g.add_argument("--catalog", required=True, help="the catalogue that was reviewed")
    g.add_argument("--db", default=None, help="review database (default: as `artextract serve`)")
    g.add_argument("--json", action="store_true", help="print one JSON document")
    g.set_defaults(func=_cmd_review_agreement)

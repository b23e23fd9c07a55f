"""``artextract review export|agreement``: the label decisions made in the explorer's review queue
(:mod:`artextract.web.review`)."""
from __future__ import annotations

import json
import sys

from ..base import add_command
from ..options import review_store


def _cmd_review_agreement(args) -> int:
    from ...web.review import agreement

    store = review_store(args)
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
    from ...data.catalog import Catalog
    from ...web.review import export_reviews

    cat = Catalog.load(args.catalog)
    store = review_store(args)
    fmt = args.format if args.format != "auto" else None
    res = export_reviews(cat, store, args.out, fmt)
    if res["format"] == "csv":
        print(f"wrote {res['path']}: {res['decisions']} decision(s)")
    else:
        print(f"wrote {res['path']}: {len(cat):,} paintings, {res['applied']} label(s) changed, "
              f"{res['kept']} kept, {res['skipped']} skipped")
        for p in res["problems"][:10]:
            print(f"  skipped {p}")
    return 0


def register(sub) -> None:
    """Add ``review`` and its actions to ``sub``, the ``artextract`` sub-commands."""
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

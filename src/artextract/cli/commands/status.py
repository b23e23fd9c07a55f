"""``artextract status``: what is built for a catalogue, a run or an index, and in which state
(:func:`artextract.status.status`)."""
from __future__ import annotations

import json

from ...workspace import COMPLETE
from ..base import UserError, add_command
from ..options import add_cache_option, add_json_option


def _cmd_status(args) -> int:
    from ...status import status

    if not (args.catalog or args.run or args.index):
        raise UserError("give --catalog, --run or --index")
    items = status(catalog=args.catalog, run=args.run, index=args.index, cache_dir=args.cache)
    if args.json:
        print(json.dumps([a.to_dict() for a in items], indent=2))
        return 0
    width = max(len(a.kind) for a in items)
    for a in items:
        line = f"{a.kind:<{width}}  {a.status:<9} {a.path}"
        if a.detail:
            line += f"  ({a.detail})"
        print(line)
        if a.status != COMPLETE and a.build:
            print(f"{'':<{width}}  {'':<9} build: {a.build}")
    return 0


def register(sub) -> None:
    """Add ``status`` to ``sub``, the ``artextract`` sub-commands."""
    p = add_command(sub, "status", "what is built for a catalogue, a run or an index, and in which state "
                    "(missing, partial, complete, stale)",
                    "artextract status --run runs/wikiart",
                    description="List the artefacts of a catalogue (its prepared images and feature stores), a "
                    "run (its weights and evaluations) or an index, each missing, partial (a killed job's "
                    "leftovers), complete or stale (made from another catalogue or other weights), with the command "
                    "that builds it. A run or an index finds its catalogue by itself.")
    p.add_argument("--catalog", default=None, help="catalogue file (.parquet), e.g. --catalog wikiart.parquet")
    p.add_argument("--run", default=None, help="trained run folder, e.g. --run runs/wikiart")
    p.add_argument("--index", default=None, help="similarity index folder, e.g. --index wikiart.index")
    add_cache_option(p)
    add_json_option(p, "the artefacts")
    p.set_defaults(func=_cmd_status)

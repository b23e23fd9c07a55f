"""``artextract catalog info``: a catalogue's rows per task and split, classes and missing images."""
from __future__ import annotations

import json

from ..base import add_command
from ..options import add_json_option


def _cmd_info(args) -> int:
    from ...data.catalog import Catalog, format_info

    info = Catalog.load(args.catalog).info(check_files=args.check_files)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def register(sub) -> None:
    """Add ``catalog`` and its action ``info`` to ``sub``, the ``artextract`` sub-commands."""
    p = add_command(sub, "catalog", "inspect a catalogue", "artextract catalog info wikiart.parquet")
    csub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    i = add_command(csub, "info", "rows per task and split, classes present, images missing on disk",
                    "artextract catalog info demo/catalog.parquet --json")
    i.add_argument("catalog", help="catalogue file (.parquet)")
    i.add_argument("--check-files", action="store_true",
                   help="also look for every image file on disk and count the missing ones (slow for large collections)")
    add_json_option(i, "the summary")
    i.set_defaults(func=_cmd_info)

"""``artextract report``: an HTML report for a run (:func:`artextract.report.build.build_report`)."""
from __future__ import annotations

import logging

from ..base import UserError, add_command
from ..options import add_cache_option

logger = logging.getLogger(__name__)


def _catalog(args):
    """``--catalog``, else the catalogue ``--run`` was trained on."""
    from ...artefacts import Run
    from ...data.catalog import Catalog

    if args.catalog:
        return Catalog.load(args.catalog, cache_dir=args.cache)
    if args.run:
        return Catalog.load(Run(args.run).catalog_path(), cache_dir=args.cache)
    raise UserError("give --run or --catalog")


def _cmd_report(args) -> int:
    from ...report.build import build_report

    cat = _catalog(args)
    path = build_report(args.out, catalog=cat, run_dir=args.run, outliers_csv=args.outliers or None,
                        index_dir=args.index, split=args.split, color_task=args.color_by, title=args.title)
    logger.info("report written to %s", path)
    return 0


def register(sub) -> None:
    """Add ``report`` to ``sub``, the ``artextract`` sub-commands."""
    p = add_command(sub, "report", "an HTML report for a run: metrics, confusion matrices, map, outliers, similar",
                    "artextract report --run runs/wikiart --outliers style_issues.csv --index wikiart.index --out report/")
    p.add_argument("--run", default=None, help="trained run folder (from `artextract train`)")
    p.add_argument("--catalog", default=None, help="catalogue (default: the catalogue the run was trained on)")
    p.add_argument("--outliers", action="append", default=[],
                   help="CSV from `artextract outliers` (repeatable, one per task)")
    p.add_argument("--index", default=None, help="similarity index folder (from `artextract index`)")
    p.add_argument("--split", default="val", help="split whose metrics and map are shown (default val)")
    p.add_argument("--color-by", default=None, help="task that colours the map (default style)")
    p.add_argument("--title", default=None, help="page title (default: ArtExtract report)")
    add_cache_option(p)
    p.add_argument("--out", required=True, help="folder for report.html")
    p.set_defaults(func=_cmd_report)

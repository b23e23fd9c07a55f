"""The end every importer shares: the period task, the saved catalogue, its report and the log.

An importer (``artextract.data.wikiart``, ``tabular``, ``folder``, ``nga``, ``iiif``) builds a
:class:`~.catalog.Catalog` and accounts for every input record (:class:`~.catalog.RowAccount`);
:func:`finish_ingest` then does what `artextract ingest SOURCE` does with it, the same for every
source:

1. with ``period_from``, adds the ordered period task read from that date column
   (:func:`~.periods.add_period_task`);
2. saves the catalogue (validated by :class:`~.catalog.Catalog` on the way);
3. writes the importer's report, when it has one to write;
4. logs the importer's messages (or its report's summary), then one line naming the file written.
"""
from __future__ import annotations

import logging
import os
import time

from .catalog import Catalog
from .periods import add_period_task

logger = logging.getLogger(__name__)


def finish_ingest(catalog: Catalog, out: str | os.PathLike, *, messages: list[str] | None = None,
                  period_from: str | None = None, period_bins: str | int = "nga", period_name: str = "period",
                  report=None, report_path: str | os.PathLike | None = None, report_label: str = "report",
                  summary: bool = False, noun: str = "paintings", show_root: bool = False,
                  t0: float | None = None, hint: str | None = None) -> Catalog:
    """Add the period task, save the catalogue, write the report and log what was done.

    Parameters
    ----------
    catalog : Catalog
        What the importer built.
    out : str or PathLike
        The catalogue file to write (``.parquet``).
    messages : list of str, optional
        What the importer has to say, logged in order; the period task's messages are appended to
        this list.
    period_from : str, optional
        A date column to make the ordered period task from (``--period-from``); none without it.
    period_bins : str or int
        ``"nga"`` or a width in years (``--period-bins``).
    period_name : str
        Name of the period task (``--period-name``).
    report : object with ``write(path)`` and ``summary()``, optional
        The importer's report (:class:`~.iiif.IngestReport`, :class:`~.images.SkipReport` ...).
    report_path : str or PathLike, optional
        Where ``report`` is written; not written without it.
    report_label : str
        How the written report is named in the log (``"<label>: <path>"``, after the messages).
    summary : bool
        Log ``report.summary()`` in place of the messages and the report's path (for a report that
        keeps both, such as :class:`~.iiif.IngestReport` given ``messages=report.messages``).
    noun : str
        What the catalogue's rows are, in the last line ("paintings", "objects", "row(s)").
    show_root : bool
        Name the image root in the last line.
    t0 : float, optional
        ``time.time()`` when the import began; the last line then says how long it took.
    hint : str, optional
        What to do next, appended to the last line.

    Returns
    -------
    Catalog
        The catalogue as saved (with the period task when one was asked for).
    """
    messages = [] if messages is None else messages
    if period_from:
        catalog, added = add_period_task(catalog, period_from, period_bins, name=period_name)
        messages += added
    catalog.save(out)
    written = report.write(report_path) if report is not None and report_path is not None else None
    if summary:
        logger.info(report.summary())
    else:
        for m in messages:
            logger.info(m)
        if written is not None:
            logger.info("%s: %s", report_label, written)
    line = f"wrote {out} ({len(catalog):,} {noun}" + (f", image root {catalog.image_root}" if show_root else "") + ")"
    if t0 is not None:
        line += f" in {time.time() - t0:.1f}s"
    logger.info(line + (f"; {hint}" if hint else ""))
    return catalog

"""Label issues of ordered tasks (periods, timeframes): class positions and date-range tolerance
for :func:`artextract.outliers.methods.ordered_label_scores`."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.catalog import Catalog
from . import methods as M


def date_tolerance(catalog: Catalog, task: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """For an ordered period task whose catalogue keeps each painting's date range, the first and
    last class (original indices) the range overlaps, per row of ``rows`` (-1 where unknown); None
    when the catalogue has no ranges for ``task``. Ranges come from ``<task>_start``/``<task>_end``
    with the bins in ``catalog.extra["periods"][task]`` (``--period-from``), or, for the NGA's
    ``timeframe``, from ``beginyear``/``endyear`` and the NGA's bins."""
    spec = catalog.task(task)
    info = (catalog.extra or {}).get("periods", {}).get(task)
    df = catalog.df
    if info and f"{task}_start" in df.columns and f"{task}_end" in df.columns:
        bounds, cols = info["bounds"], (f"{task}_start", f"{task}_end")
    elif task == "timeframe" and "beginyear" in df.columns and "endyear" in df.columns:
        from ..data.periods import NGA_BOUNDS
        from ..data.nga import NGA_TIMEFRAMES

        if list(spec.classes) != list(NGA_TIMEFRAMES):
            return None
        bounds, cols = [list(b) for b in NGA_BOUNDS], ("beginyear", "endyear")
    else:
        return None
    if len(bounds) != len(spec.classes):
        return None

    def bin_of(v) -> int:
        if v is None or pd.isna(v):
            return -1
        for i, (a, b) in enumerate(bounds):
            if (a is None or v >= a) and (b is None or v <= b):
                return i
        return 0 if bounds[0][0] is not None and v < bounds[0][0] else len(bounds) - 1

    start = df[cols[0]].to_numpy()[rows]
    end = df[cols[1]].to_numpy()[rows]
    return np.array([bin_of(v) for v in start]), np.array([bin_of(v) for v in end])


def ordered_scores(catalog: Catalog, task: str, rows: np.ndarray, present: np.ndarray, y: np.ndarray,
                   probs: np.ndarray):
    """:func:`methods.ordered_label_scores` for an ordered task, with class positions in the full
    class list and each painting's date range as its tolerance. Returns ``(result, lo, hi)`` with
    ``lo``/``hi`` the tolerated classes (original indices)."""
    pos = np.asarray(present, np.int64)
    lo = hi = pos[y]
    tol = date_tolerance(catalog, task, rows)
    if tol is not None:
        a, b = tol
        lo = np.where(a >= 0, np.minimum(a, pos[y]), pos[y])
        hi = np.where(b >= 0, np.maximum(b, pos[y]), pos[y])
    res = M.ordered_label_scores(y, probs, positions=pos, lo=lo, hi=hi)
    return res, lo, hi

"""Small helpers shared across the package: atomic file writes, L2 normalisation, FAISS log quieting,
CSV cells that a spreadsheet does not run as formulas."""
from __future__ import annotations

import contextlib
import logging
import os
import re
import uuid
from pathlib import Path
from typing import Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces ``path`` when the block ends without an error.

    For writers that take a file name (``pq.write_table``, ``torch.save``, ``safetensors``): a reader
    never sees a half-written file, and an interrupted or failed write leaves the old file in place
    and no temporary behind. The temporary name is unique, so concurrent writers do not collide.

    Parameters
    ----------
    path : str or PathLike
        The file to write. Its folder must exist.
    suffix : str
        Suffix of the temporary name (a sweeper of stale temporaries can glob ``.*SUFFIX``).

    Returns
    -------
    contextmanager of Path
        Yields the temporary path (``.NAME.<random>SUFFIX`` in the same folder) to write to.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = False, suffix: str = ".tmp") -> Path:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``.

    Parameters
    ----------
    path : str or PathLike
        The file to write. Its folder must exist.
    data : bytes
        The whole content.
    fsync : bool
        Flush the data to disk before the replace (survives a power cut, costs a sync).
    suffix : str
        See :func:`atomic_path`.

    Returns
    -------
    Path
        ``path``.
    """
    with atomic_path(path, suffix) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8", *, fsync: bool = False,
                      suffix: str = ".tmp") -> Path:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``.

    Parameters
    ----------
    path : str or PathLike
        The file to write. Its folder must exist.
    text : str
        The whole content.
    encoding : str
        Text encoding (default UTF-8).
    fsync, suffix
        See :func:`atomic_write_bytes`.

    Returns
    -------
    Path
        ``path``.
    """
    return atomic_write_bytes(path, text.encode(encoding), fsync=fsync, suffix=suffix)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit Euclidean length (an all-zero row stays zero).

    Parameters
    ----------
    x : array_like, shape (n, d) or (d,)
        Vectors; a single vector is treated as one row.
    eps : float
        Floor of the norm, so that zero rows do not divide by zero.

    Returns
    -------
    numpy.ndarray, shape (n, d), float32, C-contiguous
        The normalised rows.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    return np.ascontiguousarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps), dtype=np.float32)


def quiet_faiss() -> None:
    """Silence FAISS's loader messages ("Loading faiss with AVX2 support", ...) below warnings.

    Call before ``import faiss``; it is cheap and idempotent.
    """
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    logging.getLogger("faiss").setLevel(logging.WARNING)


#: First characters that make a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def csv_safe_value(value):
    """``value`` as a CSV cell that a spreadsheet shows as text: a string starting with ``=``, ``+``,
    ``-``, ``@``, a tab or a carriage return (after any leading ``'``) gets a leading ``'``; plain
    numbers (``-1.5``) and every other value are kept. :func:`csv_unescape_value` reverses it.

    Parameters
    ----------
    value : any

    Returns
    -------
    The value, or the string with a ``'`` in front.
    """
    if isinstance(value, str) and value.lstrip("'")[:1] in FORMULA_START and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_unescape_value(value):
    """The value :func:`csv_safe_value` was given (for programs that read back a CSV written with it)."""
    if isinstance(value, str) and value[:1] == "'" and value.lstrip("'")[:1] in FORMULA_START:
        return value[1:]
    return value


def _map_text_columns(df, fn):
    import pandas as pd

    out = df.copy()
    for i in range(out.shape[1]):
        col = out.iloc[:, i]
        if col.dtype == object or isinstance(col.dtype, (pd.StringDtype, pd.CategoricalDtype)):
            out.isetitem(i, col.astype(object).map(fn, na_action="ignore"))
    out.columns = [fn(c) for c in out.columns]
    return out


def csv_safe_frame(df):
    """A copy of ``df`` for a CSV meant for people (spreadsheets): every text cell and column name
    passed through :func:`csv_safe_value`, so that a label such as ``=HYPERLINK(...)`` is shown, not
    run. Numeric columns are unchanged. Use it wherever a CSV is written for humans; not for Parquet.

    Parameters
    ----------
    df : pandas.DataFrame

    Returns
    -------
    pandas.DataFrame
    """
    return _map_text_columns(df, csv_safe_value)


def csv_unescape_frame(df):
    """The inverse of :func:`csv_safe_frame`, for a CSV this package wrote and now reads back.

    Parameters
    ----------
    df : pandas.DataFrame

    Returns
    -------
    pandas.DataFrame
    """
    return _map_text_columns(df, csv_unescape_value)

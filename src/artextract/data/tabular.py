"""Generic importer: any CSV with an image path column and categorical label columns.

Every data record of the file is accounted for: it becomes a catalogue row, or it is left out and
reported with its reason (more fields than the header, no image path, no id, a duplicated id, an
image that is not on disk). Fields of any length are read (Python's ``csv`` module refuses fields
over 131,072 characters by default; pandas' python engine then drops the row without a word).

The encoding is taken from ``encoding`` when given; else from a byte order mark (UTF-8, UTF-16,
UTF-32); else UTF-8 when the file decodes as UTF-8, else Windows-1252 (or Latin-1), with a message.
"""
from __future__ import annotations

import codecs
import csv
import io
import logging
import sys
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd

from .catalog import Catalog, CatalogError, RowAccount, TaskSpec

logger = logging.getLogger(__name__)

#: Catalogue columns that a metadata column of the CSV must not replace (it is kept as ``csv_<name>``).
RESERVED = ("id", "path", "split")


def stratified_split(labels: pd.Series, val_fraction: float, seed: int) -> np.ndarray:
    """A seeded split, stratified on ``labels`` (missing labels form their own stratum).
    Classes with a single member stay in train."""
    rng = np.random.default_rng(seed)
    split = np.array(["train"] * len(labels), dtype=object)
    strata = labels.fillna("\0missing").to_numpy()
    for value in sorted(set(strata)):
        idx = np.flatnonzero(strata == value)
        if len(idx) < 2:
            continue
        k = int(round(len(idx) * val_fraction))
        k = min(max(k, 1), len(idx) - 1)
        split[rng.choice(idx, size=k, replace=False)] = "val"
    return split


def allow_long_fields() -> None:
    """Let the ``csv`` module read fields of any length (its default limit is 131,072 characters)."""
    limit = sys.maxsize
    while True:
        try:
            if csv.field_size_limit() < limit:
                csv.field_size_limit(limit)
            return
        except OverflowError:  # a C long smaller than Py_ssize_t (Windows)
            limit = 2 ** 31 - 1


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def _utf16_without_bom(data: bytes) -> str | None:
    """``utf-16-le``/``utf-16-be`` when the start of ``data`` looks like BOM-less UTF-16 text."""
    head = data[:400]
    if len(head) < 4:
        return None
    head = head[: len(head) // 2 * 2]
    even, odd = head[0::2], head[1::2]
    if odd.count(0) >= 0.9 * len(odd) and even.count(0) == 0:
        return "utf-16-le"
    if even.count(0) >= 0.9 * len(even) and odd.count(0) == 0:
        return "utf-16-be"
    return None


def _decode_error(name, data: bytes, enc: str, exc: UnicodeDecodeError) -> str:
    line = data[: exc.start].count(b"\n") + 1
    return (f"{name} is not valid {enc} text: byte(s) {data[exc.start:exc.end][:4].hex(' ')} at offset "
            f"{exc.start:,} (line {line:,}) cannot be decoded")


def decode_text(data: bytes, name: str | Path, encoding: str | None = None) -> tuple[str, str, list[str]]:
    """Decode the bytes of a text file.

    Parameters
    ----------
    data : bytes
    name : str or Path
        The file, for messages.
    encoding : str, optional
        The encoding to use (``--encoding``); default: detected (see the module docstring).

    Returns
    -------
    text : str
    encoding : str
        The encoding used.
    messages : list of str
        What the user should know (an encoding guessed after UTF-8 failed).

    Raises
    ------
    CatalogError
        An unknown encoding, or bytes that the chosen encoding cannot decode.
    """
    if encoding:
        try:
            enc = codecs.lookup(encoding).name
        except LookupError:
            raise CatalogError(f"unknown encoding {encoding!r}; use e.g. utf-8, utf-16, cp1252, latin-1") from None
        if enc == "utf-8":
            enc = "utf-8-sig"  # a UTF-8 BOM is not part of the first column's name
        try:
            return data.decode(enc), enc, []
        except UnicodeDecodeError as exc:
            raise CatalogError(_decode_error(name, data, encoding, exc)
                               + "; pass the file's encoding with --encoding") from None
    for bom, enc in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(enc), enc, []
            except UnicodeDecodeError as exc:
                raise CatalogError(_decode_error(name, data, enc, exc) + " (the file starts with a "
                                   f"{enc.upper()} byte order mark); pass the encoding with --encoding") from None
    enc16 = _utf16_without_bom(data)
    if enc16:
        try:
            return data.decode(enc16), enc16, [f"{name}: read as {enc16.upper()} (no byte order mark; "
                                               "pass --encoding to choose another)"]
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8"), "utf-8", []
    except UnicodeDecodeError as exc:
        why = _decode_error(name, data, "UTF-8", exc)
    for enc, label in (("cp1252", "Windows-1252"), ("latin-1", "Latin-1")):
        try:
            text = data.decode(enc)
        except UnicodeDecodeError:
            continue
        return text, enc, [f"{why}; read it as {label} instead (pass --encoding to choose another)"]
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def _unique_columns(header: list[str]) -> list[str]:
    """pandas-style column names: blank ones ``Unnamed: i``, repeated ones ``name.1``, ``name.2`` ..."""
    out: list[str] = []
    seen: set[str] = set()
    for i, name in enumerate(header):
        name = name if name != "" else f"Unnamed: {i}"
        cand, k = name, 0
        while cand in seen:
            k += 1
            cand = f"{name}.{k}"
        seen.add(cand)
        out.append(cand)
    return out


class _Lines:
    """A line iterator that keeps the lines of the record being parsed (the csv reader reads ahead
    no further than the record it returns)."""

    def __init__(self, lines: Iterable[str]):
        self.it = iter(lines)
        self.kept: list[str] = []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = next(self.it)
        self.kept.append(line)
        return line


def iter_csv(lines: Iterable[str], name: str | Path) -> Iterator[tuple[int, int, list[str]]]:
    """``(first line, last line, fields)`` of every record of CSV text, the header included; blank lines
    are not records. Fields may be of any length. A quoted field opened in the last record and never
    closed (it would swallow the rest of the file into one value) raises :class:`CatalogError`.

    Parameters
    ----------
    lines : iterable of str
        Lines with their line endings (a file opened with ``newline=""``, or ``io.StringIO(text, newline="")``).
    name : str or Path
        The file, for messages.
    """
    allow_long_fields()
    src = _Lines(lines)
    reader = csv.reader(src)
    start, last = 1, None
    for fields in reader:
        end = reader.line_num
        if fields:
            last = (start, end, src.kept)
            yield start, end, fields
        src.kept = []
        start = end + 1
    if last and last[1] > last[0]:
        # non-strict parsing reads an unclosed quote to the end of the file as one field: say so
        try:
            list(csv.reader(io.StringIO("".join(last[2]), newline=""), strict=True))
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                raise CatalogError(f"{name}: line {last[0]:,}: a quoted field is opened and never closed, so the "
                                   f"rest of the file ({last[1] - last[0] + 1:,} line(s)) would be one value; fix the "
                                   "quotes (a field that contains a quote is written \"like \"\"this\"\"\")") from None


def read_records(text: str, name: str | Path) -> tuple[list[str], list[tuple[int, list[str]]], list[str]]:
    """Parse CSV text: the header and every data record with its first line number.

    Blank lines are not records. A quoted field that is never closed (it would swallow the rest of
    the file) is an error.

    Returns
    -------
    header : list of str
        Column names, made unique.
    records : list of (line, fields)
    messages : list of str
    """
    header: list[str] | None = None
    records: list[tuple[int, list[str]]] = []
    spans: list[tuple[int, int]] = []
    for start, end, fields in iter_csv(io.StringIO(text, newline=""), name):
        if header is None:
            header = fields
            continue
        records.append((start, fields))
        if end > start:
            spans.append((start, end))
    if header is None:
        raise CatalogError(f"{name} is empty: no header row")
    msgs = []
    if spans:
        lines = sum(b - a + 1 for a, b in spans)
        msgs.append(f"{len(spans):,} row(s) hold line breaks inside quoted fields ({lines:,} lines, e.g. lines "
                    + ", ".join(f"{a}-{b}" for a, b in spans[:3]) + ")")
    return _unique_columns(header), records, msgs


def _is_file(root: Path, rel) -> bool:
    if not isinstance(rel, str):
        return False
    try:
        return (root / rel).is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte ...
        return False


def ingest_csv(csv_path: str | Path, images: str | Path, *, id_col: str | None, path_col: str,
               tasks: list[str], split_col: str | None = None, ordered: list[str] | None = None,
               seed: int = 0, val_fraction: float = 0.2, encoding: str | None = None,
               account: RowAccount | None = None) -> tuple[Catalog, list[str]]:
    """Import a CSV with a header row, one row per image.

    Parameters
    ----------
    csv_path, images : the CSV file and the image root its paths are relative to.
    id_col : column with a unique id (default: the path column).
    path_col : column with the image path.
    tasks : label columns (classes: their sorted values in the imported rows).
    split_col : column with train/val/test; else a seeded split stratified on the first task.
    ordered : tasks whose classes are ordered.
    encoding : the file's encoding (default: detected).
    account : filled with the number of records read, imported and left out per reason.

    Returns
    -------
    (Catalog, messages for the user)

    Raises
    ------
    CatalogError
        The file cannot be read or decoded, a column is missing, a split value is not train/val/test.
    """
    acc = account if account is not None else RowAccount()
    acc.source = f"ingest csv {Path(csv_path).name}"
    header, records, msgs = _read_csv(csv_path, encoding)
    acc.records = len(records)
    _check_columns(csv_path, header, path_col, tasks, id_col, split_col)
    df = _frame(header, records, acc, msgs)
    ordered = ordered or []
    out = pd.DataFrame({"id": df[id_col or path_col], "path": df[path_col]})
    root = Path(images)
    keep = _rows_to_keep(out, root, id_col, acc, msgs)
    specs = _add_columns(out, df, keep, tasks, ordered, (path_col, id_col, split_col))
    split_values = df[split_col][keep] if split_col else None
    out = out.loc[keep].reset_index(drop=True)
    acc.imported = len(out)
    _add_split(out, split_values, split_col, tasks, val_fraction, seed, msgs)
    acc.check()
    if acc.reported:
        msgs.append(acc.summary())
    return Catalog(out, specs, root.resolve(), source=f"csv:{Path(csv_path).name}"), msgs


def _read_csv(csv_path: str | Path, encoding: str | None) -> tuple[list[str], list[tuple[int, list[str]]], list[str]]:
    """The header and records of ``csv_path``, decoded (see :func:`decode_text`), and the messages."""
    try:
        data = Path(csv_path).read_bytes()
    except OSError as exc:
        raise CatalogError(f"cannot read {csv_path}: {exc.strerror or exc}") from None
    text, _, msgs = decode_text(data, csv_path, encoding)
    header, records, parse_msgs = read_records(text, csv_path)
    return header, records, msgs + parse_msgs


def _check_columns(csv_path: str | Path, header: list[str], path_col: str, tasks: list[str],
                   id_col: str | None, split_col: str | None) -> None:
    """Raise :class:`CatalogError` for a reserved task name or a column the header does not have."""
    for t in tasks:
        if t in RESERVED:
            raise CatalogError(f"{t!r} cannot be a task: id, path and split are catalogue columns")
    for col in [path_col, *tasks] + ([id_col] if id_col else []) + ([split_col] if split_col else []):
        if col not in header:
            raise CatalogError(f"{csv_path} has no column {col!r}; columns: {', '.join(header)}")


def _frame(header: list[str], records: list[tuple[int, list[str]]], acc: RowAccount,
           msgs: list[str]) -> pd.DataFrame:
    """The records as a frame of strings (blank fields None); records with more fields than the
    header are left out and reported."""
    n = len(header)
    bad = [(ln, f) for ln, f in records if len(f) > n]
    if bad:
        acc.leave_out("malformed (more fields than the header)", len(bad))
        examples = [f"line {ln}: " + ",".join(f)[:80] for ln, f in bad[:2]]
        msgs.append(f"skipped {len(bad)} malformed row(s) (more fields than the {n} of the header), e.g. {examples}")
    good = [f + [""] * (n - len(f)) for _, f in records if len(f) <= n]
    df = pd.DataFrame(good, columns=header, dtype=object) if good else pd.DataFrame(columns=header, dtype=object)
    return df.where(df != "", None)


def _rows_to_keep(out: pd.DataFrame, root: Path, id_col: str | None, acc: RowAccount,
                  msgs: list[str]) -> np.ndarray:
    """Which rows of ``out`` (``id``, ``path``) are imported: those with a path, an id seen first
    and an image on disk; the others are counted in ``acc`` and reported in ``msgs``."""
    blank = out["path"].isna().to_numpy()
    if blank.any():
        acc.leave_out("without an image path", int(blank.sum()))
        msgs.append(f"skipped {int(blank.sum())} row(s) without an image path")
    no_id = ~blank & out["id"].isna().to_numpy()
    if no_id.any():
        acc.leave_out("without an id", int(no_id.sum()))
        msgs.append(f"skipped {int(no_id.sum())} row(s) without an id in column {id_col!r}")
    valid = ~blank & ~no_id
    dup = np.zeros(len(out), dtype=bool)
    dup[valid] = out["id"][valid].duplicated().to_numpy()
    if dup.any():
        acc.leave_out("with a duplicated id", int(dup.sum()))
        msgs.append(f"skipped {int(dup.sum())} row(s) with a duplicated id, e.g. {out['id'][dup].head(2).tolist()}")
    keep = valid & ~dup
    exists = np.array([_is_file(root, p) for p in out["path"]], dtype=bool)
    if (keep & ~exists).any():
        miss = out.loc[keep & ~exists, "path"].head(3).tolist()
        acc.leave_out("image not on disk", int((keep & ~exists).sum()))
        msgs.append(f"left out {int((keep & ~exists).sum())} row(s) whose image is not on disk, e.g. {miss}")
    return keep & exists


def _add_columns(out: pd.DataFrame, df: pd.DataFrame, keep: np.ndarray, tasks: list[str], ordered: list[str],
                 used: tuple[str | None, ...]) -> dict[str, TaskSpec]:
    """Add the task columns and every other column of ``df`` (not in ``used``) to ``out``; the
    tasks' specs, their classes the sorted values of the kept rows."""
    specs = {}
    for t in tasks:
        out[t] = df[t]
        classes = sorted(out.loc[keep, t].dropna().unique())
        specs[t] = TaskSpec(t, classes, ordered=t in ordered)
    for col in df.columns:
        if col not in (*used, *tasks):
            name = col
            while name in RESERVED or name in out.columns:   # never replace id, path, split or a task
                name = f"csv_{name}"
            out[name] = df[col]
    return specs


def _add_split(out: pd.DataFrame, split_values: pd.Series | None, split_col: str | None, tasks: list[str],
               val_fraction: float, seed: int, msgs: list[str]) -> None:
    """The ``split`` column: from ``split_values`` (checked to be train/val/test), else a seeded split
    stratified on the first task."""
    if split_col:
        out["split"] = split_values.str.lower().str.strip().to_numpy()
        bad_split = ~out["split"].isin(["train", "val", "test"])
        if bad_split.any():
            raise CatalogError(f"split column {split_col!r} has values other than train/val/test: "
                               f"{out.loc[bad_split, 'split'].fillna('<missing>').unique()[:3].tolist()}")
    else:
        out["split"] = stratified_split(out[tasks[0]] if tasks else pd.Series([None] * len(out)),
                                        val_fraction, seed)
        msgs.append(f"no split column: made a seeded split ({val_fraction:.0%} val"
                    + (f", stratified on {tasks[0]})" if tasks else ")"))

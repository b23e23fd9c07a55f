"""Importer for the National Gallery of Art open data (github.com/NationalGalleryOfArt/opendata).

Reads ``objects.csv`` and ``published_images.csv`` exactly as exported (lower-case column names,
UTF-8, long quoted multi-line fields such as ``provenancetext`` and ``inscription``) and produces a
catalogue with one row per object of the chosen classification (``Painting`` by default):

- ``id`` is the objectid, ``path`` is ``<objectid>.jpg`` (the names ``artextract download nga``
  writes, and the names of ``shared/data/nga_sample``),
- task ``timeframe`` (ordered, the 20 :data:`NGA_TIMEFRAMES`) from ``visualbrowsertimespan``;
  blank means missing,
- optional task ``artist`` from ``attribution``,
- metadata: title, displaydate, beginyear, endyear, attribution, medium, and of the object's primary
  published image its uuid and iiifurl (plus ``openaccess`` when the export has it).

Joins ``published_images.depictstmsobjectid = objects.objectid`` and keeps the primary view (lowest
``sequence`` if an object has several); alternate views are dropped. objects.csv has 130,000+ rows
and most of its bytes are columns we do not need, so it is read in chunks with only the needed
columns kept and filtered on classification chunk by chunk. Every record is accounted for: imported,
or left out with its reason (malformed, another classification, no or a duplicated objectid, no image
anywhere); fields of any length and NUL bytes are read as they are, a file that is not UTF-8 or has a
quote that is never closed is an error that says where.

Rows are kept even if their image is not on disk yet: the downloader needs them, and
``artextract catalog info`` reports missing images. Objects without any published image are kept
only if their image is already on disk (there is nothing to download for them).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from .catalog import Catalog, CatalogError, RowAccount, TaskSpec
from .tabular import iter_csv, stratified_split

NGA_TIMEFRAMES = [
    "before 1300", "1300 to 1400", "1401 to 1500", "1501 to 1550", "1551 to 1600", "1601 to 1650",
    "1651 to 1700", "1701 to 1725", "1726 to 1750", "1751 to 1775", "1776 to 1800", "1801 to 1825",
    "1826 to 1850", "1851 to 1875", "1876 to 1900", "1901 to 1925", "1926 to 1950", "1951 to 1975",
    "1976 to 2000", "2001 to present",
]
NGA_IIIF_PREFIX = "https://api.nga.gov/iiif"

OBJECT_COLUMNS = ["objectid", "title", "displaydate", "beginyear", "endyear", "visualbrowsertimespan",
                  "medium", "attribution", "classification"]
IMAGE_COLUMNS = ["uuid", "iiifurl", "viewtype", "sequence", "depictstmsobjectid", "openaccess"]
IMAGE_REQUIRED = ["uuid", "iiifurl", "viewtype", "depictstmsobjectid"]
METADATA_COLUMNS = ["title", "displaydate", "beginyear", "endyear", "attribution", "medium", "uuid",
                    "iiifurl"]

_TIMEFRAME_LOOKUP = {t.lower(): t for t in NGA_TIMEFRAMES}


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", str(s)).strip().lower()


def normalize_timeframe(value) -> str | None:
    """Map a ``visualbrowsertimespan`` value to its class name; None if blank or not a known class."""
    if not isinstance(value, str) or not value.strip():
        return None
    return _TIMEFRAME_LOOKUP.get(_norm(value))


def _find_file(folder: Path, name: str) -> Path | None:
    for cand in (folder / name, folder / "data" / name):
        if cand.is_file():
            return cand
    return None


def _first_bad_utf8(path: Path) -> str:
    """Where the first byte that is not UTF-8 lies in ``path`` (offset, line)."""
    import codecs

    dec = codecs.getincrementaldecoder("utf-8")()
    offset, lines = 0, 1
    with open(path, "rb") as fh:
        while block := fh.read(1 << 16):
            try:
                dec.decode(block)
            except UnicodeDecodeError as exc:
                pos = max(0, exc.start - len(dec.getstate()[0]))   # bytes the decoder held back from before
                where = offset + pos
                lines += block[:pos].count(b"\n")
                return f"byte {block[pos:pos + 1].hex()} at offset {where:,}, line {lines:,}"
            offset += len(block)
            lines += block.count(b"\n")
    return "at the end of the file"


def _read_table(path: Path, wanted: list[str], chunksize: int | None, required: list[str],
                keep=None) -> tuple[pd.DataFrame, int, list[str]]:
    """Read the ``wanted`` columns (case-insensitive header match) of a UTF-8 CSV as strings ("" is
    missing), ``chunksize`` records at a time, keeping the rows where ``keep(chunk)`` is true.

    Every record is counted: it is read (and kept or not), or it is malformed (more fields than the
    header). Fields of any length, and quoted fields over several lines, are read.

    Returns
    -------
    (the kept rows with lower-case column names, records read, malformed lines with their line numbers)
    """
    chunksize = chunksize or 20_000
    parts: list[pd.DataFrame] = []
    bad: list[str] = []
    total = 0
    header: list[str] | None = None
    idx: list[int] = []
    cols: list[str] = []
    batch: list[list] = []

    def flush():
        nonlocal batch
        if batch:
            chunk = pd.DataFrame(batch, columns=cols, dtype=object)
            if keep is not None:
                chunk = chunk.loc[keep(chunk)]
            parts.append(chunk)
            batch = []

    line = 0
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            for line, _, fields in iter_csv(fh, path):
                if header is None:
                    header = fields
                    lower = {c.strip().lower(): i for i, c in enumerate(header)}
                    missing = [c for c in required if c not in lower]
                    if missing:
                        found = list(lower)
                        raise CatalogError(
                            f"{path} has no column(s) {', '.join(missing)}; is it an NGA opendata export? "
                            f"columns found: {', '.join(found[:12])}{' ...' if len(found) > 12 else ''}")
                    cols = [c for c in wanted if c in lower]
                    idx = [lower[c] for c in cols]
                    continue
                if len(fields) > len(header):
                    bad.append(f"line {line:,}: {len(fields)} fields, the header has {len(header)}")
                    continue
                total += 1
                batch.append([(fields[i] or None) if i < len(fields) else None for i in idx])
                if len(batch) >= chunksize:
                    flush()
    except UnicodeDecodeError:
        raise CatalogError(f"{path} is not UTF-8 text ({_first_bad_utf8(path)}); NGA open data exports are "
                           "UTF-8") from None
    except OSError as exc:
        raise CatalogError(f"cannot read {path}: {exc.strerror or exc}") from None
    if header is None:
        raise CatalogError(f"{path} is empty")
    flush()
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols, dtype=object)
    return df, total, bad


def _strip_ids(s: pd.Series) -> pd.Series:
    s = s.astype(object).where(s.notna(), None)
    s = s.map(lambda v: v.strip() if isinstance(v, str) else v)
    # integer ids written as floats by some tools ("123.0")
    return s.map(lambda v: v[:-2] if isinstance(v, str) and v.endswith(".0") and v[:-2].isdigit() else v)


def _primary_images(pi: pd.DataFrame, msgs: list[str]) -> pd.DataFrame:
    """One row per objectid: the primary view with the lowest sequence."""
    pi = pi.copy()
    pi["objectid"] = _strip_ids(pi["depictstmsobjectid"])
    pi = pi.loc[pi["objectid"].map(lambda v: isinstance(v, str) and v != "").astype(bool).to_numpy()]
    view = pi["viewtype"].fillna("").str.strip().str.lower()
    n_alt = int((view != "primary").sum())
    primary = pi[view == "primary"].copy()
    seq = pd.to_numeric(primary["sequence"], errors="coerce") if "sequence" in primary else None
    primary["_seq"] = seq if seq is not None else 0
    primary["_seq"] = primary["_seq"].fillna(np.inf)
    primary = primary.sort_values(["objectid", "_seq", "uuid"], kind="stable")
    dup = int(primary["objectid"].duplicated().sum())
    primary = primary.drop_duplicates("objectid", keep="first").drop(columns="_seq")
    if n_alt:
        msgs.append(f"published_images: ignored {n_alt:,} alternate view(s)")
    if dup:
        msgs.append(f"published_images: {dup:,} object(s) have several primary views; kept the lowest sequence")
    return primary


def ingest_nga(
    opendata_dir: str | Path,
    images_dir: str | Path | None = None,
    classification: str = "Painting",
    seed: int = 0,
    val_fraction: float = 0.2,
    with_artist: bool = True,
    *,
    artist_min_count: int = 1,
    catalog_path: str | Path | None = None,
    chunksize: int = 20_000,
    account: RowAccount | None = None,
) -> tuple[Catalog, list[str]]:
    """Build a catalogue from an NGA opendata folder (the folder with ``objects.csv`` and
    ``published_images.csv``, or the repository root with them under ``data/``).

    ``classification`` is matched case-insensitively against ``objects.classification``; several
    may be given comma-separated, ``all`` keeps every object. ``images_dir`` is the folder of
    ``<objectid>.jpg`` files; without it the image root is ``<catalog_path's folder>/nga_images``
    (or ``./nga_images``), to be filled by ``artextract download nga``. ``artist`` labels are kept
    for attributions with at least ``artist_min_count`` objects (the raw attribution is always kept
    as metadata). Returns the catalogue and human-readable messages about what was left out;
    ``account`` (optional) is filled with the objects.csv records read, imported and left out per reason.
    """
    opendata_dir = Path(opendata_dir)
    msgs: list[str] = []
    acc = account if account is not None else RowAccount()
    acc.source = "ingest nga objects.csv"
    if not opendata_dir.is_dir():
        raise CatalogError(f"--opendata {opendata_dir} is not a folder")
    obj_path = _find_file(opendata_dir, "objects.csv")
    if obj_path is None:
        raise CatalogError(
            f"no objects.csv in {opendata_dir} (or its data/ folder); download the NGA open data from "
            "https://github.com/NationalGalleryOfArt/opendata (objects.csv is stored with Git LFS)"
        )
    pi_path = _find_file(opendata_dir, "published_images.csv")

    # ---------------------------------------------------------------- objects
    objs = _read_objects(obj_path, classification, chunksize, msgs, acc)

    # ---------------------------------------------------------------- published images
    objs = _join_published_images(objs, pi_path, opendata_dir, images_dir, chunksize, msgs)

    # ---------------------------------------------------------------- image root
    root = _image_root(images_dir, catalog_path)
    objs, paths, on_disk = _rows_with_images(objs, root, msgs, acc)

    # ---------------------------------------------------------------- labels
    out, tasks, attribution = _labels(objs, paths, with_artist, artist_min_count, msgs)
    # metadata
    _add_metadata(out, objs, attribution)
    out["split"] = stratified_split(out["timeframe"], val_fraction, seed)
    msgs.append(f"no split in the NGA data: made a seeded split ({val_fraction:.0%} val, seed {seed}, "
                "stratified on timeframe)")
    n_disk = int(on_disk.sum())
    if n_disk == len(out):
        msgs.append(f"all {len(out):,} images are in {root}")
    else:
        msgs.append(f"{n_disk:,} of {len(out):,} images are in {root}; get the other {len(out) - n_disk:,} with "
                    f"`artextract download nga --catalog {catalog_path or 'CATALOG'}`")
    extra = {"nga": {"opendata": str(opendata_dir.resolve()), "classification": classification,
                     "iiif_prefix": NGA_IIIF_PREFIX}}
    cat = Catalog(out, tasks, root, source="nga", extra=extra)
    acc.imported = len(cat)
    acc.check()
    return cat, msgs


def _read_objects(obj_path: Path, classification: str, chunksize: int, msgs: list[str],
                  acc: RowAccount) -> pd.DataFrame:
    """The objects of the chosen classification with a unique objectid; what was left out goes to ``msgs``/``acc``."""
    wanted = {c.strip().lower() for c in classification.split(",") if c.strip()}
    keep_all = not wanted or "all" in wanted or "*" in wanted
    def keep(chunk):
        if keep_all:
            return np.ones(len(chunk), dtype=bool)
        if "classification" not in chunk.columns:
            raise CatalogError(f"{obj_path} has no classification column; use --classification all")
        return chunk["classification"].fillna("").str.strip().str.lower().isin(wanted).to_numpy()

    objs, n_objects, bad = _read_table(obj_path, OBJECT_COLUMNS, chunksize, ["objectid", "visualbrowsertimespan"],
                                       keep)
    if not keep_all and "classification" not in objs.columns:
        raise CatalogError(f"{obj_path} has no classification column; use --classification all")
    n_bad = len(bad)
    acc.records = n_objects + n_bad
    acc.leave_out("malformed", n_bad)
    acc.leave_out("of another classification", n_objects - len(objs))
    for c in OBJECT_COLUMNS:
        if c not in objs.columns:
            objs[c] = None
    msgs.append(f"objects.csv: {n_objects:,} objects, {len(objs):,} "
                + ("kept (all classifications)" if keep_all else f"with classification {classification}"))
    if n_bad:
        msgs.append(f"objects.csv: skipped {n_bad:,} malformed line(s), e.g. {bad[:2]}")
    if len(objs) == 0 and not keep_all and n_objects:
        raise CatalogError(
            f"no object in {obj_path} has classification {classification!r}; use e.g. Painting, Drawing, "
            "Print, Sculpture, or 'all'"
        )
    objs["objectid"] = _strip_ids(objs["objectid"])
    blank_id = objs["objectid"].map(lambda v: not isinstance(v, str) or v == "").astype(bool)
    if blank_id.any():
        msgs.append(f"objects.csv: skipped {int(blank_id.sum()):,} row(s) without an objectid")
        acc.leave_out("without an objectid", int(blank_id.sum()))
        objs = objs[~blank_id]
    dup = objs["objectid"].duplicated()
    if dup.any():
        acc.leave_out("with a duplicated objectid", int(dup.sum()))
        msgs.append(f"objects.csv: skipped {int(dup.sum()):,} duplicated objectid(s), e.g. "
                    f"{objs.loc[dup, 'objectid'].head(3).tolist()}")
        objs = objs[~dup]
    return objs.reset_index(drop=True)


def _join_published_images(objs: pd.DataFrame, pi_path: Path | None, opendata_dir: Path, images_dir,
                           chunksize: int, msgs: list[str]) -> pd.DataFrame:
    """``objs`` with the uuid and iiifurl (and openaccess) of each object's primary published image."""
    if pi_path is not None:
        ids = set(objs["objectid"])
        pi, n_pi, bad_pi = _read_table(pi_path, IMAGE_COLUMNS, chunksize, IMAGE_REQUIRED,
                                       keep=lambda ch: _strip_ids(ch["depictstmsobjectid"]).isin(ids).to_numpy())
        if bad_pi:
            msgs.append(f"published_images.csv: skipped {len(bad_pi):,} malformed line(s), e.g. {bad_pi[:2]}")
        primary = _primary_images(pi, msgs)
        cols = ["objectid", "uuid", "iiifurl"] + (["openaccess"] if "openaccess" in primary.columns else [])
        objs = objs.merge(primary[cols], on="objectid", how="left")
    else:
        if images_dir is None:
            raise CatalogError(
                f"no published_images.csv in {opendata_dir}: without it there are no image URLs; "
                "give --images with <objectid>.jpg files, or add published_images.csv"
            )
        msgs.append("no published_images.csv: only objects whose image is in --images are kept")
        objs["uuid"] = None
        objs["iiifurl"] = None
    return objs


def _image_root(images_dir, catalog_path) -> Path:
    """The catalogue's image root: ``images_dir``, else ``nga_images`` beside the catalogue (or here)."""
    if images_dir is not None:
        root = Path(images_dir).resolve()
        if not root.is_dir():
            raise CatalogError(f"--images {images_dir} is not a folder")
    else:
        base = Path(catalog_path).resolve().parent if catalog_path else Path.cwd()
        root = base / "nga_images"
    return root


def _rows_with_images(objs: pd.DataFrame, root: Path, msgs: list[str], acc: RowAccount):
    """The objects with a published image or an image on disk, their image paths and which are on disk."""
    paths = objs["objectid"] + ".jpg"
    on_disk = (np.array([(root / p).is_file() for p in paths], dtype=bool) if root.is_dir()
               else np.zeros(len(objs), bool))
    has_url = objs["iiifurl"].map(lambda v: isinstance(v, str) and v.strip() != "").to_numpy(dtype=bool)
    keep_rows = has_url | on_disk
    if (~keep_rows).any():
        msgs.append(f"left out {int((~keep_rows).sum()):,} object(s) with neither a primary published image "
                    "nor an image on disk")
        acc.leave_out("with neither a published image nor an image on disk", int((~keep_rows).sum()))
    return objs[keep_rows].reset_index(drop=True), paths[keep_rows].reset_index(drop=True), on_disk[keep_rows]


def _labels(objs: pd.DataFrame, paths: pd.Series, with_artist: bool, artist_min_count: int, msgs: list[str]):
    """The catalogue frame with ids, paths and labels, its task specs, and the cleaned attributions."""
    raw_tf = objs["visualbrowsertimespan"]
    tf = raw_tf.map(normalize_timeframe)
    unknown = raw_tf.notna() & raw_tf.map(lambda v: isinstance(v, str) and v.strip() != "").astype(bool) & tf.isna()
    if unknown.any():
        vals = sorted(set(raw_tf[unknown].map(str)))
        msgs.append(f"timeframe: {int(unknown.sum()):,} value(s) not among the 20 NGA timeframes treated as "
                    f"missing, e.g. {vals[:3]}")
    out = pd.DataFrame({"id": objs["objectid"].astype(str), "path": paths.astype(str)})
    out["timeframe"] = tf.astype(object).where(tf.notna(), None)
    tasks = {"timeframe": TaskSpec("timeframe", list(NGA_TIMEFRAMES), ordered=True)}
    n_missing_tf = int(out["timeframe"].isna().sum())
    if n_missing_tf:
        msgs.append(f"timeframe: {n_missing_tf:,} of {len(out):,} object(s) have no timeframe (label missing)")
    attribution = objs["attribution"].map(lambda v: re.sub(r"\s+", " ", v).strip() if isinstance(v, str) else None)
    attribution = attribution.where(attribution.map(lambda v: bool(v)).astype(bool), None)
    if with_artist:
        counts = attribution.value_counts()
        ok = set(counts[counts >= max(1, artist_min_count)].index)
        artist = attribution.map(lambda v: v if v in ok else None)
        out["artist"] = artist.astype(object)
        tasks["artist"] = TaskSpec("artist", sorted(ok))
        if artist_min_count > 1:
            msgs.append(f"artist: {len(ok):,} attribution(s) with at least {artist_min_count} object(s); "
                        f"{int(attribution.notna().sum() - artist.notna().sum()):,} object(s) left unlabelled")
    return out, tasks, attribution


def _add_metadata(out: pd.DataFrame, objs: pd.DataFrame, attribution: pd.Series) -> None:
    """Add the ``METADATA_COLUMNS`` (and openaccess when the export has it) to ``out``."""
    for c in METADATA_COLUMNS:
        if c == "attribution":
            out[c] = attribution.astype(object)
        elif c in ("beginyear", "endyear"):
            out[c] = pd.to_numeric(objs[c], errors="coerce").astype("Int64")
        else:
            out[c] = objs[c].astype(object).where(objs[c].notna(), None)
    if "openaccess" in objs.columns:
        out["openaccess"] = objs["openaccess"].astype(object).where(objs["openaccess"].notna(), None)

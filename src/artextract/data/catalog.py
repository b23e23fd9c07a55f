"""The catalogue: one table of paintings shared by every capability.

A catalogue is a single Parquet file. Its rows are paintings with the columns

- ``id``: a unique, stable string id (the ArtGAN path for WikiArt, the objectid for NGA),
- ``path``: the image path relative to the catalogue's image root,
- ``split``: ``train``, ``val`` or ``test``,
- one nullable string column per label task (``style``, ``genre``, ``artist``, ``timeframe`` ...),
- any number of source-metadata columns.

The class list of every task, in canonical order, whether the task is ordered, the image root and
the source are stored in the Parquet schema metadata under the key ``artextract``, so the file is
self-describing and nothing can get out of step with it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ArtExtractError
from ..utils import atomic_path

META_KEY = b"artextract"
#: The importers of `artextract ingest` (named in the error for a missing catalogue).
INGEST_SOURCES = ("wikiart", "nga", "csv", "folder", "iiif")
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")


class CatalogError(ArtExtractError, ValueError):
    """A catalogue is malformed or a request does not fit it."""


@dataclass
class RowAccount:
    """Where every input record of an import went: into the catalogue, or left out for a reason.

    An importer counts the records it read (``records``), the rows it imported (``imported``) and,
    per reason, the records it left out (:meth:`leave_out`); :meth:`check` makes sure that nothing
    went missing in between (records = imported + left out).
    """

    source: str = ""
    records: int = 0
    imported: int = 0
    left_out: dict[str, int] = field(default_factory=dict)

    def leave_out(self, reason: str, n: int = 1) -> None:
        if n:
            self.left_out[reason] = self.left_out.get(reason, 0) + int(n)

    @property
    def reported(self) -> int:
        return sum(self.left_out.values())

    def check(self) -> None:
        """Raise :class:`CatalogError` if some records are neither imported nor reported."""
        if self.records != self.imported + self.reported:
            raise CatalogError(
                f"{self.source or 'import'}: {self.records:,} record(s) read but {self.imported:,} imported and "
                f"{self.reported:,} reported as left out ({self.left_out}); this is a bug in the importer, "
                "please report it with the input file")

    def summary(self) -> str:
        reasons = "; ".join(f"{n:,} {why}" for why, n in self.left_out.items())
        return (f"{self.records:,} record(s) read: {self.imported:,} imported, {self.reported:,} left out"
                + (f" ({reasons})" if reasons else ""))


@dataclass
class TaskSpec:
    """One label task: its classes in canonical order and whether they are ordered."""

    name: str
    classes: list[str]
    ordered: bool = False

    def to_json(self) -> dict:
        return {"classes": list(self.classes), "ordered": bool(self.ordered)}

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass
class Catalog:
    df: pd.DataFrame
    tasks: dict[str, TaskSpec]
    image_root: Path
    source: str = "custom"
    extra: dict = field(default_factory=dict)
    path: Path | None = None  # where it was loaded from / saved to
    # its prepared-image cache when a command was told one (--cache); None: see data.cache.default_cache_dir
    cache_dir: Path | None = None

    # ------------------------------------------------------------------ construction
    def __post_init__(self) -> None:
        self.image_root = Path(self.image_root)
        self.validate()

    def validate(self) -> None:
        df = self.df
        for col in ("id", "path", "split"):
            if col not in df.columns:
                raise CatalogError(f"catalogue is missing the required column {col!r}")
        if df["id"].isna().any():
            rows = np.flatnonzero(df["id"].isna().to_numpy())[:3].tolist()
            raise CatalogError(f"catalogue ids must not be empty; {int(df['id'].isna().sum()):,} row(s) have none "
                               f"(e.g. row(s) {rows})")
        if df["id"].duplicated().any():
            dup = df.loc[df["id"].duplicated(), "id"].head(3).tolist()
            raise CatalogError(f"catalogue ids must be unique; duplicated: {dup}")
        if df["path"].isna().any():
            ids = df.loc[df["path"].isna(), "id"].head(3).tolist()
            raise CatalogError(f"every painting needs an image path; {int(df['path'].isna().sum()):,} row(s) have "
                               f"none (e.g. ids {ids})")
        bad_split = set(df["split"].dropna().unique()) - set(SPLITS)
        if bad_split or df["split"].isna().any():
            raise CatalogError(f"split must be one of {SPLITS}; found {sorted(map(str, bad_split)) or 'missing values'}")
        for name, spec in self.tasks.items():
            if name not in df.columns:
                raise CatalogError(f"task {name!r} has no column in the catalogue")
            if len(set(spec.classes)) != len(spec.classes):
                raise CatalogError(f"task {name!r} has duplicate class names")
            present = set(df[name].dropna().unique())
            unknown = present - set(spec.classes)
            if unknown:
                raise CatalogError(
                    f"task {name!r} has labels that are not among its classes: {sorted(unknown)[:5]}"
                )

    # ------------------------------------------------------------------ accessors
    def __len__(self) -> int:
        return len(self.df)

    @property
    def ids(self) -> list[str]:
        return self.df["id"].tolist()

    def task(self, name: str) -> TaskSpec:
        """The task ``name``.

        Parameters
        ----------
        name : str

        Returns
        -------
        TaskSpec

        Raises
        ------
        CatalogError
            The catalogue has no such task (the message lists those it has).
        """
        if name not in self.tasks:
            raise CatalogError(
                f"unknown task {name!r}; this catalogue has: {', '.join(self.tasks) or 'no tasks'}"
            )
        return self.tasks[name]

    def label_indices(self, name: str) -> np.ndarray:
        """Class index per row for ``name``; -1 where the painting has no label.

        Parameters
        ----------
        name : str
            A task of the catalogue.

        Returns
        -------
        numpy.ndarray of int64, shape (rows,)
        """
        spec = self.task(name)
        lookup = {c: i for i, c in enumerate(spec.classes)}
        col = self.df[name]
        return np.array([lookup[v] if isinstance(v, str) else -1 for v in col], dtype=np.int64)

    def image_path(self, rel: str) -> Path:
        """The file of a ``path`` value (relative to the image root).

        Parameters
        ----------
        rel : str

        Returns
        -------
        Path
        """
        return self.image_root / rel

    def image_paths(self) -> list[Path]:
        return [self.image_root / p for p in self.df["path"]]

    def missing_images(self) -> list[str]:
        """The ``path`` values whose file is not on disk.

        Returns
        -------
        list of str
        """
        return [p for p in self.df["path"] if not (self.image_root / p).is_file()]

    def subset(self, mask: Iterable[bool] | np.ndarray) -> "Catalog":
        """The rows where ``mask`` is true, with the same tasks, image root, source and chosen cache folder.

        Parameters
        ----------
        mask : array_like of bool, shape (rows,)

        Returns
        -------
        Catalog
        """
        df = self.df.loc[np.asarray(mask, dtype=bool)].reset_index(drop=True)
        return Catalog(df, self.tasks, self.image_root, self.source, dict(self.extra), cache_dir=self.cache_dir)

    # ------------------------------------------------------------------ summaries
    def info(self, check_files: bool = False) -> dict:
        """What `artextract catalog info` shows: rows per split, per task labelled rows, classes
        present and class counts, and (``check_files``) the images missing on disk.

        Parameters
        ----------
        check_files : bool
            Stat every image file (slow on a network drive with 100k+ paintings); otherwise
            ``missing_images`` is None.

        Returns
        -------
        dict
            JSON-ready.
        """
        out: dict = {
            "path": str(self.path) if self.path else None,
            "source": self.source,
            "image_root": str(self.image_root),
            "rows": int(len(self.df)),
            "splits": {s: int(n) for s, n in self.df["split"].value_counts().sort_index().items()},
            "tasks": {},
        }
        for name, spec in self.tasks.items():
            col = self.df[name]
            per_split = {
                s: int(col[self.df["split"] == s].notna().sum()) for s in sorted(self.df["split"].unique())
            }
            counts = col.value_counts()
            out["tasks"][name] = {
                "ordered": spec.ordered,
                "num_classes": spec.num_classes,
                "labelled": int(col.notna().sum()),
                "per_split": per_split,
                "classes_present": int((counts > 0).sum()),
                "class_counts": {c: int(counts.get(c, 0)) for c in spec.classes},
            }
        if check_files:
            missing = self.missing_images()
            out["missing_images"] = {"count": len(missing), "examples": missing[:5]}
        else:
            out["missing_images"] = None
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write the catalogue as Parquet (atomically), its tasks and image root in the schema metadata.

        Parameters
        ----------
        path : str or PathLike
            The ``.parquet`` file; its folder is created.

        Returns
        -------
        Path
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        df = self.df.copy()
        for name in self.tasks:
            df[name] = df[name].astype("string")
        table = pa.Table.from_pandas(df, preserve_index=False)
        root = self.image_root
        try:  # store the root relative to the catalogue when it is below or beside it
            root_s = os.path.relpath(root.resolve(), path.parent.resolve())
        except ValueError:  # different drives (Windows)
            root_s = str(root.resolve())
        meta = {
            "format_version": FORMAT_VERSION,
            "source": self.source,
            "image_root": root_s,
            "tasks": {n: s.to_json() for n, s in self.tasks.items()},
            "extra": self.extra,
        }
        schema_meta = dict(table.schema.metadata or {})
        schema_meta[META_KEY] = json.dumps(meta).encode()
        table = table.replace_schema_metadata(schema_meta)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> "Catalog":
        """Read a catalogue written by :meth:`save`.

        Parameters
        ----------
        path : str or PathLike
        cache_dir : str or PathLike, optional
            Its prepared-image cache folder (a command's ``--cache``); default: the folder
            ``artextract prepare --cache`` recorded beside the catalogue, else CATALOG with suffix ``.cache``
            (see :func:`artextract.data.cache.default_cache_dir`).

        Returns
        -------
        Catalog

        Raises
        ------
        CatalogError
            The file does not exist (the message names the importers), or is not a catalogue.
        """
        path = Path(path)
        if not path.exists():
            raise CatalogError(
                f"catalogue {path} does not exist; create one with `artextract ingest SOURCE` "
                f"({'|'.join(INGEST_SOURCES)}) or `artextract demo-data`"
            )
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for bad files
            raise CatalogError(f"{path} is not a readable Parquet catalogue: {exc}") from exc
        raw = (table.schema.metadata or {}).get(META_KEY)
        if raw is None:
            raise CatalogError(f"{path} is a Parquet file but not an ArtExtract catalogue (no metadata)")
        meta = _read_meta(path, raw)
        tasks = {n: TaskSpec(n, [str(c) for c in t["classes"]], bool(t.get("ordered", False)))
                 for n, t in meta["tasks"].items()}
        try:
            df = table.to_pandas()
        except Exception as exc:  # pyarrow/pandas raise several types for columns they cannot convert
            raise CatalogError(f"{path}: its table cannot be read ({type(exc).__name__}: {exc})") from exc
        for col in ("id", "path", "split"):
            if col not in df.columns:
                raise CatalogError(f"{path} is not a usable catalogue: it has no {col!r} column")
        missing = [n for n in tasks if n not in df.columns]
        if missing:
            raise CatalogError(f"{path} is not a usable catalogue: its metadata lists the task(s) "
                               f"{', '.join(map(repr, missing))} but the table has no such column")
        for n in tasks:
            df[n] = df[n].astype(object).where(df[n].notna(), None)
        null_id = df["id"].isna()
        if null_id.any():
            raise CatalogError(f"{path} is not a usable catalogue: {int(null_id.sum()):,} row(s) have no id "
                               f"(e.g. row(s) {np.flatnonzero(null_id.to_numpy())[:3].tolist()})")
        df["id"] = df["id"].astype(str)
        root = Path(meta["image_root"])
        if not root.is_absolute():
            root = (path.parent / root).resolve()
        try:
            cat = cls(df, tasks, root, meta.get("source", "custom"), meta.get("extra", {}))
        except CatalogError as exc:
            raise CatalogError(f"{path} is not a usable catalogue: {exc}") from None
        cat.path = path
        cat.cache_dir = Path(cache_dir) if cache_dir else None
        return cat


def _read_meta(path: Path, raw: bytes) -> dict:
    """The catalogue metadata of ``path``, checked for the keys :meth:`Catalog.load` reads."""
    try:
        meta = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CatalogError(f"{path} is not a usable catalogue: its metadata is not JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise CatalogError(f"{path} is not a usable catalogue: its metadata is a JSON {type(meta).__name__}, "
                           "not an object")
    tasks = meta.get("tasks")
    if not isinstance(tasks, dict):
        raise CatalogError(f"{path} is not a usable catalogue: its metadata has no task list ('tasks')")
    for name, spec in tasks.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("classes"), list):
            raise CatalogError(f"{path} is not a usable catalogue: task {name!r} in its metadata has no class list")
    if not isinstance(meta.get("image_root"), str):
        raise CatalogError(f"{path} is not a usable catalogue: its metadata has no image root ('image_root')")
    if not isinstance(meta.get("extra", {}), dict):
        meta["extra"] = {}
    if not isinstance(meta.get("source", "custom"), str):
        meta["source"] = str(meta["source"])
    return meta


def format_info(info: dict) -> str:
    """Human-readable rendering of :meth:`Catalog.info`.

    Parameters
    ----------
    info : dict
        From :meth:`Catalog.info`.

    Returns
    -------
    str
    """
    lines = [
        f"catalogue   {info['path']}",
        f"source      {info['source']}",
        f"image root  {info['image_root']}",
        f"rows        {info['rows']}  ("
        + ", ".join(f"{s}: {n}" for s, n in info["splits"].items())
        + ")",
        "",
        f"{'task':<12}{'classes':>8}{'present':>9}{'labelled':>10}  per split",
    ]
    for name, t in info["tasks"].items():
        per = ", ".join(f"{s}: {n}" for s, n in t["per_split"].items())
        flag = " (ordered)" if t["ordered"] else ""
        lines.append(
            f"{name:<12}{t['num_classes']:>8}{t['classes_present']:>9}{t['labelled']:>10}  {per}{flag}"
        )
    m = info["missing_images"]
    lines.append("")
    if m is None:
        lines.append("missing images: not checked (pass --check-files to look for every image on disk)")
    elif m["count"]:
        lines.append(f"missing images: {m['count']} (e.g. {', '.join(m['examples'][:3])})")
    else:
        lines.append("missing images: none")
    return "\n".join(lines)


def absolute_image_root(path: str | os.PathLike) -> None:
    """Rewrite a saved catalogue file so that its image root is an absolute path.

    A catalogue whose image root is relative to its own folder stops finding its images once the
    file is moved (a download from the explorer, say); this makes the root absolute in place.

    Parameters
    ----------
    path : str or os.PathLike
        A catalogue ``.parquet`` written by :meth:`Catalog.save`.
    """
    path = Path(path)
    table = pq.read_table(path)
    meta = dict(table.schema.metadata or {})
    info = json.loads(meta[META_KEY])
    root = Path(info["image_root"])
    if not root.is_absolute():
        info["image_root"] = str((path.parent / root).resolve())
    meta[META_KEY] = json.dumps(info).encode()
    pq.write_table(table.replace_schema_metadata(meta), path)


def title_from_id(item_id: str) -> str:
    """A readable title for catalogues without one: WikiArt's ``Style/artist-name_title-words-1890.jpg``
    becomes ``Title words 1890 · artist name``."""
    if "/" not in item_id:
        return item_id
    stem = item_id.rsplit("/", 1)[-1]
    if "." in stem[-6:]:
        stem = stem.rsplit(".", 1)[0]
    parts = [p.replace("-", " ").strip() for p in stem.split("_", 1)]
    if len(parts) == 2 and all(parts):
        artist, work = parts
        return f"{work[:1].upper()}{work[1:]} · {artist}"
    text = parts[0] or item_id
    return text[:1].upper() + text[1:]

"""Importer for the ArtGAN WikiArt label files, read exactly as they are distributed.

Quirks handled (see ``tests/data/test_wikiart.py``):

- ``artist_train`` / ``artist_val`` have no extension, two header lines and a double comma
  (``Style/file.jpg,,22``); the class files ``artist_class`` / ``genre_class`` have no extension
  either while ``style_class.txt`` has one.
- genre and style CSVs have no header and CRLF line endings.
- the folder ``Art_Nouveau_Modern`` holds class ``Art_Nouveau``: classes come from the CSV index,
  never from the folder name.
- some paths are mojibake (UTF-8 read as Latin-1 and lower-cased, ``grã©goire``); the path as
  written is the painting's id, and on disk both the written and the repaired name are tried.
- one row of ``genre_val.csv`` is duplicated; duplicates with the same label collapse, duplicates
  with conflicting labels are reported and the label is dropped for that task.

Split rule: a painting is ``val`` if *any* task lists it in its validation file, else ``train``.
That keeps every validation image out of training for every task.
"""
from __future__ import annotations

import logging
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .catalog import Catalog, CatalogError, RowAccount, TaskSpec

log = logging.getLogger(__name__)

TASKS = ("artist", "genre", "style")
_CLASS_FILES = {"artist": ("artist_class", "artist_class.txt"), "genre": ("genre_class", "genre_class.txt"),
                "style": ("style_class.txt", "style_class")}
_SPLIT_FILES = {
    "artist": {"train": ("artist_train", "artist_train.csv"), "val": ("artist_val", "artist_val.csv")},
    "genre": {"train": ("genre_train.csv", "genre_train"), "val": ("genre_val.csv", "genre_val")},
    "style": {"train": ("style_train.csv", "style_train"), "val": ("style_val.csv", "style_val")},
}


@dataclass
class ImportReport:
    rows_listed: int
    rows_kept: int
    missing_count: int
    missing_examples: list[str]
    malformed_rows: list[str]
    duplicate_rows: int
    conflicting_labels: list[str]
    repaired_paths: int
    lines_read: int = 0          # data lines of the six split files (headers and blank lines aside)
    lines_kept: int = 0          # (task, path) labels of the paintings in the catalogue
    lines_missing: int = 0       # (task, path) labels of paintings listed but not on disk

    def account(self) -> RowAccount:
        """Every data line of the split files: a painting's label (kept, or listed but not on disk), a
        duplicate collapsed into another line, or a malformed line."""
        acc = RowAccount("ingest wikiart", records=self.lines_read, imported=self.lines_kept)
        acc.leave_out("malformed", len(self.malformed_rows))
        acc.leave_out("duplicate lines collapsed", self.duplicate_rows)
        acc.leave_out("image not on disk", self.lines_missing)
        return acc

    def summary(self) -> str:
        lines = [
            f"paintings listed in the label files: {self.rows_listed:,}",
            f"paintings with an image on disk:      {self.rows_kept:,}",
        ]
        if self.missing_count:
            lines.append(
                f"listed but not on disk (left out):   {self.missing_count:,}  e.g. "
                + ", ".join(self.missing_examples[:3])
            )
        if self.repaired_paths:
            lines.append(f"mojibake paths matched after repair: {self.repaired_paths}")
        if self.duplicate_rows:
            lines.append(f"duplicate label rows collapsed:      {self.duplicate_rows}")
        if self.conflicting_labels:
            lines.append(f"paths with conflicting labels (label dropped): {len(self.conflicting_labels)}")
        if self.malformed_rows:
            lines.append(f"malformed rows skipped: {len(self.malformed_rows)}  e.g. {self.malformed_rows[:2]}")
        return "\n".join(lines)


def _find(labels_dir: Path, names: tuple[str, ...]) -> Path:
    for n in names:
        p = labels_dir / n
        if p.is_file():
            return p
    raise CatalogError(f"{labels_dir} has none of {', '.join(names)} (is this the ArtGAN 'WikiArt Dataset' folder?)")


_LINE_BREAK = re.compile(r"\r\n|\n|\r")
_INDEX = re.compile(r"[0-9]+")


def _read_text(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    # LF, CRLF and CR only: str.splitlines also breaks at U+0085, U+2028, \x1c ..., which mojibake
    # paths contain ("Å" read as Latin-1 and lower-cased is "ã\x85")
    lines = _LINE_BREAK.split(text)
    return lines[:-1] if lines and lines[-1] == "" else lines


def read_classes(path: Path) -> list[str]:
    """Read ``<idx> <Name>`` lines into a list ordered by index."""
    pairs = []
    for ln, line in enumerate(_read_text(path), 1):
        line = line.strip()
        if not line:
            continue
        idx, _, name = line.partition(" ")
        if not _INDEX.fullmatch(idx) or not name.strip():
            raise CatalogError(f"{path}:{ln}: expected '<index> <name>', got {line!r}")
        pairs.append((int(idx), name.strip()))
    pairs.sort()
    if [i for i, _ in pairs] != list(range(len(pairs))):
        raise CatalogError(f"{path}: class indices are not 0..{len(pairs) - 1}")
    return [n for _, n in pairs]


def _unsafe_path(img: str) -> str | None:
    """Why a listed path cannot name an image below the image folder, or None."""
    if "\0" in img:
        return "the path contains a NUL character"
    parts = img.replace("\\", "/").split("/")
    if img.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", img) or ".." in parts:
        return "the path leaves the image folder"
    return None


def read_split_file(path: Path, num_classes: int) -> tuple[list[tuple[str, int]], list[str]]:
    """Read a ``path,label`` or ``path,,label`` file; returns (rows, malformed lines).

    Every line is a row, a malformed line (with its reason), a header line or a blank line."""
    rows: list[tuple[str, int]] = []
    bad: list[str] = []
    for ln, line in enumerate(_read_text(path), 1):
        s = line.strip()
        if not s or s.startswith("(Path to image)"):
            continue
        head, sep, label = s.rpartition(",")
        img = head.rstrip(",").strip()
        label = label.strip()
        if not sep or not img or not _INDEX.fullmatch(label.lstrip("-")):
            bad.append(f"{path.name}:{ln}: {s[:80]}")
            continue
        k = int(label)
        if not 0 <= k < num_classes:
            bad.append(f"{path.name}:{ln}: label {k} out of range 0..{num_classes - 1}")
            continue
        why = _unsafe_path(img)
        if why:
            bad.append(f"{path.name}:{ln}: {why}")
            continue
        rows.append((img, k))
    return rows, bad


def repair_mojibake(path: str) -> str | None:
    """Undo UTF-8-read-as-Latin-1 (possibly lower-cased) mojibake; None when nothing changes."""
    if path.isascii():
        return None
    # lower-casing turned the lead bytes C2..C5 ('Â'..'Å') into 'â'..'å'
    up = path.translate(str.maketrans({"â": "Â", "ã": "Ã", "ä": "Ä", "å": "Å"}))
    for cand in (up, path):
        for enc in ("latin-1", "cp1252"):
            try:
                fixed = cand.encode(enc).decode("utf-8")
            except (UnicodeEncodeError, UnicodeDecodeError):
                continue
            if fixed != path:
                return fixed
    return None


class _Disk:
    """Which files exist under ``root``, listing each folder once: one stat per listed path costs
    seconds for ArtGAN's 81k paths when ``--images`` holds a small subset."""

    def __init__(self, root: Path):
        self.root = root
        self._names: dict[str, set[str]] = {}

    def isfile(self, rel: str) -> bool:
        folder, _, name = rel.rpartition("/")
        names = self._names.get(folder)
        if names is None:
            try:
                with os.scandir(self.root / folder if folder else self.root) as it:
                    names = {e.name for e in it if e.is_file()}
            except (OSError, ValueError):  # no such folder (or not a folder, or a name with a NUL)
                names = set()
            self._names[folder] = names
        return name in names


def _locate(images_dir: Path | _Disk, rel: str) -> str | None:
    """Relative path of the image on disk for the listed path ``rel``, or None."""
    disk = images_dir if isinstance(images_dir, _Disk) else _Disk(Path(images_dir))
    for cand in (rel, None if rel.isascii() else repair_mojibake(rel)):
        if cand is None:
            continue
        forms = (cand,) if cand.isascii() else dict.fromkeys(
            (cand, unicodedata.normalize("NFC", cand), unicodedata.normalize("NFD", cand)))
        for form in forms:
            if disk.isfile(form):
                return form
        # the ArtGAN zip folder is Art_Nouveau_Modern; tolerate a folder renamed to the class name
        for listed, renamed in (("Art_Nouveau_Modern/", "Art_Nouveau/"), ("Art_Nouveau/", "Art_Nouveau_Modern/")):
            if cand.startswith(listed):
                alt = renamed + cand[len(listed):]
                if disk.isfile(alt):
                    return alt
    return None


def read_labels(labels_dir: str | Path) -> tuple[pd.DataFrame, dict[str, TaskSpec], dict]:
    """Join the three tasks into one frame indexed by listed path (before looking at images)."""
    labels_dir = Path(labels_dir)
    specs = {t: TaskSpec(t, read_classes(_find(labels_dir, _CLASS_FILES[t]))) for t in TASKS}
    labels: dict[str, dict[str, str]] = {t: {} for t in TASKS}
    splits: dict[str, set[str]] = {"train": set(), "val": set()}
    malformed: list[str] = []
    duplicates = 0
    rows_read = 0                        # well-formed data lines
    pairs: dict[str, int] = {}           # listed path -> its distinct (task, path) labels
    conflicts: set[tuple[str, str]] = set()
    for t in TASKS:
        for split in ("train", "val"):
            rows, bad = read_split_file(_find(labels_dir, _SPLIT_FILES[t][split]), specs[t].num_classes)
            malformed += bad
            rows_read += len(rows)
            for img, k in rows:
                name = specs[t].classes[k]
                prev = labels[t].get(img)
                if prev is None:
                    pairs[img] = pairs.get(img, 0) + 1
                else:
                    duplicates += 1
                    if prev != name:
                        conflicts.add((t, img))
                labels[t][img] = name
                splits[split].add(img)
    for t, img in conflicts:
        labels[t].pop(img, None)
    paths = sorted(set().union(*[set(v) for v in labels.values()], splits["train"], splits["val"]))
    df = pd.DataFrame({"id": paths})
    for t in TASKS:
        df[t] = [labels[t].get(p) for p in paths]
    val = splits["val"]
    df["split"] = ["val" if p in val else "train" for p in paths]
    df["folder"] = [p.split("/", 1)[0] for p in paths]
    stats = {"malformed": malformed, "duplicates": duplicates, "rows_read": rows_read, "pairs": pairs,
             "conflicts": sorted(f"{t}:{p}" for t, p in conflicts)}
    return df, specs, stats


def ingest_wikiart(labels_dir: str | Path, images_dir: str | Path) -> tuple[Catalog, ImportReport]:
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise CatalogError(f"images folder {images_dir} does not exist")
    df, specs, stats = read_labels(labels_dir)
    disk = _Disk(images_dir)
    found = [_locate(disk, p) for p in df["id"]]
    repaired = sum(1 for p, f in zip(df["id"], found) if f is not None and f != p)
    present = pd.Series([f is not None for f in found])
    missing = df.loc[~present.values, "id"].tolist()
    df["path"] = found
    df = df.loc[present.values].reset_index(drop=True)
    df["artist_slug"] = [p.split("/", 1)[-1].split("_", 1)[0] for p in df["id"]]
    df = df[["id", "path", "split", "artist", "genre", "style", "folder", "artist_slug"]]
    cat = Catalog(df, specs, images_dir.resolve(), source="wikiart",
                  extra={"split_rule": "val if any task lists the path in its validation file"})
    pairs = stats["pairs"]
    report = ImportReport(
        rows_listed=len(found), rows_kept=len(df), missing_count=len(missing),
        missing_examples=missing[:5], malformed_rows=stats["malformed"],
        duplicate_rows=stats["duplicates"], conflicting_labels=stats["conflicts"], repaired_paths=repaired,
        lines_read=stats["rows_read"] + len(stats["malformed"]), lines_kept=sum(pairs[p] for p in df["id"]),
        lines_missing=sum(pairs[p] for p in missing),
    )
    # every path is kept or missing; every data line is a label, a collapsed duplicate or malformed
    if len(df) + len(missing) != len(found):
        raise CatalogError(f"ingest wikiart: {len(found):,} listed paths but {len(df):,} kept and "
                           f"{len(missing):,} missing; this is a bug in the importer")
    report.account().check()
    return cat, report

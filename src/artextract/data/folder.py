"""Importer for a folder of class folders (torchvision's ``ImageFolder`` layout).

::

    DIR/
      Baroque/a.jpg
      Baroque/more/b.jpg      deeper paths keep the first level as the label
      Impressionism/c.png

One catalogue row per readable image: ``id`` and ``path`` are the path relative to ``DIR``, the
label of task ``TASK`` (default ``label``) is the first folder. Files that are not images by their
suffix are ignored; image files that cannot be decoded are reported and left out. Images lying
directly in ``DIR`` have no class folder and are reported and left out too. The split is seeded and
stratified on the label.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from .catalog import Catalog, CatalogError, RowAccount, TaskSpec
from .images import IMAGE_EXTS, ImageLoadError, SkipReport, load_image
from .tabular import stratified_split

logger = logging.getLogger(__name__)

DEFAULT_TASK = "label"
CHECK_SIZE = 64   # readability check decodes JPEGs at reduced size (draft), which is much faster


def _check(path: Path) -> str | None:
    """None if ``path`` decodes as an image, else the reason it does not."""
    try:
        load_image(path, draft_size=CHECK_SIZE)
    except ImageLoadError as exc:
        return exc.reason
    return None


def _utf8(name: str) -> bool:
    """Whether a file name can be stored as text (a name of bytes that are not UTF-8 cannot)."""
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def ingest_folder(images: str | Path, *, task: str = DEFAULT_TASK, val_fraction: float = 0.2, seed: int = 0,
                  workers: int = 4, account: RowAccount | None = None) -> tuple[Catalog, list[str], SkipReport]:
    """Import a folder with one sub-folder per class into a catalogue.

    Parameters
    ----------
    images : str or Path
        The root folder; each first-level sub-folder is a class.
    task : str
        Name of the label task (default ``label``).
    val_fraction : float
        Share of each class put in the validation split.
    seed : int
        Seed of the split.
    workers : int
        Threads that decode the images to check that they are readable.
    account : RowAccount, optional
        Filled with the image files found, imported and left out per reason.

    Returns
    -------
    catalog : Catalog
        One row per readable image, ``image_root`` = ``images`` (absolute).
    messages : list of str
        What was left out and how the split was made, for the user.
    skipped : SkipReport
        The image files that could not be read, with the reasons.

    Raises
    ------
    CatalogError
        ``images`` is not a folder, the task name is unusable, or no readable image lies in a class folder.
    """
    root = Path(images)
    if not root.is_dir():
        raise CatalogError(f"{root} is not a folder; --images takes a folder with one sub-folder per class")
    if not task or task in ("id", "path", "split"):
        raise CatalogError(f"--task {task!r} is not a usable task name (id, path and split are catalogue columns)")
    msgs: list[str] = []
    acc = account if account is not None else RowAccount()
    acc.source = f"ingest folder {root}"
    files = _class_files(root, acc, msgs)
    skipped = SkipReport("ingest folder")
    rows = _readable_rows(root, files, task, workers, skipped)
    if len(skipped):
        msgs.append(skipped.summary())
    acc.leave_out("unreadable or unusable", len(skipped))
    acc.imported = len(rows)
    acc.check()
    if not rows:
        raise CatalogError(f"no readable image in a class folder under {root} "
                           f"(expected {root}/CLASS/image.jpg; suffixes {', '.join(sorted(IMAGE_EXTS))})")
    df = pd.DataFrame(rows)
    classes = sorted(df[task].unique())
    if len(classes) < 2:
        msgs.append(f"only one class folder ({classes[0]!r}): there is nothing to tell apart yet")
    df["split"] = stratified_split(df[task], val_fraction, seed)
    msgs.append(f"{len(df):,} image(s) in {len(classes)} class(es); seeded split, {val_fraction:.0%} val "
                f"stratified on {task}")
    return Catalog(df, {task: TaskSpec(task, classes)}, root.resolve(), source="folder"), msgs, skipped


def _class_files(root: Path, acc: RowAccount, msgs: list[str]) -> list[Path]:
    """The image files under ``root`` (hidden ones aside), counted in ``acc``; those lying directly in
    ``root`` are left out and reported."""
    files = sorted(p for p in root.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not any(
                       part.startswith(".") for part in p.relative_to(root).parts))
    acc.records = len(files)
    loose = [p for p in files if p.parent == root]
    if loose:
        msgs.append(f"left out {len(loose)} image(s) directly in {root} (not in a class folder), "
                    f"e.g. {[ascii(p.name) if not _utf8(p.name) else p.name for p in loose[:3]]}")
        acc.leave_out("not in a class folder", len(loose))
    return [p for p in files if p.parent != root]


def _readable_rows(root: Path, files: list[Path], task: str, workers: int, skipped: SkipReport) -> list[dict]:
    """A catalogue row per file with a UTF-8 name that decodes as an image; the others go to ``skipped``."""
    bad_names = [p for p in files if not _utf8(p.relative_to(root).as_posix())]
    for p in bad_names:   # a catalogue stores paths as UTF-8 text: such a name cannot be kept
        skipped.add(ascii(p.relative_to(root).as_posix()), "the file or folder name is not valid UTF-8; rename it")
    files = [p for p in files if _utf8(p.relative_to(root).as_posix())]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        reasons = list(pool.map(_check, files))
    rows = []
    for p, why in zip(files, reasons):
        rel = p.relative_to(root).as_posix()
        if why is not None:
            skipped.add(rel, why)
            continue
        rows.append({"id": rel, "path": rel, task: rel.split("/", 1)[0]})
    return rows

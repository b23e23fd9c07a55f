"""What exists for a catalogue, a run or an index, and in which state (``artextract status``).

:func:`status` finds the artefacts (a run names its catalogue, an index its own, a catalogue's cache
folder holds its prepared images and feature stores) and asks each one's object in
:mod:`artextract.artefacts` for its state.
"""
from __future__ import annotations

import os
from pathlib import Path

from .artefacts import Evaluation, FeatureStore, Index, PreparedImages, Run
from .errors import NotBuilt
from .workspace import COMPLETE, MISSING, PARTIAL, RUN_CONFIG, Artefact, eval_splits, features_dir


def catalog_artefacts(catalog_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> list[Artefact]:
    """The catalogue, its prepared-image caches and its feature stores, each with its state.

    Parameters
    ----------
    catalog_path : str or path-like
        The catalogue file.
    cache_dir : str or path-like, optional
        Its cache folder (default: the one recorded for it, else ``CATALOG.cache``).

    Returns
    -------
    list of Artefact
    """
    from .data.catalog import Catalog, CatalogError
    p = Path(catalog_path)
    try:
        cat = Catalog.load(p, cache_dir=cache_dir)
    except (CatalogError, FileNotFoundError, OSError) as exc:
        return [Artefact("catalogue", str(p), MISSING if not p.exists() else PARTIAL, str(exc),
                         "artextract ingest ...")]
    out = [Artefact("catalogue", str(p), COMPLETE, f"{len(cat):,} paintings, tasks {', '.join(cat.tasks)}")]
    from .data.cache import default_cache_dir
    root = default_cache_dir(cat)
    sized = sorted(root.glob("s[0-9]*"), key=lambda d: d.name) if root.is_dir() else []
    if not sized:
        out.append(Artefact("prepared images", str(root), MISSING, build=f"artextract prepare --catalog {p}"))
    for d in sized:
        if (d / "index.json").is_file():
            out.append(PreparedImages(cat, int(d.name[1:])).status())
    for d in sorted(features_dir(root).glob("*")) if features_dir(root).is_dir() else []:
        if (d / "pooled" / "index.json").is_file():
            out.append(FeatureStore.found(cat, d).status())
    return out


def status(catalog: str | os.PathLike | None = None, run: str | os.PathLike | None = None,
           index: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> list[Artefact]:
    """Every artefact reachable from a catalogue, a run or an index, and its state.

    A run names its catalogue (``config.json``) and an index its own (``meta.json``), so either finds
    the catalogue's caches and stores too.

    Parameters
    ----------
    catalog : str or path-like, optional
        A catalogue file.
    run : str or path-like, optional
        A training run folder.
    index : str or path-like, optional
        A similarity index folder.
    cache_dir : str or path-like, optional
        The catalogue's cache folder (default: the one recorded for it, else ``CATALOG.cache``).

    Returns
    -------
    list of Artefact
    """
    out: list[Artefact] = []
    if run:
        out.append(Run(run).status())
        if catalog is None and (Path(run) / RUN_CONFIG).is_file():
            try:
                catalog = Run(run).catalog_path()
            except NotBuilt:  # an unreadable config.json: the run says so above
                pass
    if index:
        out.append(Index(index).status())
        if catalog is None:
            catalog = Index(index).catalog_path()
    if catalog:
        out = catalog_artefacts(catalog, cache_dir) + out
    if run and (Path(run) / RUN_CONFIG).is_file():
        for split in eval_splits(run):
            out.append(Evaluation(run, catalog, split).status())
    return out

"""What exists for a catalogue, a run or an index, and in which state (``artextract status``).

:func:`status` gathers the artefacts; it sits above :mod:`artextract.workspace` (the path rules, which
every package imports) because it reads catalogues, caches and indexes through their own modules.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .workspace import (COMPLETE, ENGINE_RECORD, META_FILE, MISSING, PARTIAL, RUN_CONFIG, Artefact,
                        evaluation_status, features_dir, run_status)


def index_artefact(index_dir: str | os.PathLike) -> Artefact:
    """An index folder's state, and the command that builds it.

    Parameters
    ----------
    index_dir : str or path-like
        The index folder.

    Returns
    -------
    Artefact
    """
    from .similarity.index import index_status
    d = Path(index_dir)
    build = f"artextract index --catalog CATALOG --out {d}"
    exists, complete, reason = index_status(d)
    if not exists:
        return Artefact("index", str(d), MISSING, build=build)
    if not complete:
        return Artefact("index", str(d), PARTIAL, reason, build + " --rebuild")
    meta = json.loads((d / META_FILE).read_text())
    cats = meta.get("catalogs") or ["CATALOG"]
    build = f"artextract index --catalog {cats[0]} --out {d}"
    return Artefact("index", str(d), COMPLETE, f"{meta.get('count', '?')} paintings, {meta.get('index_type', '?')}, "
                    f"{meta.get('dim', '?')}-d", build)


def _store_counts(store_dir: Path, ids: list[str]) -> tuple[int, int] | None:
    """(finished, of) for the ids in a slot store folder, read without numpy's memmap of the data."""
    try:
        info = json.loads((store_dir / "index.json").read_text())
        status = (store_dir / "status.u8").read_bytes()
    except (OSError, ValueError):
        return None
    slot = {k: i for i, k in enumerate(info.get("ids", []))}
    done = sum(1 for k in ids if k in slot and slot[k] < len(status) and status[slot[k]] == 1)
    return done, len(ids)


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
    out = []
    try:
        cat = Catalog.load(p, cache_dir=cache_dir)
    except (CatalogError, FileNotFoundError, OSError) as exc:
        return [Artefact("catalogue", str(p), MISSING if not p.exists() else PARTIAL, str(exc),
                         "artextract ingest ...")]
    out.append(Artefact("catalogue", str(p), COMPLETE, f"{len(cat):,} paintings, tasks {', '.join(cat.tasks)}"))
    from .data.cache import default_cache_dir
    root = default_cache_dir(cat)
    ids = cat.ids
    sized = sorted(root.glob("s[0-9]*"), key=lambda d: d.name) if root.is_dir() else []
    if not sized:
        out.append(Artefact("prepared images", str(root), MISSING,
                            build=f"artextract prepare --catalog {p}"))
    for d in sized:
        counts = _store_counts(d, ids)
        if counts is None:
            continue
        done, n = counts
        failures = len(json.loads((d / "failures.json").read_text())) if (d / "failures.json").is_file() else 0
        state = COMPLETE if done + failures >= n else (PARTIAL if done else MISSING)
        out.append(Artefact("prepared images", str(d), state, f"{done:,} of {n:,} prepared, {failures:,} failed",
                            f"artextract prepare --catalog {p} --size {d.name[1:]}"))
    for d in sorted(features_dir(root).glob("*")) if features_dir(root).is_dir() else []:
        counts = _store_counts(d / "pooled", ids)
        if counts is None:
            continue
        done, n = counts
        eng = {}
        if (d / ENGINE_RECORD).is_file():
            try:
                eng = json.loads((d / ENGINE_RECORD).read_text())
            except ValueError:
                pass
        how = f" ({eng.get('engine')} {eng.get('precision')})" if eng else ""
        out.append(Artefact("feature store", str(d), COMPLETE if done >= n else (PARTIAL if done else MISSING),
                            f"{done:,} of {n:,} paintings{how}", "built by train, outliers, index or duplicates"))
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
        out.append(run_status(run))
        if catalog is None and (Path(run) / RUN_CONFIG).is_file():
            try:
                catalog = json.loads((Path(run) / RUN_CONFIG).read_text()).get("catalog")
            except ValueError:
                pass
    if index:
        out.append(index_artefact(index))
        if catalog is None and (Path(index) / META_FILE).is_file():
            try:
                catalog = (json.loads((Path(index) / META_FILE).read_text()).get("catalogs") or [None])[0]
            except ValueError:
                pass
    if catalog:
        out = catalog_artefacts(catalog, cache_dir) + out
    if run and (Path(run) / RUN_CONFIG).is_file():
        for d in sorted(Path(run).glob("eval-*")):
            out.append(evaluation_status(run, d.name[len("eval-"):], catalog))
    return out

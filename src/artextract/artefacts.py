"""Each artefact as one small object that owns its folder or file and answers three questions.

=====================  ==========================================================================
:class:`PreparedImages`  a catalogue's images decoded at one size (``CACHE/s<SIZE>/``)
:class:`FeatureStore`    one backbone's features of a catalogue (``CACHE/features/<store>/``)
:class:`Run`             a trained run (``RUN/config.json`` and its weights)
:class:`Evaluation`      a run's metrics on one split of a catalogue (``RUN/eval-<SPLIT>/``)
:class:`Index`           a similarity index (``INDEX/``)
:class:`OutlierTable`    the CSV ``artextract outliers --out`` writes
:class:`ReviewStore`     a catalogue's review database
=====================  ==========================================================================

- ``status()``: an :class:`~artextract.workspace.Artefact` record whose ``status`` is ``missing``,
  ``partial``, ``complete`` or ``stale``, with the command that builds it;
- ``ensure(job=None)``: build what is missing (or stale) with the builder that owns the artefact, under
  its lock, say so through the job, and return what :meth:`load` returns;
- ``load()``: open it, or raise :class:`~artextract.errors.NotBuilt` whose hint is the command that
  builds it.

A command reads as "ensure what I need, then compute"::

    cat = Catalog.load(path)
    feats = FeatureStore(cat, "mobilenet_v2").ensure()      # prepares the images first when needed
    run = Run("runs/wikiart").load()                          # a run is trained by `train` only
    metrics = Evaluation(run, cat, "val").ensure()            # stale (other catalogue, weights): rebuilt

The path rules are :mod:`artextract.workspace`'s; the builders are the packages' own
(:func:`artextract.data.cache.ensure_prepared`, :func:`artextract.models.features.extract_features`,
:func:`artextract.training.evaluate.evaluate`, :func:`artextract.similarity.index.index_catalog`), imported
inside the methods, so this module imports nothing heavy and sits below no package it serves.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from . import workspace
from .errors import NotBuilt
from .workspace import COMPLETE, MISSING, PARTIAL, STALE, Artefact


def _job(job):
    from .job import resolve
    return resolve(job)


def _count_done(store_dir, ids):
    from .data.store import count_done
    return count_done(store_dir, ids)


def _read_index(store_dir) -> dict:
    from .data.store import read_index
    return read_index(store_dir) or {}


def _catalog(catalog, cache_dir=None):
    """A :class:`~artextract.data.catalog.Catalog` from a catalogue or its path."""
    if isinstance(catalog, (str, os.PathLike)):
        from .data.catalog import Catalog
        return Catalog.load(catalog, cache_dir=cache_dir)
    return catalog


class Stored:
    """The three questions every artefact answers; a subclass says where it is and how it is built."""

    kind = "artefact"

    def status(self) -> Artefact:
        """Its state (``missing``, ``partial``, ``complete``, ``stale``), where it is and what builds it."""
        raise NotImplementedError

    def ensure(self, job=None):
        """Build what is missing or stale (saying so through ``job``, default: the current one), then load it."""
        st = self.status()
        if not self._usable(st):
            job = _job(job)
            job.say(self._building(st))
            self._build(st, job)
        return self.load()

    def load(self):
        """The artefact, opened; :class:`NotBuilt` (hint: the command that builds it) when it is not usable."""
        st = self.status()
        if not self._usable(st):
            raise self.not_built(st)
        return self._open()

    def not_built(self, st: Artefact | None = None) -> NotBuilt:
        """The error :meth:`load` raises for the state ``st``."""
        st = st or self.status()
        if st.status == MISSING:
            msg = f"{self.kind} {st.path} " + ("does not exist" if not Path(st.path).exists() else "is missing")
        else:
            msg = f"{self.kind} {st.path} is {st.status}"
        return NotBuilt(msg + (f": {st.detail}" if st.detail else ""), hint=st.build or None)

    # ------------------------------------------------------------------ what a subclass fills in
    def _usable(self, st: Artefact) -> bool:
        return st.status == COMPLETE

    def _building(self, st: Artefact) -> str:
        if st.status == STALE:
            return f"stale: {self.kind} {st.path} ({st.detail}); rebuilding it"
        if st.status == PARTIAL:
            return f"{self.kind} {st.path} is partial" + (f" ({st.detail})" if st.detail else "") + "; completing it"
        return f"building the {self.kind} {st.path}"

    def _build(self, st: Artefact, job) -> None:
        raise self.not_built(st)  # built by its own command only (a run, an outlier table)

    def _open(self):
        raise NotImplementedError


# ---------------------------------------------------------------------- prepared images
class PreparedImages(Stored):
    """A catalogue's images decoded and resized once to ``size`` (a :class:`~artextract.data.cache.PreparedCache`).

    Parameters
    ----------
    catalog : Catalog or path
        The catalogue.
    size : int, optional
        Side of the stored square (default :data:`artextract.data.cache.DEFAULT_SIZE`).
    cache_dir : path, optional
        The cache folder (default: the catalogue's, :func:`artextract.data.cache.default_cache_dir`).
    """

    kind = "prepared images"

    def __init__(self, catalog, size: int | None = None, cache_dir: str | os.PathLike | None = None):
        from .data.cache import DEFAULT_SIZE
        self.catalog = _catalog(catalog, cache_dir)
        self.size = int(size or DEFAULT_SIZE)
        self.cache_dir = cache_dir

    @property
    def root(self) -> Path:
        """The cache folder."""
        from .data.cache import default_cache_dir
        return Path(self.cache_dir) if self.cache_dir else default_cache_dir(self.catalog)

    @property
    def dir(self) -> Path:
        return workspace.prepared_dir(self.root, self.size)

    def status(self) -> Artefact:
        d = self.dir
        build = f"artextract prepare --catalog {self.catalog.path} --size {self.size}"
        counts = _count_done(d, self.catalog.ids)
        if counts is None:
            return Artefact(self.kind, str(d), MISSING, build=build)
        done, n = counts
        from .data.store import read_failures
        failures = len(read_failures(d))
        state = COMPLETE if done + failures >= n else (PARTIAL if done else MISSING)
        return Artefact(self.kind, str(d), state, f"{done:,} of {n:,} prepared, {failures:,} failed", build)

    def ensure(self, job=None):
        """Prepare the paintings not yet in the cache (``preparing N image(s) ...``); the cache."""
        from .data.cache import ensure_prepared
        return ensure_prepared(self.catalog, self.size, self.cache_dir, job=job)

    def _open(self):
        from .data.cache import PreparedCache
        return PreparedCache(self.root, self.size)

    def open(self):
        """The cache whatever its state (``prepare`` fills it)."""
        return self._open()


# ---------------------------------------------------------------------- feature stores
class FeatureStore(Stored):
    """One backbone's feature maps, pooled vectors and style statistics of a catalogue's paintings, at one
    input size, view and precision (a :class:`~artextract.models.features.FeatureSet`).

    Parameters
    ----------
    catalog : Catalog or path
        The catalogue.
    backbone : str
        A backbone name (``artextract backbones``).
    size : int, optional
        The backbone's input size (default: its own).
    view : {"center", "flip"}
        The centre crop or its mirror image.
    precision : str, optional
        ``fp32``, ``bf16`` or ``fp16`` (default: what the inference engine runs here).
    pretrained, weights, seed
        Pretrained weights, a weights file, or a random init fixed by ``seed``.
    cache_size : int, optional
        Side of the prepared images the features are computed from.
    cache_dir : path, optional
        The cache folder (default: the catalogue's).
    """

    kind = "feature store"

    def __init__(self, catalog, backbone: str, *, size: int | None = None, view: str = "center",
                 precision: str | None = None, pretrained: bool = True, weights: str | None = None, seed: int = 0,
                 cache_size: int | None = None, cache_dir: str | os.PathLike | None = None):
        from .data.cache import DEFAULT_SIZE
        self.catalog = _catalog(catalog, cache_dir)
        self.backbone, self.view, self.pretrained, self.weights, self.seed = backbone, view, pretrained, weights, seed
        self._size, self._precision = size, precision
        self.cache_size = int(cache_size or DEFAULT_SIZE)
        self.cache_dir = cache_dir
        self._folder: Path | None = None

    @classmethod
    def found(cls, catalog, folder: str | os.PathLike) -> "FeatureStore":
        """The store in ``folder`` (one :func:`artextract.status.status` finds), whatever its spec."""
        meta = _read_index(Path(folder) / "pooled").get("meta") or {}
        store = cls(catalog, meta.get("backbone", "?"), size=meta.get("image_size"), view=meta.get("view", "center"),
                    precision=meta.get("precision", "fp32"), pretrained=meta.get("pretrained", True),
                    weights=meta.get("weights"))
        store._folder = Path(folder)
        return store

    @property
    def size(self) -> int:
        if self._size is None:
            from .models.backbones import default_size
            self._size = default_size(self.backbone)
            if self._size is None:  # known once the backbone is built (timm, open_clip)
                from .models.backbones import create_backbone
                self._size = create_backbone(self.backbone, pretrained=self.pretrained,
                                             weights=self.weights).preprocess.size
        return self._size

    @property
    def precision(self) -> str:
        if self._precision is None:
            from .models.engine import resolve
            from .models.features import default_device
            self._precision = resolve(device=default_device())[1]
        return self._precision

    def _spec(self) -> tuple[Path, dict]:
        from .data.cache import default_cache_dir
        from .models.features import feature_store_spec
        root = Path(self.cache_dir) if self.cache_dir else default_cache_dir(self.catalog)
        return feature_store_spec(root, self.backbone, self.size, self.view, self.precision, self.pretrained,
                                  self.weights, self.seed)

    @property
    def meta(self) -> dict:
        """What the store records about how its features were made (as the feature extractor writes it)."""
        return self._spec()[1]

    @property
    def dir(self) -> Path:
        return self._folder if self._folder is not None else self._spec()[0]

    def _build_command(self) -> str:
        if self._folder is not None:
            return "built by train, outliers, index or duplicates"
        flags = f" --backbone {self.backbone}" + ("" if self.pretrained else " --pretrained none") \
            + (f" --weights {self.weights}" if self.weights else "")
        if self.view == "flip":
            return f"artextract outliers --catalog {self.catalog.path} --task TASK{flags} --flip --out FILE"
        return f"artextract duplicates --catalog {self.catalog.path}{flags}"

    def status(self) -> Artefact:
        d, build = self.dir, self._build_command()
        counts = _count_done(d / "pooled", self.catalog.ids)
        if counts is None:
            return Artefact(self.kind, str(d), MISSING, build=build)
        done, n = counts
        from .models.features import engine_record
        eng = engine_record(d) or {}
        how = f" ({eng.get('engine')} {eng.get('precision')})" if eng else ""
        detail = f"{done:,} of {n:,} paintings{how}"
        failed = self._unreadable()
        if self._folder is None:
            made = _read_index(d / "pooled").get("meta") or {}
            if made and made != self.meta:
                return Artefact(self.kind, str(d), STALE, f"made with {made}, not {self.meta}", build)
        state = COMPLETE if done + len(failed) >= n else (PARTIAL if done else MISSING)
        return Artefact(self.kind, str(d), state, detail, build)

    def _unreadable(self) -> set[str]:
        """The paintings whose images could not be prepared (at any size): they have no features."""
        root = self.dir.parent.parent
        from .data.store import read_failures
        out: set[str] = set()
        for d in root.glob("s[0-9]*"):
            out |= set(read_failures(d))
        return out & set(self.catalog.ids)

    def ensure(self, job=None):
        """Compute the features of every prepared painting not yet in the store, preparing the images first
        when needed (each said); the feature set."""
        from .models.features import extract_features
        st = self.status()
        if st.status == STALE:  # made with other settings: rebuilt, never read as current
            job = _job(job)
            job.say(self._building(st))
            if job.is_main:
                import shutil

                from .data.lock import job_lock
                with job_lock(self.dir, "feature store", job.rank):
                    shutil.rmtree(self.dir / "maps", ignore_errors=True)
                    shutil.rmtree(self.dir / "pooled", ignore_errors=True)
                    shutil.rmtree(self.dir / "stats", ignore_errors=True)
                    (self.dir / workspace.ENGINE_RECORD).unlink(missing_ok=True)
            job.barrier()
        return extract_features(self.catalog, self.backbone, pretrained=self.pretrained, weights=self.weights,
                                image_size=self._size, view=self.view, cache_size=self.cache_size,
                                cache_dir=self.cache_dir, seed=self.seed, job=job)

    def _open(self):
        from .data.images import SkipReport
        from .models.features import FeatureSet, open_stores
        maps, pooled, stats = open_stores(self.dir, self.meta)
        return FeatureSet(maps, pooled, self.backbone, self.size, self.view, SkipReport("features"), stats)


# ---------------------------------------------------------------------- runs and evaluations
class Run(Stored):
    """A trained run: its config and weights (a :class:`~artextract.training.inference.Run`). Only
    ``artextract train`` makes one, so :meth:`ensure` loads it or fails with that command; a run whose
    training was stopped after an epoch has weights, and loads."""

    kind = "run"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def status(self) -> Artefact:
        st = workspace.run_status(self.path)
        if st.status == MISSING and self.path.is_dir():
            st.detail = f"no {workspace.RUN_CONFIG}: not a training run"
        return st

    def _usable(self, st: Artefact) -> bool:
        return st.status == COMPLETE or (st.status == PARTIAL and workspace.run_file(self.path, workspace.RUN_MODEL)
                                         .is_file() and "unreadable" not in st.detail)

    def _open(self):
        from .training.inference import Run as LoadedRun
        return LoadedRun.load(self.path)

    def config(self) -> dict:
        """The run's settings (``config.json``); :class:`NotBuilt` when it has none."""
        try:
            return json.loads(workspace.run_file(self.path, workspace.RUN_CONFIG).read_text())
        except (OSError, ValueError):
            raise self.not_built() from None

    def catalog_path(self) -> str | None:
        """The catalogue the run was trained on."""
        return self.config().get("catalog")


class Evaluation(Stored):
    """A run's metrics on one split of a catalogue (``RUN/eval-SPLIT/``), stale when made from another
    catalogue or other weights.

    Parameters
    ----------
    run : path or training.inference.Run
        The run (a loaded one is used as it is).
    catalog : Catalog or path
        The catalogue whose split is evaluated.
    split : str
        ``train``, ``val`` or ``test``.
    """

    kind = "evaluation"

    def __init__(self, run, catalog, split: str = "val"):
        self.run = run
        self.run_dir = Path(getattr(run, "path", run))
        self.catalog = catalog
        self.split = split

    @property
    def catalog_path(self):
        return getattr(self.catalog, "path", self.catalog)

    @property
    def dir(self) -> Path:
        return workspace.eval_dir(self.run_dir, self.split)

    def status(self) -> Artefact:
        return workspace.evaluation_status(self.run_dir, self.split, self.catalog_path)

    def _building(self, st: Artefact) -> str:
        why = f"no {self.dir / workspace.METRICS} yet" if st.status in (MISSING, PARTIAL) else \
            f"{self.dir} is stale: {st.detail}"
        return f"evaluating the run on {self.split} ({why})"

    def _build(self, st: Artefact, job) -> None:
        from .data.lock import job_lock
        from .training.evaluate import evaluate
        with job_lock(self.dir, "evaluation", job.rank):
            if self._usable(self.status()):  # another job evaluated it while this one waited
                return
            run = self.run if not isinstance(self.run, (str, os.PathLike)) else Run(self.run).load()
            evaluate(run, _catalog(self.catalog), self.split, job=job)

    def _open(self) -> dict:
        return json.loads((self.dir / workspace.METRICS).read_text())


# ---------------------------------------------------------------------- similarity index
class Index(Stored):
    """A similarity index folder (an :class:`~artextract.similarity.index.EmbeddingIndex`).

    Parameters
    ----------
    path : path
        The index folder.
    catalog : Catalog, optional
        The catalogue :meth:`ensure` indexes (its new paintings are added to an index already there).
    embedder : Embedder, optional
        How :meth:`ensure` embeds the paintings; an index made with another embedder is stale.
    index_type : str
        ``flat``, ``ivf``, ``hnsw`` or ``ivfpq`` (for a new index).
    rebuild : bool
        Replace the index instead of adding to it.
    **params
        The index's parameters (``nlist``, ``nprobe``, ``hnsw_m``, ``ef_search``, ``pq_m``).
    """

    kind = "index"

    def __init__(self, path: str | os.PathLike, catalog=None, embedder=None, *, index_type: str = "flat",
                 rebuild: bool = False, **params):
        self.path = Path(path)
        self.catalog, self.embedder, self.index_type, self.rebuild, self.params = \
            catalog, embedder, index_type, rebuild, params
        self.summary: dict | None = None  # what the last ensure added, kept and skipped

    def meta(self) -> dict:
        return json.loads((self.path / workspace.META_FILE).read_text())

    def catalog_path(self) -> str | None:
        """The catalogue the index was built from (its first)."""
        try:
            return (self.meta().get("catalogs") or [None])[0]
        except (OSError, ValueError):
            return None

    def status(self) -> Artefact:
        from .similarity.index import index_status
        d = self.path
        cat = getattr(self.catalog, "path", None) or "CATALOG"
        build = f"artextract index --catalog {cat} --out {d}"
        exists, complete, reason = index_status(d)
        if not exists:
            return Artefact(self.kind, str(d), MISSING, build=build)
        if not complete:
            return Artefact(self.kind, str(d), PARTIAL, reason, build + " --rebuild")
        meta = self.meta()
        build = f"artextract index --catalog {(meta.get('catalogs') or [cat])[0]} --out {d}"
        if self.embedder is not None and not self.embedder.same_as(meta.get("embedding") or {}):
            return Artefact(self.kind, str(d), STALE, "made with another embedding", build + " --rebuild")
        return Artefact(self.kind, str(d), COMPLETE, f"{meta.get('count', '?')} paintings, "
                        f"{meta.get('index_type', '?')}, {meta.get('dim', '?')}-d", build)

    def ensure(self, job=None):
        """Index the catalogue's paintings not yet in the index (a partial folder, a killed build's
        leftovers, is rebuilt, and said so; one made with another embedding is refused unless ``rebuild``);
        the index, and what was added in :attr:`summary`. Under torchrun the other ranks embed their share
        and get None."""
        from .similarity.index import index_catalog
        job = _job(job)
        st = self.status()
        rebuild = self.rebuild
        if st.status == PARTIAL and not rebuild:
            job.say(f"the index {self.path} is incomplete ({st.detail}); rebuilding it")
            rebuild = True
        index, self.summary = index_catalog(self.catalog, self.embedder, self.path, index_type=self.index_type,
                                            rebuild=rebuild, job=job, **self.params)
        return index

    def _open(self):
        from .similarity.index import EmbeddingIndex
        return EmbeddingIndex.load(self.path)


# ---------------------------------------------------------------------- outlier tables and reviews
class OutlierTable(Stored):
    """The table ``artextract outliers --out FILE`` writes: one row per checked painting, most suspicious
    first (a :class:`pandas.DataFrame`, with the labels as they were given)."""

    kind = "outlier table"

    def __init__(self, path: str | os.PathLike, catalog=None):
        self.path = Path(path)
        self.catalog = catalog

    def status(self) -> Artefact:
        cat = getattr(self.catalog, "path", self.catalog) or "CATALOG"
        build = f"artextract outliers --catalog {cat} --task TASK --out {self.path}"
        if not self.path.is_file():
            return Artefact(self.kind, str(self.path), MISSING, build=build)
        try:
            with open(self.path, encoding="utf-8") as f:
                header = f.readline().strip().split(",")
        except (OSError, UnicodeDecodeError) as exc:
            return Artefact(self.kind, str(self.path), PARTIAL, f"unreadable ({exc})", build)
        if "id" not in header:
            return Artefact(self.kind, str(self.path), PARTIAL, "no id column", build)
        return Artefact(self.kind, str(self.path), COMPLETE, build=build)

    def _open(self):
        import pandas as pd

        from .utils import csv_unescape_frame
        return csv_unescape_frame(pd.read_csv(self.path, dtype={"id": str}))  # "'=x" back to "=x"


class ReviewStore(Stored):
    """A catalogue's review database (a :class:`~artextract.web.db.ReviewStore`): ``--db``, else
    :func:`artextract.workspace.review_db_path`. :meth:`ensure` creates an empty one."""

    kind = "review store"

    def __init__(self, catalog_path: str | os.PathLike, db: str | os.PathLike | None = None):
        self.path = Path(db) if db else workspace.review_db_path(catalog_path)

    def status(self) -> Artefact:
        build = "review in `artextract serve` first, or pass --db"
        if not self.path.is_file():
            return Artefact(self.kind, str(self.path), MISSING, build=build)
        return Artefact(self.kind, str(self.path), COMPLETE, "SQLite", build)

    def ensure(self, job=None):
        from .web.db import ReviewStore as Store
        return Store(self.path, create=True)

    def not_built(self, st: Artefact | None = None) -> NotBuilt:
        st = st or self.status()
        return NotBuilt(f"no review database at {self.path}", hint=st.build)

    def _open(self):
        from .web.db import ReviewStore as Store
        return Store(self.path, create=False)

"""Backbone feature maps for a whole catalogue, computed once from the prepared-image cache.

Training with a frozen backbone, outlier detection and similarity search all read these instead of
running the CNN again. A feature store is a :class:`~artextract.data.store.SlotStore` (crash-safe,
incremental) of float16 maps ``[C, h, w]``, one of float32 pooled vectors ``[C]`` and, for backbones
with taps, one of float32 style statistics ``[D]`` (see :meth:`Backbone.forward_with_stats`), under
``<cache>/features/<backbone>-<size>-<view>/``.

Views: ``center`` (the centre crop) and ``flip`` (its mirror image); training with a frozen
backbone draws one of them per painting and epoch, a cheap but real augmentation.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.cache import DEFAULT_SIZE, PreparedCache, default_cache_dir, ensure_prepared
from ..data.catalog import Catalog
from ..data.images import SkipReport
from ..data.lock import job_lock
from ..data.store import SlotStore
from ..errors import UserError
from ..job import Job, resolve as resolve_job
from ..utils import atomic_write_text
from ..workspace import ENGINE_RECORD, features_dir
from .backbones import Backbone, Preprocess, create_backbone, default_size, default_taps
from .base import crop_box, images_to_tensor, normalize  # noqa: F401  (the preprocessing, re-exported)
from .engine import FeatureEngine, available_cores, resolve, store_suffix

logger = logging.getLogger(__name__)

VIEWS = ("center", "flip")
FLUSH_SECONDS = 0.5  # how often computed features are made durable (a killed job redoes at most this much)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class FeatureSet:
    """Feature maps and pooled vectors for a catalogue under one backbone and view."""

    maps: SlotStore
    pooled: SlotStore
    backbone: str
    image_size: int
    view: str
    skipped: SkipReport
    stats: SlotStore | None = None

    def available(self, ids: list[str]) -> np.ndarray:
        return self.pooled.slots(ids) >= 0

    def get_maps(self, ids: list[str]) -> np.ndarray:
        return self.maps.gather(ids)

    def get_pooled(self, ids: list[str]) -> np.ndarray:
        return self.pooled.gather(ids).astype(np.float32)

    @property
    def stats_dim(self) -> int:
        return self.stats.item_shape[0] if self.stats is not None else 0

    def get_stats(self, ids: list[str]) -> np.ndarray:
        """Style statistics ``[N, D]`` (``D = 0`` for a backbone without taps)."""
        if self.stats is None:
            return np.zeros((len(ids), 0), np.float32)
        return self.stats.gather(ids).astype(np.float32)


def _store_name(backbone: str, image_size: int, view: str, weights: str | None, pretrained: bool,
                seed: int = 0) -> str:
    tag = backbone.replace(":", "_").replace("/", "_")
    if weights:
        tag += "-w" + hashlib.sha1(str(Path(weights).resolve()).encode()).hexdigest()[:8]
    elif not pretrained:
        tag += f"-random{seed}"  # a random init is fixed by its seed
    return f"{tag}-{image_size}-{view}"


def feature_store_spec(cache_dir, backbone: str, size: int, view: str, precision: str, pretrained: bool,
                       weights=None, seed: int = 0) -> tuple[Path, dict]:
    """Where a feature store lives under ``cache_dir`` and the ``meta`` it records (what it was made with).

    Returns
    -------
    (folder, meta) : tuple of Path and dict
    """
    meta = {"backbone": backbone, "image_size": size, "view": view, "pretrained": bool(pretrained),
            "weights": str(weights) if weights else None}
    if precision != "fp32":
        meta["precision"] = precision
    name = _store_name(backbone, size, view, weights, pretrained, seed) + store_suffix(precision)
    return features_dir(cache_dir, name), meta


def open_stores(sdir: Path, meta: dict) -> tuple[SlotStore, SlotStore, SlotStore | None]:
    """The existing maps, pooled and (if any) statistics stores of a feature folder."""
    info = json.loads((sdir / "maps" / "index.json").read_text())
    maps = SlotStore(sdir / "maps", info["item_shape"], np.float16, meta)
    pinfo = json.loads((sdir / "pooled" / "index.json").read_text()) if (sdir / "pooled" / "index.json").exists() \
        else info
    # a projected pooled vector (open_clip: 512) need not have the maps' width (768 tokens)
    pooled = SlotStore(sdir / "pooled", pinfo["item_shape"][:1], np.float32, meta)
    stats = None
    if (sdir / "stats" / "index.json").exists():
        sinfo = json.loads((sdir / "stats" / "index.json").read_text())
        stats = SlotStore(sdir / "stats", sinfo["item_shape"], np.float32, meta)
    return maps, pooled, stats


@torch.no_grad()
def extract_features(catalog: Catalog, backbone: str | Backbone = "mobilenet_v2", *, pretrained: bool = True,
                     weights: str | None = None, image_size: int | None = None, view: str = "center",
                     cache_size: int = DEFAULT_SIZE, cache_dir: str | None = None, batch_size: int = 32,
                     device: torch.device | None = None, seed: int = 0, job: Job | None = None) -> FeatureSet:
    """Compute (or reuse) the feature maps of every prepared catalogue image; builds the
    prepared-image cache first if it is missing (and says so).

    Parameters
    ----------
    catalog : Catalog
        The paintings.
    backbone : str or Backbone
        A registered backbone name (``artextract backbones``) or a loaded one.
    pretrained, weights, seed
        Pretrained weights, a weights file, or (``pretrained=False``) a random init fixed by ``seed``.
    view : {"center", "flip"}
        The centre crop or its mirror image.
    job : Job, optional
        The job (default: the current one). Under torchrun every rank computes its share into the one
        store (rank 0 holds its lock and reserves the slots), and every rank returns the whole feature set.

    Returns
    -------
    FeatureSet
        The maps, pooled vectors and style statistics of every prepared painting.
    """
    job = resolve_job(job)
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}")
    root = Path(cache_dir) if cache_dir else default_cache_dir(catalog)
    name = backbone if isinstance(backbone, str) else backbone.name
    net: Backbone | None = backbone if isinstance(backbone, Backbone) else None
    device = device or default_device()
    engine, precision = resolve(device=device)
    # the input size is known without loading weights, so a fully cached store costs no model load
    size = image_size or (net.preprocess.size if net else default_size(name))
    if size is None:
        net = _build(name, pretrained, weights, seed, image_size)
        size = image_size or net.preprocess.size
    sdir, meta = feature_store_spec(root, name, size, view, precision, pretrained, weights, seed)
    done = _complete(sdir, meta, catalog.ids, net.taps if net is not None else default_taps(name))
    if done is not None:  # every painting's features are stored: no pixels, no model needed
        return FeatureSet(*done[:2], name, size, view, SkipReport("features"), done[2])
    with contextlib.ExitStack() as held:
        on_cpu = engine == "openvino" or torch.device(device).type == "cpu"
        decoder = _overlapped_decoder(catalog, cache_size, root, batch_size, held, job, on_cpu)
        if decoder is None:
            cache = ensure_prepared(catalog, cache_size, root, job=job)
        else:
            cache = decoder.cache
        ready = cache.has if decoder is None else decoder.usable
        ids = [k for k in catalog.df["id"] if ready(k)]
        skipped = SkipReport("features")
        for k in catalog.df["id"]:
            if not ready(k):
                skipped.add(k, cache.failures.get(k, "image not prepared"))
        if not ids:
            reasons = sorted({r["reason"] for r in skipped.skipped})
            raise UserError(f"none of the catalogue's {len(catalog.df)} paintings could be read, so there are no "
                            f"features to compute ({'; '.join(reasons[:3]) or 'an empty catalogue'})",
                            hint="`artextract prepare` lists each image's reason; relative paths are read from "
                                 "the catalogue's image root")
        return _compute(catalog, sdir, meta, ids, skipped, name, size, view, pretrained, weights, seed, image_size,
                        net, cache, decoder, device, engine, precision, batch_size, job)


def _compute(catalog, sdir, meta, ids, skipped, name, size, view, pretrained, weights, seed, image_size, net,
             cache, decoder, device, engine, precision, batch_size, job: Job) -> FeatureSet:
    """Plan the feature store under its lock, then run the engine over every painting still to do."""
    if decoder is not None:  # the plan's probe reads one prepared image
        ids = list(ids)
        while ids and not decoder.ensure([ids[0]]):
            skipped.add(ids[0], cache.failures[ids[0]])
            ids.pop(0)
    with job_lock(sdir, "feature store", job.rank):
        plan = None
        if job.is_main:
            net, plan = _plan(sdir, meta, ids, name, size, pretrained, weights, seed, net, cache, device,
                              engine, precision)
        job.barrier()
        plan = job.broadcast(plan)
        maps, pooled, stats = open_stores(sdir, meta)
        if not plan:
            return FeatureSet(maps, pooled, name, size, view, skipped, stats)
        stats = stats if plan["stats"] else None
        if net is None:
            net = _build(name, pretrained, weights, seed, image_size)
        run = FeatureEngine(net, engine=plan["engine"], precision=precision, device=device)
        todo = plan["todo"]
        mine = job.shard(todo)
        job.say(f"computing {name} features ({view}, {size}px, {run.engine} {run.precision}, {run.threads} "
                f"thread(s)) for {len(todo)} painting(s)" + (f" on {job.world} ranks" if job.world > 1 else "")
                + f" -> {sdir}")
        stores = [s for s in (maps, pooled, stats) if s is not None]
        bar = job.bar(total=len(mine), desc=f"features {name}", unit="img")
        try:
            flushed = time.monotonic()
            batches = (_batches(cache, mine, batch_size) if decoder is None else
                       decoder.batches(mine, batch_size, skipped))
            for chunk, fm, pv, sv in run.stream(batches, view=view, size=size, maps_dtype=np.float16):
                for j, k in enumerate(chunk):
                    maps.put(k, fm[j])
                    pooled.put(k, pv[j])
                    if stats is not None:
                        stats.put(k, sv[j])
                if time.monotonic() - flushed > FLUSH_SECONDS:
                    for st in stores:  # maps first; the pooled and stats stores mark the paintings as done
                        st._flush_data()
                    flushed = time.monotonic()
                bar.update(len(chunk))
        finally:
            for st in stores:
                st._flush_data()
            bar.close()
        job.barrier()
        if not job.is_main:
            for st in stores:
                st.reload()
    return FeatureSet(maps, pooled, name, size, view, skipped, stats)


def _build(name: str, pretrained: bool, weights, seed: int, image_size: int | None) -> Backbone:
    torch.manual_seed(seed)  # deterministic random init for --pretrained none
    kw = {"image_size": image_size} if image_size else {}
    return create_backbone(name, pretrained=pretrained, weights=weights, **kw)


def _overlapped_decoder(catalog: Catalog, cache_size: int, root: Path, batch_size: int,
                        held: contextlib.ExitStack, job: Job, engine_on_cpu: bool = True
                        ) -> "_OverlappedDecoder | None":
    """When images are still to prepare (one process, enough of them): hold the cache's lock and decode
    them in worker processes while the engine runs, instead of preparing everything first."""
    if job.world != 1:
        return None
    cache = PreparedCache(root, cache_size)
    all_ids = catalog.df["id"].tolist()
    if len(cache.store.todo(all_ids)) < 2 * batch_size:
        return None
    held.enter_context(job_lock(cache.dir, "prepared-image cache", 0))
    cache.store.reload()
    missing = cache.store.todo(all_ids)
    if not missing:
        return None
    job.say(f"preparing {len(missing)} image(s) not yet in the {cache_size}px cache at {cache.dir}, "
            "decoding while the backbone runs")
    cache.store.reserve(missing)
    dec = _OverlappedDecoder(cache, dict(zip(all_ids, (str(p) for p in catalog.image_paths()))), set(missing),
                             decoder_count(engine_on_cpu))
    held.callback(dec.close)
    return dec


def decoder_count(engine_on_cpu: bool) -> int:
    """Decoding processes of a first run (measured in docs/benchmarks.md): beside an engine on the CPU,
    half the cores (2 to 8), which share them with it; with the forward pass on a GPU, decoding is what
    limits, so every core but the one that feeds the GPU."""
    cores = available_cores()
    return max(2, min(8, cores // 2)) if engine_on_cpu else max(2, cores - 1)


class _OverlappedDecoder:
    """Decodes the missing images of a batch in worker processes, a few batches ahead of the engine, into
    the prepared-image cache (so later views and commands find them there)."""

    AHEAD = 4  # batches in flight

    def __init__(self, cache: PreparedCache, paths: dict[str, str], missing: set[str], workers: int = 2):
        from concurrent.futures import ProcessPoolExecutor

        self.cache, self.paths, self.missing = cache, paths, missing
        self.pool = ProcessPoolExecutor(workers)
        self.futures: dict[str, object] = {}

    def usable(self, k: str) -> bool:
        return self.cache.has(k) or (k in self.missing and k not in self.cache.failures)

    def _submit(self, ids) -> None:
        from ..data.cache import _decode_into

        new = [k for k in ids if k in self.missing and k not in self.futures]
        for k, a in zip(new, self.cache.worker_args(new, self.paths)):
            self.futures[k] = self.pool.submit(_decode_into, a)

    def ensure(self, ids) -> list[str]:
        """Decode ``ids`` that are not prepared yet; the ids now in the cache."""
        self._submit(ids)
        ok = []
        for k in ids:
            fut = self.futures.pop(k, None)
            if fut is not None:
                _, _, err = fut.result()
                self.missing.discard(k)
                if err is not None:
                    self.cache.store.fail(k, err)
                else:
                    self.cache.store.written(k)
            if k not in self.cache.failures:
                ok.append(k)
        self.cache.store.flush()
        return ok

    def batches(self, ids: list[str], batch_size: int, skipped: SkipReport):
        """``(ids, uint8 images)`` batches of the prepared images, each decoded first where needed."""
        chunks = [ids[i:i + batch_size] for i in range(0, len(ids), batch_size)]
        for j, chunk in enumerate(chunks):
            for ahead in chunks[j:j + self.AHEAD]:
                self._submit(ahead)
            ok = self.ensure(chunk)
            for k in chunk:
                if k in self.cache.failures:
                    skipped.add(k, self.cache.failures[k])
            yield ok, self.cache.images[self.cache.slots(ok)] if ok else None

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)
        self.cache.store.flush()


def _batches(cache: PreparedCache, ids: list[str], batch_size: int):
    """``(ids, uint8 images)`` batches of the prepared images, the next one read in a thread."""
    from concurrent.futures import ThreadPoolExecutor

    def load(chunk):
        return chunk, cache.images[cache.slots(chunk)]

    chunks = [ids[i:i + batch_size] for i in range(0, len(ids), batch_size)]
    if not chunks:
        return
    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(load, chunks[0])
        for nxt in chunks[1:] + [None]:
            item = fut.result()
            if nxt is not None:
                fut = pool.submit(load, nxt)
            yield item


def _complete(sdir: Path, meta: dict, ids: list[str], taps) -> tuple | None:
    """The stores of ``sdir`` when they hold finished features (and statistics, for a backbone with taps)
    of every id; else None."""
    if not (sdir / "maps" / "index.json").exists():
        return None
    maps, pooled, stats = open_stores(sdir, meta)
    if (pooled.slots(ids) < 0).any() or (taps and (stats is None or (stats.slots(ids) < 0).any())):
        return None
    return maps, pooled, stats


def _plan(sdir: Path, meta: dict, ids: list[str], name: str, size: int, pretrained: bool, weights, seed: int,
          net: Backbone | None, cache: PreparedCache, device, engine: str, precision: str
          ) -> tuple[Backbone | None, dict | None]:
    """Rank 0, holding the store's lock: open or create the stores, and reserve the slots of every painting
    still to do. Returns the (possibly loaded) backbone and ``{"todo": ids, "stats": bool, "engine": str}``,
    or None when nothing is left to do. A store started by one engine is finished by the same one
    (``engine.json``), so its features never mix engines."""
    taps = net.taps if net is not None else default_taps(name)
    todo_ids = None
    maps = pooled = stats = None
    if (sdir / "maps" / "index.json").exists():
        maps, pooled, stats = open_stores(sdir, meta)
        stats = stats if taps else None
        todo = set(pooled.todo(ids))
        if stats is not None:
            todo |= set(stats.todo(ids))
        elif taps:  # the store lacks style statistics: compute them (maps are recomputed alongside)
            todo = set(ids)
        todo_ids = [k for k in ids if k in todo]
        if not todo_ids:
            return net, None
    recorded = engine_record(sdir)
    if recorded and recorded.get("engine") != engine and maps is not None:
        logger.info("%s was started with the %s engine; finishing it with the same", sdir.name, recorded["engine"])
        engine = recorded["engine"]
    if maps is None or (taps and stats is None):
        if net is None:
            net = _build(name, pretrained, weights, seed, size)
        probe = FeatureEngine(net, engine="torch", precision="fp32", device=device)
        fm0, pv0, st0 = probe(images_to_tensor(cache.images[cache.slots(ids[:1])], size, "center", net.preprocess))
        shape = tuple(fm0.shape[1:])
        if maps is None:
            maps = SlotStore(sdir / "maps", shape, np.float16, meta)
            pooled = SlotStore(sdir / "pooled", tuple(pv0.shape[1:]), np.float32, meta)
        stats = SlotStore(sdir / "stats", (st0.shape[1],), np.float32, meta) if st0.shape[1] else None
        todo_ids = todo_ids if todo_ids is not None else pooled.todo(ids)
    if not todo_ids:
        return net, None
    if not recorded or recorded.get("engine") != engine:
        atomic_write_text(sdir / ENGINE_RECORD, json.dumps({"engine": engine, "precision": precision}))
    for st in (maps, pooled, stats):
        if st is not None:
            st.reserve(todo_ids)
    return net, {"todo": todo_ids, "stats": stats is not None, "engine": engine}


def engine_record(sdir: Path) -> dict | None:
    """A feature store's ``engine.json`` (its engine and precision), or None when it has none."""
    try:
        return json.loads((sdir / ENGINE_RECORD).read_text())
    except (OSError, ValueError):
        return None


def store_engine(fs: "FeatureSet") -> dict:
    """The engine and precision a feature store was computed with (``torch``/``fp32`` for older stores)."""
    return engine_record(fs.maps.dir.parent) or {"engine": "torch", "precision": "fp32"}

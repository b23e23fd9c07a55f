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

import logging
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import distributed
from ..data.cache import DEFAULT_SIZE, PreparedCache, default_cache_dir, ensure_prepared
from ..data.catalog import Catalog
from ..data.images import SkipReport
from ..data.lock import job_lock
from ..data.store import SlotStore
from .backbones import IMAGENET_MEAN, IMAGENET_STD, Backbone, create_backbone, default_size, default_taps

logger = logging.getLogger(__name__)

VIEWS = ("center", "flip")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def images_to_tensor(batch_u8: np.ndarray, image_size: int, view: str = "center") -> torch.Tensor:
    """``[B, S, S, 3]`` uint8 prepared images -> normalised ``[B, 3, size, size]`` float tensor.

    Takes the centre 87.5 % (a 224 crop of a 256 cache, as torchvision's eval transform) and
    resizes it to ``image_size`` if needed."""
    x = torch.from_numpy(np.ascontiguousarray(batch_u8)).permute(0, 3, 1, 2).float().div_(255.0)
    s = x.shape[-1]
    c = int(round(s * 0.875))
    o = (s - c) // 2
    x = x[:, :, o:o + c, o:o + c]
    if c != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=c > image_size)
    if view == "flip":
        x = x.flip(-1)
    return normalize(x)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation of a ``[..., 3, H, W]`` tensor with values in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


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


def _open_stores(sdir: Path, meta: dict) -> tuple[SlotStore, SlotStore, SlotStore | None]:
    """The existing maps, pooled and (if any) statistics stores of a feature folder."""
    info = json.loads((sdir / "maps" / "index.json").read_text())
    maps = SlotStore(sdir / "maps", info["item_shape"], np.float16, meta)
    pooled = SlotStore(sdir / "pooled", info["item_shape"][:1], np.float32, meta)
    stats = None
    if (sdir / "stats" / "index.json").exists():
        sinfo = json.loads((sdir / "stats" / "index.json").read_text())
        stats = SlotStore(sdir / "stats", sinfo["item_shape"], np.float32, meta)
    return maps, pooled, stats


@torch.no_grad()
def extract_features(catalog: Catalog, backbone: str | Backbone = "mobilenet_v2", *, pretrained: bool = True,
                     weights: str | None = None, image_size: int | None = None, view: str = "center",
                     cache_size: int = DEFAULT_SIZE, cache_dir: str | None = None, batch_size: int = 32,
                     progress: bool = True, log=logger.info, device: torch.device | None = None,
                     seed: int = 0, rank: int = 0, world: int = 1) -> FeatureSet:
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
    rank, world : int
        Under torchrun: every rank computes ``todo[rank::world]`` into the one store (rank 0 holds its
        lock and reserves the slots), and every rank returns the whole feature set.

    Returns
    -------
    FeatureSet
        The maps, pooled vectors and style statistics of every prepared painting.
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}")
    root = Path(cache_dir) if cache_dir else default_cache_dir(catalog)
    name = backbone if isinstance(backbone, str) else backbone.name
    net: Backbone | None = backbone if isinstance(backbone, Backbone) else None
    # the input size is known without loading weights, so a fully cached store costs no model load
    size = image_size or (net.default_size if net else default_size(name))
    if size is None:
        torch.manual_seed(seed)  # deterministic random init for --pretrained none
        net = create_backbone(name, pretrained=pretrained, weights=weights)
        size = image_size or net.default_size
    meta = {"backbone": name, "image_size": size, "view": view, "pretrained": bool(pretrained),
            "weights": str(weights) if weights else None}
    sdir = root / "features" / _store_name(name, size, view, weights, pretrained, seed)
    done = _complete(sdir, meta, catalog.ids, net.taps if net is not None else default_taps(name))
    if done is not None:  # every painting's features are stored: no pixels, no model needed
        return FeatureSet(*done[:2], name, size, view, SkipReport("features"), done[2])
    cache = ensure_prepared(catalog, cache_size, root, progress=progress, log=log, rank=rank, world=world)
    ids = [k for k in catalog.df["id"] if cache.has(k)]
    skipped = SkipReport("features")
    for k in catalog.df["id"]:
        if not cache.has(k):
            skipped.add(k, cache.failures.get(k, "image not prepared"))
    with job_lock(sdir, "feature store", rank):
        plan = None
        if rank == 0:
            net, plan = _plan(sdir, meta, ids, name, size, pretrained, weights, seed, net, cache, device)
        distributed.barrier(world)
        plan = distributed.broadcast(plan, world)
        maps, pooled, stats = _open_stores(sdir, meta)
        if not plan:
            return FeatureSet(maps, pooled, name, size, view, skipped, stats)
        stats = stats if plan["stats"] else None
        if net is None:
            torch.manual_seed(seed)
            net = create_backbone(name, pretrained=pretrained, weights=weights)
        device = device or default_device()
        net = net.to(device).eval()
        todo = plan["todo"]
        mine = todo[rank::world]
        log(f"computing {name} features ({view}, {size}px) for {len(todo)} painting(s)"
            + (f" on {world} ranks" if world > 1 else "") + f" -> {sdir}")
        stores = [s for s in (maps, pooled, stats) if s is not None]
        bar = tqdm(total=len(mine), desc=f"features {name}", unit="img", disable=not progress or rank != 0,
                   file=sys.stderr)
        try:
            for start in range(0, len(mine), batch_size):
                chunk = mine[start:start + batch_size]
                x = images_to_tensor(cache.images[cache.slots(chunk)], size, view).to(device)
                if device.type == "cuda":
                    with torch.autocast("cuda", dtype=torch.float16):
                        fm, sv = net.forward_with_stats(x.contiguous(memory_format=torch.channels_last))
                    fm = fm.float()
                else:
                    fm, sv = net.forward_with_stats(x)
                pv = fm.mean(dim=(2, 3))
                fm_np, pv_np, sv_np = fm.cpu().numpy().astype(np.float16), pv.cpu().numpy(), sv.float().cpu().numpy()
                for j, k in enumerate(chunk):
                    maps.put(k, fm_np[j])
                    pooled.put(k, pv_np[j])
                    if stats is not None:
                        stats.put(k, sv_np[j])
                for st in stores:  # maps first; the pooled and stats stores mark the painting as done
                    st._flush_data()
                bar.update(len(chunk))
        finally:
            for st in stores:
                st._flush_data()
            bar.close()
        distributed.barrier(world)
        if rank != 0:
            for st in stores:
                st.reload()
    return FeatureSet(maps, pooled, name, size, view, skipped, stats)


def _complete(sdir: Path, meta: dict, ids: list[str], taps) -> tuple | None:
    """The stores of ``sdir`` when they hold finished features (and statistics, for a backbone with taps)
    of every id; else None."""
    if not (sdir / "maps" / "index.json").exists():
        return None
    maps, pooled, stats = _open_stores(sdir, meta)
    if (pooled.slots(ids) < 0).any() or (taps and (stats is None or (stats.slots(ids) < 0).any())):
        return None
    return maps, pooled, stats


def _plan(sdir: Path, meta: dict, ids: list[str], name: str, size: int, pretrained: bool, weights, seed: int,
          net: Backbone | None, cache: PreparedCache, device) -> tuple[Backbone | None, dict | None]:
    """Rank 0, holding the store's lock: open or create the stores, and reserve the slots of every painting
    still to do. Returns the (possibly loaded) backbone and ``{"todo": ids, "stats": bool}``, or None when
    nothing is left to do."""
    taps = net.taps if net is not None else default_taps(name)
    todo_ids = None
    maps = pooled = stats = None
    if (sdir / "maps" / "index.json").exists():
        maps, pooled, stats = _open_stores(sdir, meta)
        stats = stats if taps else None
        todo = set(pooled.todo(ids))
        if stats is not None:
            todo |= set(stats.todo(ids))
        elif taps:  # the store lacks style statistics: compute them (maps are recomputed alongside)
            todo = set(ids)
        todo_ids = [k for k in ids if k in todo]
        if not todo_ids:
            return net, None
    if maps is None or (taps and stats is None):
        if net is None:
            torch.manual_seed(seed)
            net = create_backbone(name, pretrained=pretrained, weights=weights)
        dev = device or default_device()
        net = net.to(dev).eval()
        fm0, st0 = net.forward_with_stats(images_to_tensor(cache.images[cache.slots(ids[:1])], size).to(dev))
        shape = tuple(fm0.shape[1:])
        if maps is None:
            maps = SlotStore(sdir / "maps", shape, np.float16, meta)
            pooled = SlotStore(sdir / "pooled", shape[:1], np.float32, meta)
        stats = SlotStore(sdir / "stats", (st0.shape[1],), np.float32, meta) if st0.shape[1] else None
        todo_ids = todo_ids if todo_ids is not None else pooled.todo(ids)
    if not todo_ids:
        return net, None
    for st in (maps, pooled, stats):
        if st is not None:
            st.reserve(todo_ids)
    return net, {"todo": todo_ids, "stats": stats is not None}


def open_cache(catalog: Catalog, size: int = DEFAULT_SIZE) -> PreparedCache:
    return PreparedCache(default_cache_dir(catalog), size)

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
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.cache import DEFAULT_SIZE, PreparedCache, default_cache_dir, ensure_prepared
from ..data.catalog import Catalog
from ..data.images import SkipReport
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


@torch.no_grad()
def extract_features(catalog: Catalog, backbone: str | Backbone = "mobilenet_v2", *, pretrained: bool = True,
                     weights: str | None = None, image_size: int | None = None, view: str = "center",
                     cache_size: int = DEFAULT_SIZE, cache_dir: str | None = None, batch_size: int = 32,
                     progress: bool = True, log=logger.info, device: torch.device | None = None,
                     seed: int = 0) -> FeatureSet:
    """Compute (or reuse) the feature maps of every prepared catalogue image; builds the
    prepared-image cache first if it is missing (and says so)."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}")
    root = Path(cache_dir) if cache_dir else default_cache_dir(catalog)
    cache = ensure_prepared(catalog, cache_size, root, progress=progress, log=log)
    name = backbone if isinstance(backbone, str) else backbone.name
    net: Backbone | None = backbone if isinstance(backbone, Backbone) else None
    # the input size is known without loading weights, so a fully cached store costs no model load
    size = image_size or (net.default_size if net else default_size(name))
    if size is None:
        torch.manual_seed(seed)  # deterministic random init for --pretrained none
        net = create_backbone(name, pretrained=pretrained, weights=weights)
        size = image_size or net.default_size
    ids = [k for k in catalog.df["id"] if cache.has(k)]
    skipped = SkipReport("features")
    for k in catalog.df["id"]:
        if not cache.has(k):
            skipped.add(k, cache.failures.get(k, "image not prepared"))
    sdir = root / "features" / _store_name(name, size, view, weights, pretrained, seed)
    meta = {"backbone": name, "image_size": size, "view": view, "pretrained": bool(pretrained),
            "weights": str(weights) if weights else None}
    taps = net.taps if net is not None else default_taps(name)
    todo_ids = None
    maps = pooled = stats = None
    if (sdir / "maps" / "index.json").exists():
        import json
        info = json.loads((sdir / "maps" / "index.json").read_text())
        maps = SlotStore(sdir / "maps", info["item_shape"], np.float16, meta)
        pooled = SlotStore(sdir / "pooled", info["item_shape"][:1], np.float32, meta)
        todo = set(pooled.todo(ids))
        if taps and (sdir / "stats" / "index.json").exists():
            sinfo = json.loads((sdir / "stats" / "index.json").read_text())
            stats = SlotStore(sdir / "stats", sinfo["item_shape"], np.float32, meta)
            todo |= set(stats.todo(ids))
        elif taps:  # a store from before style statistics: compute them (maps are recomputed alongside)
            todo = set(ids)
        todo_ids = [k for k in ids if k in todo]
        if not todo_ids:
            return FeatureSet(maps, pooled, name, size, view, skipped, stats)
    if net is None:
        torch.manual_seed(seed)
        net = create_backbone(name, pretrained=pretrained, weights=weights)
    device = device or default_device()
    net = net.to(device).eval()
    if maps is None or (net.taps and stats is None):
        fm0, st0 = net.forward_with_stats(images_to_tensor(cache.images[cache.slots(ids[:1])], size).to(device))
        shape = tuple(fm0.shape[1:])
        if maps is None:
            maps = SlotStore(sdir / "maps", shape, np.float16, meta)
            pooled = SlotStore(sdir / "pooled", shape[:1], np.float32, meta)
        stats = SlotStore(sdir / "stats", (st0.shape[1],), np.float32, meta) if st0.shape[1] else None
        todo_ids = todo_ids if todo_ids is not None else pooled.todo(ids)
    log(f"computing {name} features ({view}, {size}px) for {len(todo_ids)} painting(s) -> {sdir}")
    stores = [s for s in (maps, pooled, stats) if s is not None]
    for st in stores:
        st.reserve(todo_ids)
    bar = tqdm(total=len(todo_ids), desc=f"features {name}", unit="img", disable=not progress, file=sys.stderr)
    try:
        for start in range(0, len(todo_ids), batch_size):
            chunk = todo_ids[start:start + batch_size]
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
                st.flush()
            bar.update(len(chunk))
    finally:
        for st in stores:
            st.flush()
        bar.close()
    return FeatureSet(maps, pooled, name, size, view, skipped, stats)


def open_cache(catalog: Catalog, size: int = DEFAULT_SIZE) -> PreparedCache:
    return PreparedCache(default_cache_dir(catalog), size)

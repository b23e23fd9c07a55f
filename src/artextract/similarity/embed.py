"""How paintings become unit vectors: from an ImageNet backbone or from a trained run.

An *embedder* embeds a whole catalogue (reusing the prepared-image cache and the feature stores)
and new images (a query photo, an upload) with exactly the same model and preprocessing, so a
catalogue image given as a file lands on (almost) the same vector as its indexed copy.

- :class:`BackboneEmbedder`: the backbone's last feature map, mean-pooled, optionally centred on
  the collection mean (fitted once, when the index is first built, and stored with it), then
  L2-normalised. Centring removes the direction every pooled ReLU vector shares: on WikiArt, style
  P@10 with MobileNetV2 is 0.45 centred against 0.43 uncentred.
- :class:`RunEmbedder`: a trained multi-task run (``artextract.training.inference.Run``), whose pooled
  recurrent features are trained to know style, artist, genre and period; already L2-normalised.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..data.cache import DEFAULT_SIZE
from ..defaults import DEFAULT_BACKBONE
from ..data.catalog import Catalog
from ..data.images import SkipReport, load_image, resize_center_crop
from ..errors import ArtExtractError
from ..job import Job
from ..utils import l2_normalize  # noqa: F401  (re-exported for the index)

logger = logging.getLogger(__name__)




def as_image(img: Image.Image | str | os.PathLike | bytes, draft_size: int | None = None) -> Image.Image:
    """A PIL image, a path or the bytes of a file -> RGB PIL image (through the safe loader).

    Parameters
    ----------
    img : PIL.Image.Image, str, PathLike or bytes
    draft_size : int, optional
        See :func:`artextract.data.images.load_image`.

    Returns
    -------
    PIL.Image.Image
        Mode RGB.
    """
    if isinstance(img, Image.Image):
        return img if img.mode == "RGB" else img.convert("RGB")
    return load_image(img, draft_size=draft_size)


class Embedder:
    """Interface: ``embed_catalog``, ``embed_images``, ``describe`` and ``to_meta``."""

    kind = "abstract"
    mean: np.ndarray | None = None
    LENIENT = ("image_size",)  # None there means "the backbone's default"

    def embed_catalog(self, catalog: Catalog, ids: Sequence[str] | None = None, *,
                      job: Job | None = None) -> tuple[list[str], np.ndarray, SkipReport]:
        """The ids embedded, their vectors and the paintings skipped (``job``: default the current one)."""
        raise NotImplementedError

    def embed_images(self, images: Sequence) -> np.ndarray:
        raise NotImplementedError

    def prepare_features(self, catalog: Catalog, *, job: Job | None = None) -> None:
        """Compute the stored backbone features this embedder reads, each rank of ``job`` (default: the
        current one) doing its share under torchrun (nothing to do for an embedder without a feature store)."""

    def to_meta(self) -> dict:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def same_as(self, meta: dict) -> bool:
        """Would this embedder make the same vectors as the one described by ``meta``? (An unset
        value, such as the backbone's default input size, matches any.)"""
        mine = self.to_meta()
        if set(mine) != set(meta):
            return False
        return all(meta[k] == v or (k in self.LENIENT and (v is None or meta[k] is None)) for k, v in mine.items())


class BackboneEmbedder(Embedder):
    kind = "backbone"

    def __init__(self, backbone: str = DEFAULT_BACKBONE, *, pretrained: bool = True, weights: str | None = None,
                 image_size: int | None = None, cache_size: int = DEFAULT_SIZE, seed: int = 0,
                 center: bool = True, mean: np.ndarray | None = None, device=None):
        self.backbone = backbone
        self.pretrained = bool(pretrained)
        self.weights = str(Path(weights).resolve()) if weights else None
        self.image_size = image_size
        self.cache_size = int(cache_size)
        self.seed = int(seed)
        self.center = bool(center)
        self.mean = None if mean is None else np.asarray(mean, np.float32)
        self.device = device
        self._net = None
        self._lock = threading.Lock()

    def describe(self) -> str:
        w = f", weights {self.weights}" if self.weights else ("" if self.pretrained else ", random init")
        return f"backbone {self.backbone} ({self.image_size or 'default'}px{w}, pooled" \
               f"{', centred' if self.center else ''}, L2-normalised)"

    def to_meta(self) -> dict:
        return {"kind": self.kind, "backbone": self.backbone, "pretrained": self.pretrained,
                "weights": self.weights, "image_size": self.image_size, "cache_size": self.cache_size,
                "seed": self.seed, "center": self.center, "view": "center"}

    def _transform(self, pooled: np.ndarray) -> np.ndarray:
        x = np.asarray(pooled, np.float32)
        if self.center:
            if self.mean is None:
                raise RuntimeError("the centring mean is fitted by embed_catalog on the first build")
            x = x - self.mean
        return l2_normalize(x)

    def prepare_features(self, catalog, *, job=None):
        from ..models.features import extract_features

        extract_features(catalog, self.backbone, pretrained=self.pretrained, weights=self.weights,
                         image_size=self.image_size, cache_size=self.cache_size,
                         seed=self.seed, device=self.device, job=job)

    def embed_catalog(self, catalog, ids=None, *, job=None):
        from ..models.features import extract_features

        fs = extract_features(catalog, self.backbone, pretrained=self.pretrained, weights=self.weights,
                              image_size=self.image_size, cache_size=self.cache_size,
                              seed=self.seed, device=self.device, job=job)
        self.image_size = fs.image_size
        want = list(catalog.ids if ids is None else ids)
        ok = fs.available(want)
        got = [k for k, o in zip(want, ok) if o]
        skipped = SkipReport("embed")
        reasons = {s["id"]: s["reason"] for s in fs.skipped.skipped}
        for k, o in zip(want, ok):
            if not o:
                skipped.add(k, reasons.get(k, "not in the catalogue or no features"))
        pooled = fs.get_pooled(got) if got else np.zeros((0, fs.pooled.item_shape[0]), np.float32)
        if self.center and self.mean is None:
            if not len(pooled):
                raise RuntimeError("no painting could be embedded, so there is nothing to fit the centring on")
            self.mean = pooled.mean(0).astype(np.float32)
        return got, self._transform(pooled) if len(got) else np.zeros((0, pooled.shape[1]), np.float32), skipped

    def _model(self):
        """The backbone behind the process's inference engine (built once)."""
        import torch

        from ..models.backbones import create_backbone
        from ..models.engine import FeatureEngine
        from ..models.features import default_device

        if self._net is None:
            torch.manual_seed(self.seed)  # the same random init as extract_features for --pretrained none
            kw = {"image_size": self.image_size} if self.image_size else {}
            net = create_backbone(self.backbone, pretrained=self.pretrained, weights=self.weights, **kw)
            if self.image_size is None:
                self.image_size = net.preprocess.size
            self.device = self.device or default_device()
            self._net = FeatureEngine(net, device=self.device)
        return self._net

    def embed_images(self, images):
        import torch

        from ..models.features import images_to_tensor

        if not len(images):
            return np.zeros((0, 0), np.float32)
        arrs = [np.asarray(resize_center_crop(as_image(im, self.cache_size), self.cache_size), np.uint8)
                for im in images]
        with self._lock, torch.no_grad():
            run = self._model()
            x = images_to_tensor(np.stack(arrs), self.image_size, "center", run.backbone.preprocess)
            pooled = run(x)[1].numpy()
        return self._transform(pooled)

    @property
    def has_text(self) -> bool:
        """Whether this embedder's backbone has a text tower (open_clip CLIP or SigLIP)."""
        return self.backbone.startswith("open_clip:") and self._model().backbone.text_tower

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Text vectors in the paintings' space: the backbone's text tower, then the same transform as the
        pooled image vectors (centring, if the index was built with it, then L2 normalisation), so that a
        text ranks paintings by cosine.

        Raises
        ------
        TextSearchUnavailable
            The backbone has no text tower.
        """
        import torch

        if not self.backbone.startswith("open_clip:"):
            raise TextSearchUnavailable(
                f"this index embeds paintings with {self.backbone}, which has no text tower; text search needs an "
                "index built with an open_clip backbone, e.g. `artextract index --catalog C --backbone "
                "open_clip:ViT-B-32 --out I`")
        with self._lock, torch.no_grad():
            net = self._model().backbone
            if not net.text_tower:
                raise TextSearchUnavailable(f"{self.backbone} has no text tokenizer here (SigLIP's comes from the "
                                            "hub: fetch it with `artextract backbones --fetch`)")
            vec = net.encode_text(list(texts)).cpu().numpy()
        return self._transform(vec)


class TextSearchUnavailable(ArtExtractError, ValueError):
    """Text search was asked of an embedder without a text tower; the message says what would have one."""


class RunEmbedder(Embedder):
    """A trained run's embedding (``Run.embed_catalog`` / ``Run.embed_images``), loaded lazily."""

    kind = "run"

    def __init__(self, run_dir: str | os.PathLike, run=None):
        self.run_dir = str(Path(run_dir).resolve())
        self._run = run  # the run, when the caller loaded it already
        self._lock = threading.Lock()

    @property
    def run(self):
        if self._run is None:
            try:
                from ..training.inference import Run
            except ImportError as exc:
                raise RuntimeError(
                    f"--run needs artextract.training.inference.Run, which cannot be imported here ({exc}); "
                    "use --backbone NAME instead") from None
            self._run = Run.load(self.run_dir)
        return self._run

    def describe(self) -> str:
        return (f"trained run {self.run_dir} (pooled features + square-rooted class posteriors of every task, "
                "L2-normalised)")

    def to_meta(self) -> dict:
        return {"kind": self.kind, "run": self.run_dir}

    def prepare_features(self, catalog, *, job=None):
        self.run._feature_set(catalog, job=job)

    def embed_catalog(self, catalog, ids=None, *, job=None):
        sub = catalog
        if ids is not None:
            want = set(ids)
            sub = catalog.subset(catalog.df["id"].isin(want).to_numpy())
            sub.path = catalog.path  # so the prepared-image cache is found
        got, vecs = self.run.embed_catalog(sub, job=job)
        got = [str(k) for k in got]
        skipped = SkipReport("embed")
        have = set(got)
        for k in (sub.ids if ids is None else ids):
            if k not in have:
                skipped.add(k, "no embedding (image not prepared or failed)")
        return got, l2_normalize(vecs) if len(got) else np.zeros((0, 0), np.float32), skipped

    def embed_images(self, images):
        imgs = [as_image(im) for im in images]
        with self._lock:
            return l2_normalize(self.run.embed_images(imgs))


class PrecomputedEmbedder(Embedder):
    """Vectors made elsewhere (benchmarks, external models): no catalogue or image embedding."""

    kind = "vectors"

    def __init__(self, description: str = "precomputed vectors"):
        self.description = description

    def describe(self) -> str:
        return self.description

    def to_meta(self) -> dict:
        return {"kind": self.kind, "description": self.description}

    def embed_catalog(self, catalog, ids=None, *, job=None):
        raise RuntimeError(f"this index holds {self.description}; it cannot embed new paintings")

    def embed_images(self, images):
        raise RuntimeError(f"this index holds {self.description}; it cannot embed query images")


def embedder_from_meta(meta: dict, mean: np.ndarray | None = None) -> Embedder:
    kind = meta.get("kind")
    if kind == "backbone":
        return BackboneEmbedder(meta["backbone"], pretrained=meta.get("pretrained", True),
                                weights=meta.get("weights"), image_size=meta.get("image_size"),
                                cache_size=meta.get("cache_size", DEFAULT_SIZE), seed=meta.get("seed", 0),
                                center=meta.get("center", False), mean=mean)
    if kind == "run":
        return RunEmbedder(meta["run"])
    if kind == "vectors":
        return PrecomputedEmbedder(meta.get("description", "precomputed vectors"))
    raise ValueError(f"unknown embedding kind {kind!r}")

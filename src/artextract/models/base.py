"""What every backbone is: :class:`Backbone` (a feature extractor giving its last map, the pooled vector
and the style statistics), :class:`Preprocess` (its input size, interpolation, mean and std) and the
registry of named backbones that :func:`artextract.models.backbones.create_backbone` builds, and the
preprocessing of prepared images (:func:`images_to_tensor`).

A leaf of the models package: the CNN builders (:mod:`.backbones`) and the transformers (:mod:`.vit`)
both build on it, so :mod:`.vit` need not import :mod:`.backbones`, which imports it to build
``timm:`` and ``open_clip:`` backbones. :mod:`.backbones` re-exports every name here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """What a backbone expects of its input: square ``size`` px, resized with ``interpolation``, then
    normalised with ``mean`` and ``std`` (CLIP and SigLIP do not use ImageNet's)."""

    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"

    def to_dict(self) -> dict:
        return {"size": self.size, "mean": list(self.mean), "std": list(self.std),
                "interpolation": self.interpolation}


@dataclass
class BackboneInfo:
    name: str
    builder: Callable[..., "Backbone"]
    offline: bool
    description: str
    default_size: int = 224
    taps: tuple[str, ...] = ()


_REGISTRY: dict[str, BackboneInfo] = {}


def register(name: str, offline: bool, description: str, default_size: int = 224, taps: tuple[str, ...] = ()):
    """``taps``: names of the body's submodules (ends of the earlier stages) whose outputs give the
    style statistics, see :meth:`Backbone.forward_with_stats`."""
    def deco(fn):
        _REGISTRY[name] = BackboneInfo(name, fn, offline, description, default_size, tuple(taps))
        return fn
    return deco


def list_backbones() -> list[BackboneInfo]:
    """The registered backbones, in registration order.

    Returns
    -------
    list of BackboneInfo
    """
    return list(_REGISTRY.values())


class Backbone(nn.Module):
    """Wraps a feature extractor; ``forward`` returns the last spatial feature map.

    ``forward_with_stats`` also returns the *style statistics*: the per-channel mean and standard
    deviation of the outputs of a few earlier stages (``taps``, named in the registry). Mid-level
    channel statistics describe brushwork, texture and palette, what style and artist turn on (the
    idea of Gatys et al.'s Gram matrices, reduced to their diagonal); the last map alone is tuned
    to ImageNet objects.
    """

    kind = "cnn"

    def __init__(self, body: nn.Module, out_channels: int, default_size: int, name: str,
                 forward_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
                 pretrained: str | None = None, preprocess: Preprocess | None = None):
        super().__init__()
        self.body = body
        self.out_channels = out_channels
        self.default_size = default_size
        self.preprocess = preprocess or Preprocess(default_size)
        self.name = name
        self.pretrained = pretrained
        self._forward_fn = forward_fn
        self._captured: list[torch.Tensor] | None = None
        info = _REGISTRY.get(name)
        self.taps: tuple[str, ...] = info.taps if info else ()
        for tap in self.taps:
            body.get_submodule(tap).register_forward_hook(self._capture)

    def _capture(self, module, inputs, output) -> None:
        if self._captured is not None:
            self._captured.append(output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward_fn(self.body, x) if self._forward_fn else self.body(x)

    def forward_with_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The last feature map ``[B, C, h, w]`` and the style statistics ``[B, D]`` (``D = 0``
        for a backbone without taps): ``[mean, std]`` over positions of every tap's channels."""
        self._captured = []
        try:
            fmap = self.forward(x)
            outs = self._captured
        finally:
            self._captured = None
        if not outs:
            return fmap, fmap.new_zeros((fmap.shape[0], 0), dtype=torch.float32)
        return fmap, channel_stats(outs)

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The map ``[B, C, h, w]``, the pooled vector ``[B, P]`` (the map's mean for a CNN; the model's
        own pooling for a transformer) and the style statistics ``[B, D]``, in one pass."""
        fmap, stats = self.forward_with_stats(x)
        return fmap, fmap.float().mean(dim=(2, 3)), stats

    @property
    def text_tower(self) -> bool:
        """Whether :meth:`encode_text` puts text in the pooled vectors' space (open_clip models)."""
        return False

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        raise ValueError(f"{self.name} has no text tower: text search needs an open_clip backbone "
                         "(e.g. --backbone open_clip:ViT-B-32), whose text and image vectors share one space")


def channel_stats(outs: list[torch.Tensor]) -> torch.Tensor:
    """``[mean, std]`` over positions of every ``[B, C, h, w]`` map's channels, concatenated: ``[B, 2 sum C]``."""
    parts = []
    for o in outs:
        std, mean = torch.std_mean(o.float(), dim=(2, 3), correction=0)
        parts += [mean, std]
    return torch.cat(parts, dim=1)


def crop_box(cache_size: int) -> tuple[int, int]:
    """``(offset, side)`` of the centre 87.5 % of a ``cache_size`` prepared image."""
    c = int(round(cache_size * 0.875))
    return (cache_size - c) // 2, c


def images_to_tensor(batch_u8: np.ndarray, image_size: int, view: str = "center",
                     preprocess: Preprocess | None = None) -> torch.Tensor:
    """``[B, S, S, 3]`` uint8 prepared images -> normalised ``[B, 3, size, size]`` float tensor.

    Takes the centre 87.5 % (a 224 crop of a 256 cache, as torchvision's eval transform), resizes it to
    ``image_size`` if needed with the backbone's interpolation, and normalises it with the backbone's
    mean and std (``preprocess``; ImageNet's when not given)."""
    x = torch.from_numpy(np.ascontiguousarray(batch_u8)).permute(0, 3, 1, 2).float().div_(255.0)
    o, c = crop_box(x.shape[-1])
    x = x[:, :, o:o + c, o:o + c]
    if c != image_size:
        mode = "bicubic" if preprocess is not None and preprocess.interpolation == "bicubic" else "bilinear"
        x = F.interpolate(x, size=(image_size, image_size), mode=mode, align_corners=False, antialias=c > image_size)
        if mode == "bicubic":
            x = x.clamp_(0.0, 1.0)
    if view == "flip":
        x = x.flip(-1)
    return normalize(x, preprocess)


def normalize(x: torch.Tensor, preprocess: Preprocess | None = None) -> torch.Tensor:
    """Normalisation of a ``[..., 3, H, W]`` tensor with values in [0, 1]: the backbone's mean and std
    (``preprocess``), ImageNet's by default."""
    mean = torch.tensor(preprocess.mean if preprocess else IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(preprocess.std if preprocess else IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std

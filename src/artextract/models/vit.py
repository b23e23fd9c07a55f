"""Vision Transformer backbones: timm (ViT, DeiT, DINOv2, EVA, SigLIP, ...) and open_clip (CLIP, SigLIP).

A transformer's output is a sequence of tokens, not a map. :class:`TokenBackbone` makes it one:

- the **map** the CRNN reads is the patch tokens of the last block (after the model's final norm),
  reshaped to their ``[C, h, w]`` grid; the class and register tokens are set aside;
- the **pooled vector** is the model's own pooling: the class token, the average of the patch tokens or
  an attention pool, as its ``pretrained_cfg`` says, and for open_clip models the projected image
  embedding that shares one space with the text tower's;
- the **style statistics** are the per-channel mean and spread of the patch tokens of three
  intermediate blocks (at a quarter, half and three quarters of the depth), as the CNNs' taps give;
- the **preprocessing** (input size, interpolation, mean and std) is the model's pretrained one.

Both libraries expose ``forward_intermediates``, which returns the intermediate blocks' patch tokens as
``[B, C, h, w]`` maps in the same pass as the final output; that is what every forward here runs.

Weights: ``pretrained`` fetches them from the hub (raises :class:`WeightsUnavailable` offline, naming
the ways out); ``weights`` is a checkpoint file (safetensors or PyTorch, the library's own format) or a
Hugging Face hub cache folder copied from a connected machine.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch
from torch import nn

from ..errors import OptionError, WeightsUnavailable
from .base import Backbone, Preprocess, channel_stats

logger = logging.getLogger(__name__)

OFFLINE_HINT = ("On a machine with internet, fetch the weights into a folder with "
                "`artextract backbones --fetch {name} --to weights-cache`, copy that folder over, and "
                "pass `--weights weights-cache`; or pass `--weights FILE` (a .safetensors or .pth checkpoint); "
                "or `--pretrained none` for a random start")


def tap_indices(depth: int) -> list[int]:
    """The blocks whose patch tokens give the style statistics: a quarter, half and three quarters deep."""
    return sorted({max(0, min(depth - 2, round(depth * f) - 1)) for f in (0.25, 0.5, 0.75)})


class TokenBackbone(Backbone):
    """A transformer as a backbone (see the module docstring). ``body`` is a timm model or an open_clip
    visual tower; ``clip`` the whole open_clip model when it has a text tower."""

    kind = "vit"

    def __init__(self, body: nn.Module, name: str, *, depth: int, out_channels: int, preprocess: Preprocess,
                 pretrained: str | None, library: str, clip: nn.Module | None = None, tokenizer=None):
        super().__init__(body, out_channels, preprocess.size, name, pretrained=pretrained, preprocess=preprocess)
        self.library = library
        self.tap_blocks = tap_indices(depth) if depth >= 4 else []
        self.taps = tuple(f"blocks.{i}" for i in self.tap_blocks)
        self.depth = depth
        self.__dict__["clip"] = clip  # the text tower, outside the module tree (its visual tower is `body`)
        self._tokenizer = tokenizer

    # -------------------------------------------------------------- forward
    def _timm_pass(self, x: torch.Tensor):
        net = self.body
        final, inters = net.forward_intermediates(x, indices=self.tap_blocks or [self.depth - 1],
                                                  output_fmt="NCHW")
        pooled = net.forward_head(final, pre_logits=True)
        if final.ndim == 3:  # [B, tokens, C]: drop the prefix tokens, lay the patches on their grid
            npt = getattr(net, "num_prefix_tokens", 0)
            patches = final[:, npt:]
            h, w = _grid(net, x, patches.shape[1])
            fmap = patches.transpose(1, 2).reshape(x.shape[0], -1, h, w)
        elif getattr(net, "output_fmt", "NCHW") == "NHWC":
            fmap = final.permute(0, 3, 1, 2)
        else:
            fmap = final
        return fmap, pooled, (inters if self.tap_blocks else [])

    def _open_clip_pass(self, x: torch.Tensor):
        v = self.body
        out = v.forward_intermediates(x, indices=self.tap_blocks + [self.depth - 1])
        inters = out["image_intermediates"]
        last = inters[-1]  # [B, C, h, w], before the final norm
        norm = _final_norm(v)
        fmap = norm(last.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return fmap, out["image_features"], inters[:-1]

    def _pass(self, x: torch.Tensor):
        return self._timm_pass(x) if self.library == "timm" else self._open_clip_pass(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._pass(x)[0].contiguous()

    def forward_with_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap, _, inters = self._pass(x)
        stats = channel_stats(inters) if inters else fmap.new_zeros((fmap.shape[0], 0), dtype=torch.float32)
        return fmap.contiguous(), stats

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fmap, pooled, inters = self._pass(x)
        stats = channel_stats(inters) if inters else fmap.new_zeros((fmap.shape[0], 0), dtype=torch.float32)
        return fmap.contiguous(), pooled.float(), stats

    # -------------------------------------------------------------- text
    @property
    def text_tower(self) -> bool:
        return self.clip is not None and self._tokenizer is not None

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Text vectors ``[N, P]`` in the pooled vectors' space (not normalised, as the pooled vectors)."""
        if not self.text_tower:
            return super().encode_text(texts)
        dev = next(self.body.parameters()).device
        self.clip.to(dev).eval()
        return self.clip.encode_text(self._tokenizer(list(texts)).to(dev)).float()


def _grid(net: nn.Module, x: torch.Tensor, n: int) -> tuple[int, int]:
    pe = getattr(net, "patch_embed", None)
    ps = getattr(pe, "patch_size", None) if pe is not None else None
    if ps is not None:
        ph, pw = (ps, ps) if isinstance(ps, int) else ps
        h, w = x.shape[-2] // ph, x.shape[-1] // pw
        if h * w == n:
            return h, w
    s = int(round(n ** 0.5))
    if s * s != n:
        raise ValueError(f"cannot lay {n} patch tokens on a grid")
    return s, s


def _final_norm(visual: nn.Module) -> nn.Module:
    if hasattr(visual, "trunk"):  # open_clip's TimmModel
        return getattr(visual.trunk, "norm", None) or nn.Identity()
    if getattr(visual, "final_ln_after_pool", False):
        return nn.Identity()
    return getattr(visual, "ln_post", None) or nn.Identity()


@contextlib.contextmanager
def _hub_cache(folder: str | None, download: bool = True):
    """Resolve hub downloads from ``folder`` (a Hugging Face hub cache copied from a connected machine,
    or the folder ``backbones --fetch --to`` fills), and from the local cache alone when the hub cannot be
    reached (no waiting on retries), for the duration of the block. Without ``download`` (a random start,
    a checkpoint file) the hub is not asked at all."""
    import huggingface_hub.constants as hc
    old = hc.HF_HUB_OFFLINE
    if (folder and Path(folder).is_dir() and any(Path(folder).glob("models--*"))) or not download \
            or not hub_reachable():
        hc.HF_HUB_OFFLINE = True
    try:
        yield str(folder) if folder else None
    finally:
        hc.HF_HUB_OFFLINE = old


_REACHABLE: dict[str, bool] = {}


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub's host answers (``HF_ENDPOINT`` when set); asked once per process."""
    import os
    import socket
    from urllib.parse import urlparse
    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    if host not in _REACHABLE:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            _REACHABLE[host] = True
        except OSError:
            _REACHABLE[host] = False
    return _REACHABLE[host]


def fetch_weights(name: str, folder: str) -> Backbone:
    """Download a timm or open_clip model's pretrained weights into ``folder`` (a hub cache), for a
    machine without internet to use with ``--weights folder``."""
    if not hub_reachable():
        raise WeightsUnavailable("cannot reach the Hugging Face hub: `artextract backbones --fetch` downloads weights "
                                 "and needs internet; run it on a connected machine and copy the folder over")
    Path(folder).mkdir(parents=True, exist_ok=True)
    if name.startswith("timm:"):
        import timm
        timm.create_model(name[5:], pretrained=True, num_classes=0, cache_dir=folder)
    elif name.startswith("open_clip:"):
        from ..extras import require

        open_clip = require("clip", "open_clip", feature=f"the {name} backbone")
        model_name, _, tag = name[10:].partition("@")
        tag = tag or next(iter(open_clip.list_pretrained_tags_by_model(model_name)), "")
        open_clip.create_model(model_name, pretrained=tag, cache_dir=folder, require_pretrained=True)
        try:  # SigLIP's tokenizer comes from the hub too
            from huggingface_hub import snapshot_download  # noqa: F401
            open_clip.get_tokenizer(model_name, cache_dir=folder)
        except Exception:  # noqa: BLE001
            pass
    else:
        raise OptionError("--fetch takes a timm:<model> or open_clip:<model>[@tag] backbone; the registered "
                          "backbones ship their weights in packages")
    return create_backbone_from(name, folder)


def create_backbone_from(name: str, folder: str) -> Backbone:
    build = create_timm if name.startswith("timm:") else create_open_clip
    return build(name.split(":", 1)[1], pretrained=True, weights=folder)


def _model_depth(net: nn.Module) -> int:
    for attr in ("blocks", "layers", "stages"):
        b = getattr(net, attr, None)
        if b is not None:
            try:
                return len(b)
            except TypeError:
                pass
    return 0


def create_timm(model_name: str, *, pretrained: bool = True, weights: str | None = None,
                image_size: int | None = None) -> Backbone:
    """A timm model as a backbone: a transformer (or any model with ``forward_intermediates``) as a
    :class:`TokenBackbone`, others through ``forward_features``.

    Parameters
    ----------
    model_name : str
        A timm model name, optionally with its pretrained tag (``vit_base_patch16_clip_224.openai``).
    pretrained : bool
        The hub's weights (raises :class:`WeightsUnavailable` when they cannot be had).
    weights : str, optional
        A checkpoint file (timm's format, or the original one that timm's filter converts), or a hub
        cache folder.
    image_size : int, optional
        Input size; a ViT's position embedding is resampled to it.
    """
    import timm
    folder = weights if weights and Path(weights).is_dir() else None
    kw: dict = {"num_classes": 0}
    if image_size:
        kw["img_size"] = image_size
    if weights and not folder:
        if not Path(weights).is_file():
            raise WeightsUnavailable(f"weights file {weights} does not exist")
        kw["pretrained_cfg_overlay"] = {"file": str(Path(weights).resolve())}
    use_hub = bool(pretrained or weights)
    try:
        with _hub_cache(folder, download=bool(pretrained and not weights)) as cache_dir:
            try:
                net = timm.create_model(model_name, pretrained=use_hub, cache_dir=cache_dir, **kw)
            except TypeError as exc:
                if "img_size" not in str(exc):
                    raise
                kw.pop("img_size")
                net = timm.create_model(model_name, pretrained=use_hub, cache_dir=cache_dir, **kw)
    except RuntimeError as exc:
        if "Unknown model" in str(exc) or "unknown model" in str(exc).lower():
            raise WeightsUnavailable(f"timm has no model {model_name!r} (see timm.list_models('pattern*'))") from None
        raise _offline(f"timm:{model_name}", exc) from None
    except (OSError, ValueError, ImportError) as exc:
        raise _offline(f"timm:{model_name}", exc) from None
    except Exception as exc:  # noqa: BLE001  (the hub client's own errors: no network, missing file)
        if type(exc).__module__.startswith(("huggingface_hub", "requests", "urllib3", "httpx")):
            raise _offline(f"timm:{model_name}", exc) from None
        raise
    cfg = getattr(net, "pretrained_cfg", {}) or {}
    size = image_size or int(cfg.get("input_size", (3, 224, 224))[-1])
    pre = Preprocess(size, tuple(cfg.get("mean", Preprocess.mean)), tuple(cfg.get("std", Preprocess.std)),
                     cfg.get("interpolation", "bicubic") or "bicubic")
    source = (f"file {weights}" if weights else "timm hub") if use_hub else None
    name = f"timm:{model_name}"
    if hasattr(net, "forward_intermediates"):
        return TokenBackbone(net, name, depth=_model_depth(net), out_channels=net.num_features, preprocess=pre,
                             pretrained=source, library="timm")
    return Backbone(net, net.num_features, size, name, forward_fn=lambda body, x: body.forward_features(x),
                    pretrained=source, preprocess=pre)


def _offline(name: str, exc: BaseException) -> WeightsUnavailable:
    return WeightsUnavailable(f"cannot get the weights of {name} ({type(exc).__name__}: {str(exc)[:160]}). "
                              + OFFLINE_HINT.format(name=name))


def create_open_clip(spec: str, *, pretrained: bool = True, weights: str | None = None,
                     image_size: int | None = None) -> Backbone:
    """An open_clip model as a backbone with its text tower: ``spec`` is ``MODEL`` or ``MODEL@TAG``
    (``ViT-B-32@laion2b_s34b_b79k``; without a tag, the first of ``open_clip.list_pretrained_tags_by_model``).

    The pooled vector is the projected image embedding, the space :meth:`TokenBackbone.encode_text`
    puts text in.
    """
    from ..extras import require

    open_clip = require("clip", "open_clip", feature=f"the open_clip:{spec} backbone")
    model_name, _, tag = spec.partition("@")
    if model_name not in open_clip.list_models():
        raise WeightsUnavailable(f"open_clip has no model {model_name!r} (see open_clip.list_models())")
    folder = weights if weights and Path(weights).is_dir() else None
    kw: dict = {}
    if image_size:
        kw["force_image_size"] = image_size
    source = None
    try:
        with _hub_cache(folder, download=bool(pretrained and not weights)) as cache_dir:
            if weights and not folder:
                if not Path(weights).is_file():
                    raise WeightsUnavailable(f"weights file {weights} does not exist")
                model = open_clip.create_model(model_name, pretrained=str(Path(weights).resolve()), **kw)
                source = f"file {weights}"
            elif pretrained or folder:
                tag = tag or next(iter(open_clip.list_pretrained_tags_by_model(model_name)), "")
                if not tag:
                    raise WeightsUnavailable(f"open_clip lists no pretrained weights for {model_name}; "
                                             "pass --weights FILE or --pretrained none")
                model = open_clip.create_model(model_name, pretrained=tag, cache_dir=cache_dir,
                                               require_pretrained=True, **kw)
                source = f"open_clip {tag}"
            else:
                model = open_clip.create_model(model_name, pretrained=None, **kw)
    except WeightsUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001  (the hub client's errors, a failed download, a missing file)
        raise _offline(f"open_clip:{spec}", exc) from None
    model.eval()
    v = model.visual
    pcfg = dict(getattr(v, "preprocess_cfg", {}) or {})
    # the normalisation of the weights' tag (the default tag's for a random start: what the model is made for)
    ptag = tag or next(iter(open_clip.list_pretrained_tags_by_model(model_name)), "")
    if ptag and not (weights and not folder):
        tcfg = open_clip.get_pretrained_cfg(model_name, ptag) or {}
        pcfg.update({k: tcfg[k] for k in ("mean", "std", "interpolation") if tcfg.get(k)})
    size = image_size or int(_first(pcfg.get("size", getattr(v, "image_size", 224))))
    pre = Preprocess(size, tuple(pcfg.get("mean", v.image_mean if hasattr(v, "image_mean") else Preprocess.mean)),
                     tuple(pcfg.get("std", v.image_std if hasattr(v, "image_std") else Preprocess.std)),
                     pcfg.get("interpolation", "bicubic") or "bicubic")
    if hasattr(v, "trunk"):
        depth, width = _model_depth(v.trunk), v.trunk.num_features
    else:
        depth, width = len(v.transformer.resblocks), v.transformer.width
    try:
        tokenizer = open_clip.get_tokenizer(model_name)
    except Exception as exc:  # noqa: BLE001  (SigLIP's tokenizer comes from the hub)
        logger.warning("open_clip:%s: no text tokenizer offline (%s); text search is unavailable", spec,
                       str(exc)[:120])
        tokenizer = None
    return TokenBackbone(v, f"open_clip:{spec}", depth=depth, out_channels=width, preprocess=pre,
                         pretrained=source, library="open_clip", clip=model, tokenizer=tokenizer)


def _first(v):
    return v[0] if isinstance(v, (tuple, list)) else v

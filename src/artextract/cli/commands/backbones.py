"""``artextract backbones``: list the available backbones, and fetch a hub model's weights for a
machine without internet."""
from __future__ import annotations

import json
import logging

from ..base import UserError, add_command

logger = logging.getLogger(__name__)


def _cmd_backbones(args) -> int:
    from ...models.backbones import list_backbones
    if args.fetch:
        return _fetch_backbone(args.fetch, args.to)
    if args.to:
        raise UserError("--to goes with --fetch NAME")
    for b in list_backbones():
        print(f"{b.name:<20} {'offline' if b.offline else 'download'}  {b.description}")
    print(f"{'timm:<name>':<20} download  any timm model: ViT, DINOv2, EVA, SigLIP, ConvNeXt, ... (timm's hub "
          "weights, a checkpoint file or a hub cache folder with --weights)")
    print(f"{'open_clip:<m>[@tag]':<20} download  an open_clip model with its text tower: CLIP, SigLIP "
          "(text search; the clip extra); e.g. open_clip:ViT-B-32@laion2b_s34b_b79k")
    return 0


def _fetch_backbone(name: str, folder: str | None) -> int:
    """``backbones --fetch NAME --to DIR``: download a timm/open_clip model's weights into DIR, for a machine
    without internet to use with ``--weights DIR``."""
    from ...models.vit import fetch_weights

    if not folder:
        raise UserError("--fetch NAME needs --to DIR, the folder to copy to the machine without internet")
    net = fetch_weights(name, folder)
    logger.info("fetched %s into %s; on the machine without internet pass --backbone %s --weights %s",
                name, folder, name, folder)
    print(json.dumps({"backbone": name, "folder": str(folder), "image_size": net.preprocess.size}))
    return 0


def register(sub) -> None:
    """Add ``backbones`` to ``sub``, the ``artextract`` sub-commands."""
    p = add_command(sub, "backbones", "list the available backbones (and fetch weights for offline machines)",
                    "artextract backbones --fetch open_clip:ViT-B-32 --to weights-cache")
    p.add_argument("--fetch", metavar="NAME", default=None,
                   help="download the pretrained weights of a timm:<model> or open_clip:<model>[@tag] backbone "
                        "(needs internet), e.g. --fetch timm:vit_small_patch14_reg4_dinov2.lvd142m")
    p.add_argument("--to", metavar="DIR", default=None,
                   help="with --fetch: the folder to download into (a hub cache), e.g. --to weights-cache; copy it "
                        "to the machine without internet and pass --weights DIR there")
    p.set_defaults(func=_cmd_backbones)

"""``artextract predict``: a trained run's top-k labels per task for images or folders of images
(:func:`artextract.training.predict.predict_files`)."""
from __future__ import annotations

import json
import logging

from ..base import UserError, add_command
from ..options import add_json_option

logger = logging.getLogger(__name__)

DEFAULT_TOP_K = 3


def _cmd_predict(args) -> int:
    from ...artefacts import Run
    from ...training.predict import image_files, predict_files

    run = Run(args.run).load()
    files = image_files(args.images)
    if not files:
        raise UserError("no images found in " + ", ".join(args.images))
    found = predict_files(run, files, top_k=args.top_k, explain_dir=args.explain)
    if args.json:
        print(json.dumps({"results": found.results, "errors": found.errors}, indent=2))
    else:
        for r in found.results:
            print(r["image"])
            for t, v in r["predictions"].items():
                print(f"  {t:<10} " + ", ".join(f"{x['label']} {x['prob']:.2f}" for x in v))
        for e in found.errors:
            logger.warning(f"{e['image']}: skipped: {e['error']}")
    if found.explained:
        logger.info(f"wrote {len(found.explained)} explanation(s) to {args.explain}")
    return 1 if found.errors and not found.results else 0


def register(sub) -> None:
    """Add ``predict`` to ``sub``, the ``artextract`` sub-commands."""
    p = add_command(sub, "predict", "top-k labels per task for images or folders of images",
                    "artextract predict --run runs/wikiart painting.jpg more_paintings/ --top-k 3")
    p.add_argument("--run", required=True, help="trained run folder (from `artextract train`)")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR",
                   help="image files, or folders searched recursively for images")
    p.add_argument("--top-k", type=int, default=DEFAULT_TOP_K,
                   help=f"labels shown per task, most probable first (default {DEFAULT_TOP_K})")
    add_json_option(p, "the predictions and the unreadable files")
    p.add_argument("--explain", metavar="DIR", default=None,
                   help="also write, per image and task, DIR/<name>.<task>.png: the image with a heat map of "
                   "where the model looked for its top label (attention weights or Grad-CAM, as the legend says)")
    p.set_defaults(func=_cmd_predict)

"""``artextract predict``: a trained run's top-k labels per task for images or folders of images."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from ..base import UserError, add_command
from ..options import add_json_option

logger = logging.getLogger(__name__)

PREDICT_BATCH = 32   # images decoded and classified together by `predict`
DEFAULT_TOP_K = 3


def _expand(inputs: list[str]) -> list[Path]:
    from ...data.images import IMAGE_EXTS

    files: list[Path] = []
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            files += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_EXTS)
        else:
            files.append(p)  # a missing or unreadable file is reported by the loader
    return files


def _cmd_predict(args) -> int:
    from ...data.images import ImageLoadError, load_image
    from ...training.inference import Run

    run = Run.load(args.run)
    files = _expand(args.images)
    if not files:
        raise UserError("no images found in " + ", ".join(args.images))
    results, errors, explained = [], [], []
    batch: list = []
    names: list[Path] = []

    def flush():
        if batch:
            for f, r in zip(names, run.predict_images(batch, top_k=args.top_k)):
                results.append({"image": str(f), "predictions": {t: [{"label": lab, "prob": round(p, 4)} for lab, p in v]
                                                                 for t, v in r.items()}})
            if args.explain:
                from ...training.explain import write_explanations

                explained.extend(write_explanations(run, batch, names, args.explain))
            batch.clear()
            names.clear()

    for f in files:
        try:
            batch.append(load_image(f))
            names.append(f)
        except ImageLoadError as exc:
            errors.append({"image": str(f), "error": exc.reason})
        if len(batch) >= PREDICT_BATCH:
            flush()
    flush()
    if args.json:
        print(json.dumps({"results": results, "errors": errors}, indent=2))
    else:
        for r in results:
            print(r["image"])
            for t, v in r["predictions"].items():
                print(f"  {t:<10} " + ", ".join(f"{x['label']} {x['prob']:.2f}" for x in v))
        for e in errors:
            logger.warning(f"{e['image']}: skipped: {e['error']}")
    if explained:
        logger.info(f"wrote {len(explained)} explanation(s) to {args.explain}")
    return 1 if errors and not results else 0


def register(sub) -> None:
    """Add ``predict``.

    Parameters
    ----------
    sub : argparse subparsers action

    Returns
    -------
    None
    """
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

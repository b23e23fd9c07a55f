"""Sub-commands: train, evaluate, predict, backbones."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

from .. import workspace
from ..cli_base import UserError, add_command
from ..cli_options import (add_backbone_options, add_cache_option, add_json_option, add_progress_option,
                           add_seed_option, pretrained)

logger = logging.getLogger(__name__)

PREDICT_BATCH = 32   # images decoded and classified together by `predict`
DEFAULT_TOP_K = 3


# fields whose flags are the shared options of cli_options (the rest come from TrainConfig's fields)
_SHARED = ("backbone", "pretrained", "weights", "seed", "progress")


def _train_values(args) -> dict:
    """The TrainConfig fields given on the command line (the others are absent from ``args``)."""
    from .config import TRAIN_FIELDS

    given = {k: v for k, v in vars(args).items() if k in TRAIN_FIELDS and k not in ("pretrained", "progress")}
    if "pretrained" in vars(args):
        given["pretrained"] = pretrained(args)
    if "no_progress" in vars(args):
        given["progress"] = not args.no_progress
    return given


def _cmd_train(args) -> int:
    from .config import TrainConfig
    from .train import train

    values = TrainConfig.read_file(args.config) if args.config else {}
    values.update(_train_values(args))  # flags given on the command line override the file
    missing = [k for k in ("catalog", "out") if not values.get(k)]
    if missing:
        raise UserError("give " + " and ".join(f"--{k}" for k in missing)
                        + (f" (or put {' and '.join(missing)} in {args.config})" if args.config else ""))
    cfg = TrainConfig(**values)
    train(cfg, resume=args.resume)
    return 0


def _cmd_evaluate(args) -> int:
    from ..data.catalog import Catalog
    from .evaluate import evaluate, format_metrics
    from .inference import Run

    run = Run.load(args.run)
    metrics = evaluate(run, Catalog.load(args.catalog, cache_dir=args.cache), args.split, args.out)
    out_dir = Path(args.out) if args.out else workspace.eval_dir(run.path, args.split)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(format_metrics(metrics))
        logger.info(f"metrics, confusion matrices and per-class tables in {out_dir}")
    return 0


def _expand(inputs: list[str]) -> list[Path]:
    from ..data.images import IMAGE_EXTS

    files: list[Path] = []
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            files += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_EXTS)
        else:
            files.append(p)  # a missing or unreadable file is reported by the loader
    return files


def _cmd_predict(args) -> int:
    from ..data.images import ImageLoadError, load_image
    from .inference import Run

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
                from .explain import write_explanations

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


def _cmd_backbones(args) -> int:
    from ..models.backbones import list_backbones
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
    from ..models.vit import fetch_weights

    if not folder:
        raise UserError("--fetch NAME needs --to DIR, the folder to copy to the machine without internet")
    try:
        net = fetch_weights(name, folder)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    logger.info("fetched %s into %s; on the machine without internet pass --backbone %s --weights %s",
                name, folder, name, folder)
    print(json.dumps({"backbone": name, "folder": str(folder), "image_size": net.preprocess.size}))
    return 0


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_train_config_options(p) -> None:
    """One flag per :class:`TrainConfig` field, with the field's help and default.

    ``--backbone``/``--pretrained``/``--weights``, ``--seed`` and ``--no-progress`` are the shared
    options of :mod:`artextract.cli_options`. A bool field that is on by default gets ``--no-NAME``
    (or its ``metadata["flag"]``), one off by default ``--NAME``. Every flag's default is
    ``argparse.SUPPRESS``: a flag not given leaves the field to ``--config`` or to the dataclass.

    Parameters
    ----------
    p : argparse.ArgumentParser
        The ``train`` parser.

    Returns
    -------
    None
    """
    from .config import TRAIN_FIELDS, base_type, coerce, field_types

    types = field_types()
    add_backbone_options(p)
    add_seed_option(p, help=TRAIN_FIELDS["seed"].metadata["help"] + f" (default {TRAIN_FIELDS['seed'].default})")
    add_progress_option(p)
    for name, f in TRAIN_FIELDS.items():
        if name in _SHARED:
            continue
        meta, default = f.metadata, f.default
        t, _ = base_type(types[name])
        if t is bool:
            if default:
                p.add_argument(meta.get("flag", "--no-" + name.replace("_", "-")), dest=name,
                               action="store_false", help=meta["help"])
            else:
                p.add_argument(meta.get("flag", _flag(name)), dest=name, action="store_true", help=meta["help"])
            continue
        shown = "" if default is dataclasses.MISSING or default is None else f" (default {default})"
        kw = dict(dest=name, help=meta["help"] + shown, metavar=name.upper() if t is not str or not meta.get("choices")
                  else None)
        if meta.get("choices"):
            kw["choices"] = meta["choices"]
            kw.pop("metavar")
        if t is list:
            kw["type"] = lambda s, n=name: coerce(n, s, source="--" + n)
        elif t in (int, float):
            kw["type"] = t
        p.add_argument(_flag(name), **kw)
    for action in p._actions:  # argparse has no public way to list a parser's options
        if action.dest in TRAIN_FIELDS or action.dest == "no_progress":
            action.default = argparse.SUPPRESS


def register(sub) -> None:
    """Add ``train``, ``evaluate``, ``predict`` and ``backbones``.

    Parameters
    ----------
    sub : argparse subparsers action

    Returns
    -------
    None
    """
    p = add_command(sub, "train", "train the multi-task CRNN on a catalogue",
                    "artextract train --catalog wikiart.parquet --tasks artist,genre,style --out runs/wikiart",
                    description="Masked multi-task training: each painting trains every head it has a label for "
                    "and no other. Default recipe: frozen backbone, feature maps computed once from the prepared "
                    "cache, the recurrent head trained on them (seconds per epoch on a CPU). --finetune then "
                    "trains end to end (for a GPU). Checkpoints every epoch; --resume continues after a kill. "
                    "Works under torchrun (DistributedDataParallel). The run folder keeps the resolved "
                    "settings as args.yaml, which --config reads back.")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="YAML or TOML file of these settings (the keys are the flags' names with _); flags "
                   "given here override it. A run folder's args.yaml is such a file")
    add_train_config_options(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --out after an interruption")
    p.set_defaults(func=_cmd_train)

    p = add_command(sub, "evaluate", "per-task metrics, confusion matrices and per-class tables",
                    "artextract evaluate --run runs/wikiart --catalog wikiart.parquet --split val --json")
    p.add_argument("--run", required=True, help="trained run folder (from `artextract train`)")
    p.add_argument("--catalog", required=True, help="catalogue whose SPLIT rows are evaluated")
    p.add_argument("--split", default="val", help="split to evaluate: train, val or test (default val)")
    p.add_argument("--out", default=None, help="output folder (default RUN/eval-SPLIT)")
    add_cache_option(p)
    add_json_option(p, "the metrics")
    p.set_defaults(func=_cmd_evaluate)

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

    p = add_command(sub, "backbones", "list the available backbones (and fetch weights for offline machines)",
                    "artextract backbones --fetch open_clip:ViT-B-32 --to weights-cache")
    p.add_argument("--fetch", metavar="NAME", default=None,
                   help="download the pretrained weights of a timm:<model> or open_clip:<model>[@tag] backbone "
                        "(needs internet), e.g. --fetch timm:vit_small_patch14_reg4_dinov2.lvd142m")
    p.add_argument("--to", metavar="DIR", default=None,
                   help="with --fetch: the folder to download into (a hub cache), e.g. --to weights-cache; copy it "
                        "to the machine without internet and pass --weights DIR there")
    p.set_defaults(func=_cmd_backbones)

"""Sub-commands: train, evaluate, predict, backbones."""
from __future__ import annotations

import json
from pathlib import Path

from ..cli import UserError, add_command

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif"}


def _cmd_train(args) -> int:
    from ..models.backbones import WeightsUnavailable
    from .train import TrainConfig, train

    cfg = TrainConfig(
        catalog=args.catalog, out=args.out, tasks=args.tasks.split(",") if args.tasks else None,
        backbone=args.backbone, pretrained=args.pretrained != "none", weights=args.weights,
        image_size=args.image_size, cache_size=args.cache_size, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, proj=args.proj, hidden=args.hidden, pool=args.pool, use_lstm=not args.no_lstm, class_weighting=args.class_weighting,
        label_smoothing=args.label_smoothing, ordinal_weight=args.ordinal_weight, patience=args.patience, select_by=args.select_by,
        holdout_fraction=args.holdout_fraction, seed=args.seed, require_all_labels=args.require_all_labels,
        finetune=args.finetune, finetune_epochs=args.finetune_epochs, finetune_lr=args.finetune_lr,
        linear_path=not args.no_linear_path, style_stats=not args.no_style_stats, refit=not args.no_refit,
        ema=args.ema, mixup=args.mixup, progress=not args.no_progress,
    )
    try:
        train(cfg, resume=args.resume)
    except WeightsUnavailable as exc:
        raise UserError(str(exc)) from None
    return 0


def _cmd_evaluate(args) -> int:
    from ..data.catalog import Catalog
    from .evaluate import evaluate, format_metrics
    from .inference import Run

    run = Run.load(args.run)
    metrics = evaluate(run, Catalog.load(args.catalog), args.split, args.out)
    out_dir = Path(args.out) if args.out else run.path / f"eval-{args.split}"
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(format_metrics(metrics))
        print(f"metrics, confusion matrices and per-class tables in {out_dir}")
    return 0


def _expand(inputs: list[str]) -> list[Path]:
    files: list[Path] = []
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            files += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_EXTS)
        else:
            files.append(p)
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
                from ..web.explain import write_explanations

                explained.extend(write_explanations(run, batch, names, args.explain))
            batch.clear()
            names.clear()

    for f in files:
        try:
            batch.append(load_image(f))
            names.append(f)
        except ImageLoadError as exc:
            errors.append({"image": str(f), "error": exc.reason})
        if len(batch) >= 32:
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
            print(f"{e['image']}: skipped: {e['error']}")
    if explained:
        import sys

        print(f"wrote {len(explained)} explanation(s) to {args.explain}", file=sys.stderr)
    return 1 if errors and not results else 0


def _cmd_backbones(args) -> int:
    from ..models.backbones import list_backbones
    for b in list_backbones():
        print(f"{b.name:<20} {'offline' if b.offline else 'download'}  {b.description}")
    print(f"{'timm:<name>':<20} download  any timm model (timm's hub weights)")
    return 0


def register(sub) -> None:
    p = add_command(sub, "train", "train the multi-task CRNN on a catalogue",
                    "artextract train --catalog wikiart.parquet --tasks artist,genre,style --out runs/wikiart",
                    description="Masked multi-task training: each painting trains every head it has a label for "
                    "and no other. Default recipe: frozen backbone, feature maps computed once from the prepared "
                    "cache, the recurrent head trained on them (seconds per epoch on a CPU). --finetune then "
                    "trains end to end (for a GPU). Checkpoints every epoch; --resume continues after a kill. "
                    "Works under torchrun (DistributedDataParallel).")
    p.add_argument("--catalog", required=True)
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--tasks", default=None, help="comma-separated tasks (default: every task of the catalogue)")
    p.add_argument("--backbone", default="mobilenet_v2", help="see `artextract backbones` (default mobilenet_v2)")
    p.add_argument("--pretrained", choices=["imagenet", "none"], default="imagenet")
    p.add_argument("--weights", default=None, help="backbone weights file (.pth or .safetensors)")
    p.add_argument("--image-size", type=int, default=None, help="backbone input size (default: the backbone's)")
    p.add_argument("--cache-size", type=int, default=256, help="prepared-image cache size (default 256)")
    from .config import SELECT_BY, TrainConfig

    d = TrainConfig("", "")  # one source of truth for the defaults
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--proj", type=int, default=d.proj, help="channels the feature map is projected to")
    p.add_argument("--hidden", type=int, default=d.hidden, help="LSTM hidden size per direction")
    p.add_argument("--pool", choices=["attention", "mean"], default="attention")
    p.add_argument("--no-lstm", action="store_true", help="ablation: pool the projected map without the LSTM")
    p.add_argument("--no-linear-path", action="store_true",
                   help="ablation: only the recurrent path (by default a linear path on the standardised global "
                   "feature is trained beside it as a classifier of its own, and their logits are averaged)")
    p.add_argument("--no-style-stats", action="store_true",
                   help="ablation: the linear path reads the last map's average only (by default it also reads "
                   "the mean and spread of earlier stages' channels, texture and palette cues)")
    p.add_argument("--ema", type=float, default=d.ema, help="EMA decay per step of the kept weights (0: off)")
    p.add_argument("--mixup", type=float, default=d.mixup, help="feature-map mixup alpha (0: off)")
    p.add_argument("--class-weighting", choices=["none", "sqrt", "balanced"], default=d.class_weighting)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--ordinal-weight", type=float, default=d.ordinal_weight,
                   help="EMD loss weight for ordered tasks (0: off)")
    p.add_argument("--select-by", choices=list(SELECT_BY), default=d.select_by,
                   help="what chooses the best epoch and stops early: the validation log loss (default; smooth) "
                   "or the tasks' mean validation macro-F1 (noisy on a small validation set)")
    p.add_argument("--patience", type=int, default=d.patience,
                   help="stop after this many epochs without a better validation score (--select-by)")
    p.add_argument("--holdout-fraction", type=float, default=d.holdout_fraction,
                   help="validation share held out of train when the catalogue has no val rows")
    p.add_argument("--no-refit", action="store_true",
                   help="keep the first pass: by default, after the held-out rows chose the epoch, the head is "
                   "trained again on every row for that many epochs (not done with the catalogue's own val split)")
    p.add_argument("--require-all-labels", action="store_true",
                   help="the original study's recipe: train only on paintings that have every task's label")
    p.add_argument("--finetune", action="store_true", help="then unfreeze the backbone and train end to end")
    p.add_argument("--finetune-epochs", type=int, default=5)
    p.add_argument("--finetune-lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the run in --out after an interruption")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_train)

    p = add_command(sub, "evaluate", "per-task metrics, confusion matrices and per-class tables",
                    "artextract evaluate --run runs/wikiart --catalog wikiart.parquet --split val --json")
    p.add_argument("--run", required=True)
    p.add_argument("--catalog", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--out", default=None, help="output folder (default RUN/eval-SPLIT)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_evaluate)

    p = add_command(sub, "predict", "top-k labels per task for images or folders of images",
                    "artextract predict --run runs/wikiart painting.jpg more_paintings/ --top-k 3")
    p.add_argument("--run", required=True)
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.add_argument("--explain", metavar="DIR", default=None,
                   help="also write, per image and task, DIR/<name>.<task>.png: the image with a heat map of "
                   "where the model looked for its top label (attention weights or Grad-CAM, as the legend says)")
    p.set_defaults(func=_cmd_predict)

    p = add_command(sub, "backbones", "list the available backbones", "artextract backbones")
    p.set_defaults(func=_cmd_backbones)

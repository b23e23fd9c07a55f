"""Masked multi-task training of the CRNN, a plain reproducible recipe.

Stage 1 (default, fast on a CPU): the backbone is frozen; its feature maps are computed once from
the prepared-image cache (centre crop and its mirror image) and stored; the recurrent head trains
on them in seconds per epoch (the linear path also reads the stored style statistics). When the
held-out part of the training rows chose the epoch (no val split in the catalogue), ``refit=True``
then trains the head again from the same start on every row for that many epochs. Stage 2
(``finetune=True``, for a GPU): the whole network trains end to end on augmented crops from the
cache, with mixed precision and channels_last on CUDA.

Every epoch writes a checkpoint (safetensors weights + JSON config with the class lists + the
optimiser state); ``resume=True`` continues after a kill -9, losing at most one epoch. Each
epoch's randomness is seeded from (seed, epoch), so a resumed run matches an uninterrupted one.
Under ``torchrun`` the same code trains with DistributedDataParallel (gloo on CPU, NCCL on GPU).
"""
from __future__ import annotations

import logging
import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .. import workspace
from ..data.cache import default_cache_dir, ensure_prepared
from ..data.catalog import Catalog, CatalogError
from ..errors import RunError
from ..job import Job, resolve
from ..data.tabular import stratified_split
from ..models.backbones import create_backbone
from ..models.crnn import CRNNHead, MultiTaskCRNN, masked_multitask_loss
from ..models.features import default_device, extract_features, images_to_tensor, normalize
from ..utils import atomic_path
from .config import SELECT_BY, TrainConfig
from .data import StoredMaps, epoch_order, epoch_seed, eval_loader, train_loader
from .metrics import task_metrics

logger = logging.getLogger(__name__)

CONFIG = workspace.RUN_CONFIG
MODEL = workspace.RUN_MODEL      # best weights so far
LAST = workspace.RUN_LAST        # weights at the end of the last finished epoch
STATE = workspace.RUN_STATE      # optimiser, scheduler, epoch, history: what --resume needs


# ---------------------------------------------------------------------- data selection
def select_rows(cat: Catalog, tasks: list[str], cfg: TrainConfig) -> tuple[list[str], list[str], str]:
    """Training and validation ids, and a sentence saying how validation was chosen."""
    df = cat.df
    labelled = df[tasks].notna()
    has_any = labelled.any(axis=1) if not cfg.require_all_labels else labelled.all(axis=1)
    train_mask = (df["split"] == "train") & has_any
    val_mask = (df["split"] == "val") & has_any
    if val_mask.any():
        how = f"the catalogue's val split ({int(val_mask.sum())} paintings)"
        return df.loc[train_mask, "id"].tolist(), df.loc[val_mask, "id"].tolist(), how
    sub = df.loc[train_mask]
    strat_task = max(tasks, key=lambda t: sub[t].notna().sum())
    split = stratified_split(sub[strat_task].reset_index(drop=True), cfg.holdout_fraction, cfg.seed)
    ids = sub["id"].to_numpy()
    how = (f"no validation rows in the catalogue: held out a seeded ({cfg.seed}), stratified "
           f"({strat_task}) {cfg.holdout_fraction:.0%} of the training rows ({int((split == 'val').sum())} paintings)")
    return ids[split == "train"].tolist(), ids[split == "val"].tolist(), how


def targets_for(cat: Catalog, ids: list[str], tasks: list[str]) -> dict[str, torch.Tensor]:
    pos = {k: i for i, k in enumerate(cat.df["id"])}
    rows = np.array([pos[k] for k in ids], dtype=np.int64)
    return {t: torch.from_numpy(cat.label_indices(t)[rows]) for t in tasks}


def class_weights_for(y: dict[str, torch.Tensor], num_classes: dict[str, int], mode: str) -> dict[str, torch.Tensor] | None:
    if mode == "none":
        return None
    out = {}
    for t, yt in y.items():
        counts = torch.bincount(yt[yt >= 0], minlength=num_classes[t]).float()
        w = counts.sum() / (num_classes[t] * counts.clamp(min=1))
        w = w.sqrt() if mode == "sqrt" else w
        w[counts == 0] = 0.0
        out[t] = w / w[counts > 0].mean()
    return out


# ---------------------------------------------------------------------- checkpoints
def _atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path, meta: dict | None = None) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={k: json.dumps(v) for k, v in (meta or {}).items()})


def _atomic_torch_save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _evaluate_head(head: CRNNHead, ds: StoredMaps, ordered: dict[str, bool], device,
                   batch: int = 256) -> tuple[dict, dict[str, np.ndarray]]:
    """Metrics and class probabilities of ``head`` on every painting of ``ds`` (centre view, streamed)."""
    head.eval()
    probs: dict[str, list] = {t: [] for t in ds.targets}
    with torch.no_grad():
        for b in eval_loader(ds, batch):
            sb = b["s"].to(device) if b["s"] is not None else None
            out = head(b["x"].to(device), sb)
            for t in probs:
                probs[t].append(torch.softmax(out[t].float(), 1).cpu().numpy())
    P = {t: np.concatenate(v) if v else np.zeros((0, head.heads[t].out_features)) for t, v in probs.items()}
    return {t: task_metrics(P[t], ds.targets[t].numpy(), ordered[t]) for t in probs}, P


def _macro_f1(metrics: dict) -> float:
    vals = [m["macro_f1"] for m in metrics.values() if m.get("macro_f1") is not None]
    return float(np.mean(vals)) if vals else 0.0


def _val_loss(P: dict[str, np.ndarray], y: dict[str, torch.Tensor]) -> float | None:
    """Mean over tasks of the validation log loss (rows with that task's label)."""
    vals = []
    for t, p in P.items():
        yt = y[t].numpy()
        m = yt >= 0
        if m.any():
            vals.append(float(-np.log(np.clip(p[m, yt[m]], 1e-12, None)).mean()))
    return float(np.mean(vals)) if vals else None


def _score(metrics: dict, val_loss: float | None, how: str) -> float:
    """The early-stopping criterion, higher is better: minus the validation log loss (``loss``, the
    default: a proper score, smooth from epoch to epoch) or the tasks' mean macro-F1 (``macro_f1``,
    which on a small validation set jumps with a handful of paintings of a rare class)."""
    if how == "loss":
        return -val_loss if val_loss is not None else 0.0
    return _macro_f1(metrics)


def _best_epoch(history: list[dict]) -> int:
    """The epoch the validation criterion liked best (a history without "score" entries is read by its macro-F1)."""
    return max(history, key=lambda h: h.get("score", h["val_macro_f1"]))["epoch"]


def _load_state(out: Path, resume: bool) -> dict | None:
    return torch.load(out / STATE, map_location="cpu", weights_only=False) if resume else None


def save_checkpoint(out: Path, *, weights: torch.nn.Module, state: dict, best: torch.nn.Module | None = None,
                    meta: dict | None = None) -> None:
    """The one checkpoint writer: ``best`` (when given) to ``model.safetensors``, the trained ``weights`` to
    ``last.safetensors``, then ``state`` (optimiser, schedule, EMA, epoch, history, stage) to ``state.pt``.
    Each file is replaced atomically, the state last, so a kill -9 at any point resumes from a whole epoch."""
    meta = meta or {}
    if best is not None:
        _atomic_save_tensors(best.state_dict(), out / MODEL, meta)
    _atomic_save_tensors(weights.state_dict(), out / LAST, {"epoch": meta.get("epoch")})
    _atomic_torch_save(state, out / STATE)


def _feature_sets(cat: Catalog, cfg: TrainConfig, job: Job) -> dict:
    """The stored features of every view training reads; under torchrun each rank computes its shard."""
    views = ["center", "flip"] if cfg.flip_augment else ["center"]
    return {v: extract_features(cat, cfg.backbone, pretrained=cfg.pretrained, weights=cfg.weights,
                                image_size=cfg.image_size, view=v, cache_size=cfg.cache_size,
                                cache_dir=default_cache_dir(cat), seed=cfg.seed, job=job)
            for v in views}


class _Stage:
    """What the epochs of one stage share: the head, its optimiser, schedule and EMA, and the loss settings."""

    def __init__(self, cfg: TrainConfig, channels: int, num_classes: dict, stats_dim: int, device, out: Path,
                 state: dict | None, world: int, targets: dict[str, torch.Tensor], ordered: dict[str, bool]):
        torch.manual_seed(cfg.seed)
        self.head = CRNNHead(channels, num_classes, proj=cfg.proj, hidden=cfg.hidden, layers=cfg.layers,
                             pool=cfg.pool, dropout=cfg.dropout, use_lstm=cfg.use_lstm,
                             linear_path=cfg.linear_path, linear_dropout=cfg.linear_dropout,
                             stats_dim=stats_dim).to(device)
        self.opt = torch.optim.AdamW(self.head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt, max_lr=cfg.lr, total_steps=cfg.epochs,
                                                         pct_start=0.15)
        # the weights that are evaluated and saved: the EMA of the trained ones, or the trained ones themselves
        self.ema = None
        if cfg.ema:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
            self.ema = AveragedModel(self.head, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
        if state is not None:
            self.head.load_state_dict(load_file(str(out / LAST)))
            self.opt.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
            if self.ema is not None and state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
        self.kept = self.ema.module if self.ema is not None else self.head
        self.model = _ddp(self.head, world, device)
        cw = class_weights_for(targets, num_classes, cfg.class_weighting)
        ord_w = {t: cfg.ordinal_weight for t in num_classes if ordered[t]} if cfg.ordinal_weight else None
        self.loss_kw = dict(class_weights={t: w.to(device) for t, w in cw.items()} if cw else None,
                            label_smoothing=cfg.label_smoothing, ordinal=ord_w)

    def state(self, **extra) -> dict:
        return {"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None, **extra}


# ---------------------------------------------------------------------- the recipe
def train(cfg: TrainConfig, resume: bool = False, *, job: Job | None = None) -> Path:
    """Train a run as ``cfg`` says (frozen-backbone stage, then a refit or fine-tuning); the run folder.

    Parameters
    ----------
    cfg : TrainConfig
        The recipe; ``cfg.catalog`` and ``cfg.out`` name the catalogue and the run folder.
    resume : bool
        Continue the run in ``cfg.out`` from its last checkpoint (its saved settings win).
    job : Job, optional
        The job (default: the current one): its messages (rank 0 only), progress bars (with
        ``cfg.progress``) and, under torchrun, the ranks that train together.

    Returns
    -------
    pathlib.Path
        The run folder.
    """
    if cfg.select_by not in SELECT_BY:
        raise ValueError(f"select_by must be one of {', '.join(SELECT_BY)}, not {cfg.select_by!r}")
    job = resolve(job)
    job = job.replace(progress=job.progress and cfg.progress)
    out = Path(cfg.out)
    device = _train_device(job)

    cat = Catalog.load(cfg.catalog, cache_dir=cfg.cache)  # --cache, else the recorded or default folder
    tasks = _checked_tasks(cat, cfg, job.say)
    resume = _resolve_resume(cfg, out, resume, job.is_main, job.say)

    train_ids, val_ids, val_how, held_out, fsets = _training_rows(cat, tasks, cfg, job)
    fs = fsets["center"]
    # style statistics for both paths (none when switched off or the backbone has no taps)
    use_stats = cfg.linear_path and cfg.style_stats and fs.stats_dim > 0
    num_classes = {t: cat.task(t).num_classes for t in tasks}
    ordered = {t: cat.task(t).ordered for t in tasks}
    tr = StoredMaps(fsets, train_ids, targets_for(cat, train_ids, tasks), stats=use_stats,
                    flip_augment=cfg.flip_augment, seed=cfg.seed)
    va = StoredMaps(fsets, val_ids, targets_for(cat, val_ids, tasks), stats=use_stats) if val_ids else None

    def new_stage(ds: StoredMaps, state: dict | None = None) -> _Stage:
        """A fresh head, optimiser, schedule and EMA (same seed each time); with a checkpoint's
        ``state``, continued from it (weights from ``last.safetensors``)."""
        return _Stage(cfg, tr.channels, num_classes, fs.stats_dim if use_stats else 0, device, out, state,
                      job.world, ds.targets, ordered)

    st = _load_state(out, resume)
    stage_name = st.get("stage", "frozen") if st else None
    stage = new_stage(tr, st if stage_name == "frozen" else None)
    config = _run_config(cfg, cat, tasks, stage.head.config, val_how)
    progress = _restored_progress(st, stage_name, cfg, out, job.say)
    if job.is_main:
        _write_run_files(out, config, cfg, train_ids, val_ids)

    t0 = time.time()
    if not _frozen_stage(stage, tr, va, ordered, cfg, progress, out, device, job):
        return out
    history = progress["history"]

    first_val = _stage1_val(st, stage_name, stage, va, ordered, out, device)
    refit = None
    if cfg.finetune:
        if cfg.refit:
            job.say("--finetune: no refit on the held-out rows (they choose the fine-tuning epoch)")
        _finetune(cfg, cat, tasks, train_ids, val_ids, stage.head, config, out, device, job, resume)
    elif cfg.refit and held_out and history:
        refit = _refit_all_rows(cfg, cat, tasks, fsets, use_stats, train_ids, val_ids, new_stage, st, stage_name,
                                history, first_val, progress, out, device, job)
        if refit is None:
            return out

    if job.is_main:
        _finish_run(out, history, first_val, refit, t0, job.say)
    return out


def _stage1_val(st: dict | None, stage_name: str | None, stage: _Stage, va: StoredMaps | None, ordered: dict,
                out: Path, device) -> dict | None:
    """Validation metrics of the best stage-1 epoch, measured before a refit sees the held-out rows (a
    refit's checkpoint keeps them); None without validation rows."""
    first_val = st.get("first_val") if stage_name == "refit" else None
    if first_val is None and va is not None:
        stage.head.load_state_dict(load_file(str(out / MODEL)))
        first_val, _ = _evaluate_head(stage.head, va, ordered, device)
    return first_val


def _train_device(job: Job):
    """The device this rank trains on (its own GPU under torchrun on CUDA)."""
    device = default_device()
    if job.world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", job.rank)))
        torch.cuda.set_device(device)
    return device


def _checked_tasks(cat: Catalog, cfg: TrainConfig, say) -> list[str]:
    """The tasks to train (``cfg.tasks`` is set to them), each checked to have labels in two classes or more."""
    tasks = cfg.tasks or _learnable_tasks(cat, say)
    for t in tasks:
        spec = cat.task(t)
        if cat.df[t].notna().sum() == 0:
            raise CatalogError(f"task {t!r} has no labelled paintings in {cfg.catalog}")
        if spec.num_classes < 2:
            raise CatalogError(f"task {t!r} has fewer than two classes; nothing to learn")
    cfg.tasks = tasks
    return tasks


def _resolve_resume(cfg: TrainConfig, out: Path, resume: bool, is_main: bool, say) -> bool:
    """Whether to resume; when so, ``cfg`` takes the run's saved settings (else an existing run is an error)."""
    if resume and not (out / STATE).exists():
        say(f"--resume: no checkpoint in {out} yet; starting from the beginning")
        resume = False
    if resume:
        saved = json.loads((out / CONFIG).read_text())["train"]
        for key in RESUME_KEYS:
            if saved.get(key) != getattr(cfg, key) and not (key == "image_size" and getattr(cfg, key) is None):
                say(f"--resume: using the run's saved {key}={saved.get(key)!r}")
                setattr(cfg, key, saved.get(key))
    elif is_main and (out / MODEL).exists() and any(out.iterdir()):
        raise RunError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    return resume


def _training_rows(cat: Catalog, tasks: list[str], cfg: TrainConfig, job: Job):
    """Training and validation ids with images, how validation was chosen, whether it was held out, the features."""
    train_ids, val_ids, val_how = select_rows(cat, tasks, cfg)
    # validation rows taken from the training split (the catalogue has none): a refit may use them later
    held_out = bool(val_ids) and bool((cat.df.loc[cat.df["id"].isin(val_ids), "split"] == "train").all())
    if not train_ids:
        raise CatalogError("no training paintings with labels for " + ", ".join(tasks))
    job.say(f"training on {len(train_ids)} paintings; validation: {val_how}")

    fsets = _feature_sets(cat, cfg, job)
    fs = fsets["center"]
    cfg.image_size = fs.image_size
    ok = fs.available(train_ids)
    if not ok.all():
        job.say(f"{int((~ok).sum())} training painting(s) have no image and are skipped")
    train_ids = [k for k, o in zip(train_ids, ok) if o]
    val_ids = [k for k, o in zip(val_ids, fs.available(val_ids)) if o]
    return train_ids, val_ids, val_how, held_out, fsets


def _run_config(cfg: TrainConfig, cat: Catalog, tasks: list[str], head_config: dict, val_how: str) -> dict:
    """The run's config.json: format, tasks, backbone, head, cache size, catalogue, validation and settings."""
    return {
        "format": "artextract-run/1",
        "tasks": {t: cat.tasks[t].to_json() for t in tasks},
        "backbone": {"name": cfg.backbone, "pretrained": cfg.pretrained, "weights": cfg.weights,
                     "image_size": cfg.image_size, "source": None, "finetuned": False},
        "head": head_config,
        "cache_size": cfg.cache_size,
        "catalog": str(Path(cfg.catalog).resolve()),
        "validation": val_how,
        "train": asdict(cfg),
    }


def _restored_progress(st: dict | None, stage_name: str | None, cfg: TrainConfig, out: Path, say) -> dict:
    """Where the epochs start: a fresh run's progress, or the checkpoint's (start epoch, best, bad epochs, history)."""
    progress = {"start_epoch": 0, "best": float("-inf"), "bad": 0, "history": [], "session_epochs": 0}
    if st is not None:
        if stage_name in ("finetune", "refit"):
            progress.update(start_epoch=cfg.epochs, best=st["best"],
                            history=st.get("history") or json.loads((out / CONFIG).read_text()).get("history", []))
            say(f"resuming in the {'fine-tuning' if stage_name == 'finetune' else 'refit'} stage")
        else:
            progress.update(start_epoch=st["epoch"] + 1, best=st["best"], bad=st["bad_epochs"], history=st["history"])
            if progress["start_epoch"] >= cfg.epochs or progress["bad"] >= cfg.patience:
                progress["start_epoch"] = cfg.epochs  # stage 1 is finished
            h = progress["history"]
            say(f"resuming after epoch {st['epoch'] + 1}" + (f" (best epoch so far: {_best_epoch(h)})" if h else ""))
    return progress


def _write_run_files(out: Path, config: dict, cfg: TrainConfig, train_ids: list[str], val_ids: list[str]) -> None:
    """Write the run folder's config.json, args.yaml and split file."""
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG).write_text(json.dumps(config, indent=2))
    cfg.save_args(out)  # args.yaml: the resolved settings, for `train --config`
    (out / workspace.RUN_SPLIT).write_text(json.dumps({"train": train_ids, "val": val_ids}))


def _refit_all_rows(cfg: TrainConfig, cat: Catalog, tasks: list[str], fsets: dict, use_stats: bool,
                    train_ids: list[str], val_ids: list[str], new_stage, st: dict | None, stage_name: str | None,
                    history: list[dict], first_val, progress: dict, out: Path, device, job: Job) -> dict | None:
    """The refit on every training row; its record for config.json, or None when it stopped early as asked."""
    # the held-out rows chose the epoch count; now every training row learns, for that many epochs
    all_ids = train_ids + val_ids
    ta = StoredMaps(fsets, all_ids, targets_for(cat, all_ids, tasks), stats=use_stats,
                    flip_augment=cfg.flip_augment, seed=cfg.seed)
    rs = new_stage(ta, st if stage_name == "refit" else None)
    start = st["epoch"] + 1 if stage_name == "refit" else 0
    if not _refit_stage(rs, ta, cfg, start, _best_epoch(history), first_val, progress, out, device, job):
        return None
    refit = {"epochs": _best_epoch(history), "paintings": len(all_ids)}
    job.say(f"refit: trained again on all {len(all_ids)} rows (held-out ones included) for the best "
            f"{refit['epochs']} epoch(s)")
    return refit


def _finish_run(out: Path, history: list[dict], first_val, refit: dict | None, t0: float, say) -> None:
    """Record the history, validation metrics and refit in config.json, and say where the run is."""
    config = json.loads((out / CONFIG).read_text())
    config["history"] = history
    if first_val is not None and not config["backbone"]["finetuned"]:
        config["val_metrics"] = first_val
        say(("validation (best epoch, before the refit): " if refit else "validation (best epoch): ") + "; ".join(
            f"{t} acc {m['accuracy']:.3f} macro-F1 {m['macro_f1']:.3f}" for t, m in first_val.items() if m["n"]))
    if refit:
        config["refit"] = refit
    (out / CONFIG).write_text(json.dumps(config, indent=2))
    say(f"run saved in {out} ({time.time() - t0:.1f}s)")


RESUME_KEYS = ("tasks", "backbone", "pretrained", "weights", "seed", "proj", "hidden", "layers", "pool",
               "use_lstm", "linear_path", "linear_dropout", "style_stats", "refit", "ema", "mixup", "select_by",
               "image_size", "cache_size", "epochs", "lr", "batch_size", "flip_augment", "holdout_fraction",
               "require_all_labels")


def _frozen_stage(stage: _Stage, tr: StoredMaps, va: StoredMaps | None, ordered: dict, cfg: TrainConfig,
                  progress: dict, out: Path, device, job: Job) -> bool:
    """Stage 1: epochs over the stored maps with early stopping on the validation criterion; False
    when it stopped early as asked (``stop_after_epochs``)."""
    history = progress["history"]
    bar = job.bar(cfg.epochs, "train (frozen backbone)", "epoch", iterable=range(progress["start_epoch"], cfg.epochs),
                  initial=progress["start_epoch"])
    t0 = time.time()
    for epoch in bar:
        loss = train_one_epoch(stage, tr, cfg, epoch, device, job=job)
        stage.sched.step()
        progress["session_epochs"] += 1
        # every rank evaluates the same validation set the same way, so they agree on stopping
        vm, P = _evaluate_head(stage.kept, va, ordered, device) if va is not None else ({}, None)
        vl = _val_loss(P, va.targets) if P is not None else None
        score = _score(vm, vl, cfg.select_by) if vm else -loss
        improved = score > progress["best"] + 1e-6
        progress["best"], progress["bad"] = (score, 0) if improved else (progress["best"], progress["bad"] + 1)
        history.append({"epoch": epoch + 1, "loss": loss, "score": score, "val_macro_f1": _macro_f1(vm),
                        "val_loss": vl,
                        "val": {t: {k: m[k] for k in ("accuracy", "macro_f1")} for t, m in vm.items()},
                        "seconds": round(time.time() - t0, 2)})
        if job.is_main:
            save_checkpoint(out, weights=stage.head, best=stage.kept if improved else None, meta={"epoch": epoch + 1},
                            state=stage.state(epoch=epoch, best=progress["best"], bad_epochs=progress["bad"],
                                              history=history, stage="frozen"))
            _test_pause_after_epoch(out, epoch + 1)
        bar.set_postfix(loss=f"{loss:.3f}", val_f1=f"{history[-1]['val_macro_f1']:.3f}",
                        **({"val_loss": f"{vl:.3f}"} if vl is not None else {}))
        if progress["bad"] >= cfg.patience:
            what = "val loss" if cfg.select_by == "loss" else "val macro-F1"
            job.say(f"early stop after epoch {epoch + 1}: no {what} gain in {cfg.patience} epochs")
            break
        if cfg.stop_after_epochs and progress["session_epochs"] >= cfg.stop_after_epochs and epoch + 1 < cfg.epochs:
            job.say(f"stopping after epoch {epoch + 1} as asked; continue with --resume")
            bar.close()
            return False
    bar.close()
    job.barrier()
    return True


def _test_pause_after_epoch(out: Path, epoch: int) -> None:
    """TEST-ONLY hook (``test_resume_after_kill_9``): with ``ARTEXTRACT_TEST_PAUSE_AFTER_EPOCH=N`` set, once the
    checkpoint of frozen-stage epoch N is written, touch ``paused-after-epoch-N`` in the run folder and block
    forever, so that the test's kill -9 lands at a known point. Unset (as always outside that test): nothing."""
    if os.environ.get("ARTEXTRACT_TEST_PAUSE_AFTER_EPOCH") == str(epoch):
        (out / f"paused-after-epoch-{epoch}").touch()
        while True:
            time.sleep(60)


def _refit_stage(stage: _Stage, ta: StoredMaps, cfg: TrainConfig, start: int, epochs: int, first_val,
                 progress: dict, out: Path, device, job: Job) -> bool:
    """The refit: the head trained again from the same start on every row for the chosen number of
    epochs; False when it stopped early as asked."""
    for epoch in job.bar(epochs, f"refit on all {len(ta)} rows", "epoch", iterable=range(start, epochs),
                         initial=start):
        train_one_epoch(stage, ta, cfg, epoch, device, job=job)
        stage.sched.step()
        if job.is_main:
            last = epoch + 1 == epochs
            save_checkpoint(out, weights=stage.head, best=stage.kept if last else None,
                            meta={"epoch": epoch + 1, **({"stage": "refit"} if last else {})},
                            state=stage.state(epoch=epoch, best=progress["best"], bad_epochs=0,
                                              history=progress["history"], first_val=first_val, stage="refit"))
        progress["session_epochs"] += 1
        if cfg.stop_after_epochs and progress["session_epochs"] >= cfg.stop_after_epochs and epoch + 1 < epochs:
            job.say(f"stopping after refit epoch {epoch + 1} as asked; continue with --resume")
            return False
    job.barrier()
    return True


def _ddp(head: CRNNHead, world: int, device):
    if world == 1:
        return head
    return torch.nn.parallel.DistributedDataParallel(head, device_ids=[device.index] if device.type == "cuda" else None)


def _learnable_tasks(cat: Catalog, say) -> list[str]:
    """Without ``--tasks``: every task of the catalogue that has labels in two classes or more; the others are
    named and left out (a user who names them with ``--tasks`` gets the error)."""
    keep = []
    for t, spec in cat.tasks.items():
        if cat.df[t].notna().sum() == 0:
            say(f"task {t!r} has no labelled paintings; training the other tasks")
        elif spec.num_classes < 2:
            say(f"task {t!r} has fewer than two classes; training the other tasks")
        else:
            keep.append(t)
    if not keep:
        raise CatalogError(f"no task of {cat.path} has labels in two classes or more; nothing to learn")
    return keep


def _single_sample_norms(model: torch.nn.Module, batch: int) -> None:
    """Batch normalisation over vectors cannot train on one sample: for a batch of one (a training set of
    a single painting per rank) those layers use their running statistics; otherwise they train."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.train(batch > 1)


def train_one_epoch(stage: _Stage, ds: StoredMaps, cfg: TrainConfig, epoch: int, device, *,
                    job: Job | None = None) -> float:
    """One epoch of the frozen-backbone recipe, streaming the stored maps; the mean loss.

    The epoch's order, views and mixup pairs come from ``(cfg.seed, epoch)``; under torchrun each rank of
    ``job`` (default: the current one) reads its share of every global batch and DistributedDataParallel
    averages the gradients."""
    _, _, g = epoch_order(len(ds), cfg.seed, epoch)  # the generator after the epoch's order and views
    torch.manual_seed(epoch_seed(cfg.seed, epoch))
    model, head = stage.model, stage.head
    model.train()
    losses = []
    for s, b in enumerate(train_loader(ds, cfg.batch_size, cfg.seed, epoch, job=job)):
        xb = b["x"].to(device)
        sb = b["s"].to(device) if b["s"] is not None else None
        yb = {t: v.to(device) for t, v in b["y"].items()}
        lam, pair = 1.0, None
        if cfg.mixup > 0:
            # mixup of feature maps: each mixed painting trains each head on both paintings' labels, weighted
            lam = float(np.random.default_rng(cfg.seed * 7 + epoch * 1000 + s).beta(cfg.mixup, cfg.mixup))
            pair = torch.randperm(len(xb), generator=g).to(device)
            xb = lam * xb + (1 - lam) * xb[pair]
            sb = lam * sb + (1 - lam) * sb[pair] if sb is not None else None
        loss = 0.0
        _single_sample_norms(model, len(xb))
        # each path (recurrent, and the linear one if any) is trained as a full classifier of its own
        for logits in model(xb, sb, paths=True):
            la, _ = masked_multitask_loss(logits, yb, **stage.loss_kw)
            loss = loss + lam * la
            if pair is not None:
                lb, _ = masked_multitask_loss(logits, {t: v[pair] for t, v in yb.items()}, **stage.loss_kw)
                loss = loss + (1 - lam) * lb
        stage.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 5.0)
        stage.opt.step()
        if stage.ema is not None:
            stage.ema.update_parameters(head)
        losses.append(loss.item())
    return float(np.mean(losses))


# ---------------------------------------------------------------------- stage 2
class _CacheImages(torch.utils.data.Dataset):
    """Augmented crops from the prepared-image cache (uint8 memmap), as float tensors."""

    def __init__(self, cache_dir: Path, cache_size: int, ids: list[str], image_size: int, train: bool,
                 preprocess=None):
        self.cache_dir, self.cache_size, self.ids = cache_dir, cache_size, ids
        self.image_size, self.train = image_size, train
        self.preprocess = preprocess
        self.cache = None

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        from ..data.cache import PreparedCache
        if self.cache is None:  # opened lazily in each worker
            self.cache = PreparedCache(self.cache_dir, self.cache_size)
        arr = self.cache.get(self.ids[i])
        if self.train:
            import torchvision.transforms.v2 as T
            x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
            bicubic = self.preprocess is not None and self.preprocess.interpolation == "bicubic"
            x = T.RandomResizedCrop(self.image_size, scale=(0.5, 1.0), antialias=True,
                                    interpolation=T.InterpolationMode.BICUBIC if bicubic else
                                    T.InterpolationMode.BILINEAR)(x)
            if torch.rand(1) < 0.5:
                x = x.flip(-1)
            return normalize(x.float().div_(255.0), self.preprocess), i
        return images_to_tensor(arr[None], self.image_size, "center", self.preprocess)[0], i


def finetune_param_groups(model: MultiTaskCRNN, lr: float, weight_decay: float, layer_decay: float) -> list[dict]:
    """AdamW parameter groups for end-to-end fine-tuning.

    The head learns at ``5 * lr``. A transformer backbone's blocks learn at layer-wise decayed rates (block
    ``i`` of ``d`` at ``lr * layer_decay ** (d - i)``, the patch and position embeddings at
    ``lr * layer_decay ** (d + 1)``, the final norm at ``lr``), as BEiT, DINOv2 and timm fine-tune ViTs;
    a CNN backbone learns at ``lr``. Biases, norms and embeddings (1-d parameters and tokens) have no weight
    decay.
    """
    import re

    bb = model.backbone
    depth = getattr(bb, "depth", 0) if getattr(bb, "kind", "cnn") == "vit" else 0
    pat = re.compile(r"(?:^|\.)(?:blocks|resblocks|layers|stages)\.(\d+)\.")
    groups: dict[tuple[float, float], list] = {}
    for name, p in bb.named_parameters():
        if not p.requires_grad:
            continue
        scale = 1.0
        if depth and layer_decay != 1.0:
            m = pat.search(name)
            if m:
                scale = layer_decay ** (depth - int(m.group(1)))
            elif any(k in name for k in ("patch_embed", "pos_embed", "cls_token", "reg_token", "conv1",
                                         "class_embedding", "positional_embedding", "ln_pre")):
                scale = layer_decay ** (depth + 1)
        no_decay = p.ndim <= 1 or name.endswith(("pos_embed", "cls_token", "reg_token", "class_embedding",
                                                 "positional_embedding"))
        groups.setdefault((lr * scale, 0.0 if no_decay else weight_decay), []).append(p)
    out = [{"params": ps, "lr": r, "weight_decay": wd} for (r, wd), ps in sorted(groups.items())]
    out.append({"params": list(model.head.parameters()), "lr": lr * 5, "weight_decay": weight_decay})
    return out


def _autocast_dtype(device) -> torch.dtype | None:
    """fp16 on CUDA; bf16 on a CPU with native bf16 (AVX-512 BF16 or AMX); else full precision."""
    if device.type == "cuda":
        return torch.float16
    native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)() or \
        getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    return torch.bfloat16 if native else None


def _finetune(cfg, cat, tasks, train_ids, val_ids, head, config, out, device, job: Job, resume):
    """Unfreeze the backbone and train end to end from the best stage-1 head."""
    rank, world = job.rank, job.world  # the DistributedSampler's and DistributedDataParallel's terms
    torch.manual_seed(cfg.seed)
    model, backbone = _finetune_model(cfg, head, out, device)
    amp = _autocast_dtype(device)
    ordered = {t: cat.task(t).ordered for t in tasks}
    y_all = targets_for(cat, train_ids, tasks)
    yv = targets_for(cat, val_ids, tasks)
    loss_kw = _finetune_loss_settings(cfg, cat, tasks, y_all, ordered, device)
    cache_dir = default_cache_dir(cat)
    ensure_prepared(cat, cfg.cache_size, cache_dir, job=job.replace(progress=False))
    ds = _CacheImages(cache_dir, cfg.cache_size, train_ids, cfg.image_size, train=True,
                      preprocess=backbone.preprocess)
    sampler = torch.utils.data.distributed.DistributedSampler(ds, world, rank, seed=cfg.seed) if world > 1 else None
    opt = torch.optim.AdamW(finetune_param_groups(model, cfg.finetune_lr, cfg.weight_decay, cfg.finetune_layer_decay))
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if world > 1 else model
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    st_path = out / STATE
    start, best = _finetune_resume(model, opt, out, st_path, resume, job.say)
    val_ds = _CacheImages(cache_dir, cfg.cache_size, val_ids, cfg.image_size, train=False,
                          preprocess=backbone.preprocess)
    for epoch in range(start, cfg.finetune_epochs):
        torch.manual_seed(cfg.seed * 7919 + epoch)
        if sampler:
            sampler.set_epoch(epoch)
        dl = torch.utils.data.DataLoader(ds, batch_size=max(1, cfg.finetune_batch_size // world), sampler=sampler,
                                         shuffle=sampler is None, num_workers=cfg.num_workers, drop_last=len(ds) > cfg.finetune_batch_size)
        bar = job.bar(None, f"fine-tune {epoch + 1}/{cfg.finetune_epochs}", "it", iterable=dl)
        _finetune_epoch(ddp, bar, opt, scaler, y_all, tasks, loss_kw, device, amp)
        P = _finetune_predict(model, val_ds, tasks, cfg, device, amp)
        vm = {t: task_metrics(P[t], yv[t].numpy(), ordered[t]) for t in tasks} if val_ids else {}
        vl = _val_loss(P, yv) if P is not None else None
        score = _score(vm, vl, cfg.select_by)
        job.say(f"fine-tune epoch {epoch + 1}: val macro-F1 {_macro_f1(vm):.4f}"
                + (f", val loss {vl:.4f}" if vl is not None else "")
                + (f" (best score so far {best:.4f})" if math.isfinite(best) else ""))
        if job.is_main:
            best = _save_finetune_epoch(model, opt, out, st_path, epoch, score, best)
        job.barrier()


def _finetune_model(cfg, head: CRNNHead, out: Path, device) -> tuple[MultiTaskCRNN, torch.nn.Module]:
    """The whole network (channels_last, on ``device``), its head the best stage-1 head; and its backbone."""
    kw = {"image_size": cfg.image_size} if cfg.image_size and cfg.backbone.startswith(("timm:", "open_clip:")) else {}
    backbone = create_backbone(cfg.backbone, pretrained=cfg.pretrained, weights=cfg.weights, **kw)
    head.load_state_dict(load_file(str(out / MODEL)))
    model = MultiTaskCRNN(backbone, head).to(device)
    return model.to(memory_format=torch.channels_last), backbone


def _finetune_loss_settings(cfg, cat: Catalog, tasks: list[str], y_all: dict[str, torch.Tensor],
                            ordered: dict[str, bool], device) -> dict:
    """The keyword arguments of :func:`masked_multitask_loss`: class weights, label smoothing, ordinal weights."""
    num_classes = {t: cat.task(t).num_classes for t in tasks}
    cw = class_weights_for(y_all, num_classes, cfg.class_weighting)
    cw = {t: w.to(device) for t, w in cw.items()} if cw else None
    ord_w = {t: cfg.ordinal_weight for t in tasks if ordered[t]} if cfg.ordinal_weight else None
    return dict(class_weights=cw, label_smoothing=cfg.label_smoothing, ordinal=ord_w)


def _finetune_resume(model: MultiTaskCRNN, opt, out: Path, st_path: Path, resume: bool, say) -> tuple[int, float]:
    """The first epoch to run and the best score so far; a fine-tuning checkpoint's weights and optimiser
    state are loaded into ``model`` and ``opt``."""
    start = 0
    st = torch.load(st_path, map_location="cpu", weights_only=False) if resume and st_path.exists() else None
    best = float("-inf")
    if st and st.get("stage") == "finetune":
        model.load_state_dict(load_file(str(out / LAST)))
        opt.load_state_dict(st["optimizer"])
        start, best = st["epoch"] + 1, st["best"]
        say(f"resuming fine-tuning after epoch {start}")
    elif st:
        best = st["best"]
    return start, best


def _finetune_epoch(ddp, bar, opt, scaler, y_all: dict[str, torch.Tensor], tasks: list[str], loss_kw: dict,
                    device, amp) -> None:
    """One epoch of end-to-end training over the batches of ``bar``."""
    ddp.train()
    for xb, idx in bar:
        xb = xb.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        yb = {t: y_all[t][idx].to(device) for t in tasks}
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss, _ = masked_multitask_loss(ddp(xb), yb, **loss_kw)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        bar.set_postfix(loss=f"{loss.item():.3f}")


def _finetune_predict(model: MultiTaskCRNN, val_ds, tasks: list[str], cfg, device, amp) -> dict[str, np.ndarray] | None:
    """Class probabilities of every validation image, per task; None when there is none."""
    model.eval()
    probs = {t: [] for t in tasks}
    with torch.no_grad():
        for xb, _ in torch.utils.data.DataLoader(val_ds, batch_size=64, num_workers=cfg.num_workers):
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                o = model(xb.to(device).contiguous(memory_format=torch.channels_last))
            for t in tasks:
                probs[t].append(torch.softmax(o[t].float(), 1).cpu().numpy())
    return {t: np.concatenate(probs[t]) for t in tasks} if len(val_ds) else None


def _save_finetune_epoch(model: MultiTaskCRNN, opt, out: Path, st_path: Path, epoch: int, score: float,
                         best: float) -> float:
    """Write the epoch's checkpoint (and the best weights when ``score`` beats ``best``); the best score."""
    sd = model.state_dict()
    if score > best:
        best = score
        _atomic_save_tensors(sd, out / MODEL, {"epoch": epoch + 1, "stage": "finetune"})
        c = json.loads((out / CONFIG).read_text())
        c["backbone"]["finetuned"] = True
        (out / CONFIG).write_text(json.dumps(c, indent=2))
    _atomic_save_tensors(sd, out / LAST, {"epoch": epoch + 1})
    _atomic_torch_save({"epoch": epoch, "best": best, "bad_epochs": 0, "history": [],
                        "optimizer": opt.state_dict(), "stage": "finetune"}, st_path)
    return best

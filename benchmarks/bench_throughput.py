"""Compute throughput of the models: embedding (backbone forward), the frozen-backbone recipe
(CRNN head on stored maps) and end-to-end fine-tuning, in images per second, on this machine's
device (CUDA when there is one, else the CPU).

The inputs are what the product feeds: real paintings from the WikiArt sample (random pixels when it
is absent), resized to the 256 px cache as uint8 NHWC and turned into the backbone's normalised input
by ``images_to_tensor`` (so laid out channels_last in memory, as every command lays them out). The
backbones start from random weights (``pretrained=False``; the pretrained ones have the same
architecture and cost). What is timed is what the product runs:

  embed      the frozen forward pass through the inference engine (``FeatureEngine.stream``: the
             prepared uint8 images in, their preprocessing included; map, pooled vector and style
             statistics out), one row per ``--engines`` entry; what
             ``train``, ``outliers``, ``index``, ``duplicates`` and ``predict`` run per image
  head       one training step of the CRNN head on stored maps and style statistics, masked
             multi-task loss over artist (23), genre (10) and style (27), AdamW: the default
             frozen-backbone recipe, per painting
  finetune   one end-to-end training step of backbone + head (``--finetune``) as ``artextract train
             --finetune`` runs it: channels_last, float16 autocast and a gradient scaler on CUDA, bf16
             autocast on a CPU with native bf16, layer-wise learning-rate decay for a ViT;
             ``finetune-fp32`` is the same step without autocast, for comparison

Each row: a few warm-up steps, then ``--steps`` timed steps (the device synchronised before the
clock stops); peak GPU memory on CUDA.

    .venv/bin/python benchmarks/bench_throughput.py                        # CPU: a few minutes
    .venv/bin/python benchmarks/bench_throughput.py --steps 50 --batch 128 --json out.json   # a GPU
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402

from artextract.models import engine as E  # noqa: E402
from artextract.models.backbones import create_backbone  # noqa: E402
from artextract.models.crnn import CRNNHead, MultiTaskCRNN, masked_multitask_loss  # noqa: E402
from artextract.models.features import images_to_tensor  # noqa: E402
from artextract.training.config import TrainConfig  # noqa: E402
from artextract.training.train import _autocast_dtype, finetune_param_groups  # noqa: E402

SAMPLE = ROOT.parent / "shared" / "data" / "wikiart_sample"


def _paintings(n: int, sample: Path = SAMPLE) -> np.ndarray:
    """``[n, 256, 256, 3]`` uint8: the sample's paintings as the prepared cache holds them (random pixels
    when the sample is absent)."""
    from artextract.data.cache import decode_resized
    files = sorted(sample.rglob("*.jpg"))[:: 7][:n] if sample.is_dir() else []
    if len(files) < n:
        return np.random.default_rng(0).integers(0, 256, (n, 256, 256, 3), dtype=np.uint8)
    return np.stack([decode_resized(f, 256) for f in files])

TASKS = {"artist": 23, "genre": 10, "style": 27}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _targets(n: int, device: torch.device, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Random labels with WikiArt's pattern of gaps: style always, genre mostly, artist for a quarter."""
    share = {"artist": 0.25, "genre": 0.9, "style": 1.0}
    out = {}
    for t, k in TASKS.items():
        y = torch.randint(0, k, (n,), generator=g)
        y[torch.rand(n, generator=g) > share[t]] = -1
        out[t] = y.to(device)
    return out


def _timed(step, steps: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return time.perf_counter() - t0


def _head(in_ch: int, stats_dim: int, device: torch.device) -> CRNNHead:
    d = TrainConfig  # the training defaults (dataclass fields with defaults are class attributes)
    return CRNNHead(in_ch, TASKS, proj=d.proj, hidden=d.hidden, layers=d.layers, pool=d.pool, dropout=d.dropout,
                    use_lstm=d.use_lstm, linear_path=True, linear_dropout=d.linear_dropout,
                    stats_dim=stats_dim).to(device)


def bench_backbone(name: str, args, device: torch.device) -> list[dict]:
    cuda = device.type == "cuda"
    g = torch.Generator().manual_seed(0)
    kw = {"image_size": args.size or 224} if name.startswith(("timm:", "open_clip:")) else {}
    bb = create_backbone(name, pretrained=False, **kw).eval()
    size = kw.get("image_size") or args.size or bb.preprocess.size
    u8 = _paintings(args.batch, Path(args.images))
    ids = [f"p{i}" for i in range(args.batch)]
    x = images_to_tensor(u8, size, "center", bb.preprocess)   # channels_last in memory
    rows = []

    def row(what: str, seconds: float, n: int, **extra) -> dict:
        r = {"backbone": name, "what": what, "device": str(device), "batch": args.batch, "image_size": size,
             "images_per_s": n / seconds, **extra}
        if cuda:
            r["peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
            torch.cuda.reset_peak_memory_stats(device)
        label = what + (f" {extra['engine']} {extra['precision']}" if "engine" in extra else "")
        print(f"{name:<36}{label:<24}{r['images_per_s']:>10.1f} img/s"
              + (f"{r['peak_gpu_mib']:>10.0f} MiB" if cuda else ""), flush=True)
        return r

    # embed, through the engine
    fmap = stats = None
    for spec in args.engines.split(","):
        eng, prec = spec.split(":")
        try:
            run = E.FeatureEngine(bb, engine=eng, precision=prec, device=device)
        except E.EngineUnavailable as exc:
            print(f"{name:<36}embed {spec}: skipped ({exc})", flush=True)
            continue
        out = run(x)
        if fmap is None:
            fmap, _, stats = out

        def embed():  # the prepared images in, as the features stage gives them (FeatureEngine.stream)
            for _ in run.stream([(ids, u8)], size=size):
                pass
        rows.append(row("embed", _timed(embed, args.steps, args.warmup, device), args.steps * args.batch,
                        engine=run.engine, precision=run.precision))
    bb.to(device).to(memory_format=torch.contiguous_format)
    x = x.to(device)

    # head on stored maps (the frozen-backbone recipe)
    maps, st = fmap.float().detach().to(device), stats.float().detach().to(device)
    head = _head(maps.shape[1], st.shape[1], device)
    opt = torch.optim.AdamW(head.parameters(), lr=4e-4)
    y = _targets(args.batch, device, g)
    head.train()

    def head_step():
        loss = 0.0
        for logits in head(maps, st, paths=True):
            loss = loss + masked_multitask_loss(logits, y, label_smoothing=0.1)[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    rows.append(row("head", _timed(head_step, args.steps, args.warmup, device), args.steps * args.batch))

    # end-to-end fine-tuning, as train --finetune runs it (and without autocast, for comparison)
    amp = _autocast_dtype(device)
    for what, dtype in (("finetune", amp), ("finetune-fp32", None)):
        if what == "finetune-fp32" and amp is None:
            continue
        model = MultiTaskCRNN(bb, _head(maps.shape[1], st.shape[1], device)).to(device).train()
        model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(finetune_param_groups(model, 1e-4, 0.05, TrainConfig.finetune_layer_decay))
        scaler = torch.amp.GradScaler(device.type, enabled=cuda)
        xc = x.contiguous(memory_format=torch.channels_last)

        def finetune_step():
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss, _ = masked_multitask_loss(model(xc), y, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        steps = max(1, args.steps // (1 if cuda else 2))
        rows.append(row(what, _timed(finetune_step, steps, args.warmup, device), steps * args.batch,
                        autocast=str(dtype).replace("torch.", "") if dtype else "none"))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", default="mobilenet_v2,efficientnet_lite0,resnet50,"
                    "timm:vit_small_patch14_dinov2,timm:vit_base_patch16_224",
                    help="registry names; the ViT-S/14 (DINOv2) and ViT-B/16 run at 224 px unless --size says")
    ap.add_argument("--engines", default=None,
                    help="embed rows, ENGINE:PRECISION,... (default: torch:fp32,torch:bf16,openvino:fp32,"
                         "openvino:bf16 on a CPU; torch:fp32,torch:fp16,torch:bf16 on CUDA)")
    ap.add_argument("--batch", type=int, default=None, help="images per step (default 128 on CUDA, 16 on CPU)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per row (default 30 on CUDA, 4 on CPU)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--size", type=int, default=None, help="input size (default: each backbone's own)")
    ap.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda when available)")
    ap.add_argument("--images", default=str(SAMPLE), help="the WikiArt sample (style folders of JPEGs)")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    args.batch = args.batch or (128 if cuda else 16)
    args.steps = args.steps or (30 if cuda else 4)
    args.engines = args.engines or ("torch:fp32,torch:fp16,torch:bf16" if cuda else
                                    "torch:fp32,torch:bf16,openvino:fp32,openvino:bf16")
    if cuda:
        torch.backends.cudnn.benchmark = True
        what = torch.cuda.get_device_name(device)
    else:
        what = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"device: {device} ({what}); torch {torch.__version__}; batch {args.batch}, {args.steps} timed steps")
    print(f"{'backbone':<36}{'what':<24}{'throughput':>16}" + (f"{'peak mem':>10}" if cuda else ""))
    rows = []
    for name in args.backbones.split(","):
        rows += bench_backbone(name.strip(), args, device)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": what, "torch": torch.__version__, "cpus": os.cpu_count(),
                                               "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The features stage on real paintings: decoding, ``prepare``, every engine and precision, end to end.

On the WikiArt sample (``../shared/data/wikiart_sample``) and on the same paintings upscaled to
1,500 x 1,125 px JPEGs (WikiArt's usual size), in one run, interleaved rounds, median of ``--rounds``:

  decode      PIL with ``draft`` (the cache's decoder) on the 1,500 px JPEGs, ``--workers`` processes
  prepare     ``PreparedCache.prepare`` of those JPEGs into an empty cache (what ``artextract prepare`` runs)
  features    the backbone over the prepared cache, both views (centre and mirror), with the style
              statistics: what training, outliers, index and duplicates compute once per painting.
              ``torch-previous`` (the baseline) is the backbone module called directly under torch
              (the module contiguous, its input channels_last from the NHWC cache); the other rows go
              through :class:`artextract.models.engine.FeatureEngine`
  end to end  ``extract_features`` (both views) on the 1,500 px JPEGs with an empty cache: decode,
              prepare and the forward pass, as a first run does

Each features row also gives its largest error relative to torch fp32 (maps, pooled, statistics), the
backbone's GFLOP/s set against the cores' fp32 peak, and the projected time for the full WikiArt
(81,446 paintings, two views). ``--downstream`` adds, per engine and precision, the figures that a
precision could move: a linear probe's style macro-F1 (5-fold), style retrieval P@10, and the AUROC of
finding 10 % flipped style labels by out-of-fold probability.

    .venv/bin/python benchmarks/bench_embed.py --n 256 --rounds 5 --downstream --json benchmarks/results/embed_cpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from artextract.data.cache import PreparedCache, decode_resized  # noqa: E402
from artextract.data.catalog import Catalog  # noqa: E402
from artextract.job import Job  # noqa: E402
from artextract.models import engine as E  # noqa: E402
from artextract.models.backbones import create_backbone  # noqa: E402
from artextract.models.features import extract_features, images_to_tensor  # noqa: E402

SAMPLE = ROOT.parent / "shared" / "data" / "wikiart_sample"
WIKIART = 81_446


def _save(df: pd.DataFrame, out: Path) -> Catalog:
    from artextract.data.catalog import TaskSpec
    Catalog(df, {"style": TaskSpec("style", sorted(df["style"].unique()))}, image_root="/").save(out)
    return Catalog.load(out)


def _upscale(src: Path, dst: Path) -> None:
    Image.open(src).convert("RGB").resize((1500, 1125), Image.BICUBIC).save(dst, quality=90)


def _flops_per_image(net, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        net.forward_all(torch.zeros(1, 3, size, size))
    return fc.get_total_flops()


def _peak_gflops(threads: int) -> tuple[float, str]:
    """fp32 peak of ``threads`` cores: clock x 2 FMA units x lanes x 2, lanes 16 with AVX-512, 8 with AVX2."""
    flags, mhz = "", 0.0
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags") and not flags:
                flags = line
            if line.startswith("cpu MHz") and not mhz:
                mhz = float(line.split(":")[1])
    except OSError:
        pass
    lanes = 16 if "avx512f" in flags else 8
    ghz = (mhz or 2000.0) / 1000
    return threads * ghz * 2 * lanes * 2, f"{threads} cores x {ghz:.2f} GHz x 2 FMA x {lanes} fp32 lanes x 2"


class _Previous:
    """The baseline: the backbone module called directly, contiguous weights, NHWC-strided input
    (on a GPU, moved there)."""

    def __init__(self, net, device):
        self.net, self.device = net.to(device), device

    @torch.no_grad()
    def __call__(self, x):
        fm, st = self.net.forward_with_stats(x.to(self.device))
        return fm.float().cpu(), fm.float().mean(dim=(2, 3)).cpu(), st.float().cpu()


def _decode_nvjpeg(paths, size: int, device, batch: int = 64) -> np.ndarray:
    """The cache's transform (shorter side to ``size``, centre square) with the JPEGs decoded on the GPU
    (``torchvision.io.decode_jpeg``, nvJPEG) and resized there with antialiasing; the prepared images come
    back to the host, as the cache stores them."""
    import torch.nn.functional as F
    from torchvision.io import decode_jpeg, read_file
    out = []
    for a in range(0, len(paths), batch):
        imgs = decode_jpeg([read_file(str(p)) for p in paths[a:a + batch]], device=device)
        for im in imgs:
            h, w = im.shape[-2:]
            k = size / min(h, w)
            nh, nw = max(size, round(h * k)), max(size, round(w * k))
            r = F.interpolate(im[None].float(), size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
            t, l = (nh - size) // 2, (nw - size) // 2
            out.append(r[0, :, t:t + size, l:l + size].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0))
    return torch.stack(out).cpu().numpy()


class _OnnxRuntime:
    """ONNX Runtime's CPU provider on the same graph as the OpenVINO engine (prepared uint8 images in,
    preprocessing inside), exported with ``torch.onnx``; measured here only (it needs ``onnxruntime`` and
    ``onnx``, whose current release needs a newer protobuf than mediapipe allows: ``pip install
    onnxruntime "onnx<1.18"``)."""

    PART = 8

    def __init__(self, net, threads: int, work: Path):
        import onnxruntime as ort

        from artextract.models.engine import _FromPrepared
        self.sessions = {}
        for view in ("center", "flip"):
            path = work / f"graph-{view}.onnx"
            torch.onnx.export(_FromPrepared(net, 256, view).eval(), (torch.zeros(1, 256, 256, 3, dtype=torch.uint8),),
                              str(path), dynamo=False, input_names=["x"], output_names=["map", "pooled", "stats"],
                              dynamic_axes={"x": {0: "b"}}, opset_version=17)
            so = ort.SessionOptions()
            so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
            self.sessions[view] = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def stream(self, batches, *, view="center"):
        for ids, u8 in batches:
            for a in range(0, len(ids), self.PART):
                yield (ids[a:a + self.PART], *self.sessions[view].run(None, {"x": np.ascontiguousarray(u8[a:a + self.PART])}))


def _features_pass(run, cache: PreparedCache, ids, batch: int, pre, size: int):
    """Both views of every painting from the prepared cache: the baseline calls the module on tensors made
    in Python; an engine gets the prepared images as the product gives them (:meth:`FeatureEngine.stream`)."""
    outs = {}
    t0 = time.perf_counter()
    for view in ("center", "flip"):
        chunks = [ids[s:s + batch] for s in range(0, len(ids), batch)]
        if isinstance(run, _Previous):
            parts = [(c, *(t.numpy() for t in run(images_to_tensor(cache.images[cache.slots(c)], size, view, pre))))
                     for c in chunks]
        else:
            parts = list(run.stream(((c, cache.images[cache.slots(c)]) for c in chunks), view=view))
        got = {k: (p[1][j], p[2][j], p[3][j]) for p in parts for j, k in enumerate(p[0])}
        outs[view] = tuple(np.stack([got[k][i] for k in ids]) for i in range(3))
    return time.perf_counter() - t0, outs


def _rel(a, b) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def _downstream(feats: dict, y: np.ndarray, seed: int = 0) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score, roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.preprocessing import StandardScaler

    fm, pv, st = feats["center"]
    X = StandardScaler().fit_transform(np.hstack([pv, st]))
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    clf = LogisticRegression(max_iter=2000, C=0.5)
    pred = cross_val_predict(clf, X, y, cv=folds)
    f1 = f1_score(y, pred, average="macro")
    z = pv / np.linalg.norm(pv, axis=1, keepdims=True)
    sim = z @ z.T
    np.fill_diagonal(sim, -np.inf)
    top = np.argsort(-sim, axis=1)[:, :10]
    p10 = float((y[top] == y[:, None]).mean())
    rng = np.random.default_rng(seed)
    noisy = y.copy()
    flip = rng.random(len(y)) < 0.10
    k = int(y.max()) + 1
    noisy[flip] = (noisy[flip] + rng.integers(1, k, flip.sum())) % k
    proba = cross_val_predict(clf, X, noisy, cv=folds, method="predict_proba")
    auroc = roc_auc_score(flip, 1 - proba[np.arange(len(y)), noisy])
    return {"style_macro_f1": float(f1), "retrieval_p10": p10, "label_issue_auroc": float(auroc)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", default=str(SAMPLE), help="the WikiArt sample (style folders of JPEGs)")
    ap.add_argument("--n", type=int, default=256, help="paintings (drawn evenly over the styles)")
    ap.add_argument("--backbone", default="mobilenet_v2")
    ap.add_argument("--pretrained", default="imagenet", choices=("imagenet", "none"))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds; each figure is their median")
    ap.add_argument("--workers", type=int, default=2, help="decoding processes")
    ap.add_argument("--engines", default=None,
                    help="rows to time (default: torch-previous:fp32,torch:fp32,torch:bf16,openvino:fp32,"
                         "openvino:bf16 on a CPU; torch-previous:fp32,torch:fp32,torch:fp16,torch:bf16 on CUDA); "
                         "onnxruntime:fp32 adds ONNX Runtime where it is installed")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda: the engines' device (decoding stays on the "
                    "CPU, and on CUDA a row decodes the JPEGs with nvJPEG)")
    ap.add_argument("--downstream", action="store_true", help="probe macro-F1, P@10 and label-issue AUROC per row")
    ap.add_argument("--no-end-to-end", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    args.engines = args.engines or ("torch-previous:fp32,torch:fp32,torch:fp16,torch:bf16" if cuda else
                                    "torch-previous:fp32,torch:fp32,torch:bf16,openvino:fp32,openvino:bf16")
    # what a command runs on this device by default: stored features and the first run use it
    product = "torch:fp16" if cuda else "openvino:fp32"
    src = Path(args.images).resolve()
    if not src.is_dir():
        print(f"{src} not found: this benchmark needs the shared WikiArt sample", file=sys.stderr)
        return 2
    E.configure()
    threads = E.default_threads()
    files = sorted(p for p in src.rglob("*.jpg"))
    styles = sorted({p.parent.name for p in files})
    per = {s: [p for p in files if p.parent.name == s] for s in styles}
    pick, i = [], 0
    while len(pick) < min(args.n, len(files)):
        for s in styles:
            if i < len(per[s]) and len(pick) < args.n:
                pick.append(per[s][i])
        i += 1
    y = np.array([styles.index(p.parent.name) for p in pick])
    work = Path(tempfile.mkdtemp(prefix="bench_embed-"))
    res: dict = {"machine": (torch.cuda.get_device_name(device) if cuda else platform.processor() or platform.machine()),
                 "device": str(device), "cpus": os.cpu_count(), "threads": threads,
                 "torch": torch.__version__, "n": len(pick), "backbone": args.backbone, "rows": []}
    try:
        import openvino
        res["openvino"] = openvino.__version__
    except ImportError:
        pass
    print(f"{len(pick)} WikiArt paintings ({len(styles)} styles), {args.backbone}, {res['machine']}, {threads} threads, "
          f"torch {torch.__version__}, openvino {res.get('openvino', '-')}; median of {args.rounds} rounds",
          flush=True)
    try:
        big = work / "big"
        big.mkdir()
        with ProcessPoolExecutor(args.workers) as ex:
            list(ex.map(_upscale, pick, [big / f"{k:05d}.jpg" for k in range(len(pick))]))
        big_paths = [big / f"{k:05d}.jpg" for k in range(len(pick))]
        mb = sum(p.stat().st_size for p in big_paths) / len(big_paths) / 1e3
        print(f"upscaled to 1500x1125 JPEGs ({mb:.0f} KB each)", flush=True)
        cat_small = _save(pd.DataFrame({"id": [f"p{k:05d}" for k in range(len(pick))],
                                        "path": [str(p) for p in pick], "split": "train",
                                        "style": [p.parent.name for p in pick]}), work / "small.parquet")
        cat_big = _save(pd.DataFrame({"id": [f"p{k:05d}" for k in range(len(pick))],
                                      "path": [str(p) for p in big_paths], "split": "train",
                                      "style": [p.parent.name for p in pick]}), work / "big.parquet")
        cache = PreparedCache(work / "prep", 256)
        cache.prepare(cat_small, job=Job(progress=False))
        ids = cat_small.ids
        torch.manual_seed(0)
        net = create_backbone(args.backbone, pretrained=args.pretrained != "none").eval()
        size, pre = net.preprocess.size, net.preprocess
        flops = _flops_per_image(net, size)
        peak, peak_how = _peak_gflops(threads)
        res.update({"gflops_per_image": flops / 1e9, "peak_gflops": peak, "peak": peak_how})
        runs = {}
        for spec in args.engines.split(","):
            eng, prec = spec.split(":")
            if eng == "torch-previous":
                runs[spec] = _Previous(create_backbone(args.backbone, pretrained=args.pretrained != "none").eval(),
                                       device)
            elif eng == "onnxruntime":
                try:
                    runs[spec] = _OnnxRuntime(net, threads, work)
                except (ImportError, Exception) as exc:  # noqa: BLE001  (an optional row)
                    print(f"skipping {spec}: {type(exc).__name__}: {exc}", file=sys.stderr)
                    continue
            else:
                runs[spec] = E.FeatureEngine(net, engine=eng, precision=prec, device=device)
            _features_pass(runs[spec], cache, ids[:args.batch], args.batch, pre, size)  # warm: compile both views
        times: dict[str, list[float]] = {k: [] for k in ["decode", *(["decode (nvjpeg)"] if cuda else []), "prepare",
                                                          *runs, "stored features", "end-to-end"]}
        feats: dict = {}
        for r in range(args.rounds):
            t0 = time.perf_counter()
            with ProcessPoolExecutor(args.workers) as ex:
                list(ex.map(decode_resized, big_paths, [256] * len(big_paths), chunksize=8))
            times["decode"].append(time.perf_counter() - t0)
            if cuda:
                t0 = time.perf_counter()
                gpu = _decode_nvjpeg(big_paths, 256, device)
                times["decode (nvjpeg)"].append(time.perf_counter() - t0)
                if r == 0:
                    cpu = np.stack([decode_resized(p, 256) for p in big_paths[:32]])
                    res["nvjpeg_mean_abs_diff"] = float(np.abs(gpu[:32].astype(np.int16) - cpu).mean())
            d = work / f"prep-big-{r}"
            t0 = time.perf_counter()
            PreparedCache(d, 256).prepare(cat_big, workers=args.workers, job=Job(progress=False))
            times["prepare"].append(time.perf_counter() - t0)
            shutil.rmtree(d)
            print(f"round {r + 1}: decoded and prepared", file=sys.stderr, flush=True)
            for spec, run in runs.items():
                dt, out = _features_pass(run, cache, ids, args.batch, pre, size)
                times[spec].append(dt)
                feats[spec] = out
                print(f"round {r + 1}: {spec} {dt:.2f} s", file=sys.stderr, flush=True)
            if product in runs:  # the same pass as the product runs it: into a feature store
                E.configure(*product.split(":"))
                t0 = time.perf_counter()
                for view in ("center", "flip"):
                    extract_features(cat_small, net, cache_dir=str(work / "prep"), view=view, batch_size=args.batch,
                                     job=Job(progress=False, log=lambda *_: None))
                times["stored features"].append(time.perf_counter() - t0)
                shutil.rmtree(work / "prep" / "features")
            if not args.no_end_to_end:
                d = work / f"e2e-{r}"
                E.configure(*product.split(":"))
                t0 = time.perf_counter()
                for view in ("center", "flip"):
                    extract_features(cat_big, net, cache_dir=str(d), view=view, batch_size=args.batch,
                                     job=Job(progress=False, log=lambda *_: None))
                times["end-to-end"].append(time.perf_counter() - t0)
                shutil.rmtree(d)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        n = len(pick)
        med = {k: statistics.median(v) for k, v in times.items() if v}
        base_spec = next(iter(runs))
        ref = feats.get("torch:fp32") or feats[base_spec]
        print(f"\n{'stage':<28}{'paintings/s':>12}{'views/s':>10}{'vs baseline':>12}{'GFLOP/s':>9}{'% peak':>8}"
              f"{'max rel err':>13}{'WikiArt':>10}")
        for k, dt in med.items():
            rate = n / dt
            row = {"stage": k, "paintings_per_s": rate, "seconds": dt, "rounds": times[k]}
            views = gf = pct = err = None
            if k in runs:
                views = 2 * rate
                gf = views * flops / 1e9
                pct = None if cuda else 100 * gf / peak
                err = max(_rel(feats[k][v][i], ref[v][i]) for v in ("center", "flip") for i in range(3))
                row.update({"views_per_s": views, "gflops_per_s": gf, "pct_of_peak": pct, "max_rel_err": err,
                            "speedup": med[base_spec] / dt})
                if args.downstream:
                    row["downstream"] = _downstream(feats[k], y)
            proj = WIKIART / rate / 60
            row["wikiart_minutes"] = proj
            res["rows"].append(row)
            print(f"{k:<28}{rate:>12.1f}{(f'{views:.1f}' if views else '-'):>10}"
                  f"{(format(row['speedup'], '.2f') + 'x' if 'speedup' in row else '-'):>12}"
                  f"{(f'{gf:.1f}' if gf else '-'):>9}{(f'{pct:.0f}%' if pct else '-'):>8}"
                  f"{(f'{err:.1e}' if err is not None else '-'):>13}{proj:>8.1f} min")
        if "end-to-end" in med and product in med:
            ratio = med["end-to-end"] / med[product]
            res["end_to_end_over_features"] = ratio
            print(f"\nend to end (JPEG -> stored features, first run) / the engine's pass ({product}): {ratio:.2f}x")
            if med.get("stored features"):
                ratio = med["end-to-end"] / med["stored features"]
                res["end_to_end_over_stored_features"] = ratio
                print(f"end to end / the features stage from a prepared cache into a store ({product}): {ratio:.2f}x")
        if "nvjpeg_mean_abs_diff" in res:
            print(f"nvJPEG + GPU resize against the cache's decode: mean absolute difference "
                  f"{res['nvjpeg_mean_abs_diff']:.2f} of 255")
        print(f"backbone {flops / 1e9:.2f} GFLOPs per image" +
              ("" if cuda else f"; fp32 peak {peak:.0f} GFLOP/s ({peak_how})"))
        if args.downstream:
            print(f"\n{'engine':<28}{'style macro-F1':>16}{'P@10':>8}{'label-issue AUROC':>19}")
            for row in res["rows"]:
                if "downstream" in row:
                    d = row["downstream"]
                    print(f"{row['stage']:<28}{d['style_macro_f1']:>16.4f}{d['retrieval_p10']:>8.4f}"
                          f"{d['label_issue_auroc']:>19.4f}")
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

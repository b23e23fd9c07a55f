"""Training input pipeline: images per second from raw JPEGs versus from the prepared-image cache.

Both pipelines feed a ``torch.utils.data.DataLoader`` (2 worker processes, batches of 32, shuffled)
and produce the same thing, a normalised float batch ``[32, 3, 224, 224]`` of augmented crops:

- **raw JPEG**: ``load_image`` (the project's safe loader: full decode, EXIF, RGB) then torchvision
  ``RandomResizedCrop(224, scale=(0.5, 1))``, horizontal flip, to tensor, normalise;
- **raw + draft**: the same, but JPEG draft decoding to at least 256 px (libjpeg's DCT scaling), the
  strongest raw baseline: it reads no more detail than the cache keeps;
- **cache**: the uint8 ``[256, 256, 3]`` memmap written by ``artextract prepare`` then the same crop,
  flip and normalisation on tensors (what ``training`` fine-tuning does).

Datasets: (a) the shared WikiArt sample as it is (224 x 224 JPEGs), through ``ingest_wikiart``;
(b) upscaled copies at WikiArt's usual size (about 1,500 px on the long side, mixed portrait and
landscape, with a little grain so they compress like paintings rather than like smooth upscales),
written once under ``benchmarks/out/loader/`` (gitignored).

The process (and so its DataLoader workers) is pinned to ``--cores`` CPUs (default 2). Epoch 1 of
each loader is a warm-up (worker start, page cache); then ``--rounds`` epochs of each are timed, the
loaders taking turns so that background load on a shared machine hits them alike; medians are reported.

    .venv/bin/python benchmarks/bench_loader.py                 # full run, a few minutes on 2 cores
    .venv/bin/python benchmarks/bench_loader.py --n 256 --n-large 64 --rounds 1   # quick look
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torchvision.transforms.v2 as T
from PIL import Image

from artextract.data.cache import PreparedCache
from artextract.data.catalog import Catalog, TaskSpec
from artextract.data.images import load_image
from artextract.data.wikiart import ingest_wikiart
from artextract.job import Job

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# long side 1500, the short side varies like real paintings' aspect ratios
ASPECTS = [(1500, 1125), (1125, 1500), (1500, 1200), (1200, 1500), (1500, 1000), (1000, 1500), (1500, 1500)]


# ---------------------------------------------------------------------- datasets
class RawJPEGs(torch.utils.data.Dataset):
    def __init__(self, paths: list[str], crop: int, draft: int | None = None):
        self.paths, self.draft = paths, draft
        self.tf = T.Compose([
            T.RandomResizedCrop(crop, scale=(0.5, 1.0), antialias=True),
            T.RandomHorizontalFlip(),
            T.PILToTensor(),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(MEAN, STD),
        ])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        return self.tf(load_image(self.paths[i], draft_size=self.draft))


class CachedImages(torch.utils.data.Dataset):
    """Crops from the prepared-image cache; the memmap is opened lazily in each worker."""

    def __init__(self, cache_root: Path, size: int, ids: list[str], crop: int):
        self.cache_root, self.size, self.ids = cache_root, size, ids
        self.cache: PreparedCache | None = None
        self.crop = T.RandomResizedCrop(crop, scale=(0.5, 1.0), antialias=True)
        self.norm = T.Normalize(MEAN, STD)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i):
        if self.cache is None:
            self.cache = PreparedCache(self.cache_root, self.size)
        x = torch.from_numpy(np.ascontiguousarray(self.cache.get(self.ids[i]))).permute(2, 0, 1)
        x = self.crop(x)
        if torch.rand(1) < 0.5:
            x = x.flip(-1)
        return self.norm(x.float().div_(255.0))


def _loader(ds, batch: int, workers: int):
    return torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                       persistent_workers=workers > 0, drop_last=False)


def _epoch(dl, crop: int | None = None) -> tuple[int, float]:
    n, t0 = 0, time.perf_counter()
    for x in dl:
        if crop is not None:
            assert x.dtype == torch.float32 and tuple(x.shape[1:]) == (3, crop, crop), x.shape
        n += x.shape[0]
    return n, time.perf_counter() - t0


def measure(datasets: dict[str, torch.utils.data.Dataset], batch: int, workers: int, rounds: int,
            crop: int) -> dict[str, list[float]]:
    """Images/s of each dataset's loader, one epoch per round after a warm-up epoch. The loaders take
    turns within each round, so on a shared machine they see the same background load."""
    loaders = {k: _loader(ds, batch, workers) for k, ds in datasets.items()}
    rates: dict[str, list[float]] = {k: [] for k in loaders}
    for k, dl in loaders.items():  # warm-up: worker start, page cache
        _, warm = _epoch(dl, crop)
        print(f"  {k:<12} warm-up epoch {warm:5.1f}s", flush=True)
    for _ in range(rounds):
        for k, dl in loaders.items():
            n, dt = _epoch(dl)
            rates[k].append(n / dt)
    for k, r in rates.items():
        print(f"  {k:<12} {np.median(r):8.1f} img/s  (median of {len(r)}: "
              + ", ".join(f"{v:.0f}" for v in r) + ")", flush=True)
    del loaders
    return rates


# ---------------------------------------------------------------------- data
def sample_catalog(labels: Path, sample: Path, n: int | None, out: Path) -> Catalog:
    cat, rep = ingest_wikiart(labels, sample)
    if n is not None and n < len(cat):
        keep = np.zeros(len(cat), bool)
        keep[np.random.default_rng(0).choice(len(cat), n, replace=False)] = True
        cat = cat.subset(keep)
    cat.save(out / "sample.parquet")
    return cat


def large_catalog(src: Catalog, n: int, long_side: int, out: Path) -> Catalog:
    """Upscaled copies of ``n`` sample images, ~``long_side`` px on the long side (made once)."""
    root = out / f"large{long_side}"
    rng = np.random.default_rng(0)
    pick = rng.choice(len(src), min(n, len(src)), replace=False)
    rows, made, t0 = [], 0, time.perf_counter()
    for j, i in enumerate(sorted(pick)):
        row = src.df.iloc[i]
        rel = row["path"]
        dst = root / rel
        if not dst.exists():
            w, h = ASPECTS[j % len(ASPECTS)]
            scale = long_side / 1500
            img = load_image(src.image_path(rel)).resize((round(w * scale), round(h * scale)),
                                                          Image.Resampling.BICUBIC)
            arr = np.asarray(img, np.float32) + np.random.default_rng(j).normal(0, 4, (img.height, img.width, 1))
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(dst.name + ".tmp")
            Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(tmp, "JPEG", quality=90)
            os.replace(tmp, dst)
            made += 1
        rows.append({"id": row["id"], "path": rel, "split": "train", "style": row["style"]})
    if made:
        print(f"  made {made} upscaled JPEGs in {root} ({time.perf_counter() - t0:.0f}s)", flush=True)
    df = pd.DataFrame(rows)
    cat = Catalog(df, {"style": TaskSpec("style", sorted(df["style"].unique()))}, root)
    cat.save(out / f"large{long_side}.parquet")
    return cat


def describe(cat: Catalog, k: int = 20) -> tuple[str, float]:
    paths = cat.image_paths()
    sizes = [Image.open(p).size for p in paths[:k]]
    mb = sum(os.path.getsize(p) for p in paths) / len(paths) / 1e6
    longest = int(np.median([max(s) for s in sizes]))
    shortest = int(np.median([min(s) for s in sizes]))
    return f"{longest}x{shortest}" if longest != shortest else f"{longest}x{longest}", mb


# ---------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labels", type=Path, default=SHARED / "wikiart_labels")
    ap.add_argument("--sample", type=Path, default=SHARED / "wikiart_sample")
    ap.add_argument("--n", type=int, default=None, help="sample images to use (default: all 1,403)")
    ap.add_argument("--n-large", type=int, default=256, help="upscaled images to make and use (default 256)")
    ap.add_argument("--long-side", type=int, default=1500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--size", type=int, default=256, help="cache size (default 256)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="timed epochs per loader after one warm-up epoch, loaders taking turns (default 3)")
    ap.add_argument("--cores", type=int, default=2, help="pin to this many CPUs (0: no pinning; default 2)")
    ap.add_argument("--no-draft", action="store_true", help="skip the raw + draft column")
    ap.add_argument("--skip-sample", action="store_true")
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "loader")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the table (and command) here")
    args = ap.parse_args(argv)

    if not args.labels.is_dir() or not args.sample.is_dir():
        print(f"shared data not found ({args.labels}, {args.sample}); it lives in ../shared/data", file=sys.stderr)
        return 2
    if args.cores and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[: args.cores]
        os.sched_setaffinity(0, cpus)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)

    print(f"ArtExtract loader benchmark: {cores} CPU core(s) ({platform.processor() or platform.machine()}), "
          f"DataLoader {args.workers} workers, batch {args.batch}, crop {args.crop}, cache {args.size}px, "
          f"median of {args.rounds} timed epoch(s) after 1 warm-up; torch {torch.__version__}", flush=True)
    print(f"load average before: {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "", flush=True)

    cat = sample_catalog(args.labels, args.sample, args.n, args.out)
    sets = []
    if not args.skip_sample:
        sets.append(("WikiArt sample", cat))
    if not args.skip_large:
        sets.append((f"upscaled to {args.long_side} px", large_catalog(cat, args.n_large, args.long_side, args.out)))

    rows = []
    for name, c in sets:
        px, mb = describe(c)
        cache_root = args.out / f"{Path(c.path).stem}.cache"
        cache = PreparedCache(cache_root, args.size)
        t0 = time.perf_counter()
        res = cache.prepare(c, workers=args.workers, job=Job(progress=False))
        prep = res.added / (time.perf_counter() - t0) if res.added else float("nan")
        if len(res.failed):
            print(res.failed.summary())
        ids = [k for k in c.ids if cache.has(k)]
        paths = [str(c.image_path(p)) for p, k in zip(c.df["path"], c.ids) if cache.has(k)]
        print(f"{name}: {len(ids)} images, {px} px, {mb * 1000:.0f} KB/file; prepare "
              + (f"{prep:.0f} img/s (one-off)" if res.added else "already done"), flush=True)
        r = {"dataset": name, "images": len(ids), "px": px, "mb": mb}
        datasets = {"raw": RawJPEGs(paths, args.crop)}
        if not args.no_draft:
            datasets["draft"] = RawJPEGs(paths, args.crop, draft=args.size)
        datasets["cache"] = CachedImages(cache_root, args.size, ids, args.crop)
        for k, v in measure(datasets, args.batch, args.workers, args.rounds, args.crop).items():
            r[k] = float(np.median(v))
        rows.append(r)

    head = ["dataset", "images", "image px", "KB/file", "raw JPEG img/s"]
    if not args.no_draft:
        head.append("raw+draft img/s")
    head += ["cache img/s", "cache vs raw"]
    if not args.no_draft:
        head.append("cache vs draft")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [r["dataset"], f"{r['images']:,}", r["px"], f"{r['mb'] * 1000:.0f}", f"{r['raw']:.0f}"]
        if not args.no_draft:
            cells.append(f"{r['draft']:.0f}")
        cells += [f"{r['cache']:.0f}", f"{r['cache'] / r['raw']:.1f}x"]
        if not args.no_draft:
            cells.append(f"{r['cache'] / r['draft']:.1f}x")
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print()
    print(table)
    if hasattr(os, "getloadavg"):
        print(f"\nload average after: {os.getloadavg()[0]:.2f} on {cores} core(s)")
    if args.markdown:
        args.markdown.write_text(table + "\n")
        print(f"table written to {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

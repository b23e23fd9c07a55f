"""Collection scale: every command past the CNN on synthetic collections of growing size.

For each size N the benchmark writes a synthetic catalogue (style 27 classes, genre 10, artist 23 on a
third of the rows, 10% val) and, straight into the stores, what the CNN would have written: MobileNetV2-
shaped feature maps (1280 x 7 x 7 float16), pooled vectors and 752 style statistics per painting, with a
class signal so that training learns, and a 64 px prepared-image cache for the perceptual hashes. No CNN
runs; the memory figures are those of real MobileNetV2 stores. Then it runs, each as its own process:

    catalog info, train (1 epoch, no refit), outliers --task style, duplicates, index (ivf),
    similar --all, and the 2-D map of the index's vectors (report.layout.embed_2d)

and prints per command: wall time, peak anonymous memory (RssAnon of the process tree, sampled every
50 ms; the memory-mapped stores are file-backed and not counted), disk written (bytes of new files) and
the growth exponent of the time between sizes, log(t2 / t1) / log(N2 / N1). It also measures the
MobileNetV2 features stage (the inference engine) on this machine and projects the total for the full WikiArt (81,446).

    python benchmarks/bench_scale.py --sizes 2000,20000,100000 --work /tmp/scale \
        --json benchmarks/results/scale.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from artextract.data.catalog import Catalog, TaskSpec  # noqa: E402
from artextract.data.store import OK, SlotStore  # noqa: E402
from artextract.models.features import _store_name  # noqa: E402

SHAPE = (1280, 7, 7)   # MobileNetV2's last map at 224 px
STATS = 752            # its style statistics
CACHE = 64             # side of the prepared images the hashes read
WIKIART = 81_446
TASKS = {"style": 27, "genre": 10, "artist": 23}


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- synthetic collection
def make_collection(root: Path, n: int, seed: int = 0) -> Path:
    """Catalogue + feature store + 64 px cache for ``n`` paintings under ``root``; the catalogue path."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    ids = [f"p{i:07d}" for i in range(n)]
    labels = {t: rng.integers(0, k, n) for t, k in TASKS.items()}
    df = pd.DataFrame({"id": ids, "path": [f"img/{k}.jpg" for k in ids],
                       "split": np.where(rng.random(n) < 0.1, "val", "train")})
    for t, k in TASKS.items():
        col = np.array([f"{t}_{c:02d}" for c in labels[t]], dtype=object)
        if t == "artist":
            col[rng.random(n) > 0.33] = None
        df[t] = col
    cat = Catalog(df, {t: TaskSpec(t, [f"{t}_{c:02d}" for c in range(k)]) for t, k in TASKS.items()}, root / "img")
    path = root / "catalog.parquet"
    cat.save(path)
    cache = root / "catalog.cache"
    meta = {"backbone": "mobilenet_v2", "image_size": 224, "view": "center", "pretrained": True, "weights": None}
    fdir = cache / "features" / _store_name("mobilenet_v2", 224, "center", None, True)
    stores = {"maps": SlotStore(fdir / "maps", SHAPE, np.float16, meta),
              "pooled": SlotStore(fdir / "pooled", SHAPE[:1], np.float32, meta),
              "stats": SlotStore(fdir / "stats", (STATS,), np.float32, meta),
              "pixels": SlotStore(cache / f"s{CACHE}", (CACHE, CACHE, 3), np.uint8)}
    for s in stores.values():
        s.reserve(ids)
    # class signal: a style direction and a genre direction per painting, plus noise from a bank
    cs = rng.normal(size=(TASKS["style"], SHAPE[0])).astype(np.float32)
    cg = rng.normal(size=(TASKS["genre"], SHAPE[0])).astype(np.float32)
    bank = rng.normal(size=(512, *SHAPE)).astype(np.float16)
    sbank = rng.normal(size=(512, STATS)).astype(np.float32)
    B = 2048
    for s in range(0, n, B):
        e = min(n, s + B)
        j = np.arange(s, e)
        sig = 0.6 * cs[labels["style"][j]] + 0.4 * cg[labels["genre"][j]]
        m = bank[j % 512].astype(np.float32) + bank[(j * 7 + 3) % 512] + sig[:, :, None, None]
        # per-painting channel gains: no two paintings share a pattern, and unrelated paintings' pooled
        # vectors have cosines well below the duplicate thresholds, as real MobileNetV2 vectors do
        m *= rng.lognormal(0.0, 1.0, (len(j), SHAPE[0], 1, 1)).astype(np.float32)
        m = np.maximum(m, 0).astype(np.float16)  # post-ReLU maps
        stores["maps"].data[s:e] = m
        stores["pooled"].data[s:e] = m.astype(np.float32).mean((2, 3))
        stores["stats"].data[s:e] = sbank[j % 512] + sbank[(j * 5 + 1) % 512] + rng.normal(size=(len(j), STATS))
        # every picture its own smooth random image (a real collection has few near-duplicates)
        coarse = rng.integers(0, 256, (len(j), 8, 8, 3), dtype=np.uint8)
        stores["pixels"].data[s:e] = coarse.repeat(CACHE // 8, 1).repeat(CACHE // 8, 2)
    for st in stores.values():
        st.data.flush()
        st.status[:n] = OK
        st.status.flush()
        st._write_json("failures.json", {})
    return path


# ---------------------------------------------------------------------- measuring a command
def _anon_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def _du(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                pass
    return total


def measure(cmd: list[str], cwd: Path, env: dict) -> dict:
    """Wall time, peak anonymous memory of the process tree, disk written under ``cwd``."""
    before = _du(cwd)
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], sum(_anon_kb(p) for p in _tree(proc.pid)))
            time.sleep(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = proc.communicate()
    done.set()
    th.join()
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return {"seconds": wall, "peak_anon_mb": peak[0] / 1024, "disk_mb": max(0, _du(cwd) - before) / 2**20,
            "stdout_tail": out[-300:]}


MAP_SCRIPT = """
import sys, time, numpy as np
from artextract.similarity.index import EmbeddingIndex
from artextract.report.layout import embed_2d
idx = EmbeddingIndex.load(sys.argv[1])
x = idx.vectors()
t = time.time(); y = embed_2d(x, seed=0)
print(f"map of {len(y)} points in {time.time() - t:.1f}s")
"""


def commands(n: int) -> list[tuple[str, list[str]]]:
    art = [sys.executable, "-m", "artextract"]
    return [
        ("catalog info", art + ["catalog", "info", "catalog.parquet", "--json"]),
        ("train (1 epoch)", art + ["train", "--catalog", "catalog.parquet", "--out", "run", "--epochs", "1",
                                   "--no-refit", "--no-flip-augment", "--no-progress"]),
        ("outliers --task style", art + ["outliers", "--catalog", "catalog.parquet", "--task", "style",
                                         "--out", "outliers.csv", "--no-progress"]),
        ("duplicates", art + ["duplicates", "--catalog", "catalog.parquet", "--cache-size", str(CACHE),
                              "--out", "dups.csv", "--no-progress"]),
        ("index (ivf)", art + ["index", "--catalog", "catalog.parquet", "--out", "idx", "--index-type", "ivf",
                               "--no-progress"]),
        ("similar --all", art + ["similar", "--index", "idx", "--all", "-k", "10", "--out", "all.csv",
                                 "--no-progress"]),
        ("map (report.layout)", [sys.executable, "-c", MAP_SCRIPT, "idx"]),
    ]


def cnn_rate(batch: int = 32, steps: int = 4) -> float:
    """MobileNetV2 features stage on this machine, views/s: prepared uint8 images through the inference
    engine (:meth:`FeatureEngine.stream`, the process's default engine and precision), map, pooled vector and
    style statistics out, as every command computes them."""
    import numpy as np

    from artextract.models.backbones import create_backbone
    from artextract.models.engine import FeatureEngine, configure

    configure()
    run = FeatureEngine(create_backbone("mobilenet_v2", pretrained=True).eval())
    u8 = np.random.default_rng(0).integers(0, 256, (batch, 256, 256, 3), dtype=np.uint8)
    ids = [f"p{i}" for i in range(batch)]
    for _ in run.stream([(ids, u8)]):  # warm: converts and compiles once
        pass
    t = time.time()
    for _ in run.stream((ids, u8) for _ in range(steps)):
        pass
    return batch * steps / (time.time() - t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="2000,20000,100000", help="comma-separated collection sizes")
    ap.add_argument("--work", default="/tmp/artextract-scale", help="scratch folder (deleted size by size)")
    ap.add_argument("--json", default=None, help="write the measurements here")
    ap.add_argument("--keep", action="store_true", help="keep each size's folder")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    results: dict = {"cpus": os.cpu_count(), "load_average_start": os.getloadavg(), "sizes": sizes, "rows": {}}
    for n in sizes:
        d = Path(args.work) / f"n{n}"
        shutil.rmtree(d, ignore_errors=True)
        t = time.time()
        make_collection(d, n)
        log(f"{n:,}: synthetic collection written in {time.time() - t:.0f}s ({_du(d) / 2**30:.1f} GiB)")
        for name, cmd in commands(n):
            r = measure(cmd, d, env)
            results["rows"].setdefault(name, {})[n] = r
            log(f"  {name}: {r['seconds']:.1f}s, peak anon {r['peak_anon_mb']:.0f} MB, wrote {r['disk_mb']:.0f} MB")
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    rate = cnn_rate()
    results["features_views_per_s"] = rate
    results["load_average_end"] = os.getloadavg()
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def table(results: dict) -> str:
    sizes = results["sizes"]
    head = "| command | " + " | ".join(f"{n:,}: s / peak MB / disk MB" for n in sizes) + " | time exponent |"
    lines = [head, "|---|" + "---:|" * (len(sizes) + 1)]
    for name, by in results["rows"].items():
        cells = []
        for n in sizes:
            r = by.get(n) or by.get(str(n))
            cells.append(f"{r['seconds']:.1f} / {r['peak_anon_mb']:.0f} / {r['disk_mb']:.0f}" if r else "-")
        exps = []
        for a, b in zip(sizes, sizes[1:]):
            ra, rb = by.get(a) or by.get(str(a)), by.get(b) or by.get(str(b))
            if ra and rb:
                exps.append(f"{math.log(rb['seconds'] / ra['seconds']) / math.log(b / a):.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {', '.join(exps)} |")
    rate = results.get("features_views_per_s")
    if rate:
        n0 = max(sizes)
        past = sum((by.get(n0) or by.get(str(n0)))["seconds"] for by in results["rows"].values())
        cnn = 2 * WIKIART / rate  # centre and mirrored view
        lines += ["", f"MobileNetV2 features stage on this machine: {rate:.1f} views/s; the full WikiArt ({WIKIART:,} "
                      f"paintings, two views) needs about {cnn / 60:.0f} min of it, then the commands above "
                      f"(measured at {n0:,}: {past / 60:.0f} min in all)."]
    lines.append(f"{results['cpus']} CPUs; load average {results['load_average_start'][0]:.1f} at the start, "
                 f"{results.get('load_average_end', [0])[0]:.1f} at the end.")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

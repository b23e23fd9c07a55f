"""Images per OpenVINO request: the engine's feature-stage throughput by request size.

``FeatureEngine.stream`` cuts each batch into requests of ``PART`` images (``ARTEXTRACT_ENGINE_PART``)
with ``IN_FLIGHT`` requests queued per stream. This times both views of real WikiArt paintings from
the sample (decoded as the cache stores them, 256 px) for each request size, interleaved rounds, median.

    .venv/bin/python benchmarks/bench_engine_requests.py --precision fp32
    .venv/bin/python benchmarks/bench_engine_requests.py --precision bf16
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from artextract.data.cache import decode_resized  # noqa: E402
from artextract.models import engine as E  # noqa: E402
from artextract.models.backbones import create_backbone  # noqa: E402

SAMPLE = ROOT.parent / "shared" / "data" / "wikiart_sample"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--parts", default="1,2,4,8,16")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    files = sorted(SAMPLE.rglob("*.jpg"))[:args.n]
    if not files:
        print(f"{SAMPLE} not found: this benchmark needs the shared WikiArt sample", file=sys.stderr)
        return 2
    u8 = np.stack([decode_resized(f, 256) for f in files])
    net = create_backbone("mobilenet_v2").eval()
    eng = E.FeatureEngine(net, engine="openvino", precision=args.precision, device=torch.device("cpu"))

    def run(part: int) -> float:
        E.PART = part
        t0 = time.perf_counter()
        for view in ("center", "flip"):
            for _ in eng.stream(((list(range(a, a + 32)), u8[a:a + 32]) for a in range(0, len(u8), 32)), view=view):
                pass
        return 2 * len(u8) / (time.perf_counter() - t0)

    parts = [int(p) for p in args.parts.split(",")]
    for p in parts:  # warm: compile both views
        run(p)
    rates: dict[int, list[float]] = {p: [] for p in parts}
    for _ in range(args.rounds):
        for p in parts:
            rates[p].append(run(p))
    print(f"mobilenet_v2, OpenVINO {args.precision}, {len(u8)} paintings x 2 views, median of {args.rounds}")
    print(f"{'images per request':>20}{'views/s':>10}")
    for p in parts:
        print(f"{p:>20}{statistics.median(rates[p]):>10.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Helpers of the inference-engine tests: prepared images, the parts a stream yields, relative errors."""
from __future__ import annotations

import numpy as np
import torch


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest difference, relative to the largest value of ``b``."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def prepared(n: int, s: int, seed: int = 0) -> np.ndarray:
    """``n`` random prepared images, uint8 ``[n, s, s, 3]``."""
    return np.random.default_rng(seed).integers(0, 256, (n, s, s, 3), dtype=np.uint8)


def collect(parts) -> dict:
    """``{id: (map, pooled, stats)}`` from what :meth:`FeatureEngine.stream` yields, checking each part."""
    got = {}
    for ids, fm, pv, sv in parts:
        assert len(ids) == len(fm) == len(pv) == len(sv)
        for j, k in enumerate(ids):
            got[k] = (fm[j], pv[j], sv[j])
    return got

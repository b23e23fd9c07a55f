"""The scale benchmark runs end to end on a tiny collection and its stores are the real format."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
import bench_scale as B


@pytest.mark.slow
def test_synthetic_collection_is_a_complete_mobilenet_store(tmp_path):
    from artextract.data.catalog import Catalog
    from artextract.job import Job
    from artextract.models.features import extract_features

    path = B.make_collection(tmp_path / "c", 120)
    cat = Catalog.load(path)
    fs = extract_features(cat, "mobilenet_v2", job=Job(progress=False))  # complete: read without pixels or a model
    assert fs.maps.item_shape == B.SHAPE and fs.stats_dim == B.STATS
    maps = fs.get_maps(cat.ids[:10])
    np.testing.assert_allclose(fs.get_pooled(cat.ids[:10]), maps.astype(np.float32).mean((2, 3)), rtol=1e-3, atol=1e-3)
    # the style signal is in the pooled vectors: same-style paintings are closer than the others
    y = cat.label_indices("style")
    X = fs.get_pooled(cat.ids)
    X = X - X.mean(0)
    d = ((X[:, None] - X[None]) ** 2).sum(-1)
    same = y[:, None] == y[None]
    assert d[same & ~np.eye(len(y), dtype=bool)].mean() < d[~same].mean()


@pytest.mark.slow
def test_bench_scale_runs_and_prints_its_table(tmp_path):
    out = tmp_path / "scale.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_scale.py"), "--sizes", "150,300",
                        "--work", str(tmp_path / "w"), "--json", str(out)], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert set(res["rows"]) == {name for name, _ in B.commands(0)}
    for by in res["rows"].values():
        for m in by.values():
            assert m["seconds"] > 0 and m["peak_anon_mb"] > 50  # a Python process with numpy at least
    assert "| train (1 epoch) |" in r.stdout and "features stage on this machine:" in r.stdout and "views/s" in r.stdout

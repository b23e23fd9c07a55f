"""torchrun splits the catalogue across ranks: 2 gloo processes prepare, embed and index exactly what
one process does."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from artextract.data.cache import PreparedCache
from artextract.data.store import SlotStore
from artextract.similarity.index import EmbeddingIndex


def _store(root, name):
    d = root / "features" / name
    info = json.loads((d / "maps" / "index.json").read_text())
    return SlotStore(d / "maps", info["item_shape"], np.float16), SlotStore(d / "pooled", info["item_shape"][:1], np.float32)


@pytest.mark.slow
def test_two_ranks_write_the_feature_store_and_index_one_process_writes(tmp_path, demo_catalog):
    cats = {}
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        cat = demo_catalog.subset(np.ones(len(demo_catalog), bool))
        cat.save(tmp_path / name / "catalog.parquet")
        cats[name] = cat
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["index", "--backbone", "tiny_cnn", "--pretrained", "none", "--no-progress"]
    one = subprocess.run([sys.executable, "-m", "artextract", *args, "--catalog", str(tmp_path / "one" / "catalog.parquet"),
                          "--out", str(tmp_path / "one" / "idx")], capture_output=True, text=True, timeout=600, env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(30500 + os.getpid() % 1000), "-m", "artextract", *args,
                          "--catalog", str(tmp_path / "two" / "catalog.parquet"), "--out", str(tmp_path / "two" / "idx")],
                         capture_output=True, text=True, timeout=600, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "on 2 ranks" in two.stderr
    ids = demo_catalog.ids
    c1, c2 = (PreparedCache(tmp_path / n / "catalog.cache", 256) for n in ("one", "two"))
    assert all(c2.has(k) for k in ids)
    for k in ids[::17]:
        np.testing.assert_array_equal(c1.get(k), c2.get(k))
    name = next((tmp_path / "one" / "catalog.cache" / "features").iterdir()).name
    (m1, p1), (m2, p2) = _store(tmp_path / "one" / "catalog.cache", name), _store(tmp_path / "two" / "catalog.cache", name)
    assert not list((tmp_path / "two" / "catalog.cache").rglob("failures.rank*.json"))
    np.testing.assert_array_equal(m1.gather(ids), m2.gather(ids))
    np.testing.assert_allclose(p1.gather(ids), p2.gather(ids), rtol=0, atol=1e-6)
    i1, i2 = EmbeddingIndex.load(tmp_path / "one" / "idx"), EmbeddingIndex.load(tmp_path / "two" / "idx")
    assert sorted(i1.ids) == sorted(i2.ids) == sorted(ids)
    np.testing.assert_allclose(i1.vectors([i1.position(k) for k in ids]), i2.vectors([i2.position(k) for k in ids]),
                               atol=1e-6)

"""Training streams the stored maps: the batches are the recipe's (order, views) read from the store,
and torchrun ranks train one model together."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from artextract.data.catalog import Catalog
from artextract.training.config import TrainConfig
from artextract.training.data import StoredMaps, epoch_order, train_loader
from artextract.training.train import _feature_sets, targets_for, train

TINY = dict(backbone="tiny_cnn", pretrained=False, cache_size=64, image_size=64, progress=False)


@pytest.fixture()
def demo(tmp_path, demo_catalog):
    cat = demo_catalog.subset(np.ones(len(demo_catalog), bool))
    cat.save(tmp_path / "catalog.parquet")
    return tmp_path / "catalog.parquet"


def test_batches_are_the_recipes_order_and_views_read_from_the_store(demo):
    cat = Catalog.load(demo)
    cfg = TrainConfig(catalog=str(demo), out="unused", **TINY)
    fsets = _feature_sets(cat, cfg, 0, 1, lambda *a: None)
    ids = cat.ids[::2]
    tasks = list(cat.tasks)
    ds = StoredMaps(fsets, ids, targets_for(cat, ids, tasks), stats=True, flip_augment=True, seed=3)
    # the in-memory reference: every map gathered at once, the epoch's permutation and flips applied
    X = {v: fsets[v].get_maps(ids) for v in ("center", "flip")}
    S = {v: fsets[v].get_stats(ids) for v in ("center", "flip")}
    y = targets_for(cat, ids, tasks)
    for epoch in (0, 5):
        perm, flip, _ = epoch_order(len(ids), 3, epoch)
        batches = list(train_loader(ds, 16, 3, epoch))
        assert sum(len(b["idx"]) for b in batches) == len(ids)
        for s, b in enumerate(batches):
            idx = perm[s * 16:(s + 1) * 16]
            assert torch.equal(b["idx"], idx)
            want = np.where(flip[idx].numpy()[:, None, None, None], X["flip"][idx], X["center"][idx])
            np.testing.assert_array_equal(b["x"].numpy(), want.astype(np.float32))
            want_s = np.where(flip[idx].numpy()[:, None], S["flip"][idx], S["center"][idx])
            np.testing.assert_array_equal(b["s"].numpy(), want_s)
            for t in tasks:
                assert torch.equal(b["y"][t], y[t][idx])
        assert flip.any() and (~flip).any()
    # two ranks together read every painting of the epoch once, each its half of every global batch
    r0 = list(train_loader(ds, 16, 3, 1, rank=0, world=2))
    r1 = list(train_loader(ds, 16, 3, 1, rank=1, world=2))
    perm, _, _ = epoch_order(len(ids), 3, 1)
    assert torch.equal(r0[0]["idx"], perm[0:16:2]) and torch.equal(r1[0]["idx"], perm[1:16:2])
    seen = torch.cat([b["idx"] for b in r0 + r1])
    assert set(seen.tolist()) == set(range(len(ids)))


def _weights(run) -> torch.Tensor:
    sd = load_file(str(run / "model.safetensors"))
    return torch.cat([v.flatten().float() for k, v in sorted(sd.items()) if v.is_floating_point()])


@pytest.mark.slow
def test_ddp_two_gloo_processes_train_the_model_one_process_trains(demo, tmp_path):
    args = ["--catalog", str(demo), "--backbone", "tiny_cnn", "--pretrained", "none", "--cache-size", "64",
            "--image-size", "64", "--epochs", "3", "--tasks", "style,genre", "--no-progress", "--ema", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master_port", str(29500 + os.getpid() % 1000), "-m", "artextract", "train",
                        "--out", str(tmp_path / "ddp"), *args], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    for seed in (0, 1):
        r1 = subprocess.run([sys.executable, "-m", "artextract", "train", "--out", str(tmp_path / f"one{seed}"),
                             "--seed", str(seed), *args], capture_output=True, text=True, timeout=600, env=env)
        assert r1.returncode == 0, r1.stderr[-3000:]
    ddp, one, other = _weights(tmp_path / "ddp"), _weights(tmp_path / "one0"), _weights(tmp_path / "one1")
    hist = json.loads((tmp_path / "ddp" / "config.json").read_text())["history"]
    assert len(hist) == 3
    # the same model up to the batch-norm statistics, which each rank takes over its half of a batch;
    # ranks that never synchronised, or another seed, land far away
    gap = (ddp - one).norm() / (other - one).norm()
    assert gap < 0.35, float(gap)

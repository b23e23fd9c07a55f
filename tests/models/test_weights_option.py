"""`--weights FILE` of train, index, outliers and duplicates, end to end: a tiny_cnn weights file
(another random init, saved as .safetensors) is what each command's backbone computes with."""
from __future__ import annotations

import io
import json
import shutil
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from artextract.cli import main
from artextract.data.catalog import Catalog
from artextract.models.backbones import create_backbone

pytestmark = pytest.mark.slow   # trains, and embeds a corpus with two inits

RANDOM = ["--backbone", "tiny_cnn", "--pretrained", "none", "--no-progress"]


@pytest.fixture(scope="module")
def setup(demo_catalog, tmp_path_factory):
    """(40-painting catalogue with its own cache, the weights file, its state dict)."""
    root = tmp_path_factory.mktemp("weights")
    shutil.copytree(Path(demo_catalog.path).parent, root / "demo", ignore=shutil.ignore_patterns("*.cache"))
    cat = Catalog.load(root / "demo" / "catalog.parquet")
    path = cat.subset(np.arange(len(cat)) < 40).save(root / "demo" / "small.parquet")
    torch.manual_seed(123)
    state = {k: v.contiguous() for k, v in create_backbone("tiny_cnn", pretrained=False).body.state_dict().items()}
    weights = root / "tiny_other.safetensors"
    save_file(state, str(weights))
    return path, weights, state


def _with(weights) -> list[str]:
    return ["--backbone", "tiny_cnn", "--weights", str(weights), "--no-progress"]


def _stdout(argv) -> str:
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main([str(a) for a in argv]) == 0
    return buf.getvalue()


def test_train_weights(setup, tmp_path):
    from artextract.training.inference import Run

    cat, weights, state = setup
    out = tmp_path / "run"
    assert main(["train", "--catalog", str(cat), "--out", str(out), *_with(weights), "--cache-size", "64",
                 "--image-size", "64", "--tasks", "style", "--epochs", "1", "--no-refit", "--proj", "8",
                 "--hidden", "8"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["backbone"]["weights"] == str(weights) and cfg["train"]["weights"] == str(weights)
    body = Run.load(out).backbone.body.state_dict()
    assert all(torch.equal(body[k].cpu(), v) for k, v in state.items())
    assert any("-w" in p.name for p in (cat.with_suffix(".cache") / "features").iterdir())


def test_index_weights(setup, tmp_path):
    from artextract.similarity import EmbeddingIndex

    cat, weights, _ = setup
    assert main(["index", "--catalog", str(cat), *_with(weights), "--out", str(tmp_path / "w.index")]) == 0
    assert main(["index", "--catalog", str(cat), *RANDOM, "--out", str(tmp_path / "r.index")]) == 0
    w, r = EmbeddingIndex.load(tmp_path / "w.index"), EmbeddingIndex.load(tmp_path / "r.index")
    assert w.meta["embedding"]["weights"] == str(weights) and r.meta["embedding"]["weights"] is None
    assert w.ids == r.ids and not np.allclose(w.vectors(), r.vectors(), atol=1e-3)


def test_outliers_and_duplicates_weights(setup, tmp_path):
    cat, weights, _ = setup

    def scores(*backbone):
        out = tmp_path / "issues.csv"
        doc = json.loads(_stdout(["outliers", "--catalog", cat, "--task", "style", *backbone, "--out", out, "--json"]))
        return pd.read_csv(out).sort_values("id")["score_zscore"].to_numpy(), doc["tasks"][0]["features"]

    (sw, fw), (sr, _) = scores(*_with(weights)), scores(*RANDOM)
    assert fw.startswith("tiny_cnn") and not np.allclose(sw, sr, equal_nan=True)

    def cosines(*backbone):
        out = tmp_path / "pairs.csv"
        _stdout(["duplicates", "--catalog", cat, *backbone, "--cache-size", "64", "--cosine-min", "-1", "--out", out,
                 "--json"])
        df = pd.read_csv(out)
        return df.set_index(["id_a", "id_b"])["cosine"].sort_index()

    cw, cr = cosines(*_with(weights)), cosines(*RANDOM)
    assert len(cw) == len(cr) == 40 * 39 // 2 and not np.allclose(cw.to_numpy(), cr.to_numpy(), atol=1e-3)

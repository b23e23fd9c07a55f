"""Sanity check of "where the model looked" (issue: explanations must point at the composition).

On the demo corpus the genre *is* the composition: the ground below a horizon (landscape), a central
figure (portrait), objects on a table (still life), a row of buildings (cityscape). A MobileNetV2 run
trained on genre must put its explanation's heat on that subject, which the generator can redraw
exactly (:func:`artextract.data.demo.composition_mask`). The control is the parameter randomisation
test of Adebayo et al. (2018, "Sanity checks for saliency maps"): the same backbone with the head's
weights re-initialised must not show the subject, so what the map shows comes from the training.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import binom

from artextract.cli import main
from artextract.data.catalog import Catalog
from artextract.data.demo import composition_mask, generate_demo
from artextract.training.explain import CROP, explain
from artextract.training.inference import Run

SIZE = 96


def _grid(mask: np.ndarray, g: int) -> np.ndarray:
    """The mask over the model's view (the centre crop it reads), averaged onto the ``g x g`` grid."""
    s = mask.shape[0]
    c = int(round(s * (1 - CROP) / 2))
    view = Image.fromarray((mask[c:s - c, c:s - c] * 255).astype(np.uint8))
    return np.asarray(view.resize((g, g), Image.BOX), np.float32) / 255


def _shares(run: Run, cat: Catalog, root, method: str) -> np.ndarray:
    """Per validation painting with a subject: (heat share on the subject, the subject's share of the grid)."""
    out = []
    for _, r in cat.df[cat.df["split"] == "val"].iterrows():
        if r["genre"] == "abstract":
            continue
        mask = composition_mask(int(r["id"].split("_")[1]), r["artist"], r["genre"], size=SIZE)
        ex = explain(run, Image.open(root / r["path"]), "genre", label=r["genre"], method=method)
        heat = np.clip(ex.maps[ex.method], 0, None)
        heat = heat / heat.sum()
        g = _grid(mask, heat.shape[0])
        out.append((float((heat * g).sum()), float(g.mean())))
    return np.array(out)


@pytest.mark.slow
def test_the_explanation_points_at_the_composition(tmp_path):
    demo = tmp_path / "demo"
    generate_demo(demo, n=400, size=SIZE, seed=0)
    run_dir = tmp_path / "run"
    assert main(["train", "--catalog", str(demo / "catalog.parquet"), "--out", str(run_dir), "--tasks", "genre",
                 "--epochs", "30", "--no-progress"]) == 0
    cat, run = Catalog.load(demo / "catalog.parquet"), Run.load(run_dir)
    assert run.config["val_metrics"]["genre"]["accuracy"] > 0.45      # chance 0.2: the run learned genre

    shown = _shares(run, cat, demo, "auto")                            # the map a user is shown
    attention = _shares(run, cat, demo, "attention")
    n = len(shown)
    assert n >= 50
    for sh in (shown, attention):
        ratio = sh[:, 0].mean() / sh[:, 1].mean()
        above = int((sh[:, 0] > sh[:, 1]).sum())
        # heat on the subject well above the subject's area, for most paintings; a map placed without
        # regard to the subject is above the area about half the time: binom(n, 0.5) reaches `above`
        # with probability under 1 %
        assert ratio > 1.15, (ratio, above, n)
        assert binom.sf(above - 1, n, 0.5) < 0.01, (ratio, above, n)
        print(f"heat on the subject {ratio:.2f}x its area; {above} of {n} paintings above")

    # parameter randomisation: the same backbone, the head re-initialised
    torch.manual_seed(1)
    for m in run.head.modules():
        if m is not run.head and hasattr(m, "reset_parameters"):
            m.reset_parameters()
    rand = _shares(run, cat, demo, "attention")
    rand_ratio = rand[:, 0].mean() / rand[:, 1].mean()
    print(f"re-initialised head: {rand_ratio:.2f}x")
    assert rand_ratio < 1.1, rand_ratio
    assert attention[:, 0].mean() / attention[:, 1].mean() > rand_ratio + 0.1

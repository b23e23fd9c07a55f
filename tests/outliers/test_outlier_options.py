"""`outliers --method/--k/--flip/--folds/--C/--seed` end to end on the demo corpus with a random tiny_cnn
(fast; the detection quality itself is tested on ImageNet features in test_outliers.py)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from artextract.cli import main
from artextract.data.catalog import Catalog

pytestmark = pytest.mark.slow   # features of the demo corpus, computed once for the module


@pytest.fixture(scope="module")
def corpus(demo_outliers_corpus, tmp_path_factory):
    """The demo corpus's catalogue saved elsewhere, so that its feature cache is this module's own."""
    root, _ = demo_outliers_corpus
    work = tmp_path_factory.mktemp("outlier_options")
    return Catalog.load(root / "catalog.parquet").save(work / "catalog.parquet")


@pytest.fixture(scope="module")
def outliers(corpus, tmp_path_factory):
    """``outliers(*extra)`` -> (CSV table, JSON summary of the style task); each distinct run once."""
    out_dir = tmp_path_factory.mktemp("outlier_runs")
    done = {}

    def run(*extra):
        if extra not in done:
            import io
            from contextlib import redirect_stdout

            out = out_dir / f"run{len(done)}.csv"
            buf = io.StringIO()
            with redirect_stdout(buf):
                rc = main(["outliers", "--catalog", str(corpus), "--task", "style", "--backbone", "tiny_cnn",
                           "--pretrained", "none", "--out", str(out), "--no-progress", "--json", *extra])
            assert rc == 0
            done[extra] = (pd.read_csv(out).sort_values("id").reset_index(drop=True),
                           json.loads(buf.getvalue())["tasks"][0])
        return done[extra]

    return run


def test_method_knn_and_k(outliers):
    df, summary = outliers("--method", "knn", "--k", "3")
    assert summary["method"] == "knn"
    assert df["flagged"].equals(df["flag_knn"])                                # knn decides what is flagged ...
    ranked = df.sort_values("rank")
    assert ranked["score_knn"].is_monotonic_decreasing                         # ... and the order
    # --k 3: each knn score is the disagreement of the 3 nearest neighbours (the first 3 of the
    # evidence columns), similarity-weighted (temperature 0.1) and smoothed by one class-frequency vote
    freq = df["given_label"].value_counts(normalize=True)
    for _, r in df.iterrows():
        labels = r["neighbor_labels"].split("|")[:3]
        sims = np.array([float(s) for s in r["neighbor_similarities"].split("|")[:3]])
        w = np.exp((sims - sims.max()) / 0.1)
        w /= w.sum()
        agree = w[[lab == r["given_label"] for lab in labels]].sum()
        assert r["score_knn"] == pytest.approx(1 - (3 * agree + freq[r["given_label"]]) / 4, abs=0.01), r["id"]
    default, dsum = outliers()
    assert dsum["method"] == "ensemble" and not default["score_knn"].equals(df["score_knn"])  # default k = 10


def test_flip_folds_and_C_change_the_out_of_fold_classifier(outliers, corpus):
    base, bsum = outliers()
    flip, fsum = outliers("--flip")
    assert "flip" not in bsum["features"] and "tiny_cnn (+flip)" in fsum["features"]
    assert any(p.name.endswith("-flip") for p in (corpus.parent / "catalog.cache" / "features").iterdir())
    assert not np.allclose(flip["score_cleanlab"], base["score_cleanlab"])
    two, _ = outliers("--folds", "2")
    assert not np.allclose(two["score_cleanlab"], base["score_cleanlab"])
    for m in ("zscore", "knn", "mahalanobis"):                                # what the folds do not touch
        np.testing.assert_allclose(two[f"score_{m}"], base[f"score_{m}"])
    seeded, _ = outliers("--seed", "1")                                        # other folds
    assert not np.allclose(seeded["score_cleanlab"], base["score_cleanlab"])
    np.testing.assert_allclose(seeded["score_knn"], base["score_knn"])
    # a tiny C: the classifier learns next to nothing, so within a class the scores hardly differ
    flat, _ = outliers("--C", "1e-9")
    spread = lambda d: d.groupby("given_label")["score_cleanlab"].std().mean()  # noqa: E731
    assert spread(flat) < 0.1 * spread(base)

"""Label issues that know the order: the ordered score over numpy arrays, date-range tolerance, the
demo corpus's timeframe with near and far flips (random-init tiny_cnn features), and the single
queue of ``outliers --task all``."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from artextract.cli import main
from artextract.data.catalog import Catalog
from artextract.job import Job
from artextract.outliers import methods as M
from artextract.outliers.detect import COLUMNS, ORDERED_COLUMNS, rank_label_issues


def test_ordered_scores_on_arrays():
    P = np.array([[0.80, 0.15, 0.05, 0.00, 0.00],
                  [0.80, 0.15, 0.05, 0.00, 0.00],
                  [0.80, 0.15, 0.05, 0.00, 0.00],
                  [0.02, 0.08, 0.80, 0.08, 0.02]])
    y = np.array([0, 1, 4, 2])   # right, one class off, four classes off, right
    r = M.ordered_label_scores(y, P, calibrate=False)
    assert r.scores[0] < r.scores[1] < r.scores[2] and r.scores[3] < r.scores[1]
    assert r.distance[2] == pytest.approx(0.80 * 4 + 0.15 * 3 + 0.05 * 2)
    assert r.scores[2] == pytest.approx(0.80 * 3 + 0.15 * 3 + 0.05 * 2 + 1.0)   # capped at 3, + P(wrong)
    assert M.ordered_label_scores(y, P, calibrate=False, cap=None).scores[2] == pytest.approx(r.distance[2] + 1.0)
    assert r.scores[1] == pytest.approx(0.80 * 2 + 0.05 * 2)
    assert r.far_mass[1] == pytest.approx(0.0) and r.far_mass[2] == pytest.approx(1.0)
    assert r.center.tolist() == [0, 0, 0, 2]
    assert r.radius.tolist()[:3] == [0, 0, 0] and r.radius[3] == 0
    # temperature scaling sharpens probabilities that a strongly regularised model spreads thin
    flat = np.full((4, 5), 0.1) + 0.5 * np.eye(5)[[0, 1, 2, 3]]
    cal, t = M.calibrate_temperature(np.array([0, 1, 2, 3]), flat / flat.sum(1, keepdims=True))
    assert t < 1 and (cal[np.arange(4), [0, 1, 2, 3]] > 0.9).all()
    assert M.format_range("1601 to 1650", 1) == "1601 to 1650 ± 1 bin"
    assert M.format_range("1601 to 1650", 2) == "1601 to 1650 ± 2 bins" and M.format_range("x", 0) == "x"
    # a wide date range tolerates the neighbouring bins: less suspect there, not elsewhere
    wide = M.ordered_label_scores(y, P, lo=np.array([0, 0, 4, 2]), hi=np.array([0, 1, 4, 2]), calibrate=False)
    assert wide.scores[1] < r.scores[1] and wide.scores[2] == pytest.approx(r.scores[2])
    # positions: a class absent from the labels still counts between the others
    gap = M.ordered_label_scores(np.array([0]), np.array([[0.0, 1.0]]), positions=np.array([0, 3]))
    assert gap.distance[0] == pytest.approx(3.0)
    spread = M.ordered_label_scores(np.array([2]), np.array([[0.2, 0.2, 0.2, 0.2, 0.2]]))
    assert spread.center[0] == 2 and spread.radius[0] == 1      # 60 % within ± 1


def flip_ordered(y: np.ndarray, K: int, rate: float, near: bool, rng) -> tuple[np.ndarray, np.ndarray]:
    idx = rng.choice(len(y), size=int(round(rate * len(y))), replace=False)
    yn = y.copy()
    for i in idx:
        cands = [c for c in range(K) if (abs(c - y[i]) == 1 if near else abs(c - y[i]) >= 3)]
        yn[i] = rng.choice(cands)
    mask = np.zeros(len(y), bool)
    mask[idx] = True
    return yn, mask


@pytest.fixture(scope="module")
def demo_tiny(tmp_path_factory):
    from artextract.data.demo import generate_demo
    from artextract.outliers.detect import backbone_features

    root = tmp_path_factory.mktemp("demo_ordered")
    cat = generate_demo(root, n=200, size=48, seed=3)
    feats = backbone_features(cat, "tiny_cnn", pretrained=False, job=Job(progress=False, log=lambda *_: None))
    return root, cat, feats


@pytest.mark.slow
def test_far_flips_rank_above_near_ones_on_the_demo_timeframe(demo_tiny):
    from sklearn.metrics import roc_auc_score

    _, cat, feats = demo_tiny
    spec = cat.task("timeframe")
    K = len(spec.classes)
    y = cat.label_indices("timeframe")
    rng = np.random.default_rng(0)
    # flip 8 % near (±1 class) and another 8 % far (3+ classes) of the timeframe labels
    y_near, near = flip_ordered(y, K, 0.08, True, rng)
    free = np.flatnonzero(~near)
    far = np.zeros(len(y), bool)
    far[rng.choice(free, size=near.sum(), replace=False)] = True
    yn = y_near.copy()
    for i in np.flatnonzero(far):
        yn[i] = rng.choice([c for c in range(K) if abs(c - y[i]) >= 3])
    df = cat.df.copy()
    df["timeframe"] = [spec.classes[v] for v in yn]
    noisy = Catalog(df, cat.tasks, cat.image_root, cat.source, dict(cat.extra))
    res = rank_label_issues(noisy, "timeframe", feats).set_index("id")
    assert list(res.reset_index().columns) == COLUMNS + ORDERED_COLUMNS
    ids = np.array(cat.ids)
    s_far = res.loc[ids[far], "score_ordered"].to_numpy()
    s_near = res.loc[ids[near], "score_ordered"].to_numpy()
    # the ordered score ranks far flips above near ones ...
    auc = roc_auc_score(np.r_[np.ones(len(s_far)), np.zeros(len(s_near))], np.r_[s_far, s_near])
    assert auc > 0.85, auc
    # ... and says how far: near flips about one class off, far ones two or more
    d_near, d_far = res.loc[ids[near], "class_distance"], res.loc[ids[far], "class_distance"]
    assert 0.5 < np.median(d_near) < 1.7 and np.median(d_far) > 2.0
    # ... and far above the clean labels; cleanlab's unordered score cannot tell far from near as well
    clean = ~(near | far)
    assert np.median(s_far) > np.quantile(res.loc[ids[clean], "score_ordered"], 0.9)
    auc_cl = roc_auc_score(np.r_[np.ones(len(s_far)), np.zeros(len(s_near))],
                           np.r_[res.loc[ids[far], "score_cleanlab"], res.loc[ids[near], "score_cleanlab"]])
    assert auc > auc_cl
    # the CSV says the distance, and the suggestion is a range on the timeframe order
    top = res.sort_values("score_ordered", ascending=False).iloc[0]
    assert top["class_distance"] >= 2
    base = top["suggested_range"].split(" ± ")[0]
    assert base in spec.classes and top["tolerated"] == top["given_label"]
    # the unordered tasks keep their columns
    assert list(rank_label_issues(noisy, "style", feats).columns) == COLUMNS


def test_date_range_width_lowers_suspicion(demo_tiny):
    from artextract.data.periods import add_period_task

    _, cat, feats = demo_tiny
    # a period task from a year column, once with exact years and once with wide ranges
    years = cat.df["year"].astype(int)
    exact = cat.df.assign(date=years.astype(str))
    wide = cat.df.assign(date=[f"{y - 30}-{y + 30}" for y in years])
    r = {}
    for name, df in (("exact", exact), ("wide", wide)):
        c = Catalog(df, {k: v for k, v in cat.tasks.items() if k != "timeframe"}, cat.image_root, cat.source)
        c, _ = add_period_task(c, "date", 25)
        r[name] = rank_label_issues(c, "period", feats, context=None).set_index("id")
    ids = r["exact"].index
    assert (r["wide"].loc[ids, "class_distance"] <= r["exact"].loc[ids, "class_distance"] + 1e-9).all()
    assert r["wide"]["class_distance"].mean() < 0.5 * r["exact"]["class_distance"].mean()
    assert (r["wide"]["tolerated"].str.contains(" .. ")).mean() > 0.9


@pytest.mark.slow
def test_task_all_writes_one_queue(demo_tiny, tmp_path):
    root, cat, _ = demo_tiny
    out = tmp_path / "queue.csv"
    rc = main(["outliers", "--catalog", str(root / "catalog.parquet"), "--task", "all", "--backbone", "tiny_cnn",
               "--pretrained", "none", "--out", str(out), "--no-progress"])
    assert rc == 0
    q = pd.read_csv(out)
    assert list(q.columns[:5]) == ["queue_rank", "id", "suspect", "other_labels_agree", "other_labels"]
    assert q["queue_rank"].tolist() == list(range(1, len(q) + 1))
    assert set(q["task"]) == {"artist", "genre", "style", "timeframe"} and len(q) == 4 * len(cat)
    assert (q["suspect"] == q["task"] + "=" + q["given_label"]).all()
    flagged = q["flagged"].to_numpy(bool)
    assert not (np.diff(flagged.astype(int)) > 0).any()         # flagged rows first
    # the planted style errors: their artist is (almost) never seen in that style
    pl = pd.read_csv(root / "planted_errors.csv").query("task == 'style'")
    hits = q[(q["task"] == "style") & q["id"].isin(pl["id"])]
    assert len(hits) == len(pl) and (hits["other_labels_agree"] <= 0.2).all()
    assert hits["other_labels"].str.contains("artist '").all()
    assert q.loc[q["task"] == "timeframe", "suggested_range"].notna().all()
    assert q.loc[q["task"] == "style", "suggested_range"].isna().all()

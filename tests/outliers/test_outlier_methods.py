"""The scoring functions on synthetic feature matrices (no images, fast)."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from artextract.outliers import methods as M


def blobs(n_per=40, k=5, d=16, flips=12, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (k, d))
    y = np.repeat(np.arange(k), n_per)
    X = centres[y] + rng.normal(0, 1, (len(y), d))
    bad = rng.choice(len(y), flips, replace=False)
    yn = y.copy()
    yn[bad] = (y[bad] + rng.integers(1, k, flips)) % k
    err = np.zeros(len(y), bool)
    err[bad] = True
    return X.astype(np.float32), y, yn, err


def test_every_label_method_finds_flips():
    X, _, yn, err = blobs()
    mh = M.mahalanobis_scores(X, yn)
    kn = M.knn_disagreement(X, yn, k=10)
    P = M.out_of_fold_probs(X, yn, folds=5, C=0.1)
    cl = M.confident_learning_scores(yn, P)
    z = M.zscore_scores(X, yn)
    for name, s in [("mahalanobis", mh.scores), ("knn", kn.scores), ("cleanlab", cl.scores)]:
        assert roc_auc_score(err, s) > 0.95, name
    assert roc_auc_score(err, z) > 0.6
    ens = M.ensemble({"cleanlab": cl.scores, "knn": kn.scores, "mahalanobis": mh.scores})
    assert roc_auc_score(err, ens) > 0.97
    top = np.argsort(-ens)[: err.sum()]
    assert err[top].mean() > 0.8
    assert cl.issues[err].mean() > 0.8  # cleanlab's filter catches most flips


def test_out_of_fold_means_no_row_is_scored_by_a_model_that_saw_it():
    # pure noise: a model that trained on a row would give its (random) label a high probability
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 64)).astype(np.float32)
    y = rng.integers(0, 4, 200)
    P = M.out_of_fold_probs(X, y, C=10.0)
    assert P.shape == (200, 4) and np.allclose(P.sum(1), 1)
    assert P[np.arange(200), y].mean() < 0.35  # ~ chance (0.25), far from in-sample fit (~1)


def test_tiny_classes_are_handled():
    X, _, yn, _ = blobs(n_per=20, k=3)
    X = np.vstack([X, X[:1] + 5, X[1:3] - 5])
    y = np.concatenate([yn, [3], [4, 4]])  # class 3 has one member, class 4 two
    z = M.zscore_scores(X, y)
    assert np.isnan(z[-3:]).all() and np.isfinite(z[:-3]).all()
    mh = M.mahalanobis_scores(X, y)
    assert np.isfinite(mh.scores).all() and np.allclose(mh.probs.sum(1), 1)
    P = M.out_of_fold_probs(X, y, folds=5)
    assert P.shape == (len(y), 5) and np.isfinite(P).all()
    cl = M.confident_learning_scores(y, P)
    assert cl.scores.shape == (len(y),)
    kn = M.knn_disagreement(X, y, k=5)
    assert np.isfinite(kn.scores).all()
    assert 0 < M.estimated_issue_count(y, P) <= len(y)


def test_estimated_issue_count_is_near_the_number_of_flips():
    X, y, yn, err = blobs()                                   # 12 flipped labels of 200
    assert 8 <= M.estimated_issue_count(yn, M.out_of_fold_probs(X, yn, folds=5, C=0.1)) <= 16
    assert M.estimated_issue_count(y, M.out_of_fold_probs(X, y, folds=5, C=0.1)) <= 2   # clean labels
    assert M.estimated_issue_count(np.zeros(5, int), np.full((5, 2), 0.5)) == 0       # one class: nothing to say
    # classes absent from y are dropped from the probabilities before counting
    P = np.eye(4)[[0, 0, 2, 2, 2, 0]] * 0.9 + 0.025
    assert M.estimated_issue_count(np.array([0, 0, 2, 2, 2, 2]), P) == 1


def test_folds_spread_every_class():
    y = np.array([0] * 12 + [1] * 3 + [2])
    f = M.stratified_folds(y, 5, seed=0)
    assert set(f) == set(range(5))
    assert len(set(f[y == 1])) == 3  # the 3 members of class 1 land in 3 different folds
    for c in (0,):
        counts = np.bincount(f[y == c], minlength=5)
        assert counts.max() - counts.min() <= 1


def test_novelty_finds_the_odd_one():
    rng = np.random.default_rng(2)
    centres = rng.normal(0, 3, (3, 16))
    X = (centres[np.arange(100) % 3] + rng.normal(0, 0.5, (100, 16))).astype(np.float32)
    X[17] = rng.normal(0, 3, 16)  # a direction no cluster has: fits nothing
    y = np.arange(100) % 3
    for nov in (M.novelty_scores(X, y), M.novelty_scores(X)):
        assert nov.argmax() == 17 and nov[17] > 3


def test_ensemble_ignores_missing_scores_and_needs_a_method():
    a = np.array([0.1, 0.9, np.nan])
    b = np.array([0.2, 0.8, 0.5])
    e = M.ensemble({"cleanlab": a, "knn": b}, {"cleanlab": 1, "knn": 1})
    assert np.isfinite(e).all() and e[1] > e[0]
    with pytest.raises(ValueError):
        M.ensemble({"novelty": b}, {"novelty": 0})


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="2-D"):
        M.zscore_scores(np.zeros(5), np.zeros(5, int))
    with pytest.raises(ValueError, match="labels"):
        M.zscore_scores(np.zeros((5, 2)), np.array([0, 1, -1, 0, 1]))


def test_out_of_fold_column_blocks_equal_their_concatenation():
    """Blocks [features | statistics | context] act as their hstack, mirrored views included."""
    X, _, yn, _ = blobs()
    rng = np.random.default_rng(3)
    S = (rng.normal(size=(len(X), 5)) * 4 + 10).astype(np.float32)
    ctx = np.eye(3, dtype=np.float32)[rng.integers(0, 3, len(X))]
    Xf = (X + rng.normal(0, 0.3, X.shape)).astype(np.float32)
    Sf = (S + rng.normal(0, 0.3, S.shape)).astype(np.float32)
    joined = M.out_of_fold_probs(np.hstack([X, S, ctx]), yn, C=0.1, extra_views=[np.hstack([Xf, Sf, ctx])])
    blocks = M.out_of_fold_probs([X, S, None, ctx], yn, C=0.1, extra_views=[[Xf, Sf, ctx]])
    assert np.abs(joined - blocks).max() < 1e-5
    alone = M.out_of_fold_probs(np.hstack([X, S, ctx]), yn, C=0.1)
    assert np.abs(joined - alone).max() > 1e-3        # the mirrored view is used
    with pytest.raises(ValueError, match="same rows and column blocks"):
        M.out_of_fold_probs([X, S], yn, extra_views=[[Xf]])
    with pytest.raises(ValueError, match="NaN"):
        M.out_of_fold_probs([X, np.full_like(S, np.nan)], yn)


def test_robust_z_hand_computed():
    # median 3, absolute deviations [2, 1, 0, 1, 97]: MAD 1, scale 1.4826
    assert np.allclose(M.robust_z([1, 2, 3, 4, 100]), (np.array([1, 2, 3, 4, 100]) - 3) / 1.4826)
    # MAD 0: the standard deviation (4) instead; all equal: zeros, never a division by zero
    assert np.allclose(M.robust_z(np.array([0, 0, 0, 0, 10], np.int64)), [0, 0, 0, 0, 2.5])
    assert np.array_equal(M.robust_z([5.0, 5.0, 5.0]), [0.0, 0.0, 0.0])
    # a tiny but real spread is used as it is
    assert np.allclose(M.robust_z([0.0, 1e-9, 2e-9]), [-1 / 1.4826, 0.0, 1 / 1.4826])
    z = M.robust_z([1.0, np.nan, 3.0, 2.0])
    assert np.isnan(z[1]) and np.allclose(z[[0, 2, 3]], [-1 / 1.4826, 1 / 1.4826, 0.0])

"""precision@k, recall@k, mAP@k: hand-checked values, and evaluation of an index by a catalogue label."""
from __future__ import annotations

import numpy as np
import pytest

from artextract.similarity import EmbeddingIndex, SimilarityError
from artextract.similarity.evaluate import (average_precision_at_k, evaluate_index, precision_at_k, recall_at_k,
                                            relevance_matrix, retrieval_metrics)


def test_metrics_by_hand():
    nb = np.array([[1, 0, 1, -1], [2, 2, 2, 2], [0, 0, 0, 0]])
    q = np.array([1, 2, 1])
    rel = relevance_matrix(nb, q)
    assert rel.tolist() == [[True, False, True, False], [True] * 4, [False] * 4]
    np.testing.assert_allclose(precision_at_k(rel, 4), [0.5, 1.0, 0.0])
    n_rel = np.array([3, 4, 2])
    np.testing.assert_allclose(recall_at_k(rel, n_rel, 4), [2 / 3, 1.0, 0.0])
    # AP@4 of query 0: (1/1 + 2/3) / min(4, 3)
    np.testing.assert_allclose(average_precision_at_k(rel, n_rel, 4), [(1 + 2 / 3) / 3, 1.0, 0.0])
    # a perfect ranking with fewer relevant items than k still scores 1
    assert average_precision_at_k(np.array([[True, True, False]]), np.array([2]), 3)[0] == 1.0
    m = retrieval_metrics(nb, q, np.array([3, 4, 0]), 4)  # the last query has nothing to find: left out
    assert m["queries"] == 2 and m["precision_at_k"] == pytest.approx(0.75)


def test_evaluate_index_on_clustered_labels(sim_demo):
    rng = np.random.default_rng(0)
    ids = sim_demo.ids
    style = sim_demo.label_indices("style")
    centres = rng.normal(size=(5, 16))
    good = centres[style] + 0.05 * rng.normal(size=(len(ids), 16))
    res = evaluate_index(EmbeddingIndex.build(ids, good), sim_demo, "style", k=5)
    assert res["precision_at_k"] == pytest.approx(1.0) and res["map_at_k"] == pytest.approx(1.0)
    assert res["queries"] == 60 and set(res["per_class"]) == set(sim_demo.task("style").classes)
    noise = EmbeddingIndex.build(ids, rng.normal(size=(len(ids), 16)))
    bad = evaluate_index(noise, sim_demo, "style", k=5)
    # a query of a style with n paintings has n - 1 to find: the perfect index's recall@5 is 5 / (n - 1)
    counts = sim_demo.df["style"].value_counts()
    assert set(counts) == {11, 12, 13}
    assert res["recall_at_k"] == pytest.approx(np.mean([5 / (counts[s] - 1) for s in sim_demo.df["style"]]))
    # and any index's recall@5 lies between precision@5 * 5 / 12 and precision@5 * 5 / 10
    assert bad["precision_at_k"] * 5 / 12 <= bad["recall_at_k"] <= bad["precision_at_k"] * 5 / 10
    # a random ranking finds 11/59 relevant neighbours on average; 60 queries of 5 keep it well below 0.5
    assert 0.05 < bad["precision_at_k"] < 0.4 and bad["map_at_k"] < res["map_at_k"]
    with pytest.raises(Exception, match="unknown task"):
        evaluate_index(noise, sim_demo, "mood")
    other = EmbeddingIndex.build(["x1", "x2"], rng.normal(size=(2, 16)))
    with pytest.raises(SimilarityError, match="no indexed painting has a 'style' label"):
        evaluate_index(other, sim_demo, "style")


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_evaluate_restricts_candidates_with_approximate_indexes(sim_demo, kind):
    """Only labelled paintings are candidates, whatever the index type."""
    df = sim_demo.df.copy()
    df.loc[df.index[::2], "artist"] = None  # half the paintings lose their artist label
    from artextract.data.catalog import Catalog

    cat = Catalog(df, sim_demo.tasks, sim_demo.image_root)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 16))
    idx = EmbeddingIndex.build(cat.ids, x, index_type=kind, nlist=1)
    res = evaluate_index(idx, cat, "artist", k=3)
    assert res["labelled"] == 30 and res["queries"] == 30
    exact = evaluate_index(EmbeddingIndex.build(cat.ids, x), cat, "artist", k=3)
    assert res["precision_at_k"] == pytest.approx(exact["precision_at_k"], abs=0.05)

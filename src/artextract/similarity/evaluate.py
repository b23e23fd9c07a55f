"""Retrieval quality: precision@k, recall@k and mAP@k with "same label" as relevance.

Definitions (per query, then averaged over queries):

- P@k = relevant among the top k / k
- R@k = relevant among the top k / relevant in the collection (other paintings with the query's label)
- AP@k = sum over ranks i <= k of P@i * rel(i), divided by min(k, relevant in the collection);
  mAP@k is its mean. A perfect ranking scores 1 however few relevant paintings there are.

Queries are the labelled paintings; a painting is never its own neighbour. Candidates are the
paintings labelled for the task (an unlabelled neighbour's relevance is unknown); queries whose
label no other painting has are left out (they cannot score) and counted.
"""
from __future__ import annotations

import numpy as np


def relevance_matrix(neighbor_labels: np.ndarray, query_labels: np.ndarray) -> np.ndarray:
    """``[n, k]`` bool: neighbour has the query's label (-1 labels and padding never match)."""
    nl = np.asarray(neighbor_labels)
    ql = np.asarray(query_labels).reshape(-1, 1)
    return (nl == ql) & (nl >= 0) & (ql >= 0)


def precision_at_k(rel: np.ndarray, k: int) -> np.ndarray:
    return rel[:, :k].sum(1) / float(k)


def recall_at_k(rel: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    n = np.asarray(n_relevant, np.float64)
    return np.where(n > 0, rel[:, :k].sum(1) / np.maximum(n, 1), np.nan)


def average_precision_at_k(rel: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    r = rel[:, :k].astype(np.float64)
    hits = np.cumsum(r, 1)
    prec_at_i = hits / np.arange(1, r.shape[1] + 1)
    denom = np.minimum(np.asarray(n_relevant, np.float64), k)
    return np.where(denom > 0, (prec_at_i * r).sum(1) / np.maximum(denom, 1), np.nan)


def retrieval_metrics(neighbor_labels: np.ndarray, query_labels: np.ndarray, n_relevant: np.ndarray,
                      k: int) -> dict:
    """Mean P@k, R@k and mAP@k over queries with at least one relevant painting."""
    rel = relevance_matrix(neighbor_labels, query_labels)
    ok = np.asarray(n_relevant) > 0
    if not ok.any():
        return {"queries": 0, "precision_at_k": float("nan"), "recall_at_k": float("nan"), "map_at_k": float("nan")}
    rel, n = rel[ok], np.asarray(n_relevant)[ok]
    return {
        "queries": int(ok.sum()),
        "precision_at_k": float(precision_at_k(rel, k).mean()),
        "recall_at_k": float(np.nanmean(recall_at_k(rel, n, k))),
        "map_at_k": float(np.nanmean(average_precision_at_k(rel, n, k))),
    }


def evaluate_index(index, catalog, relevance: str, k: int = 10, per_class: bool = True) -> dict:
    """Evaluate ``index`` (an :class:`~artextract.similarity.index.EmbeddingIndex`) with the labels of
    ``relevance`` in ``catalog``."""
    from .index import SimilarityError

    spec = catalog.task(relevance)
    lab_by_id = dict(zip(catalog.ids, catalog.label_indices(relevance)))
    labels = np.array([lab_by_id.get(k_, -1) for k_ in index.ids], np.int64)
    labelled = np.flatnonzero(labels >= 0)
    in_catalog = sum(1 for k_ in index.ids if k_ in lab_by_id)
    if not len(labelled):
        raise SimilarityError(f"no indexed painting has a {relevance!r} label in {catalog.path or 'the catalogue'} "
                              f"({in_catalog} of the {len(index)} indexed paintings are in it)")
    counts = np.bincount(labels[labelled], minlength=spec.num_classes)
    q_pos, nb_lab = [], []
    for qp, _, pos in index.search_all(k, subset=labelled):
        q_pos.append(qp)
        nb_lab.append(np.where(pos >= 0, labels[np.maximum(pos, 0)], -1))
    q_pos = np.concatenate(q_pos)
    nb_lab = np.concatenate(nb_lab)
    q_lab = labels[q_pos]
    n_rel = counts[q_lab] - 1
    out = {"relevance": relevance, "k": int(k), "index": index.describe(),
           "candidates": "paintings labelled for the task", "labelled": int(len(labelled)),
           "left_out_no_other_of_label": int((n_rel <= 0).sum()),
           "not_in_catalogue": int(len(index) - in_catalog)}
    out.update(retrieval_metrics(nb_lab, q_lab, n_rel, k))
    if per_class:
        pc = {}
        rel = relevance_matrix(nb_lab, q_lab)
        p = precision_at_k(rel, k)
        for c in np.unique(q_lab):
            m = (q_lab == c) & (n_rel > 0)
            if m.any():
                pc[spec.classes[c]] = {"queries": int(m.sum()), "precision_at_k": float(p[m].mean())}
        out["per_class"] = pc
    return out


def format_evaluation(res: dict) -> str:
    lines = [
        f"retrieval by {res['relevance']}  (k = {res['k']}; {res['index']})",
        f"queries          {res['queries']:,} labelled paintings"
        + (f" ({res['left_out_no_other_of_label']} left out: no other painting with their label)"
           if res["left_out_no_other_of_label"] else ""),
        f"precision@{res['k']:<5} {res['precision_at_k']:.3f}",
        f"recall@{res['k']:<8} {res['recall_at_k']:.3f}",
        f"mAP@{res['k']:<11} {res['map_at_k']:.3f}",
    ]
    if res.get("per_class"):
        lines.append("")
        lines.append(f"{'class':<32}{'queries':>8}{'P@' + str(res['k']):>8}")
        for c, v in sorted(res["per_class"].items(), key=lambda kv: -kv[1]["precision_at_k"]):
            lines.append(f"{c[:31]:<32}{v['queries']:>8}{v['precision_at_k']:>8.3f}")
    return "\n".join(lines)

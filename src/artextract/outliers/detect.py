"""Facade: which paintings' labels do not fit, for one task of a catalogue.

:func:`rank_label_issues` runs every method of :mod:`artextract.outliers.methods` on one feature
matrix and returns one row per labelled painting (``COLUMNS``), most suspicious first.
:func:`backbone_features` and :func:`run_features` produce that matrix from cached backbone
features or from a trained run's embedding.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from ..data.catalog import Catalog, CatalogError
from ..errors import OptionError
from ..job import Job, resolve
from . import methods as M
from .ordered import ordered_scores

logger = logging.getLogger(__name__)

LABEL_METHODS = M.LABEL_METHODS  # the ensemble's members
METHODS = tuple(M.METHODS)        # every method's score and flag is a column
CHOICES = M.CHOICES

#: The columns of the output, in order. ``score_<method>`` and ``flag_<method>`` exist for every
#: method in ``METHODS``.
COLUMNS = (
    ["id", "task", "given_label", "suggested_label", "suggested_prob", "score", "rank", "flagged"]
    + [f"score_{m}" for m in METHODS]
    + [f"flag_{m}" for m in METHODS]
    + ["split", "neighbor_ids", "neighbor_labels", "neighbor_similarities", "note"]
)

#: Extra columns for an ordered task (periods, timeframes): the ordered score, the expected class
#: distance of the given label and the probability mass two or more classes away (both under the
#: out-of-fold probabilities, in classes beyond what the painting's date range tolerates), the
#: classes the date range tolerates, and the suggestion as a range ("1601 to 1650 ± 1 bin").
ORDERED_COLUMNS = ["score_ordered", "class_distance", "far_mass", "tolerated", "suggested_range"]

ZSCORE_THRESHOLD = 3.0
#: The ensemble flags a painting (among cleanlab's estimated number of issues, by score) only when
#: its suggested label is at least this many times as probable as its given one. Chosen on the
#: WikiArt benchmark with tuning seeds: flagged precision is ~0.48 with it and ~0.38 without, for ~0.07 less recall.
FLAG_ODDS = 4.0
NOVELTY_THRESHOLD = 3.0
SEP = "|"


class UncheckableTask(CatalogError):
    """The task's labels cannot be checked (no labels, one class only, too few paintings)."""


# ---------------------------------------------------------------------- features


@dataclass
class Features:
    """A feature matrix for some catalogue ids, optionally with extra views of the same rows.

    ``style`` (optional, same rows; ``style_views`` for the extra views): the backbone's style
    statistics (mean and spread of earlier stages' channels). Only the out-of-fold classifier reads
    them, beside ``X``; the neighbour and class-centre methods stay in the space of ``X``."""

    ids: list[str]
    X: np.ndarray
    extra_views: list[np.ndarray] = field(default_factory=list)
    source: str = "features"
    style: np.ndarray | None = None
    style_views: list[np.ndarray] = field(default_factory=list)


def parse_backbones(spec: str) -> list[str]:
    names = [s.strip() for s in spec.replace(",", "+").split("+") if s.strip()]
    if not names:
        raise OptionError("backbones: at least one backbone name is needed (--backbone)")
    return names


def backbone_features(catalog: Catalog, backbone: str = "mobilenet_v2", *, flip: bool = False,
                      pretrained: bool = True, style_stats: bool = True, job: Job | None = None,
                      **kwargs) -> Features:
    """Pooled backbone features of every painting whose image could be read, from the feature
    cache (computed where missing). ``backbone`` may join several names with ``+``
    (``mobilenet_v2+efficientnet_lite2``): each one's vectors are L2-normalised and concatenated.
    ``flip`` adds the mirrored image's features as an extra view (training rows and test-time
    averaging in the out-of-fold classifier). ``style_stats``: also return the backbones' style
    statistics, for the out-of-fold classifier. ``job``: the job (default: the current one)."""
    from ..models.features import extract_features

    names = parse_backbones(backbone)
    views = ["center", "flip"] if flip else ["center"]
    sets = {(n, v): extract_features(catalog, n, view=v, pretrained=pretrained, job=job, **kwargs)
            for n in names for v in views}
    ids = catalog.ids
    ok = np.ones(len(ids), bool)
    for fs in sets.values():
        ok &= fs.available(ids)
    ids = [k for k, good in zip(ids, ok) if good]
    mats = [np.hstack([M.l2_normalize(sets[(n, v)].get_pooled(ids)) for n in names]) if ids
            else np.zeros((0, 1), np.float32) for v in views]
    style = None
    if style_stats and ids and any(sets[(n, "center")].stats_dim for n in names):
        style = [np.hstack([sets[(n, v)].get_stats(ids) for n in names]) for v in views]
    return Features(ids, mats[0], mats[1:], source="+".join(names) + (" (+flip)" if flip else "")
                    + (" + style statistics" if style else ""),
                    style=style[0] if style else None, style_views=style[1:] if style else [])


def run_features(catalog: Catalog, run_dir: str, *, run=None, job: Job | None = None) -> Features:
    """The embedding of a trained multi-task run (``artextract.training.inference.Run``).

    Only the pooled representation is used, without the class posteriors that the similarity index
    adds: the run's own predicted probabilities are not out-of-fold for the paintings it was trained
    on, so the K-fold methods here are applied to the representation instead. ``run``: the run, when the
    caller loaded it already; ``job``: the job (default: the current one)."""
    try:
        from ..training.inference import Run  # type: ignore[import-not-found]
    except ImportError as exc:
        raise CatalogError(f"--run needs artextract.training.inference, which is not available ({exc}); "
                           "use --backbone instead") from None
    run = run if run is not None else Run.load(run_dir)
    ids, emb = run.embed_catalog(catalog, posteriors=False, job=job)
    return Features(list(ids), np.asarray(emb, np.float32), [], source=f"run {run_dir}")


# ---------------------------------------------------------------------- checks


def labelled_rows(catalog: Catalog, task: str) -> tuple[np.ndarray, list[str]]:
    """Label index per catalogue row (-1 = none) and the task's classes; raises
    :class:`UncheckableTask` with a clear reason when the task cannot be checked."""
    spec = catalog.task(task)  # CatalogError for an unknown task
    y = catalog.label_indices(task)
    n_lab = int((y >= 0).sum())
    if n_lab == 0:
        raise UncheckableTask(f"task {task!r} cannot be checked: no painting in the catalogue has a {task} label")
    present = np.unique(y[y >= 0])
    if len(present) < 2:
        raise UncheckableTask(
            f"task {task!r} cannot be checked: all {n_lab} labelled painting(s) have the same label "
            f"{spec.classes[present[0]]!r}, so there is no other class to compare with")
    if n_lab < 4:
        raise UncheckableTask(f"task {task!r} cannot be checked: only {n_lab} painting(s) have a {task} label "
                              "(at least 4 are needed)")
    return y, spec.classes


# ---------------------------------------------------------------------- facade


def rank_label_issues(catalog: Catalog, task: str, features: Features | np.ndarray | None = None,
                      ids: Sequence[str] | None = None, *, method: str = "ensemble", k: int | None = None,
                      folds: int = 5, seed: int = 0, C: float = 1e-3, repeats: int = 1,
                      weights: dict[str, float] | None = None, n_evidence: int = 5,
                      backbone: str = "mobilenet_v2", extra_views: list[np.ndarray] | None = None,
                      context: Sequence[str] | str | None = "auto", job: Job | None = None) -> pd.DataFrame:
    """Score every painting that has a ``task`` label for how likely the label is wrong.

    ``features``: a :class:`Features`, or an array ``[n, d]`` whose rows are ``ids`` (default: the
    catalogue's ids in order), or None to use cached ``backbone`` features. ``method`` chooses which
    score drives ``score``/``rank``/``flagged`` (all methods' scores are always in the table).
    ``k``: neighbours for k-NN disagreement (default :func:`methods.default_k`).
    ``context``: other catalogue fields whose given labels the out-of-fold classifier also reads
    (one-hot, beside the image features), because a catalogue's fields vouch for each other: a
    painting by Monet labelled Baroque is suspect whatever the pixels say. ``"auto"`` (default) =
    every other task of the catalogue; ``None`` or ``[]`` = the image alone. The neighbour and
    class-centre methods stay in image space. ``job``: the job (default: the current one), for messages and
    the progress of ``backbone`` features computed here.

    ``suggested_label``/``suggested_prob`` come from the weighted mean of the three label models'
    probabilities (out-of-fold classifier, neighbour votes, class-centre posteriors). With the
    ensemble, ``flagged`` marks, among the top-N by score (N = cleanlab's estimate of the number
    of label issues from the out-of-fold probabilities), those whose suggested label is at least
    ``FLAG_ODDS`` times as probable as the given one. It favours recall: review in rank order.

    Returns a DataFrame with ``COLUMNS``, sorted by ``rank`` (1 = most suspicious)."""
    if method not in CHOICES:
        raise OptionError(f"unknown method {method!r}; choose from {', '.join(CHOICES)} (--method)")
    job = resolve(job)
    y_all, classes = labelled_rows(catalog, task)
    features, keep, rows = _checked_features(catalog, task, y_all, features, ids, extra_views, backbone, job)
    X, views, style, style_views = _kept_rows(features, keep)
    # renumber the classes that occur, 0..K-1
    present, y = np.unique(y_all[rows], return_inverse=True)
    K = len(present)
    names = [classes[c] for c in present]
    k = int(k or M.default_k(len(y)))
    graph = M.knn_graph(X, max(k, n_evidence))
    ctx_tasks = context_tasks(catalog, task, context)
    ctx = context_columns(catalog, ctx_tasks, rows)
    scores, flags, probs = _score_all(X, y, K, k=k, folds=folds, seed=seed, C=C, repeats=repeats,
                                      views=views, graph=graph, context=ctx, style=style, style_views=style_views)
    ordered = ordered_scores(catalog, task, rows, present, y, probs["cleanlab"]) \
        if catalog.task(task).ordered else None  # (result, tolerated first class, last class)
    if ordered is not None:
        scores["ordered"] = ordered[0].scores
    # combined probabilities -> suggested label
    P = _combined_probs(probs, weights)
    score, flagged, rank = _ranking(method, scores, flags, probs, P, y, weights)
    df = _issue_table(catalog, task, features, keep, rows, y, names, K, P, score, rank, flagged, scores, flags,
                      graph, n_evidence)
    if ordered is not None:
        _add_ordered_columns(df, ordered, classes, present)
    df.attrs.update({"task": task, "method": method, "features": features.source, "n_flagged": int(flagged.sum()),
                     "classes": names, "k": k, "context": ctx_tasks, "ordered": ordered is not None})
    cols = COLUMNS + (ORDERED_COLUMNS if ordered is not None else [])
    return df[cols].sort_values("rank").reset_index(drop=True)


def _checked_features(catalog: Catalog, task: str, y_all: np.ndarray, features, ids, extra_views, backbone: str,
                      job: Job) -> tuple[Features, np.ndarray, np.ndarray]:
    """The :class:`Features`, the mask of its labelled rows and their catalogue rows (enough of them, or an error)."""
    if features is None:
        features = backbone_features(catalog, backbone, job=job)
    if not isinstance(features, Features):
        X = np.asarray(features, np.float32)
        fid = list(ids) if ids is not None else catalog.ids
        if len(fid) != len(X):
            raise CatalogError(f"{len(X)} feature rows but {len(fid)} ids")
        features = Features(fid, X, list(extra_views or []))
    row_of = {k: i for i, k in enumerate(catalog.ids)}
    unknown = [k for k in features.ids if k not in row_of]
    if unknown:
        raise CatalogError(f"{len(unknown)} feature id(s) are not in the catalogue, e.g. {unknown[:3]}")
    frow = np.array([row_of[k] for k in features.ids], dtype=np.int64)
    keep = y_all[frow] >= 0
    n_lab = int((y_all >= 0).sum())
    if keep.sum() < n_lab:
        job.say(f"{task}: {n_lab - int(keep.sum())} labelled painting(s) have no features (unreadable image?) "
                "and are left out")
    if keep.sum() < 4 or len(np.unique(y_all[frow[keep]])) < 2:
        raise UncheckableTask(f"task {task!r} cannot be checked: only {int(keep.sum())} labelled painting(s) "
                              f"with features in {len(np.unique(y_all[frow[keep]]))} class(es)")
    rows = frow[keep]
    return features, keep, rows


def _kept_rows(features: Features, keep: np.ndarray):
    """The kept rows of the features, their extra views, style statistics and style views."""
    def rows_of(m):  # no copy when every painting is kept
        return m if keep.all() else m[keep]

    X = rows_of(features.X)
    views = [rows_of(v) for v in features.extra_views]
    style = rows_of(features.style) if features.style is not None else None
    style_views = [rows_of(v) for v in features.style_views] if style is not None else []
    return X, views, style, style_views


def _combined_probs(probs: dict[str, np.ndarray], weights: dict[str, float] | None) -> np.ndarray:
    """The weighted mean of the label models' probabilities (the plain mean when no model has weight)."""
    w = M.DEFAULT_WEIGHTS if weights is None else weights
    wsum = sum(w.get(m, 0.0) for m in probs) or 1.0
    return sum(w.get(m, 0.0) * probs[m] for m in probs) / wsum if any(w.get(m, 0) for m in probs) \
        else sum(probs.values()) / len(probs)


def _ranking(method: str, scores: dict, flags: dict, probs: dict, P: np.ndarray, y: np.ndarray,
             weights: dict[str, float] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The chosen method's score, flags and ranks (1 = most suspicious)."""
    if method == "ensemble":
        score = M.ensemble({m: scores[m] for m in (*LABEL_METHODS, "ordered") if m in scores}, weights)
        n_flag = M.estimated_issue_count(y, probs["cleanlab"])
        order = np.argsort(-score, kind="stable")
        flagged = np.zeros(len(y), bool)
        flagged[order[:n_flag]] = True
        # ... and only where the suggested label is FLAG_ODDS times as probable as the given one
        # (never a painting whose best guess is its own label)
        p_given = P[np.arange(len(y)), y]
        flagged &= (P.argmax(1) != y) & (p_given * FLAG_ODDS <= P.max(1))
    else:
        score = np.nan_to_num(scores[method], nan=-np.inf)
        flagged = flags[method]
    order = np.lexsort((np.arange(len(y)), -np.nan_to_num(score, nan=-np.inf)))
    rank = np.empty(len(y), np.int64)
    rank[order] = np.arange(1, len(y) + 1)
    return score, flagged, rank


def _issue_table(catalog: Catalog, task: str, features: Features, keep: np.ndarray, rows: np.ndarray,
                 y: np.ndarray, names: list, K: int, P: np.ndarray, score: np.ndarray, rank: np.ndarray,
                 flagged: np.ndarray, scores: dict, flags: dict, graph, n_evidence: int) -> pd.DataFrame:
    """One row per checked painting: labels, suggestion, scores, flags, split, neighbour evidence and a note."""
    sugg = P.argmax(1)
    # evidence: nearest labelled neighbours in the same feature space
    nbr, sim = graph[0][:, :n_evidence], graph[1][:, :n_evidence]
    ids_arr = np.array(features.ids, dtype=object)[keep]
    counts = np.bincount(y, minlength=K)
    notes = []
    for i in range(len(y)):
        c = counts[y[i]]
        notes.append(f"class {names[y[i]]!r} has only {c} labelled painting(s): checked against the other classes only"
                     if c < 3 else "")
    return pd.DataFrame({
        "id": ids_arr,
        "task": task,
        "given_label": [names[c] for c in y],
        "suggested_label": [names[c] for c in sugg],
        "suggested_prob": P[np.arange(len(y)), sugg].round(4),
        "score": np.where(np.isfinite(score), score, np.nan),
        "rank": rank,
        "flagged": flagged,
        **{f"score_{m}": scores[m] for m in METHODS},
        **{f"flag_{m}": flags[m] for m in METHODS},
        "split": catalog.df["split"].to_numpy()[rows],
        "neighbor_ids": [SEP.join(ids_arr[j] for j in nbr[i]) for i in range(len(y))],
        "neighbor_labels": [SEP.join(names[y[j]] for j in nbr[i]) for i in range(len(y))],
        "neighbor_similarities": [SEP.join(f"{s:.3f}" for s in sim[i]) for i in range(len(y))],
        "note": notes,
    })


def _add_ordered_columns(df: pd.DataFrame, ordered, classes: list, present: np.ndarray) -> None:
    """Add an ordered task's columns (``ORDERED_COLUMNS``) to ``df``."""
    res, lo, hi = ordered
    df["score_ordered"] = res.scores
    df["class_distance"] = res.distance.round(3)
    df["far_mass"] = res.far_mass.round(4)
    df["tolerated"] = [classes[a] if a == b else f"{classes[a]} .. {classes[b]}" for a, b in zip(lo, hi)]
    df["suggested_range"] = [M.format_range(classes[present[c]], r) for c, r in zip(res.center, res.radius)]


def context_tasks(catalog: Catalog, task: str, context: Sequence[str] | str | None) -> list[str]:
    """The other fields used as evidence: ``"auto"`` = every other task with labels in two or more
    classes; a list (or comma-separated string) names them (the checked task itself is left out)."""
    if context is None:
        return []
    if isinstance(context, str):
        if context != "auto":
            context = [c for c in context.split(",") if c]
        else:
            return [t for t in catalog.tasks if t != task and catalog.df[t].nunique(dropna=True) >= 2]
    for t in context:
        catalog.task(t)  # CatalogError for an unknown task
    return [t for t in context if t != task]  # a task is never its own evidence


def context_columns(catalog: Catalog, tasks: Sequence[str], rows: np.ndarray) -> np.ndarray | None:
    """One-hot columns of the given labels of ``tasks`` for catalogue rows ``rows`` (all zeros where a
    painting has no label for a task), or None without tasks."""
    if not tasks:
        return None
    blocks = []
    for t in tasks:
        yt = catalog.label_indices(t)[rows]
        onehot = np.zeros((len(rows), len(catalog.task(t).classes)), np.float32)
        has = yt >= 0
        onehot[np.flatnonzero(has), yt[has]] = 1.0
        blocks.append(onehot)
    return np.hstack(blocks)


def _score_all(X: np.ndarray, y: np.ndarray, K: int, *, k: int, folds: int, seed: int, C: float,
               repeats: int, views: list[np.ndarray], graph: tuple[np.ndarray, np.ndarray],
               context: np.ndarray | None = None, style: np.ndarray | None = None,
               style_views: list[np.ndarray] | None = None):
    scores: dict[str, np.ndarray] = {}
    flags: dict[str, np.ndarray] = {}
    probs: dict[str, np.ndarray] = {}
    # 1. the original study's z-score
    z = M.zscore_scores(X, y)
    scores["zscore"], flags["zscore"] = z, np.nan_to_num(z, nan=0.0) > ZSCORE_THRESHOLD
    # 2. Mahalanobis distance to class centres
    mh = M.mahalanobis_scores(X, y, n_classes=K)
    scores["mahalanobis"], probs["mahalanobis"] = mh.scores, mh.probs
    flags["mahalanobis"] = M.confident_learning_scores(y, mh.probs).issues
    # 3. k-NN label disagreement
    kn = M.knn_disagreement(X, y, k, n_classes=K, graph=(graph[0][:, :k], graph[1][:, :k]))
    scores["knn"], probs["knn"] = kn.scores, kn.probs
    flags["knn"] = M.confident_learning_scores(y, kn.probs).issues
    # 4. confident learning on out-of-fold probabilities
    #    (the image features and their style statistics, plus the other catalogue fields' labels as context)
    sv = list(style_views or []) if style is not None else [None] * len(views)
    if len(sv) != len(views):
        raise ValueError("style statistics need one matrix per extra view")
    # each view as its column blocks [image features | style statistics | context], read in place
    Xc = [X, style, context]
    views_c = [[v, s, context] for v, s in zip(views, sv)]
    P = M.out_of_fold_probs(Xc, y, n_classes=K, folds=folds, seed=seed, C=C, repeats=repeats, extra_views=views_c)
    cl = M.confident_learning_scores(y, P)
    scores["cleanlab"], flags["cleanlab"], probs["cleanlab"] = cl.scores, cl.issues, P
    # 5. fits no class: far from every class centre
    nov = M.novelty_scores(X, dist2=mh.dist2)
    scores["novelty"], flags["novelty"] = nov, nov > NOVELTY_THRESHOLD
    return scores, flags, probs


def summarize(df: pd.DataFrame) -> str:
    """A few lines for the terminal."""
    task = df.attrs.get("task", df["task"].iloc[0] if len(df) else "?")
    n_flag = int(df["flagged"].sum())
    lines = [f"{task}: {len(df)} labelled painting(s) checked with {df.attrs.get('method', '?')} on "
             f"{df.attrs.get('features', '?')}; {n_flag} flagged as likely wrong, "
             f"{int(df['flag_novelty'].sum())} fit no class (novelty)"]
    for _, r in df[df["flagged"]].head(5).iterrows():
        lines.append(f"  #{r['rank']:<4} {r['id']}: {r['given_label']} -> {r['suggested_label']} "
                     f"(p={r['suggested_prob']:.2f})")
    return "\n".join(lines)

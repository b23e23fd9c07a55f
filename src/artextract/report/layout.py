"""2-D layouts of a collection's embedding, for the report's map and the web explorer's map.

:func:`embed_2d` lays out up to ``sample`` paintings with openTSNE (Poličar et al.), which picks
the Barnes-Hut gradient for small inputs and the FFT-accelerated one (Linderman et al. 2019) for
large ones (``negative_gradient_method="auto"``). A larger collection is laid out on a seeded random sample of that size, and every other
painting is placed at the distance-weighted mean of its nearest laid-out neighbours (found with
FAISS in the PCA space the layout was computed in). The sample's picture is the same as a full
layout of those paintings; the time and memory stay bounded in the sample size, apart from one
small row per painting.
"""
from __future__ import annotations

import logging
import os

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_SAMPLE = 4_000    # paintings laid out by t-SNE itself; the rest are placed among them
PCA_DIMS = 50             # t-SNE reads the embedding's first principal components, as is customary
PLACE_K = 10              # neighbours a placed painting is averaged over


def _pca(X: np.ndarray, dims: int, seed: int, fit_rows: int = 50_000) -> np.ndarray:
    """Project onto the first ``dims`` principal components, fitted on at most ``fit_rows`` rows."""
    from sklearn.decomposition import PCA

    dims = min(dims, X.shape[1], len(X) - 1)
    rng = np.random.default_rng(seed)
    fit = X if len(X) <= fit_rows else X[np.sort(rng.choice(len(X), fit_rows, replace=False))]
    pca = PCA(n_components=dims, svd_solver="randomized" if min(fit.shape) > 2 * dims else "full",
              random_state=seed).fit(fit)
    out = np.empty((len(X), dims), np.float32)
    for s in range(0, len(X), 50_000):  # transform in blocks: no float64 copy of the whole matrix
        out[s:s + 50_000] = pca.transform(X[s:s + 50_000])
    return out


def tsne_2d(Z: np.ndarray, *, seed: int = 0, n_jobs: int | None = None, perplexity: float = 30.0) -> np.ndarray:
    """openTSNE t-SNE of ``Z`` (``[N, d]``), PCA-initialised; ``[N, 2]`` float32.

    Parameters
    ----------
    Z : numpy.ndarray
        Points to lay out, one row per painting (already reduced, e.g. by PCA).
    seed : int
        Random seed of the initialisation and the neighbour search.
    n_jobs : int, optional
        Threads; all cores by default.
    perplexity : float
        t-SNE perplexity, lowered automatically for tiny inputs.

    Returns
    -------
    numpy.ndarray
        ``[N, 2]`` coordinates.
    """
    from openTSNE import TSNE

    n = len(Z)
    if n <= 5:
        return np.asarray(Z[:, :2] if Z.shape[1] >= 2 else np.c_[Z, np.zeros(n)], np.float32)
    perp = float(min(perplexity, max(2.0, (n - 1) / 3.0)))
    tsne = TSNE(n_components=2, perplexity=perp, metric="euclidean", initialization="pca",
                negative_gradient_method="auto", neighbors="annoy" if n > 1000 else "exact",
                n_jobs=n_jobs or os.cpu_count() or 1, random_state=seed, verbose=False)
    return np.asarray(tsne.fit(np.ascontiguousarray(Z, dtype=np.float32)), np.float32)


def place_points(Z_ref: np.ndarray, Y_ref: np.ndarray, Z_new: np.ndarray, k: int = PLACE_K,
                 batch: int = 20_000) -> np.ndarray:
    """Place new points among laid-out ones: each at the inverse-distance-weighted mean of the 2-D
    positions of its ``k`` nearest reference points (exact search in ``Z``'s space).

    Parameters
    ----------
    Z_ref, Y_ref : numpy.ndarray
        Reference points in the embedding space (``[M, d]``) and their 2-D layout (``[M, 2]``).
    Z_new : numpy.ndarray
        Points to place, ``[N, d]``.
    k : int
        Number of neighbours averaged.

    Returns
    -------
    numpy.ndarray
        ``[N, 2]`` coordinates.
    """
    import faiss

    k = min(k, len(Z_ref))
    index = faiss.IndexFlatL2(Z_ref.shape[1])
    index.add(np.ascontiguousarray(Z_ref, dtype=np.float32))
    out = np.empty((len(Z_new), 2), np.float32)
    for s in range(0, len(Z_new), batch):
        d2, nn = index.search(np.ascontiguousarray(Z_new[s:s + batch], dtype=np.float32), k)
        w = 1.0 / (np.sqrt(np.maximum(d2, 0)) + 1e-6)
        w /= w.sum(1, keepdims=True)
        out[s:s + batch] = (w[:, :, None] * Y_ref[nn]).sum(1)
    return out


def embed_2d(X: np.ndarray, *, seed: int = 0, sample: int = DEFAULT_SAMPLE, n_jobs: int | None = None) -> np.ndarray:
    """A 2-D map of ``X`` (one row per painting): t-SNE of at most ``sample`` rows, the rest placed.

    Parameters
    ----------
    X : numpy.ndarray
        ``[N, D]`` embedding (float32 or float16; read in blocks).
    seed : int
        Seed of the sample, the PCA and the t-SNE.
    sample : int
        Largest number of paintings laid out by t-SNE itself.
    n_jobs : int, optional
        Threads for t-SNE; all cores by default.

    Returns
    -------
    numpy.ndarray
        ``[N, 2]`` float32 coordinates, in the order of ``X``.
    """
    X = np.asarray(X)
    n = len(X)
    if n == 0:
        return np.zeros((0, 2), np.float32)
    Z = _pca(X.astype(np.float32, copy=False), PCA_DIMS, seed) if n > 2 else X.astype(np.float32)
    if n <= sample:
        return tsne_2d(Z, seed=seed, n_jobs=n_jobs)
    rng = np.random.default_rng(seed)
    ref = np.sort(rng.choice(n, sample, replace=False))
    rest = np.setdiff1d(np.arange(n), ref, assume_unique=True)
    logger.info("map: t-SNE of a %s-painting sample; placing the other %s among them", f"{sample:,}", f"{len(rest):,}")
    Y = np.empty((n, 2), np.float32)
    Y[ref] = tsne_2d(Z[ref], seed=seed, n_jobs=n_jobs)
    Y[rest] = place_points(Z[ref], Y[ref], Z[rest])
    return Y

"""Near-duplicate paintings: the same picture present twice, within a split or across splits
(a train/validation leak that inflates every validation figure).

Two independent signals, each searched without an n x n loop in Python:

- perceptual hashes (``imagehash`` pHash and dHash, 64 bits each) of the prepared images, searched
  with a faiss binary index by Hamming radius: catches re-encodes, resizes, small crops;
- backbone embeddings (cosine similarity of L2-normalised pooled features), searched with a faiss
  inner-product range search: also catches colour shifts and different scans of the same work.

Candidates from either search are judged on all signals (see :func:`find_duplicates`); every
distance is in the table.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.catalog import Catalog
from ..job import Job, resolve
from ..utils import quiet_faiss

logger = logging.getLogger(__name__)

# Thresholds, checked on the WikiArt sample (its two true duplicate pairs: pHash 0 / dHash 3 /
# cosine 0.99 and pHash 6 / dHash 6 / cosine 0.93; the closest unrelated pairs: dHash 3-5 with
# pHash 22-30, or pHash 8-12 with dHash 15-29, or cosine 0.85-0.87 with both hashes above 15).
PHASH_MAX = 6         # both hashes within these Hamming distances (of 64 bits): "same picture"
DHASH_MAX = 8
COSINE_MIN = 0.95     # embedding cosine at or above which the embedding alone says "same picture"
PAIR_COSINE_MIN = 0.90  # or: cosine this high and one hash within PAIR_HASH_MAX
PAIR_HASH_MAX = 10

COLUMNS = ["id_a", "id_b", "split_a", "split_b", "relation", "phash_distance", "dhash_distance", "cosine",
           "found_by", "path_a", "path_b"]


@dataclass
class Hashes:
    ids: list[str]
    phash: np.ndarray  # [n, 8] uint8 (64 bits)
    dhash: np.ndarray


def _faiss():
    quiet_faiss()
    import faiss

    return faiss


def _pack(h) -> np.ndarray:
    return np.packbits(np.asarray(h.hash, dtype=bool).ravel())


def image_hashes(catalog: Catalog, *, size: int = 256, job: Job | None = None) -> Hashes:
    """pHash and dHash of every prepared image (the cache is built where missing; ``job``: the job, default
    the current one)."""
    import imagehash
    from PIL import Image

    from ..data.cache import ensure_prepared

    job = resolve(job)
    cache = ensure_prepared(catalog, size, job=job)
    ids = [k for k in catalog.ids if cache.has(k)]
    ph = np.zeros((len(ids), 8), np.uint8)
    dh = np.zeros((len(ids), 8), np.uint8)
    for i, k in enumerate(job.bar(len(ids), "hashes", iterable=ids)):
        im = Image.fromarray(cache.get(k))
        ph[i] = _pack(imagehash.phash(im))
        dh[i] = _pack(imagehash.dhash(im))
    return Hashes(ids, ph, dh)


def hamming_pairs(codes: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``i < j`` whose binary codes (``[n, bytes]`` uint8) differ in at most ``radius`` bits."""
    faiss = _faiss()
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    n = len(codes)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    index = faiss.IndexBinaryFlat(codes.shape[1] * 8)
    index.add(codes)
    lims, dist, idx = index.range_search(codes, radius + 1)  # faiss: strictly below the radius
    qi = np.repeat(np.arange(n), np.diff(lims.astype(np.int64)))
    keep = qi < idx
    return qi[keep], idx[keep].astype(np.int64), dist[keep].astype(np.int64)


def cosine_pairs(X: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``i < j`` of L2-normalised rows with cosine similarity >= ``threshold``."""
    from .methods import l2_normalize

    faiss = _faiss()

    Z = np.ascontiguousarray(l2_normalize(X), dtype=np.float32)
    n = len(Z)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    index = faiss.IndexFlatIP(Z.shape[1])
    index.add(Z)
    lims, sims, idx = index.range_search(Z, float(threshold) - 1e-6)
    qi = np.repeat(np.arange(n), np.diff(lims.astype(np.int64)))
    keep = qi < idx
    return qi[keep], idx[keep].astype(np.int64), sims[keep]


def _popcount_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.unpackbits(np.bitwise_xor(a, b), axis=1).sum(axis=1).astype(np.int64)


def relation(split_a: str, split_b: str) -> str:
    if split_a == split_b:
        return f"within {split_a}"
    return "leak " + "/".join(sorted((split_a, split_b)))


def find_duplicates(catalog: Catalog, *, hashes: Hashes | None = None, features: np.ndarray | None = None,
                    feature_ids: list[str] | None = None, backbone: str | None = "mobilenet_v2",
                    phash_max: int = PHASH_MAX, dhash_max: int = DHASH_MAX, cosine_min: float = COSINE_MIN,
                    cache_size: int = 256, job: Job | None = None) -> pd.DataFrame:
    """Pairs of paintings that look like the same picture, with their hash distances and embedding
    cosine; ``relation`` says ``within train`` / ``within val`` / ``leak train/val`` ...

    A pair is kept when (``found_by``): both hashes are within ``phash_max``/``dhash_max``
    (``hash``), or the embedding cosine is at least ``cosine_min`` (``embedding``), or the cosine is
    at least ``PAIR_COSINE_MIN`` and one hash within ``PAIR_HASH_MAX`` (``hash+embedding``; catches
    re-scans and crops that each signal alone would miss). One hash alone is not enough: on the
    WikiArt sample a dHash of 3-5 also joins unrelated flat, low-detail pictures.

    ``features``/``feature_ids`` give an embedding directly; otherwise ``backbone`` features are used
    (``backbone=None``: hashes only). The hashes are taken from the prepared images of ``cache_size``.
    ``job``: the job (default: the current one), for its messages and progress bars."""
    job = resolve(job)
    if hashes is None:
        hashes = image_hashes(catalog, size=cache_size, job=job)
    if features is None and backbone:
        from .detect import backbone_features

        fs = backbone_features(catalog, backbone, job=job)
        features, feature_ids = fs.X, fs.ids
    ids = hashes.ids
    pos = {k: i for i, k in enumerate(ids)}
    # generous candidate search by each signal, then every candidate is judged on all of them
    cand: set[tuple[str, str]] = set()
    for codes, radius in ((hashes.phash, max(phash_max, PAIR_HASH_MAX)), (hashes.dhash, max(dhash_max, PAIR_HASH_MAX))):
        a, b, _ = hamming_pairs(codes, radius)
        cand.update(tuple(sorted((ids[i], ids[j]))) for i, j in zip(a, b))
    Z = fpos = None
    if features is not None:
        from .methods import l2_normalize

        fids = list(feature_ids) if feature_ids is not None else catalog.ids
        fpos = {k: i for i, k in enumerate(fids)}
        Z = l2_normalize(np.asarray(features, np.float32))
        a, b, _ = cosine_pairs(Z, min(cosine_min, PAIR_COSINE_MIN))
        cand.update(tuple(sorted((fids[i], fids[j]))) for i, j in zip(a, b))
    meta = catalog.df.set_index("id")[["split", "path"]]
    rows = []
    for ka, kb in cand:
        ia, ib = pos.get(ka), pos.get(kb)
        ph = dh = None
        if ia is not None and ib is not None:
            ph = int(_popcount_rows(hashes.phash[ia:ia + 1], hashes.phash[ib:ib + 1])[0])
            dh = int(_popcount_rows(hashes.dhash[ia:ia + 1], hashes.dhash[ib:ib + 1])[0])
        cos = None
        if Z is not None and ka in fpos and kb in fpos:
            cos = float(Z[fpos[ka]] @ Z[fpos[kb]])
        by = []
        if ph is not None and ph <= phash_max and dh <= dhash_max:
            by.append("hash")
        if cos is not None and cos >= cosine_min:
            by.append("embedding")
        if not by and cos is not None and ph is not None and cos >= PAIR_COSINE_MIN and min(ph, dh) <= PAIR_HASH_MAX:
            by.append("hash+embedding")
        if not by:
            continue
        sa, sb = meta.at[ka, "split"], meta.at[kb, "split"]
        rows.append({"id_a": ka, "id_b": kb, "split_a": sa, "split_b": sb, "relation": relation(sa, sb),
                     "phash_distance": ph, "dhash_distance": dh,
                     "cosine": None if cos is None else round(cos, 4),
                     "found_by": "+".join(dict.fromkeys("+".join(by).split("+"))),
                     "path_a": meta.at[ka, "path"], "path_b": meta.at[kb, "path"]})
    df = pd.DataFrame(rows, columns=COLUMNS)
    if len(df):
        df["_leak"] = df["relation"].str.startswith("leak")
        df = df.sort_values(["_leak", "phash_distance", "cosine", "id_a"], ascending=[False, True, False, True],
                            na_position="last").drop(columns=["_leak"]).reset_index(drop=True)
    for c in ("phash_distance", "dhash_distance"):
        df[c] = df[c].astype("Int64")
    return df


def summarize_duplicates(df: pd.DataFrame) -> str:
    if not len(df):
        return "no near-duplicate pairs found"
    counts = df["relation"].value_counts()
    lines = [f"{len(df)} near-duplicate pair(s): " + ", ".join(f"{n} {r}" for r, n in counts.items())]
    for _, r in df.head(5).iterrows():
        lines.append(f"  {r['relation']:<16} {r['id_a']}  ~  {r['id_b']}  (pHash {r['phash_distance']}, "
                     f"dHash {r['dhash_distance']}, cosine {r['cosine']}; by {r['found_by']})")
    return "\n".join(lines)

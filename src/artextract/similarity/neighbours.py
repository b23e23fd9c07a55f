"""The neighbours of every indexed painting (``artextract similar --all``), streamed as rows.

Image mode searches the index in batches of queries, so a 10M-painting index streams its rows in
bounded memory; face and pose modes search the descriptors kept beside the index (computed on first
use), and a painting without a detected face or body has no rows (a warning counts them).
"""
from __future__ import annotations

import logging
from typing import Iterator

from ..job import Job, resolve

logger = logging.getLogger(__name__)


def every_neighbour(index, k: int, mode: str = "image", catalog: str | None = None,
                    *, job: Job | None = None) -> Iterator[tuple[str, int, str, float]]:
    """``(query_id, rank, neighbor_id, score)`` for the ``k`` nearest neighbours of every indexed painting.

    Parameters
    ----------
    index : EmbeddingIndex
        The index (its search parameters already set).
    k : int
        Neighbours per painting (never the painting itself).
    mode : {"image", "face", "pose"}
        What is compared: the whole image, detected faces or body poses.
    catalog : str, optional
        The catalogue for image paths in face and pose modes (default: the one the index was built from).
    job : Job, optional
        The job (default: the current one): its progress bar and messages.

    Yields
    ------
    tuple of (str, int, str, float)
        Query id, rank (from 1), neighbour id, score; a query's rows in rank order.
    """
    job = resolve(job)
    left_out: list[str] = []
    if mode == "image":
        with job.bar(total=len(index), desc="similar --all", unit="painting") as bar:
            for qp, scores, pos in index.search_all(k):
                for q, srow, prow in zip(qp, scores, pos):
                    for r, (s, p) in enumerate(((s, p) for s, p in zip(srow, prow) if p >= 0), 1):
                        yield index.ids[q], r, index.ids[p], float(s)
                bar.update(len(qp))
    elif mode == "face":
        from .face import face_index
        fi = face_index(index, catalog, job=job)
        for k_ in index.ids:
            faces = fi.faces_of(k_)
            if not faces:
                left_out.append(k_)
                continue
            for r in fi.search(faces, k, exclude=k_):
                yield k_, r["rank"], r["id"], r["score"]
    else:
        from .pose import pose_index
        pi = pose_index(index, catalog, job=job)
        for k_ in index.ids:
            kp, size = pi.keypoints_of(k_)
            if kp is None:
                left_out.append(k_)
                continue
            for r in pi.search(kp, size, k, exclude=k_):
                yield k_, r["rank"], r["id"], r["score"]
    if left_out:
        what = "face" if mode == "face" else "body"
        logger.warning(f"{len(left_out):,} of {len(index):,} paintings have no detected {what} and have no rows"
                       f" (e.g. {', '.join(left_out[:3])})")

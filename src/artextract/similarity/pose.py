"""Pose search: the 33 body keypoints of mediapipe 0.10.21's pose model (``mediapipe.solutions.pose``,
``model_complexity=1``, bundled with the package, offline), compared as a normalised pose.

Pose descriptor and comparison. A pose is 33 keypoints ``(x, y)`` in pixels with a visibility in
[0, 1]. Two poses are compared on the keypoints both show: each keypoint is weighted by the product
of its two visibilities (and a prior that counts the 11 face points together as about three body
points, so a head does not outweigh the limbs); both poses are centred on their weighted centroid and
scaled to unit weighted RMS radius (so position and size do not matter; orientation does: lying is
not standing). The score averages two agreements: the weighted cosine of the two normalised
keypoint sets (1 = the same configuration) and the mean cosine between the directions of 14 body
segments (upper and lower arms and legs, shoulder and hip lines, torso sides, head), weighted by
their endpoints' visibility; raising the arms barely moves the centred keypoint cloud but turns four
segments around. It is multiplied by the overlap of the two visibility vectors (a bust is not a full
figure). Scores lie in [-1, 1]; 1 is the same pose.

The legacy pose model finds one person per image (the most prominent). Keypoints of the indexed
paintings live in ``INDEX/poses/`` and are computed the first time pose search needs them.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..job import Job
from .descriptors import RecordStore, index_items

logger = logging.getLogger(__name__)

N_KEYPOINTS = 33
MIN_VISIBILITY = 0.5
MIN_VISIBLE_KEYPOINTS = 4
MAX_SIDE = 1024
DETECTION_CONFIDENCE = 0.5
KEYPOINT_NAMES = [
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
]
# mediapipe's POSE_CONNECTIONS, so drawing needs no mediapipe import
CONNECTIONS = [(0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10), (11, 12), (11, 13),
               (13, 15), (15, 17), (15, 19), (15, 21), (17, 19), (12, 14), (14, 16), (16, 18), (16, 20),
               (16, 22), (18, 20), (11, 23), (12, 24), (23, 24), (23, 25), (24, 26), (25, 27), (26, 28),
               (27, 29), (28, 30), (29, 31), (30, 32), (27, 31), (28, 32)]
# body segments whose directions are compared: arms, legs, shoulder and hip lines, torso sides, head
SEGMENTS = np.array([(11, 13), (13, 15), (12, 14), (14, 16), (23, 25), (25, 27), (24, 26), (26, 28),
                     (11, 12), (23, 24), (11, 23), (12, 24), (11, 0), (12, 0)])
PRIOR = np.ones(N_KEYPOINTS, np.float32)
PRIOR[0:11] = 0.25   # 11 face points ~ 3 body points
PRIOR[17:23] = 0.5   # fingers are less reliable than wrists


class PoseModel:
    """mediapipe's legacy pose solution. One per process (:func:`pose_model`), calls serialised."""

    def __init__(self):
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from ..extras import require

        mp = require("faces", "mediapipe", feature="pose search")
        self._pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1,
                                            min_detection_confidence=DETECTION_CONFIDENCE)
        self._lock = threading.Lock()
        self.version = mp.__version__

    @property
    def settings(self) -> dict:
        return {"model": f"mediapipe {self.version} pose, model_complexity=1", "max_side": MAX_SIDE,
                "min_detection_confidence": DETECTION_CONFIDENCE}

    def keypoints(self, img: Image.Image) -> np.ndarray | None:
        """``[33, 3]`` (x, y as fractions of width and height, visibility), or None without a body."""
        img = img.convert("RGB")
        if max(img.size) > MAX_SIDE:
            s = MAX_SIDE / max(img.size)
            img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.Resampling.BILINEAR)
        arr = np.ascontiguousarray(np.asarray(img, np.uint8))
        with self._lock:
            res = self._pose.process(arr)
        if res.pose_landmarks is None:
            return None
        kp = np.array([[lm.x, lm.y, lm.visibility] for lm in res.pose_landmarks.landmark], np.float32)
        kp[:, 2] = np.clip(kp[:, 2], 0, 1)
        if int((kp[:, 2] >= MIN_VISIBILITY).sum()) < MIN_VISIBLE_KEYPOINTS:
            return None
        return kp


_MODEL: PoseModel | None = None
_MODEL_LOCK = threading.Lock()


def pose_model() -> PoseModel:
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            _MODEL = PoseModel()
        return _MODEL


# ---------------------------------------------------------------------- descriptor
def to_pixels(kp: np.ndarray, size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints ``[33, 3]`` (fractions of width/height, visibility) of an image of ``size`` (w, h)
    -> (``[33, 2]`` pixels, ``[33]`` visibility)."""
    kp = np.asarray(kp, np.float32)
    return kp[:, :2] * np.asarray(size, np.float32)[:2], kp[:, 2]


def pose_descriptor(kp: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """The normalised pose of one painting: ``[33, 3]`` = (x, y) centred on the visibility-weighted
    centroid and scaled to unit weighted RMS radius, and the keypoint weight (visibility x prior)."""
    xy, vis = to_pixels(kp, size)
    w = vis * PRIOR
    c = (w[:, None] * xy).sum(0) / max(w.sum(), 1e-9)
    a = xy - c
    r = np.sqrt((w * (a ** 2).sum(1)).sum() / max(w.sum(), 1e-9))
    return np.concatenate([a / max(r, 1e-9), w[:, None]], 1).astype(np.float32)


def pose_similarity(q_xy: np.ndarray, q_vis: np.ndarray, xy: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """Scores of one query pose (``[33, 2]`` pixels, ``[33]`` visibility) against N poses
    (``[N, 33, 2]``, ``[N, 33]``); see the module docstring."""
    eps = 1e-9
    vq = q_vis * PRIOR
    vp = vis * PRIOR[None]
    w = vq[None] * vp                                   # [N, 33]
    W = w.sum(1, keepdims=True) + eps
    cq = (w[..., None] * q_xy[None]).sum(1) / W         # [N, 2]
    cp = (w[..., None] * xy).sum(1) / W
    a = q_xy[None] - cq[:, None]
    b = xy - cp[:, None]
    na = np.sqrt((w * (a ** 2).sum(-1)).sum(1) / W[:, 0])
    nb = np.sqrt((w * (b ** 2).sum(-1)).sum(1) / W[:, 0])
    corr = (w * (a * b).sum(-1)).sum(1) / W[:, 0] / (na * nb + eps)
    coverage = (vq[None] * vp).sum(1) / (np.sqrt((vq ** 2).sum() * (vp ** 2).sum(1)) + eps)
    # segment directions (unit vectors) and their agreement, weighted by the endpoints' visibility
    a0, a1 = SEGMENTS[:, 0], SEGMENTS[:, 1]
    dq = q_xy[a1] - q_xy[a0]
    dq = dq / (np.linalg.norm(dq, axis=-1, keepdims=True) + eps)
    dp = xy[:, a1] - xy[:, a0]
    dp = dp / (np.linalg.norm(dp, axis=-1, keepdims=True) + eps)
    ws = np.minimum(q_vis[a0], q_vis[a1])[None] * np.minimum(vis[:, a0], vis[:, a1])
    direction = (ws * (dq[None] * dp).sum(-1)).sum(1) / (ws.sum(1) + eps)
    return (coverage * 0.5 * (corr + direction)).astype(np.float32)


def _record(model: PoseModel, path: str | None) -> dict:
    from ..data.images import ImageLoadError, load_image

    if path is None:
        return {"keypoints": None, "error": "no image path stored for this painting"}
    try:
        img = load_image(path, draft_size=MAX_SIDE)
    except ImageLoadError as exc:
        return {"keypoints": None, "error": exc.reason}
    kp = model.keypoints(img)
    return {"size": list(img.size), "keypoints": None if kp is None else np.round(kp, 4).tolist()}


class PoseIndex:
    """The keypoints of an index's paintings, as arrays for search."""

    def __init__(self, index, catalog=None, *, job: Job | None = None):
        self.index = index
        self.model = pose_model()
        self.store = RecordStore(Path(index.path) / "poses", self.model.settings)
        self.catalog = catalog
        self._version = -1
        self.update(job=job)

    def update(self, *, job: Job | None = None) -> int:
        n = self.store.build(index_items(self.index, self.catalog), lambda p: _record(self.model, p),
                             what="finding body poses", job=job)
        self._arrays()
        return n

    def _arrays(self) -> None:
        if self._version == self.store.version and hasattr(self, "xy"):
            return
        pos, xy, vis = [], [], []
        for i, k in enumerate(self.index.ids):
            rec = self.store.get(k)
            if rec and rec.get("keypoints"):
                p, v = to_pixels(np.asarray(rec["keypoints"], np.float32), rec["size"])
                pos.append(i)
                xy.append(p)
                vis.append(v)
        self.pos = np.asarray(pos, np.int64)
        self.xy = np.stack(xy) if xy else np.zeros((0, N_KEYPOINTS, 2), np.float32)
        self.vis = np.stack(vis) if vis else np.zeros((0, N_KEYPOINTS), np.float32)
        self._version = self.store.version

    @property
    def with_body(self) -> int:
        return int(len(self.pos))

    def keypoints_of(self, item_id: str) -> tuple[np.ndarray | None, list[int] | None]:
        rec = self.store.get(item_id) or {}
        kp = rec.get("keypoints")
        return (None, None) if not kp else (np.asarray(kp, np.float32), rec["size"])

    def error_of(self, item_id: str) -> str | None:
        return (self.store.get(item_id) or {}).get("error")

    def search(self, keypoints: np.ndarray, size: Sequence[int], k: int = 10, exclude: str | None = None) -> list[dict]:
        self._arrays()
        if keypoints is None or not len(self.pos):
            return []
        q_xy, q_vis = to_pixels(keypoints, size)
        scores = pose_similarity(q_xy, q_vis, self.xy, self.vis)
        if exclude is not None and exclude in self.index:
            scores[self.pos == self.index.position(exclude)] = -np.inf
        order = np.argsort(-scores, kind="stable")
        order = order[np.isfinite(scores[order])][:k]
        out = []
        for r, j in enumerate(order, 1):
            item_id = self.index.ids[int(self.pos[j])]
            out.append({"id": item_id, "score": float(scores[j]), "rank": r,
                        "keypoints": self.store.get(item_id)["keypoints"]})
        return out


def pose_index(index, catalog=None, *, job: Job | None = None) -> PoseIndex:
    """The (cached) :class:`PoseIndex` of ``index``, brought up to date with its paintings."""
    with index._lock:  # one builder per index, even when a web server asks from several threads
        pi = index._aux.get("poses")
        if pi is None:
            pi = index._aux["poses"] = PoseIndex(index, catalog, job=job)
        elif pi.store.todo(index.ids):
            pi.update(job=job)
        return pi


# ---------------------------------------------------------------------- drawing
def draw_pose(img: Image.Image, keypoints, color=(0, 255, 128), min_visibility: float = MIN_VISIBILITY,
              width: int | None = None) -> Image.Image:
    """A copy of ``img`` with the skeleton (keypoints as fractions of width/height + visibility)."""
    out = img.convert("RGB").copy()
    if keypoints is None:
        return out
    kp = np.asarray(keypoints, np.float32)
    d = ImageDraw.Draw(out)
    W, H = out.size
    lw = width or max(2, round(max(W, H) / 200))
    pts = [(float(x) * W, float(y) * H, float(v)) for x, y, v in kp[:, :3]]
    for a, b in CONNECTIONS:
        if pts[a][2] >= min_visibility and pts[b][2] >= min_visibility:
            d.line([pts[a][:2], pts[b][:2]], fill=color, width=lw)
    for x, y, v in pts:
        if v >= min_visibility:
            d.ellipse([x - lw, y - lw, x + lw, y + lw], fill=(255, 60, 60))
    return out

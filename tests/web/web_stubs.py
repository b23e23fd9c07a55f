"""Stand-ins for a trained run and a similarity index, with the interfaces of
``artextract.training.inference.Run`` and ``artextract.similarity.api.find_similar``.

They let the web layer be tested on its own (fast, no torch); the tests that use the real run and
index live beside them and run whenever those packages are installed.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from artextract.data.catalog import Catalog
from artextract.data.images import load_image


def _colour(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB").resize((8, 8)), dtype=np.float32).reshape(-1, 3).mean(0) / 255.0


class StubRun:
    """Deterministic 'predictions' from the mean colour of the image."""

    def __init__(self, catalog: Catalog):
        self.tasks = dict(catalog.tasks)
        self.calls = 0

    def predict_images(self, images, top_k=3):
        out = []
        for im in images:
            self.calls += 1
            c = _colour(im)
            item = {}
            for t, spec in self.tasks.items():
                n = len(spec.classes)
                logits = np.cos(np.arange(n) * (1.0 + c[0]) + c[1] * 3.0 + c[2])
                p = np.exp(3 * logits) / np.exp(3 * logits).sum()
                order = np.argsort(-p)[:top_k]
                item[t] = [(spec.classes[j], float(p[j])) for j in order]
            out.append(item)
        return out


class StubIndex:
    def __init__(self, catalog: Catalog):
        self.ids = catalog.ids
        self.vecs = np.stack([_colour(load_image(p)) for p in catalog.image_paths()])


def stub_find_similar(index: StubIndex, *, image=None, id=None, k=10, mode="image"):
    if mode == "pose":
        return {"mode": mode, "query": id, "results": [], "message": "pose search needs people in the painting; "
                "none were found in this one"}
    if id is not None:
        if id not in index.ids:
            raise KeyError(id)
        q = index.vecs[index.ids.index(id)]
    else:
        if not isinstance(image, Image.Image):
            image = load_image(image)
        q = _colour(image)
    d = np.linalg.norm(index.vecs - q, axis=1)
    order = [i for i in np.argsort(d) if index.ids[i] != id][:k]
    if mode == "face":
        order = order[: max(1, k // 3)]
    return {"mode": mode, "query": id or "<image>",
            "results": [{"id": index.ids[i], "score": float(1 / (1 + d[i])), "rank": r + 1}
                        for r, i in enumerate(order)],
            "message": None}

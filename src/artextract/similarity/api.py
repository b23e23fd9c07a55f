"""One call for similar paintings, used by the CLI and the web app.

>>> index = EmbeddingIndex.load("wikiart.index")
>>> res = find_similar(index, id="Impressionism/claude-monet_water-lilies-1919.jpg", k=5)
>>> res = find_similar(index, image=uploaded_bytes, mode="face")
>>> res = find_similar(index, text="a ship in a storm at night", k=10)   # open_clip indexes

The answer is a JSON-ready dict::

    {"mode": "image" | "face" | "pose",
     "query": {"id": ...} or {"image": "<path>" | "<bytes>" | "<PIL image>", "size": [w, h]}
               or {"text": ...} (mode image only),
               plus "faces" (boxes, scores, landmarks) in face mode, "keypoints" ([33, 3]) in pose mode,
     "results": [{"id", "score", "rank", "path", ...}],   best first, never the query painting itself;
               face mode adds "box" (the matching face), "query_face", "same_person";
               pose mode adds "keypoints" (x, y as fractions of the image size, visibility)
     "message": None, or why there are no results ("no face detected in the query image", ...),
     "coverage": in face/pose mode, how many indexed paintings have a face / a body}

Errors raise :class:`SimilarityError` (unknown id, bad mode, not exactly one of image, id and text),
``ImageLoadError`` (the query is not a readable image) or :class:`TextSearchUnavailable` (a text
query to an index whose embedder has no text tower; a ValueError too). Face and pose descriptors
of the indexed paintings are computed on first use and kept beside the index (the job says so).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..job import Job, resolve
from .embed import BackboneEmbedder, RunEmbedder, TextSearchUnavailable, as_image
from .index import EmbeddingIndex, SimilarityError

MODES = ("image", "face", "pose")
#: the longest text query, in characters (CLIP reads at most 77 tokens of it anyway)
MAX_TEXT_CHARS = 300
TEXT_TOWER_HINT = ("text search needs an index built with an open_clip backbone, e.g. `artextract index "
                   "--catalog C --backbone open_clip:ViT-B-32 --out I`")


def _describe_source(image) -> str:
    if isinstance(image, (bytes, bytearray)):
        return "<image bytes>"
    if isinstance(image, Image.Image):
        return "<PIL image>"
    return str(image)


def text_search_unavailable(index: EmbeddingIndex) -> str | None:
    """Why ``index`` cannot rank paintings by a text, or None when it can.

    Parameters
    ----------
    index : EmbeddingIndex
        A loaded index; an open_clip embedder's model is loaded here to see whether it has a
        text tokenizer (SigLIP's comes from the hub).

    Returns
    -------
    str or None
        The reason in words (which embedder, what would have a text tower), or None.
    """
    emb = index.embedder
    if isinstance(emb, BackboneEmbedder):
        if not emb.backbone.startswith("open_clip:"):
            return f"this index embeds paintings with {emb.backbone}, which has no text tower; {TEXT_TOWER_HINT}"
        if not emb.has_text:
            return (f"{emb.backbone} has no text tokenizer here (SigLIP's comes from the hub: fetch it with "
                    "`artextract backbones --fetch`)")
        return None
    if isinstance(emb, RunEmbedder):
        return (f"this index embeds paintings with the trained run {emb.run_dir}, which has no text tower; "
                f"{TEXT_TOWER_HINT}")
    return f"this index holds {emb.describe()}, which has no text tower; {TEXT_TOWER_HINT}"


def embed_text(index: EmbeddingIndex, text: str) -> np.ndarray:
    """The unit vector of ``text`` in the space of ``index``'s stored vectors.

    Parameters
    ----------
    index : EmbeddingIndex
        An index built with an open_clip backbone (CLIP or SigLIP).
    text : str
        The query, 1 to :data:`MAX_TEXT_CHARS` characters.

    Returns
    -------
    numpy.ndarray
        ``[dim]`` float32, L2-normalised (and centred like the paintings, if the index is).

    Raises
    ------
    TextSearchUnavailable
        The index's embedder has no text tower; the message says which would.
    SimilarityError
        The text is empty or too long.
    """
    text = _check_text(text)
    why = text_search_unavailable(index)
    if why is not None:
        raise TextSearchUnavailable(why)
    vec = np.asarray(index.embedder.embed_text([text]), np.float32)[0]
    if vec.shape != (index.dim,):
        raise SimilarityError(f"the text vector has {vec.shape[0]} dimensions but the index holds {index.dim}-d "
                              "vectors; rebuild the index with `artextract index --rebuild`")
    return vec


def _check_text(text) -> str:
    if not isinstance(text, str):
        raise SimilarityError(f"the text query must be a string, not {type(text).__name__}")
    text = text.strip()
    if not text:
        raise SimilarityError("the text query is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise SimilarityError(f"the text query has {len(text):,} characters; the limit is {MAX_TEXT_CHARS}")
    return text


def find_similar(index: EmbeddingIndex, *, image=None, id: str | None = None, text: str | None = None,
                 k: int = 10, mode: str = "image", catalog=None, job: Job | None = None) -> dict:
    """The ``k`` paintings of ``index`` most similar to a query, by whole-image embedding, faces or
    body pose, or the ``k`` paintings a text describes best.

    Parameters
    ----------
    index : EmbeddingIndex
        The paintings searched.
    image : PIL.Image.Image, str, PathLike or bytes, optional
        A query image (an image, a path or the bytes of a file).
    id : str, optional
        The id of an indexed painting as the query; it is never among the results.
    text : str, optional
        A description ("a ship in a storm at night"), 1 to :data:`MAX_TEXT_CHARS` characters: the
        paintings are ranked by the cosine of their stored vectors with the text's vector. Needs an
        index built with an open_clip backbone (one with a text tower) and ``mode="image"``.
    k : int
        How many results (at most).
    mode : {"image", "face", "pose"}
        What is compared.
    catalog : Catalog or path, optional
        Overrides where the indexed images are found (face and pose modes).
    job : Job, optional
        The job (default: the current one): its messages and progress bars while face/pose descriptors
        are computed on first use.

    Returns
    -------
    dict
        ``{"mode", "query", "results", "message"}`` (see the module docstring); for a text query
        ``query`` is ``{"text": text}``.

    Raises
    ------
    SimilarityError
        Not exactly one of ``image``, ``id`` and ``text``; an unknown id; a bad mode or k; an empty or
        too long text; text with face or pose mode.
    TextSearchUnavailable
        A text query to an index whose embedder has no text tower.

    Examples
    --------
    >>> find_similar(index, text="a ship in a storm at night", k=5)["results"][0]["id"]  # doctest: +SKIP
    """
    job = resolve(job)
    k = _checked_query(image, id, text, k, mode)
    if text is not None:
        return _text_query(index, text, k, mode)
    id = None if id is None else str(id)
    img, query = _query(index, image, id)
    out = {"mode": mode, "query": query, "results": [], "message": None}
    if mode == "image":
        if img is None:
            results = index.search_id(id, k)
        else:
            results = index.search(index.embed_images([img])[0], k)
    elif mode == "face":
        results = _face(index, out, img, id, k, catalog, job)
    else:
        results = _pose(index, out, img, id, k, catalog, job)
    for r in results:
        r["path"] = index.paths[index.position(r["id"])]
    out["results"] = results
    if not results and out["message"] is None:
        out["message"] = "the index has no other painting to compare with"
    return out


def _checked_query(image, id, text, k, mode: str) -> int:
    """``k`` as an int, once the mode, the query (exactly one of ``image``, ``id`` and ``text``) and
    ``k`` are checked; raises :class:`SimilarityError` otherwise."""
    if mode not in MODES:
        raise SimilarityError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if sum(q is not None for q in (image, id, text)) != 1:
        raise SimilarityError("give one of an image, the id of an indexed painting, or a text")
    k = int(k)
    if k < 1:
        raise SimilarityError("k must be at least 1")
    return k


def _text_query(index: EmbeddingIndex, text: str, k: int, mode: str) -> dict:
    """The answer of :func:`find_similar` to a text query."""
    if mode != "image":
        raise SimilarityError(f"a text query ranks whole paintings; it cannot be used with mode {mode!r}")
    text = _check_text(text)
    results = index.search(embed_text(index, text), k)
    for r in results:
        r["path"] = index.paths[index.position(r["id"])]
    return {"mode": mode, "query": {"text": text}, "results": results,
            "message": None if results else "the index holds no paintings"}


def _query(index: EmbeddingIndex, image, item_id: str | None) -> tuple[Image.Image | None, dict]:
    """The query image (None for the id of an indexed painting) and the ``query`` entry of the answer."""
    if item_id is not None:
        index.position(item_id)  # raises a clear error for an unknown id
        return None, {"id": item_id}
    if isinstance(image, (str, os.PathLike)) and not Path(image).exists():
        raise SimilarityError(f"query image {image} does not exist")
    img = as_image(image)
    return img, {"image": _describe_source(image), "size": list(img.size)}


def _face(index, out, img, item_id, k, catalog, job: Job) -> list[dict]:
    from .face import face_index, face_model

    fi = face_index(index, catalog, job=job)
    out["coverage"] = {"with_face": fi.with_face, "without_face": len(index) - fi.with_face}
    if img is None:
        faces = fi.faces_of(item_id)
        err = fi.error_of(item_id)
        if err:
            out["message"] = f"painting {item_id!r} could not be read for face detection: {err}"
        elif not faces:
            out["message"] = f"no face detected in painting {item_id!r}"
    else:
        faces = face_model().detect(img)
        if not faces:
            out["message"] = "no face detected in the query image"
    out["query"]["faces"] = [{k_: v for k_, v in f.items() if k_ != "embedding"} for f in faces]
    if not faces:
        return []
    if fi.with_face == 0:
        out["message"] = "no indexed painting has a detected face"
        return []
    return fi.search(faces, k, exclude=item_id)


def _pose(index, out, img, item_id, k, catalog, job: Job) -> list[dict]:
    from .pose import pose_index, pose_model

    pi = pose_index(index, catalog, job=job)
    out["coverage"] = {"with_body": pi.with_body, "without_body": len(index) - pi.with_body}
    if img is None:
        kp, size = pi.keypoints_of(item_id)
        err = pi.error_of(item_id)
        if err:
            out["message"] = f"painting {item_id!r} could not be read for pose detection: {err}"
        elif kp is None:
            out["message"] = f"no body detected in painting {item_id!r}"
    else:
        kp, size = pose_model().keypoints(img), list(img.size)
        if kp is None:
            out["message"] = "no body detected in the query image"
    out["query"]["keypoints"] = None if kp is None else np.round(np.asarray(kp), 4).tolist()
    if kp is None:
        return []
    if pi.with_body == 0:
        out["message"] = "no indexed painting has a detected body"
        return []
    return pi.search(kp, size, k, exclude=item_id)


def draw_result(res: dict, index: EmbeddingIndex, out_dir: str | os.PathLike, query_image=None,
                max_side: int = 512) -> list[Path]:
    """Write the query and each result with its face boxes or skeleton drawn on, for reports.
    Returns the files written (``00_query.jpg``, ``01_<id>.jpg``, ...)."""
    from ..data.images import load_image
    from .face import draw_faces
    from .pose import draw_pose

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mode = res["mode"]
    written = []

    def annotate(img: Image.Image, item: dict, is_query: bool) -> Image.Image:
        if mode == "face":
            faces = item.get("faces") if is_query else [{"box": item["box"]}] if "box" in item else []
            return draw_faces(img, faces or [])
        if mode == "pose":
            return draw_pose(img, item.get("keypoints"))
        return img

    def save(img: Image.Image, name: str) -> None:
        if max(img.size) > max_side:
            s = max_side / max(img.size)
            img = img.resize((round(img.width * s), round(img.height * s)), Image.Resampling.LANCZOS)
        p = out_dir / name
        img.save(p, quality=90)
        written.append(p)

    q = res["query"]
    if "id" in q:
        path = index.paths[index.position(q["id"])]
        qimg = load_image(path) if path else None
    else:
        qimg = as_image(query_image) if query_image is not None else None
    if qimg is not None:
        save(annotate(qimg, q, True), "00_query.jpg")
    for r in res["results"]:
        if not r.get("path"):
            continue
        try:
            img = load_image(r["path"])
        except Exception:
            continue
        stem = r["id"].rsplit(".", 1)[0] if "." in r["id"][-5:] else r["id"]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[-80:]
        save(annotate(img, r, False), f"{r['rank']:02d}_{safe}.jpg")
    return written

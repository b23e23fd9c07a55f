"""A trained run's top-k labels for image files: ``artextract predict``'s work.

Images are decoded and classified in batches; an unreadable file is reported, never fatal; with an
explanation folder each image also gets one heat-map overlay per task (:mod:`artextract.training.explain`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

PREDICT_BATCH = 32   # images decoded and classified together


@dataclass
class Predictions:
    """What :func:`predict_files` found.

    Attributes
    ----------
    results : list of dict
        Per readable image: ``{"image": path, "predictions": {task: [{"label", "prob"}, ...]}}``, in the
        order of the files.
    errors : list of dict
        Per unreadable file: ``{"image": path, "error": reason}``.
    explained : list of dict
        The overlays written (see :func:`artextract.training.explain.write_explanations`).
    """

    results: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    explained: list[dict] = field(default_factory=list)


def image_files(inputs: list[str]) -> list[Path]:
    """The image files named by ``inputs``: files as given, folders searched recursively for images.

    Parameters
    ----------
    inputs : list of str
        Files and folders.

    Returns
    -------
    list of Path
        A folder's images in sorted order; a missing or unreadable file is kept (the loader reports it).
    """
    from ..data.images import IMAGE_EXTS

    files: list[Path] = []
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            files += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_EXTS)
        else:
            files.append(p)  # a missing or unreadable file is reported by the loader
    return files


def predict_files(run, files: list[Path], top_k: int = 3, explain_dir: str | Path | None = None,
                  batch_size: int = PREDICT_BATCH) -> Predictions:
    """Classify image files with a trained run, ``batch_size`` images at a time.

    Parameters
    ----------
    run : artextract.training.inference.Run
        A loaded run.
    files : list of Path
        The images.
    top_k : int
        Labels per task, most probable first (probabilities rounded to 4 places).
    explain_dir : str or Path, optional
        Also write each image's heat-map overlays (one per task) into this folder.
    batch_size : int
        Images decoded and classified together.

    Returns
    -------
    Predictions
    """
    from ..data.images import ImageLoadError, load_image

    out = Predictions()
    batch: list = []
    names: list[Path] = []

    def flush():
        if batch:
            for f, r in zip(names, run.predict_images(batch, top_k=top_k)):
                out.results.append({"image": str(f), "predictions": {
                    t: [{"label": lab, "prob": round(p, 4)} for lab, p in v] for t, v in r.items()}})
            if explain_dir:
                from .explain import write_explanations

                out.explained.extend(write_explanations(run, batch, names, explain_dir))
            batch.clear()
            names.clear()

    for f in files:
        try:
            batch.append(load_image(f))
            names.append(f)
        except ImageLoadError as exc:
            out.errors.append({"image": str(f), "error": exc.reason})
        if len(batch) >= batch_size:
            flush()
    flush()
    return out

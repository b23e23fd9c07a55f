"""Where the model looked: a heat map over the painting of what drove one label's score.

Two maps over the backbone's last feature-map grid (``h x w`` positions), both of the model's own
view of the painting (the centre crop it reads):

- ``attention``: the CRNN's attention-pooling weights, how much each position of the map weighs in
  the pooled representation (the same for every label);
- ``gradcam``: Grad-CAM (Selvaraju et al. 2017) of the chosen label's logit on the backbone's last
  map: the map's channels weighted by the mean gradient of the logit, summed, negatives cut.

``method="auto"`` shows whichever is more concentrated (one minus its normalised entropy over the
grid: a uniform map shows nothing, a map on a few positions shows where), and the legend says which.
"""
from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..errors import ArtExtractError

logger = logging.getLogger(__name__)

METHODS = ("auto", "attention", "gradcam")
METHOD_NAMES = {"attention": "attention-pooling weights of the CRNN",
                "gradcam": "Grad-CAM of the label's logit on the backbone's last map"}
VIEW_SIZE = 384
CROP = 0.875  # the model reads the centre 87.5 % of its prepared square (see models.features)


class ExplainError(ArtExtractError, ValueError):
    """The task or label is unknown, or the run cannot explain (no model)."""


@dataclass
class Explanation:
    """One explanation: the grid maps, the one shown, and the label explained."""

    task: str
    label: str
    prob: float
    method: str
    maps: dict[str, np.ndarray]
    scores: dict[str, float]
    view: Image.Image = field(repr=False)

    @property
    def heat(self) -> np.ndarray:
        """The shown map over the grid, scaled to [0, 1]."""
        return _unit(self.maps[self.method])

    def info(self) -> dict:
        return {"task": self.task, "label": self.label, "prob": self.prob, "method": self.method,
                "method_name": METHOD_NAMES[self.method], "grid": list(self.heat.shape),
                "concentration": {k: round(v, 4) for k, v in self.scores.items()}}


def concentration(m: np.ndarray) -> float:
    """One minus the normalised entropy of a non-negative map (0: uniform or empty, 1: one position)."""
    m = np.clip(np.asarray(m, np.float64).ravel(), 0, None)
    s = m.sum()
    if m.size < 2 or s <= 0 or not np.isfinite(s):
        return 0.0
    p = m / s
    h = -(p[p > 0] * np.log(p[p > 0])).sum()
    return float(1.0 - h / math.log(m.size))


def _unit(m: np.ndarray) -> np.ndarray:
    m = np.clip(np.asarray(m, np.float32), 0, None)
    hi = float(m.max()) if m.size else 0.0
    return m / hi if hi > 0 else m


def model_view(img: Image.Image, size: int = VIEW_SIZE) -> Image.Image:
    """The part of ``img`` the model reads (its centre square, then the centre 87.5 % of that), at ``size``."""
    from ..data.images import resize_center_crop

    big = resize_center_crop(img.convert("RGB"), round(size / CROP))
    o = (big.width - size) // 2
    return big.crop((o, o, o + size, o + size))


def explain(run, img: Image.Image, task: str, label: str | None = None, method: str = "auto") -> Explanation:
    """Explain one label's score of ``run`` (a :class:`~artextract.training.inference.Run`) on ``img``.

    Parameters
    ----------
    run : Run
        A loaded trained run.
    img : PIL.Image.Image
        The painting.
    task : str
        One of the run's tasks.
    label : str, optional
        The class to explain; the model's top class when None.
    method : str
        ``auto``, ``attention`` or ``gradcam``.

    Returns
    -------
    Explanation
        The maps, which one is shown, and the label with its probability.
    """
    if task not in run.tasks:
        raise ExplainError(f"unknown task {task!r}; this run predicts {', '.join(run.tasks)}")
    if method not in METHODS:
        raise ExplainError(f"method must be one of {', '.join(METHODS)}")
    classes = run.tasks[task].classes
    if label is not None and label not in classes:
        raise ExplainError(f"{label!r} is not a class of {task}; classes: {', '.join(classes)}")
    head, backbone = run.head, run.backbone
    x = run._tensor([img])
    with torch.no_grad():
        if head.stats_dim:
            fmap, stats = backbone.forward_with_stats(x)
        else:
            fmap, stats = backbone(x), None
    fmap = fmap.detach().float().requires_grad_(True)
    with torch.enable_grad():
        _, logits = head.embed_and_logits(fmap, stats)
        out = logits[task][0]
        probs = torch.softmax(out.detach(), 0)
        idx = int(probs.argmax()) if label is None else classes.index(label)
        out[idx].backward()
    grad = fmap.grad[0]                       # [C, h, w]
    weights = grad.mean(dim=(1, 2))           # one weight per channel
    cam = torch.relu((weights[:, None, None] * fmap.detach()[0]).sum(0)).cpu().numpy()
    maps = {"gradcam": cam}
    if head.pool == "attention":
        with torch.no_grad():
            _, w = head.embed(fmap.detach(), stats, return_attention=True)
        maps["attention"] = w[0].reshape(cam.shape).cpu().numpy()
    scores = {k: concentration(v) for k, v in maps.items()}
    if method == "auto":
        chosen = max(scores, key=lambda k: (scores[k], k == "attention"))
    elif method in maps:
        chosen = method
    else:
        raise ExplainError(f"this run's head pools by {head.pool}, so it has no attention weights; use gradcam")
    return Explanation(task, classes[idx], float(probs[idx]), chosen, maps, scores, model_view(img))


def overlay_png(ex: Explanation, labelize=lambda s: str(s).replace("_", " ")) -> bytes:
    """The painting (the model's view) with the heat map over it and a legend below, as PNG bytes."""
    import matplotlib

    view = ex.view
    size = view.width
    heat = Image.fromarray((ex.heat * 255).astype(np.uint8), "L").resize((size, size), Image.Resampling.BICUBIC)
    h = np.asarray(heat, np.float32) / 255.0
    cmap = matplotlib.colormaps["inferno"]
    colour = (cmap(h)[..., :3] * 255).astype(np.float32)
    base = np.asarray(view, np.float32)
    alpha = (0.25 + 0.55 * h)[..., None]
    blended = np.clip(base * (1 - alpha) + colour * alpha, 0, 255).astype(np.uint8)
    legend_h = 82
    canvas = Image.new("RGB", (size, size + legend_h), (250, 250, 248))
    canvas.paste(Image.fromarray(blended), (0, 0))
    d = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # older Pillow
        font = ImageFont.load_default()
    d.text((8, size + 6), f"{labelize(ex.task)}: {labelize(ex.label)} ({ex.prob * 100:.0f}%)", fill=(20, 20, 20),
           font=font)
    d.text((8, size + 24), f"{METHOD_NAMES[ex.method]} ({ex.heat.shape[0]}x{ex.heat.shape[1]} grid)",
           fill=(70, 70, 70), font=font)
    d.text((8, size + 42), f"concentration {ex.scores[ex.method]:.2f} (0: spread evenly, 1: one spot)",
           fill=(70, 70, 70), font=font)
    bar_w, x0, y0 = 90, size - 125, size + 64
    for i in range(bar_w):
        c = tuple(int(v * 255) for v in cmap(i / (bar_w - 1))[:3])
        d.line([(x0 + i, y0), (x0 + i, y0 + 10)], fill=c)
    d.text((x0 - 34, y0 - 2), "low", fill=(70, 70, 70), font=font)
    d.text((x0 + bar_w + 4, y0 - 2), "high", fill=(70, 70, 70), font=font)
    buf = io.BytesIO()
    canvas.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def write_explanations(run, images: list, names: list, out_dir, tasks: list[str] | None = None) -> list[dict]:
    """Write one overlay per image and task (the model's top label) into ``out_dir``.

    Parameters
    ----------
    run : Run
        A loaded trained run.
    images : list of PIL.Image.Image
        The images.
    names : list of path-like
        Their file names (``<stem>.<task>.png`` is written for each; a repeated stem gets a number).
    out_dir : path-like
        Folder for the PNG files (created).
    tasks : list of str, optional
        Which tasks; all of the run's by default.

    Returns
    -------
    list of dict
        One entry per file written: image, task, label, prob, method, path.
    """
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written, seen = [], {}
    for img, name in zip(images, names):
        stem = Path(str(name)).stem
        n = seen.get(stem, 0)
        seen[stem] = n + 1
        stem = stem if n == 0 else f"{stem}-{n}"
        for task in tasks or list(run.tasks):
            ex = explain(run, img, task)
            path = out / f"{stem}.{task}.png"
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(overlay_png(ex))
            tmp.replace(path)
            written.append({"image": str(name), "path": str(path), **{k: ex.info()[k] for k in
                                                                       ("task", "label", "prob", "method")}})
    return written

"""A synthetic demo corpus, generated deterministically in seconds.

The "paintings" are NOT real artworks. They are drawn so that every label is learnable from the
pixels:

- **style** is the mark-making: brush strokes, pointillist dots, flat geometric fields, soft colour
  fields, cross-hatching;
- **artist** is a variation inside a style: its own palette (hue centre and spread) and mark size;
- **genre** is the composition: a horizon (landscape), a central figure (portrait), objects on a
  table (still life), a grid of buildings (cityscape), or none (abstract);
- **timeframe** (ordered) follows the artist's period, with some spread;
- a few labels are deliberately wrong (``planted_errors.csv`` lists them) for the outlier finder.
"""
from __future__ import annotations

import colorsys
import csv
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from .catalog import Catalog, TaskSpec

DEFAULT_N = 300          # paintings in the demo corpus
DEFAULT_IMAGE_SIZE = 128  # side of each generated image

STYLES = ["Brushwork", "Pointillism", "Geometric", "Color_Field", "Hatching"]
GENRES = ["abstract", "landscape", "portrait", "still_life", "cityscape"]
TIMEFRAMES = ["1850 to 1875", "1876 to 1900", "1901 to 1925", "1926 to 1950", "1951 to 1975", "1976 to 2000"]
# artist -> (style, hue centre, hue spread, mark scale, timeframe index)
ARTISTS = {
    "Ada_Brush": ("Brushwork", 0.08, 0.06, 1.4, 0),
    "Bruno_Brush": ("Brushwork", 0.58, 0.07, 0.8, 1),
    "Cleo_Dot": ("Pointillism", 0.15, 0.10, 1.3, 1),
    "Dario_Dot": ("Pointillism", 0.70, 0.08, 0.7, 2),
    "Eva_Grid": ("Geometric", 0.00, 0.04, 1.2, 3),
    "Felix_Grid": ("Geometric", 0.45, 0.20, 0.7, 2),
    "Gina_Field": ("Color_Field", 0.95, 0.05, 1.0, 4),
    "Hugo_Field": ("Color_Field", 0.33, 0.06, 1.0, 5),
    "Iris_Hatch": ("Hatching", 0.62, 0.05, 1.2, 0),
    "Jon_Hatch": ("Hatching", 0.10, 0.04, 0.7, 3),
}


def _palette(rng: np.random.Generator, hue: float, spread: float, n: int = 6) -> list[tuple[int, int, int]]:
    cols = []
    for _ in range(n):
        h = (hue + rng.normal(0, spread)) % 1.0
        s = float(np.clip(rng.uniform(0.45, 0.95), 0, 1))
        v = float(np.clip(rng.uniform(0.35, 1.0), 0, 1))
        r, g, b = colorsys.hsv_to_rgb(h, s, v)
        cols.append((int(r * 255), int(g * 255), int(b * 255)))
    return cols


def _composition_mask(genre: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Region map (0 = background, 1 = subject) that sets where marks are dark/light."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    if genre == "landscape":
        horizon = rng.uniform(0.45, 0.65) + 0.05 * np.sin(xx * rng.uniform(4, 9))
        return (yy > horizon).astype(np.float32)
    if genre == "portrait":
        cx, cy = 0.5 + rng.normal(0, 0.03), 0.42 + rng.normal(0, 0.03)
        head = ((xx - cx) / 0.16) ** 2 + ((yy - cy) / 0.21) ** 2 < 1
        body = (((xx - cx) / 0.34) ** 2 + ((yy - 1.05) / 0.42) ** 2) < 1
        return (head | body).astype(np.float32)
    if genre == "still_life":
        m = (yy > 0.72).astype(np.float32) * 0.5
        for _ in range(rng.integers(2, 5)):
            cx, cy, r = rng.uniform(0.25, 0.75), rng.uniform(0.55, 0.68), rng.uniform(0.07, 0.13)
            m = np.maximum(m, (((xx - cx) ** 2 + (yy - cy) ** 2) < r * r).astype(np.float32))
        return m
    if genre == "cityscape":
        m = np.zeros((size, size), np.float32)
        x = 0.0
        while x < 1.0:
            w, h = rng.uniform(0.06, 0.16), rng.uniform(0.3, 0.75)
            m[(yy > 1 - h) & (xx >= x) & (xx < x + w)] = 1.0
            x += w + rng.uniform(0.0, 0.04)
        return m
    return np.zeros((size, size), np.float32)  # abstract


def composition_mask(index: int, artist: str, genre: str, size: int = DEFAULT_IMAGE_SIZE, seed: int = 0) -> np.ndarray:
    """The subject region of demo painting ``index`` as :func:`generate_demo` drew it.

    Parameters
    ----------
    index : int
        The painting's number (``demo_0042`` is 42).
    artist, genre : str
        Its artist and the genre it was drawn as (a planted wrong genre label does not change the picture).
    size : int
        The side the corpus was generated at.
    seed : int
        The corpus's seed.

    Returns
    -------
    numpy.ndarray
        ``size x size`` float32: 1 on the subject (the ground below the horizon, the figure, the objects
        on the table, the buildings), 0.5 on a still life's table, 0 elsewhere; all 0 for abstract.
    """
    _, hue, spread, _, _ = ARTISTS[artist]
    rng = np.random.default_rng([seed, index])
    _palette(rng, hue, spread)          # the draws _render makes before the mask
    return _composition_mask(genre, size, rng)


def _render(style: str, hue: float, spread: float, scale: float, genre: str, size: int,
            rng: np.random.Generator) -> Image.Image:
    pal = _palette(rng, hue, spread)
    mask = _composition_mask(genre, size, rng)
    base = np.array(pal[0], np.float32) * (1 - 0.55 * mask[..., None]) + 40 * mask[..., None]
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)

    def col_at(x: float, y: float) -> tuple[int, int, int]:
        c = pal[rng.integers(1, len(pal))]
        m = mask[min(size - 1, max(0, int(y))), min(size - 1, max(0, int(x)))]
        f = 1.0 - 0.6 * m
        return tuple(int(v * f) for v in c)  # type: ignore[return-value]

    s = size / 128.0
    if style == "Brushwork":
        for _ in range(int(260 * s * s / scale)):
            x, y = rng.uniform(0, size, 2)
            ang = rng.normal(0.6, 0.35)
            ln = rng.uniform(6, 14) * s * scale
            draw.line([(x, y), (x + ln * np.cos(ang), y + ln * np.sin(ang))], fill=col_at(x, y),
                      width=max(1, int(rng.uniform(2, 4) * s * scale)))
    elif style == "Pointillism":
        for _ in range(int(1100 * s * s / scale)):
            x, y = rng.uniform(0, size, 2)
            r = rng.uniform(0.8, 1.8) * s * scale
            draw.ellipse([x - r, y - r, x + r, y + r], fill=col_at(x, y))
    elif style == "Geometric":
        for _ in range(int(28 / scale)):
            x0, y0 = rng.uniform(-10, size, 2)
            w, h = rng.uniform(10, 40, 2) * s * scale
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=col_at(x0 + w / 2, y0 + h / 2), outline=(20, 20, 20),
                           width=max(1, int(2 * s)))
    elif style == "Color_Field":
        for _ in range(3):
            y0 = rng.uniform(0, size * 0.7)
            draw.rectangle([size * 0.08, y0, size * 0.92, y0 + rng.uniform(0.15, 0.35) * size],
                           fill=col_at(size / 2, y0 + 5))
        img = img.filter(ImageFilter.GaussianBlur(radius=3 * s))
    elif style == "Hatching":
        step = max(2, int(5 * s * scale))
        for k in range(-size, size, step):
            x = k + rng.uniform(-1, 1)
            draw.line([(x, 0), (x + size, size)], fill=col_at(x + size / 2, size / 2), width=1)
            if rng.random() < 0.5:
                draw.line([(x + size, 0), (x, size)], fill=col_at(x + size / 2, size / 2), width=1)
    arr = np.asarray(img).astype(np.float32)
    arr += rng.normal(0, 6, arr.shape)  # canvas grain
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def generate_demo(out: str | Path, n: int = DEFAULT_N, size: int = DEFAULT_IMAGE_SIZE, seed: int = 0, noise: float = 0.03,
                  val_fraction: float = 0.2) -> Catalog:
    """Write ``n`` synthetic paintings under ``out/images`` and return the saved catalogue
    ``out/catalog.parquet``. The same arguments always give the same pixels and labels.

    Parameters
    ----------
    out : str or Path
        The corpus folder (created).
    n : int
        Number of paintings.
    size : int
        Side of each image in pixels.
    seed : int
        Seed of the pixels, labels, split and planted errors.
    noise : float
        Per task (style, genre), ``n * noise`` training paintings (at least one) get a deliberately
        wrong label, listed in ``planted_errors.csv``.
    val_fraction : float
        Share of paintings in the validation split.

    Returns
    -------
    Catalog
        The saved catalogue.
    """
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    artists = list(ARTISTS)
    rows = []
    for i in range(n):
        artist = artists[i % len(artists)]
        style, hue, spread, scale, tf = ARTISTS[artist]
        genre = GENRES[rng.integers(len(GENRES))]
        tf_idx = int(np.clip(tf + rng.choice([-1, 0, 0, 0, 1]), 0, len(TIMEFRAMES) - 1))
        item_rng = np.random.default_rng([seed, i])
        img = _render(style, hue, spread, scale, genre, size, item_rng)
        pid = f"demo_{i:04d}"
        rel = f"images/{style}/{pid}.jpg"
        (out / "images" / style).mkdir(parents=True, exist_ok=True)
        img.save(out / rel, quality=90)
        year = 1850 + 25 * tf_idx + int(rng.integers(0, 25))
        rows.append({"id": pid, "path": rel, "artist": artist, "genre": genre, "style": style,
                     "timeframe": TIMEFRAMES[tf_idx], "title": f"{genre.replace('_', ' ').title()} no. {i}",
                     "year": year})
    df = pd.DataFrame(rows)
    # seeded, stratified split by style
    df["split"] = "train"
    for _, idx in df.groupby("style").groups.items():
        idx = np.array(sorted(idx))
        pick = rng.choice(idx, size=max(1, int(round(len(idx) * val_fraction))), replace=False)
        df.loc[pick, "split"] = "val"
    # plant wrong labels (train rows only, so evaluation stays honest)
    planted = []
    n_noisy = max(1, int(round(n * noise)))
    train_idx = df.index[df["split"] == "train"].to_numpy()
    for task, classes in (("style", STYLES), ("genre", GENRES)):
        for j in rng.choice(train_idx, size=n_noisy, replace=False):
            true = df.at[j, task]
            wrong = classes[(classes.index(true) + int(rng.integers(1, len(classes)))) % len(classes)]
            df.at[j, task] = wrong
            planted.append({"id": df.at[j, "id"], "task": task, "true_label": true, "given_label": wrong})
    df = df[["id", "path", "split", "artist", "genre", "style", "timeframe", "title", "year"]]
    tasks = {"artist": TaskSpec("artist", artists), "genre": TaskSpec("genre", GENRES),
             "style": TaskSpec("style", STYLES), "timeframe": TaskSpec("timeframe", TIMEFRAMES, ordered=True)}
    cat = Catalog(df, tasks, out, source="demo (synthetic)",
                  extra={"synthetic": True, "seed": seed, "planted_errors": "planted_errors.csv"})
    cat.save(out / "catalog.parquet")
    with open(out / "planted_errors.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["id", "task", "true_label", "given_label"])
        w.writeheader()
        w.writerows(planted)
    return cat

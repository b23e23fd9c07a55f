"""The one image loader used everywhere.

``load_image`` returns an RGB ``PIL.Image`` or raises :class:`ImageLoadError` with a clear,
per-file message. It applies EXIF orientation, converts CMYK, palette, greyscale+alpha, 16-bit and
alpha images to RGB correctly (alpha is composited on white, as a painting on a page), and refuses
truncated, corrupt, zero-byte and decompression-bomb files instead of crashing or returning garbage.

Long jobs collect failures in a :class:`SkipReport` rather than stopping.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ..errors import ArtExtractError
from ..utils import atomic_write_text

# Decode at most this many pixels (about 16k x 16k). PIL's own default warns at 89 Mpx and errors
# at twice that; we turn the warning into an error at our limit so a bomb never reaches memory.
DEFAULT_MAX_PIXELS = 256_000_000
#: File suffixes treated as images when a folder is scanned (``ingest folder``, ``predict DIR``).
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif"})
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageLoadError(ArtExtractError):
    """An image could not be loaded; ``str(err)`` says which file and why."""

    def __init__(self, path: str | os.PathLike | None, reason: str):
        self.path = str(path) if path is not None else "<bytes>"
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        arr = (arr - lo) / (hi - lo if hi > lo else 1.0) * 255.0
        return Image.fromarray(np.nan_to_num(arr).astype(np.uint8), "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode == "PA":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "CMYK":
        # JPEG CMYK from Adobe tools is often stored inverted; PIL handles the APP14 marker itself.
        return img.convert("RGB")
    if mode in ("RGB;16", "BGR;16", "I;16S"):
        return img.convert("RGB")
    return img.convert("RGB")


def load_image(
    source: str | os.PathLike | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
) -> Image.Image:
    """Open ``source`` (a path or the bytes of a file) and return a fully decoded RGB image.

    Parameters
    ----------
    source : str, PathLike or bytes
        A file, or the bytes of one.
    max_pixels : int
        Larger images are refused as possible decompression bombs.
    draft_size : int, optional
        Lets JPEG decoding skip resolution it does not need (a large speed-up when the image is
        going to be shrunk to that size anyway); the result is at least that large on its shorter
        side whenever the original was.

    Returns
    -------
    PIL.Image.Image
        Mode RGB, EXIF orientation applied.

    Raises
    ------
    ImageLoadError
        With a per-file reason (missing, empty, not an image, truncated, corrupt, too large, ...).
    """
    path = None if isinstance(source, (bytes, bytearray)) else Path(source)
    if path is not None:
        try:
            if not path.exists():
                raise ImageLoadError(path, "file not found")
            if path.is_dir():
                raise ImageLoadError(path, "is a directory, not an image")
            if path.stat().st_size == 0:
                raise ImageLoadError(path, "empty file (0 bytes)")
            fp: io.BufferedIOBase | io.BytesIO = open(path, "rb")
        except OSError as exc:  # permission denied, a name too long, an I/O error ...
            raise ImageLoadError(path, f"cannot read the file ({exc.strerror or type(exc).__name__})") from None
        except ValueError:  # a NUL byte in the name
            raise ImageLoadError(path, "the file name contains a NUL byte") from None
    else:
        if len(source) == 0:
            raise ImageLoadError(None, "empty file (0 bytes)")
        fp = io.BytesIO(source)
    try:
        with decoding(path):
            img = open_checked(fp, path, max_pixels)
            if draft_size and img.format == "JPEG":
                img.draft("RGB", (draft_size, draft_size))
            load_checked(img, path)
            try:
                img = ImageOps.exif_transpose(img)
            except Exception:  # malformed EXIF must not lose the picture
                pass
            return _to_rgb(img)
    finally:
        fp.close()


@contextlib.contextmanager
def decoding(path: Path | None, passthrough: tuple[type[BaseException], ...] = ()):
    """Turn whatever a decoder raises into a per-file :class:`ImageLoadError` in words (a decompression
    bomb, out of memory, any other failure), never a crash; ``passthrough`` exceptions go through."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (ImageLoadError, *passthrough):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(path, f"possible decompression bomb ({exc})") from None
    except MemoryError:
        raise ImageLoadError(path, "out of memory while decoding") from None
    except Exception as exc:  # any other decoder failure is a per-file error, not a crash
        raise ImageLoadError(path, f"cannot decode image ({type(exc).__name__}: {exc})") from None


def open_checked(fp, path: Path | None, max_pixels: int) -> Image.Image:
    """``Image.open`` with the checks made before any pixel is decoded: an image at all, a valid size,
    not over ``max_pixels`` (a possible decompression bomb)."""
    try:
        img = Image.open(fp)
    except UnidentifiedImageError:
        raise ImageLoadError(path, "not an image file, or a format Pillow cannot read") from None
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageLoadError(path, f"invalid image size {w}x{h}")
    if w * h > max_pixels:
        raise ImageLoadError(path, f"image too large ({w}x{h} = {w * h:,} pixels > limit {max_pixels:,}); "
                                   "possible decompression bomb")
    return img


def load_checked(img: Image.Image, path: Path | None) -> None:
    """Decode the pixels; a truncated or corrupt file is an :class:`ImageLoadError` that says which."""
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as exc:
        msg = str(exc)
        if "truncated" in msg.lower():
            raise ImageLoadError(path, f"truncated image ({msg})") from None
        raise ImageLoadError(path, f"corrupt image data ({msg})") from None


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` and crop the centre square.

    Parameters
    ----------
    img : PIL.Image.Image
    size : int

    Returns
    -------
    PIL.Image.Image
        ``size`` x ``size``.
    """
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


@dataclass
class SkipReport:
    """Per-file failures collected by a long job."""

    job: str
    skipped: list[dict] = field(default_factory=list)

    def add(self, item_id: str, err: Exception | str) -> None:
        """Record that ``item_id`` was skipped because of ``err``.

        Parameters
        ----------
        item_id : str
        err : Exception or str
            An :class:`ImageLoadError` (its reason is kept) or any error or reason.

        Returns
        -------
        None
        """
        reason = err.reason if isinstance(err, ImageLoadError) else str(err)
        self.skipped.append({"id": str(item_id), "reason": reason})

    def __len__(self) -> int:
        return len(self.skipped)

    def summary(self, limit: int = 5) -> str:
        """A few lines for the user: how many were skipped, and the first ``limit`` with reasons.

        Parameters
        ----------
        limit : int

        Returns
        -------
        str
        """
        if not self.skipped:
            return f"{self.job}: no files skipped"
        lines = [f"{self.job}: {len(self.skipped)} file(s) skipped:"]
        for s in self.skipped[:limit]:
            lines.append(f"  {s['id']}: {s['reason']}")
        if len(self.skipped) > limit:
            lines.append(f"  ... and {len(self.skipped) - limit} more")
        return "\n".join(lines)

    def write(self, path: str | os.PathLike) -> Path:
        """Write the report as JSON (``{"job", "skipped": [{"id", "reason"}]}``).

        Parameters
        ----------
        path : str or PathLike
            Its folder is created.

        Returns
        -------
        Path
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(path, json.dumps({"job": self.job, "skipped": self.skipped}, indent=2))

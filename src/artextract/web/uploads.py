"""Decoding uploaded images with bounded memory.

An upload's pixels, not its bytes, decide what decoding it costs: a 20 kB one-bit PNG of 7000 x 7000
pixels decodes to 49 MB, and to 147 MB once it is RGB. So every upload is

* decoded reduced: a JPEG is decoded at 1/2, 1/4 or 1/8 of its size when that is still at least
  :data:`UPLOAD_SIDE` pixels on its longer side (``Image.draft``); any other format is decoded,
  then shrunk strip by strip, so no full-size RGB copy is ever made, and the full-size image is
  released at once. The result is at most :data:`UPLOAD_SIDE` pixels on its longer side: more than
  the model (about 256 pixels), the face search (640) and the pose search (1024) use;
* decoded within a :class:`DecodeBudget`: the pixels being decoded at full size at one time, across
  all requests, are bounded; a decode that does not fit waits for others to finish (and gives up
  with :class:`DecodeBusy` after a while).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import io
import logging
import math
import threading
from contextlib import contextmanager

import numpy as np
from PIL import Image

from ..data.images import ImageLoadError, _to_rgb, decoding, load_checked, open_checked
from ..errors import ArtExtractError

log = logging.getLogger(__name__)

#: the longer side of a decoded upload
UPLOAD_SIDE = 1024
#: the pixels decoded at full size at one time, across requests (by default)
DEFAULT_DECODE_BUDGET = 100_000_000
#: pixels of one strip while a large image is shrunk
_STRIP_PIXELS = 2_000_000
#: the size of the blocks Pillow allocates image memory in (its default is 16 MB); see use_large_blocks
PILLOW_BLOCK_SIZE = 256 * 1024 * 1024
_ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
                7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


class DecodeBusy(ArtExtractError, RuntimeError):
    """The decode budget stayed full for longer than the wait allows."""


class DecodeBudget:
    """A budget of pixels in full-size decodes across requests (thread-safe).

    ``hold(n)`` waits until ``n`` more pixels fit, holds them while the block runs, then gives them
    back. A decode larger than the whole budget holds all of it (it runs alone).

    Parameters
    ----------
    max_pixels : int
        The budget.
    wait : float
        Seconds a decode waits for room before :class:`DecodeBusy` is raised.
    """

    def __init__(self, max_pixels: int = DEFAULT_DECODE_BUDGET, wait: float = 60.0):
        if max_pixels <= 0:
            raise ValueError("the decode budget must be positive")
        self.max_pixels, self.wait = int(max_pixels), wait
        self.in_use = 0
        self.peak = 0  # the most pixels held at one time
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, pixels: int):
        n = max(1, min(int(pixels), self.max_pixels))
        with self._cond:
            if not self._cond.wait_for(lambda: self.in_use + n <= self.max_pixels, timeout=self.wait):
                raise DecodeBusy(f"the server is busy decoding other uploads (budget {self.max_pixels:,} pixels); "
                                 "try again in a moment")
            self.in_use += n
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            with self._cond:
                self.in_use -= n
                idle = self.in_use == 0
                self._cond.notify_all()
            if idle and n >= 4_000_000:
                _trim_heap()


def use_large_blocks() -> None:
    """Let Pillow allocate a decoded upload in one block rather than in 16 MB ones: a block that
    large is mapped on its own and given back to the system as soon as the image is freed, while
    16 MB blocks stay in the heap of whichever thread decoded them (the server's memory then grew with
    every burst of large uploads and did not come back down)."""
    try:
        Image.core.set_block_size(PILLOW_BLOCK_SIZE)
    except (AttributeError, ValueError) as exc:  # another Pillow: keep its default
        log.debug("Pillow's block size left as it is: %s", exc)


def decode_reduced(data: bytes, max_pixels: int, budget: DecodeBudget | None = None,
                   max_side: int = UPLOAD_SIDE) -> tuple[Image.Image, tuple[int, int]]:
    """Decode an uploaded image at most ``max_side`` pixels on its longer side.

    Parameters
    ----------
    data : bytes
        The uploaded file.
    max_pixels : int
        Larger images are refused as possible decompression bombs.
    budget : DecodeBudget, optional
        Held for the pixels decoded at full size (after a JPEG's draft reduction).
    max_side : int

    Returns
    -------
    (PIL.Image.Image, (int, int))
        The RGB image (EXIF orientation applied), and the width and height of the original.

    Raises
    ------
    ImageLoadError
        Not an image, truncated, corrupt, too large, ... (as :func:`artextract.data.images.load_image`).
    DecodeBusy
        The budget had no room for this decode in time.
    """
    if not data:
        raise ImageLoadError(None, "empty file (0 bytes)")
    with decoding(None, passthrough=(DecodeBusy,)):
        img = open_checked(io.BytesIO(data), None, max_pixels)
        w, h = img.size
        if img.format == "JPEG" and max(w, h) > max_side:
            img.draft("RGB", _fit((w, h), max_side))
        cost = img.size[0] * img.size[1]
        with budget.hold(cost) if budget is not None else _nothing():
            load_checked(img, None)
            try:
                orientation = img.getexif().get(0x0112)
            except Exception:  # malformed EXIF must not lose the picture
                orientation = None
            small = _shrink(img, max_side)
            if small is not img:
                img.close()
            del img
        if orientation in _ORIENTATION:
            small = small.transpose(_ORIENTATION[orientation])
            if orientation >= 5:
                w, h = h, w
        return small, (w, h)


@contextmanager
def _nothing():
    yield


def _fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    w, h = size
    s = side / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def _shrink(img: Image.Image, side: int) -> Image.Image:
    """An RGB copy of ``img`` at most ``side`` pixels on its longer side. A large image is first
    reduced by a whole factor (box filter) strip by strip, each strip converted on its own, so the
    only full-size buffer is the decoded image itself."""
    factor = max(img.size) // side
    if factor >= 2:
        img = _reduce_in_strips(img, factor)
    small = _to_rgb(img)
    if max(small.size) > side:
        small = small.resize(_fit(small.size, side), Image.Resampling.LANCZOS)
    return small


def _strip_converter(mode: str):
    """A function that turns a strip of an image of ``mode`` into one that ``Image.reduce`` averages
    correctly (palette indices and single bits cannot be averaged)."""
    if mode == "1":
        return lambda s: s.convert("L")
    if mode == "P":
        return lambda s: s.convert("RGBA" if "transparency" in s.info else "RGB")
    if mode == "PA":
        return lambda s: s.convert("RGBA")
    if mode.startswith("I;16"):
        def sixteen(s):
            arr = np.asarray(s, dtype=np.float32)
            return Image.fromarray(np.clip(arr / 65535.0 * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
        return sixteen
    if mode in ("L", "LA", "La", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "LAB", "HSV", "I", "F"):
        return lambda s: s
    return lambda s: s.convert("RGB")


def _reduce_in_strips(img: Image.Image, factor: int) -> Image.Image:
    w, h = img.size
    convert = _strip_converter(img.mode)
    rows = max(1, _STRIP_PIXELS // max(1, w * factor)) * factor
    out = None
    for top in range(0, h, rows):
        part = convert(img.crop((0, top, w, min(h, top + rows)))).reduce(factor)
        if out is None:
            out = Image.new(part.mode, (math.ceil(w / factor), math.ceil(h / factor)))
        out.paste(part, (0, top // factor))
    return out


_libc = None


def _trim_heap() -> None:
    """Give freed memory back to the system (glibc keeps the freed pages of large decodes otherwise)."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if hasattr(_libc, "malloc_trim"):
            _libc.malloc_trim(0)
    except OSError:
        _libc = False
    except Exception:
        pass

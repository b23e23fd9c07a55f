"""Image serving for the explorer: thumbnails at a few fixed sizes and display-size images.

The thumbnails themselves are :class:`artextract.data.thumbs.Thumbnailer`'s (the report and the
outlier page use the same one): images are reached only through a catalogue id whose path stays
under the image root, decoded with the safe loader and re-encoded as JPEG. The explorer snaps the
size asked for to :data:`THUMB_SIZES` (a bounded set of cache keys) and keeps them in memory and in
the catalogue's thumbnail folder.
"""
from __future__ import annotations

import logging

from PIL import Image

from ..data.thumbs import LRU, ImageNotFound, Thumbnailer, encode_jpeg, jpeg_data_uri

__all__ = ["DISPLAY_SIZE", "THUMB_SIZES", "ImageNotFound", "ImageServer", "LRU", "data_url", "encode_jpeg",
           "snap_size"]

log = logging.getLogger(__name__)

THUMB_SIZES = (128, 256, 512)
DISPLAY_SIZE = 1600


def data_url(img: Image.Image, max_side: int = 640) -> str:
    """A ``data:`` URI of ``img`` shrunk to at most ``max_side`` pixels a side."""
    img = img.copy()
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return jpeg_data_uri(encode_jpeg(img, 82))


def snap_size(size: int | None) -> int:
    """The allowed thumbnail size nearest above ``size`` (bounded cache keys)."""
    if not size:
        return THUMB_SIZES[1]
    for s in THUMB_SIZES:
        if size <= s:
            return s
    return THUMB_SIZES[-1]


class ImageServer(Thumbnailer):
    """The explorer's thumbnails (at :data:`THUMB_SIZES`) and display-size images of one catalogue."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self._prepared is not None:
            log.info("thumbnails from the prepared-image cache %s", self._prepared.dir)

    def thumbnail(self, item_id: str, size: int | None = None) -> bytes:
        return super().thumbnail(item_id, snap_size(size))

    def display(self, item_id: str, max_side: int = DISPLAY_SIZE) -> bytes:
        """The JPEG bytes of the whole painting at most ``max_side`` pixels a side."""
        self.safe_path(item_id)

        def make() -> bytes:
            img = self.load(item_id, draft_size=max_side)
            img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            return encode_jpeg(img, 88)

        return self.cached("display", item_id, max_side, make)

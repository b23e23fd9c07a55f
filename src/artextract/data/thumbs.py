"""Thumbnails of a catalogue's paintings: the one thumbnailer of the report, the outlier page and the explorer.

A painting is reached only through its catalogue id: the id is looked up in the catalogue and its
path resolved under the image root (by default a ``..`` path or a symlink that leaves the root is
refused). Every picture is decoded with the safe loader (:func:`~artextract.data.images.load_image`)
and re-encoded as JPEG, so nothing but an image comes out, whatever the file on disk holds.

A thumbnail is the centre square of the painting at the size asked for. It is made from the
prepared-image cache when that holds the painting large enough (``artextract prepare``), else from
the image file; it is kept in memory (an LRU bounded in bytes) and, when a folder is given, on disk
(:func:`default_dir`: the catalogue's ``CACHE/web-thumbs``, a rule of :mod:`artextract.workspace`).
"""
from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

from .. import workspace
from ..errors import ArtExtractError
from .catalog import Catalog
from .images import ImageLoadError, load_image

logger = logging.getLogger(__name__)

QUALITY = 82              # JPEG quality of a thumbnail
PREPARED_ENOUGH = 256     # a prepared image this large (or as large as asked) is used as the source


class ImageNotFound(ArtExtractError, LookupError):
    """The id is not in the catalogue, its path leaves the image root, or the file is unusable."""


class LRU:
    """A small thread-safe LRU dict bounded by total bytes."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._d: OrderedDict = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def put(self, key, value: bytes) -> None:
        n = len(value)
        if n > self.max_bytes:
            return
        with self._lock:
            old = self._d.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._d[key] = value
            self._size += n
            while self._size > self.max_bytes and self._d:
                _, v = self._d.popitem(last=False)
                self._size -= len(v)


def encode_jpeg(img: Image.Image, quality: int = 85) -> bytes:
    """``img`` as the bytes of an RGB JPEG file."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def jpeg_data_uri(data: bytes) -> str:
    """A ``data:`` URI of JPEG bytes (for a page that must work opened from disk)."""
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


def square(img: Image.Image) -> Image.Image:
    """The centre square of ``img``, as the prepared cache crops, so thumbnails look the same either way."""
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s))


def default_dir(catalog: Catalog) -> Path:
    """The catalogue's thumbnail folder: ``web-thumbs`` in its cache folder
    (:func:`~artextract.data.cache.default_cache_dir`)."""
    from .cache import default_cache_dir

    return workspace.thumbs_dir(default_cache_dir(catalog))


class Thumbnailer:
    """Thumbnails (JPEG bytes) of the paintings of one catalogue, each made once.

    Parameters
    ----------
    catalog : Catalog
    disk_dir : str or PathLike, optional
        Folder that keeps the thumbnails between runs (e.g. :func:`default_dir`); memory only when
        None or when it cannot be written.
    mem_bytes : int
        Bound of the in-memory cache.
    use_prepared : bool
        Make thumbnails from the prepared-image cache when it holds the painting.
    confined : bool
        Refuse an image path that resolves outside the catalogue's image root (a server sets it;
        a report written from one's own catalogue need not).
    """

    def __init__(self, catalog: Catalog, disk_dir: str | os.PathLike | None = None, *,
                 mem_bytes: int = 96 * 1024 * 1024, use_prepared: bool = True, confined: bool = True):
        self.catalog = catalog
        self.root = Path(catalog.image_root).resolve()
        self.paths = dict(zip(catalog.df["id"], catalog.df["path"]))
        self.confined = confined
        self.mem = LRU(mem_bytes)
        self.disk_dir = Path(disk_dir) if disk_dir else None
        if self.disk_dir is not None:
            try:
                self.disk_dir.mkdir(parents=True, exist_ok=True)
                probe = self.disk_dir / ".write-test"
                probe.write_bytes(b"")
                probe.unlink()
            except OSError as exc:
                logger.warning("thumbnail folder %s is not writable (%s); thumbnails stay in memory only",
                               self.disk_dir, exc)
                self.disk_dir = None
        self._prepared = self._open_prepared() if use_prepared else None
        self._prepared_lock = threading.Lock()

    # ------------------------------------------------------------------ paths
    def safe_path(self, item_id: str) -> Path:
        """The image file of ``item_id``; raises :class:`ImageNotFound` when it has none usable."""
        rel = self.paths.get(item_id)
        if rel is None:
            raise ImageNotFound(f"no painting with id {item_id!r} in the catalogue")
        if not isinstance(rel, str) or not rel or "\x00" in rel:
            raise ImageNotFound(f"painting {item_id!r} has no usable image path")
        try:
            p = (self.root / rel).resolve()
        except (OSError, RuntimeError) as exc:
            raise ImageNotFound(f"image path of {item_id!r} cannot be resolved: {exc}") from None
        if self.confined and not p.is_relative_to(self.root):
            raise ImageNotFound(f"image path of {item_id!r} leaves the image root; refused")
        if not p.is_file():
            raise ImageNotFound(f"image of {item_id!r} is missing on disk ({rel})")
        return p

    def load(self, item_id: str, draft_size: int | None = None) -> Image.Image:
        """The whole picture of ``item_id`` (RGB), through the safe loader."""
        p = self.safe_path(item_id)
        try:
            return load_image(p, draft_size=draft_size)
        except ImageLoadError as exc:
            raise ImageNotFound(f"image of {item_id!r} cannot be read: {exc.reason}") from None

    # ------------------------------------------------------------------ prepared cache
    def _open_prepared(self):
        if self.catalog.path is None:
            return None
        from .cache import PreparedCache, default_cache_dir

        try:
            root = default_cache_dir(self.catalog)  # --cache, else the folder `prepare --cache` recorded, else default
        except Exception as exc:  # an unreadable cache location must not stop thumbnails
            logger.warning("prepared-image cache not used: %s", exc)
            return None
        sizes = sorted(int(d.name[1:]) for d in root.glob("s*") if d.name[1:].isdigit()
                       and (d / "index.json").is_file()) if root.is_dir() else []
        if not sizes:
            return None
        size = next((s for s in sizes if s >= PREPARED_ENOUGH), sizes[-1])
        try:
            cache = PreparedCache(root, size)
            logger.debug("thumbnails from the prepared-image cache %s", cache.dir)
            return cache
        except Exception as exc:  # a broken cache must not stop thumbnails
            logger.warning("prepared-image cache at %s not used: %s", root, exc)
            return None

    def _from_prepared(self, item_id: str) -> Image.Image | None:
        if self._prepared is None:
            return None
        with self._prepared_lock:
            try:
                if not self._prepared.has(item_id):
                    return None
                arr = np.array(self._prepared.get(item_id))
            except Exception:
                return None
        return Image.fromarray(arr)

    # ------------------------------------------------------------------ caches
    def _disk_path(self, kind: str, item_id: str, size: int) -> Path | None:
        if self.disk_dir is None:
            return None
        h = hashlib.sha1(f"{item_id}\x00{self.paths.get(item_id)}".encode()).hexdigest()
        return workspace.thumb_file(self.disk_dir, kind, size, h)

    def cached(self, kind: str, item_id: str, size: int, make) -> bytes:
        """The bytes of ``(kind, item_id, size)`` from memory, else the disk, else ``make()`` (then kept)."""
        key = (kind, item_id, size)
        data = self.mem.get(key)
        if data is not None:
            return data
        dp = self._disk_path(kind, item_id, size)
        if dp is not None and dp.is_file():
            try:
                data = dp.read_bytes()
            except OSError:
                data = None
        if not data:
            data = make()
            if dp is not None:
                try:
                    dp.parent.mkdir(parents=True, exist_ok=True)
                    tmp = dp.with_name(f"{dp.name}.{os.getpid()}.{threading.get_ident()}.tmp")
                    tmp.write_bytes(data)
                    os.replace(tmp, dp)
                except OSError as exc:
                    logger.debug("could not write thumbnail %s: %s", dp, exc)
        self.mem.put(key, data)
        return data

    # ------------------------------------------------------------------ thumbnails
    def thumbnail(self, item_id: str, size: int) -> bytes:
        """The JPEG bytes of the centre square of ``item_id``, at most ``size`` pixels a side.

        Parameters
        ----------
        item_id : str
            A catalogue id.
        size : int
            Side in pixels (smaller when the picture is).

        Returns
        -------
        bytes

        Raises
        ------
        ImageNotFound
            Not in the catalogue, no usable file, or a file that is not a readable image.
        """
        size = int(size)
        self.safe_path(item_id)  # checked on every call, cached or not

        def make() -> bytes:
            img = self._from_prepared(item_id)
            if img is None or img.width < min(size, PREPARED_ENOUGH):
                img = square(self.load(item_id, draft_size=size))
            img.thumbnail((size, size), Image.Resampling.LANCZOS)
            return encode_jpeg(img, QUALITY)

        return self.cached("thumb", item_id, size, make)

    def try_thumbnail(self, item_id: str, size: int) -> bytes | None:
        """:meth:`thumbnail`, or None (logged) when the painting has no usable image."""
        try:
            return self.thumbnail(item_id, size)
        except ImageNotFound as exc:
            logger.debug("no thumbnail: %s", exc)
            return None

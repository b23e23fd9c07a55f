"""Safe image serving for the explorer: catalogue lookups, thumbnails and display-size images.

Images are only ever reached through a catalogue id: the id is looked up in the catalogue, its
path is resolved and must stay under the resolved image root (a ``..`` path or a symlink that
leaves the root is refused). Every image is decoded with the safe loader and re-encoded as JPEG,
so nothing but an image is ever sent, whatever the file on disk holds.

Thumbnails come from the prepared-image cache when it exists (``artextract prepare``), else from
the image file; they are kept in memory (LRU) and, when a folder is given, on disk.
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

from ..data.catalog import Catalog
from ..data.images import ImageLoadError, load_image
from ..errors import ArtExtractError

log = logging.getLogger(__name__)

THUMB_SIZES = (128, 256, 512)
DISPLAY_SIZE = 1600


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
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def data_url(img: Image.Image, max_side: int = 640) -> str:
    img = img.copy()
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return "data:image/jpeg;base64," + base64.b64encode(encode_jpeg(img, 82)).decode()


def snap_size(size: int | None) -> int:
    """The allowed thumbnail size nearest above ``size`` (bounded cache keys)."""
    if not size:
        return THUMB_SIZES[1]
    for s in THUMB_SIZES:
        if size <= s:
            return s
    return THUMB_SIZES[-1]


class ImageServer:
    def __init__(self, catalog: Catalog, disk_dir: str | os.PathLike | None = None,
                 mem_bytes: int = 96 * 1024 * 1024, use_prepared: bool = True):
        self.catalog = catalog
        self.root = Path(catalog.image_root).resolve()
        self.paths = dict(zip(catalog.df["id"], catalog.df["path"]))
        self.mem = LRU(mem_bytes)
        self.disk_dir = Path(disk_dir) if disk_dir else None
        if self.disk_dir is not None:
            try:
                self.disk_dir.mkdir(parents=True, exist_ok=True)
                probe = self.disk_dir / ".write-test"
                probe.write_bytes(b"")
                probe.unlink()
            except OSError as exc:
                log.warning("thumbnail folder %s is not writable (%s); thumbnails stay in memory only",
                            self.disk_dir, exc)
                self.disk_dir = None
        self._prepared = self._open_prepared() if use_prepared else None
        self._prepared_lock = threading.Lock()

    # ------------------------------------------------------------------ paths
    def safe_path(self, item_id: str) -> Path:
        rel = self.paths.get(item_id)
        if rel is None:
            raise ImageNotFound(f"no painting with id {item_id!r} in the catalogue")
        if not isinstance(rel, str) or not rel or "\x00" in rel:
            raise ImageNotFound(f"painting {item_id!r} has no usable image path")
        try:
            p = (self.root / rel).resolve()
        except (OSError, RuntimeError) as exc:
            raise ImageNotFound(f"image path of {item_id!r} cannot be resolved: {exc}") from None
        if not p.is_relative_to(self.root):
            raise ImageNotFound(f"image path of {item_id!r} leaves the image root; refused")
        if not p.is_file():
            raise ImageNotFound(f"image of {item_id!r} is missing on disk ({rel})")
        return p

    def load(self, item_id: str, draft_size: int | None = None) -> Image.Image:
        p = self.safe_path(item_id)
        try:
            return load_image(p, draft_size=draft_size)
        except ImageLoadError as exc:
            raise ImageNotFound(f"image of {item_id!r} cannot be read: {exc.reason}") from None

    # ------------------------------------------------------------------ prepared cache
    def _open_prepared(self):
        if self.catalog.path is None:
            return None
        from ..data.cache import default_cache_dir

        root = default_cache_dir(self.catalog)  # --cache, else the folder `prepare --cache` recorded, else default
        sizes = sorted(int(d.name[1:]) for d in root.glob("s*") if d.name[1:].isdigit()
                       and (d / "index.json").is_file()) if root.is_dir() else []
        if not sizes:
            return None
        size = next((s for s in sizes if s >= 256), sizes[-1])
        try:
            from ..data.cache import PreparedCache

            cache = PreparedCache(root, size)
            log.info("thumbnails from the prepared-image cache %s", cache.dir)
            return cache
        except Exception as exc:  # a broken cache must not stop the explorer
            log.warning("prepared-image cache at %s not used: %s", root, exc)
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

    # ------------------------------------------------------------------ thumbnails
    def _disk_path(self, kind: str, item_id: str, size: int) -> Path | None:
        if self.disk_dir is None:
            return None
        h = hashlib.sha1(f"{item_id}\x00{self.paths.get(item_id)}".encode()).hexdigest()
        return self.disk_dir / kind / str(size) / h[:2] / f"{h}.jpg"

    def _cached(self, kind: str, item_id: str, size: int, make) -> bytes:
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
                    log.debug("could not write thumbnail %s: %s", dp, exc)
        self.mem.put(key, data)
        return data

    def thumbnail(self, item_id: str, size: int | None = None) -> bytes:
        size = snap_size(size)
        self.safe_path(item_id)  # checked on every request, cached or not

        def make() -> bytes:
            img = self._from_prepared(item_id)
            if img is None or img.width < min(size, 256):
                img = _square(self.load(item_id, draft_size=size))
            img.thumbnail((size, size), Image.Resampling.LANCZOS)
            return encode_jpeg(img, 82)

        return self._cached("thumb", item_id, size, make)

    def display(self, item_id: str, max_side: int = DISPLAY_SIZE) -> bytes:
        self.safe_path(item_id)
        def make() -> bytes:
            img = self.load(item_id, draft_size=max_side)
            img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            return encode_jpeg(img, 88)

        return self._cached("display", item_id, max_side, make)


def _square(img: Image.Image) -> Image.Image:
    """Centre square, like the prepared cache, so gallery tiles look the same either way."""
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s))

"""The one thumbnailer (artextract.data.thumbs): its size, its memory and disk caches, and a corrupt or
missing image."""
from __future__ import annotations

import io

import pandas as pd
import pytest
from PIL import Image

from artextract import workspace
from artextract.data.catalog import Catalog, TaskSpec
from artextract.data.thumbs import ImageNotFound, Thumbnailer, default_dir


@pytest.fixture
def catalog(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    Image.new("RGB", (300, 200), (200, 30, 30)).save(root / "wide.jpg")
    Image.new("RGB", (40, 60), (30, 200, 30)).save(root / "small.png")
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "outside.jpg").write_bytes((root / "wide.jpg").read_bytes())
    df = pd.DataFrame({"id": ["wide", "small", "corrupt", "gone", "outside"],
                       "path": ["wide.jpg", "small.png", "corrupt.jpg", "gone.jpg", "../outside.jpg"],
                       "split": ["train"] * 5, "style": ["A", "B", "A", "B", "A"]})
    cat = Catalog(df, {"style": TaskSpec("style", ["A", "B"])}, root, "test")
    cat.save(tmp_path / "cat.parquet")
    return Catalog.load(tmp_path / "cat.parquet")


def _image(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    assert img.format == "JPEG"
    return img


def test_a_thumbnail_is_the_centre_square_at_the_size_asked(catalog):
    t = Thumbnailer(catalog)
    assert _image(t.thumbnail("wide", 112)).size == (112, 112)
    assert _image(t.thumbnail("wide", 64)).size == (64, 64)
    assert _image(t.thumbnail("small", 128)).size == (40, 40)       # never enlarged
    red = _image(t.thumbnail("wide", 32)).convert("RGB").getpixel((16, 16))
    assert red[0] > 150 and red[1] < 80


def test_thumbnails_are_made_once_and_kept_on_disk(catalog, tmp_path, monkeypatch):
    folder = default_dir(catalog)
    assert folder == workspace.thumbs_dir(tmp_path / "cat.cache")
    t = Thumbnailer(catalog, folder)
    first = t.thumbnail("wide", 112)
    kept = list(folder.rglob("*.jpg"))
    assert len(kept) == 1 and kept[0].read_bytes() == first
    assert kept[0].relative_to(folder).parts[:2] == ("thumb", "112")
    calls = []
    monkeypatch.setattr(Thumbnailer, "load", lambda self, *a, **k: calls.append(a) or Image.new("RGB", (8, 8)))
    assert t.thumbnail("wide", 112) == first                     # from memory
    assert Thumbnailer(catalog, folder).thumbnail("wide", 112) == first   # a new one: from the disk
    assert calls == []
    Thumbnailer(catalog, folder).thumbnail("wide", 64)           # another size is made
    assert len(calls) == 1


def test_a_corrupt_missing_or_escaping_image_has_no_thumbnail(catalog):
    t = Thumbnailer(catalog)
    with pytest.raises(ImageNotFound, match="cannot be read"):
        t.thumbnail("corrupt", 64)
    with pytest.raises(ImageNotFound, match="missing on disk"):
        t.thumbnail("gone", 64)
    with pytest.raises(ImageNotFound, match="not-an-id"):
        t.thumbnail("not-an-id", 64)
    with pytest.raises(ImageNotFound, match="leaves the image root"):
        t.thumbnail("outside", 64)
    assert t.try_thumbnail("corrupt", 64) is None and t.try_thumbnail("gone", 64) is None
    assert _image(Thumbnailer(catalog, confined=False).thumbnail("outside", 64)).size == (64, 64)


def test_an_unwritable_folder_keeps_thumbnails_in_memory(catalog, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    t = Thumbnailer(catalog, blocker / "thumbs")
    assert t.disk_dir is None and _image(t.thumbnail("wide", 32)).size == (32, 32)

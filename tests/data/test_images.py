"""The one image loader: every awkward kind of file either converts to RGB correctly or raises
ImageLoadError saying which file and why; long jobs collect failures instead of stopping."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from artextract.data.cache import PreparedCache
from artextract.data.catalog import Catalog, TaskSpec
from artextract.data.images import ImageLoadError, SkipReport, load_image, resize_center_crop
from artextract.job import Job


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header claims ``width`` x ``height`` pixels. Nothing that
    size is ever allocated: the loader must refuse it from the header alone."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _png_chunk(b"IEND", b""))


def _noise_jpeg(size=(64, 48), seed=0) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


# ---------------------------------------------------------------------- conversions
def test_plain_rgb_jpeg_and_bytes_input(tmp_path):
    data = _noise_jpeg()
    (tmp_path / "a.jpg").write_bytes(data)
    a, b = load_image(tmp_path / "a.jpg"), load_image(data)
    assert a.mode == b.mode == "RGB" and a.size == (64, 48)
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 10, 20))  # blue band on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    out = load_image(tmp_path / "rot.jpg")
    assert out.size == (20, 40)  # width and height swapped
    top = np.asarray(out)[2, 10]
    assert top[2] > 200 and top[0] < 60  # the left band is now on top
    small = load_image(tmp_path / "rot.jpg", draft_size=8)  # JPEG draft decoding keeps the rotation
    assert small.size[1] > small.size[0] and small.size[1] < 40


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)  # pure red in ink
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    out = load_image(tmp_path / "cmyk.jpg")
    assert out.mode == "RGB"
    r, g, b = np.asarray(out)[8, 8].astype(int)
    assert r > 230 and g < 30 and b < 30


def test_palette_png_with_transparency_goes_on_white(tmp_path):
    p = Image.new("P", (10, 10), 0)
    p.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 black (transparent), 1 blue
    p.putpixel((3, 3), 1)
    p.save(tmp_path / "p.png", transparency=0)
    assert Image.open(tmp_path / "p.png").mode == "P"
    out = np.asarray(load_image(tmp_path / "p.png"))
    assert tuple(out[0, 0]) == (255, 255, 255)  # transparent -> white, not black
    assert tuple(out[3, 3]) == (0, 0, 255)


def test_palette_png_without_transparency(tmp_path):
    p = Image.new("P", (4, 4), 1)
    p.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    p.save(tmp_path / "p.png")
    assert tuple(np.asarray(load_image(tmp_path / "p.png"))[1, 1]) == (10, 200, 30)


def test_la_png(tmp_path):
    la = Image.new("LA", (4, 4), (0, 255))  # opaque black
    la.putpixel((0, 0), (0, 0))  # transparent black
    la.putpixel((1, 0), (100, 255))
    la.save(tmp_path / "la.png")
    assert Image.open(tmp_path / "la.png").mode == "LA"
    out = np.asarray(load_image(tmp_path / "la.png"))
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[0, 1]) == (100, 100, 100)
    assert tuple(out[2, 2]) == (0, 0, 0)


def test_rgba_is_composited_on_white(tmp_path):
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    img.putpixel((1, 1), (255, 0, 0, 255))
    img.putpixel((2, 2), (0, 0, 0, 128))
    img.save(tmp_path / "rgba.png")
    out = np.asarray(load_image(tmp_path / "rgba.png")).astype(int)
    assert tuple(out[0, 0]) == (255, 255, 255)  # fully transparent: white, not the hidden red
    assert tuple(out[1, 1]) == (255, 0, 0)
    assert all(abs(v - 127) <= 1 for v in out[2, 2])  # half-transparent black on white: mid grey


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    arr = np.array([[0, 257, 32768, 65535]], dtype=np.uint16).repeat(2, axis=0)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    out = np.asarray(load_image(tmp_path / "g16.png"))
    assert out.shape == (2, 4, 3)
    assert out[0, :, 0].tolist() == [0, 1, 128, 255]  # clipping would give [0, 255, 255, 255]
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_greyscale_and_float_images(tmp_path):
    Image.new("L", (3, 3), 77).save(tmp_path / "l.png")
    assert tuple(np.asarray(load_image(tmp_path / "l.png"))[1, 1]) == (77, 77, 77)
    Image.fromarray(np.array([[0.0, 0.5], [1.0, 0.25]], np.float32), "F").save(tmp_path / "f.tif")
    out = np.asarray(load_image(tmp_path / "f.tif"))
    assert out[0, 0, 0] == 0 and out[1, 0, 0] == 255


# ---------------------------------------------------------------------- refusals
def _refused(source, **kw) -> ImageLoadError:
    with pytest.raises(ImageLoadError) as info:
        load_image(source, **kw)
    err = info.value
    if not isinstance(source, bytes):
        assert str(source) in str(err) and err.path == str(source)  # says which file ...
    assert err.reason and err.reason in str(err)  # ... and why
    return err


def test_truncated_jpeg(tmp_path):
    data = _noise_jpeg((200, 150))
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    assert "truncated" in _refused(tmp_path / "t.jpg").reason


def test_truncated_png(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    (tmp_path / "t.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    reason = _refused(tmp_path / "t.png").reason
    assert "truncated" in reason.lower() or "corrupt" in reason.lower()


def test_corrupt_bytes(tmp_path):
    (tmp_path / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"garbage" * 50)
    reason = _refused(tmp_path / "c.jpg").reason
    assert "cannot decode" in reason or "corrupt" in reason
    (tmp_path / "text.jpg").write_bytes(b"<html>not found</html>")
    assert "not an image file" in _refused(tmp_path / "text.jpg").reason
    assert "not an image file" in _refused(b"just some bytes").reason


def test_zero_byte_file(tmp_path):
    (tmp_path / "z.jpg").write_bytes(b"")
    assert _refused(tmp_path / "z.jpg").reason == "empty file (0 bytes)"
    assert _refused(b"").reason == "empty file (0 bytes)"


def test_missing_file_and_directory(tmp_path):
    assert _refused(tmp_path / "nope.jpg").reason == "file not found"
    (tmp_path / "d.jpg").mkdir()
    assert "directory" in _refused(tmp_path / "d.jpg").reason


@pytest.mark.parametrize("side", [12_000, 100_000])  # 144 Mpx (over PIL's warning) and 10 Gpx (over its error)
def test_decompression_bomb_refused_from_the_header(tmp_path, side):
    (tmp_path / "bomb.png").write_bytes(bomb_png(side, side))
    assert (tmp_path / "bomb.png").stat().st_size < 200
    assert "decompression bomb" in _refused(tmp_path / "bomb.png").reason


def test_max_pixels_limit(tmp_path):
    (tmp_path / "a.jpg").write_bytes(_noise_jpeg((64, 48)))
    err = _refused(tmp_path / "a.jpg", max_pixels=1000)
    assert "64x48" in err.reason and "decompression bomb" in err.reason
    assert load_image(tmp_path / "a.jpg", max_pixels=64 * 48).size == (64, 48)
    (tmp_path / "b.png").write_bytes(bomb_png(5000, 5000))  # 25 Mpx: under PIL's limits, over ours
    assert "5000x5000" in _refused(tmp_path / "b.png", max_pixels=10_000_000).reason


def test_resize_center_crop_shapes():
    out = resize_center_crop(Image.new("RGB", (300, 100)), 32)
    assert out.size == (32, 32)
    assert resize_center_crop(Image.new("RGB", (10, 40)), 64).size == (64, 64)  # upscales small images


# ---------------------------------------------------------------------- long jobs
def test_skip_report(tmp_path):
    rep = SkipReport("prepare")
    assert rep.summary() == "prepare: no files skipped"
    for i in range(7):
        rep.add(f"id{i}", ImageLoadError(f"/x/{i}.jpg", "truncated image"))
    rep.add("other", ValueError("boom"))
    assert len(rep) == 8 and rep.skipped[0] == {"id": "id0", "reason": "truncated image"}
    text = rep.summary(limit=3)
    assert "8 file(s) skipped" in text and "id0: truncated image" in text and "... and 5 more" in text
    import json

    assert json.loads(rep.write(tmp_path / "r" / "skip.json").read_text())["skipped"][-1]["reason"] == "boom"


def test_long_job_collects_bad_files_and_prepares_the_good_ones(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    good = {}
    for i in range(5):
        (root / f"good{i}.jpg").write_bytes(_noise_jpeg((40, 30), seed=i))
        good[f"good{i}"] = f"good{i}.jpg"
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(root / "cmyk.jpg")
    good["cmyk"] = "cmyk.jpg"
    data = _noise_jpeg((100, 80))
    bad = {"trunc": ("trunc.jpg", data[: len(data) // 3]), "zero": ("zero.jpg", b""),
           "junk": ("junk.jpg", b"not an image"), "bomb": ("bomb.png", bomb_png(100_000, 100_000))}
    for name, (rel, payload) in bad.items():
        (root / rel).write_bytes(payload)
    rows = [{"id": k, "path": v} for k, v in good.items()] + [{"id": k, "path": v[0]} for k, v in bad.items()]
    rows.append({"id": "gone", "path": "gone.jpg"})
    df = pd.DataFrame(rows)
    df["split"] = "train"
    df["style"] = "A"
    cat = Catalog(df, {"style": TaskSpec("style", ["A"])}, root)

    cache = PreparedCache(tmp_path / "cache", 16)
    res = cache.prepare(cat, workers=1, job=Job(progress=False))
    assert res.added == len(good) and res.already == 0
    skipped = {s["id"]: s["reason"] for s in res.failed.skipped}
    assert set(skipped) == {*bad, "gone"}
    assert "truncated" in skipped["trunc"] and "empty" in skipped["zero"]
    assert "decompression bomb" in skipped["bomb"] and skipped["gone"] == "file not found"
    for k in good:
        assert cache.has(k) and cache.get(k).shape == (16, 16, 3)
    for k in skipped:
        assert not cache.has(k)
        with pytest.raises(KeyError):
            cache.get(k)
    # nothing vanishes silently: a second run reports the same failures without retrying them
    again = cache.prepare(cat, workers=1, job=Job(progress=False))
    assert again.added == 0 and again.already == len(good)
    assert {s["id"] for s in again.failed.skipped} == set(skipped)

"""Limits of the explorer: a body limit on every route, 422 replies that do not echo large inputs,
and uploads decoded reduced within a pixel budget shared by all requests."""
from __future__ import annotations

import io
import json
import threading
import time

import httpx
import pytest
from PIL import Image

from artextract.cli import main

from web_helpers import jpeg_bytes

MIB = 1024 * 1024


def _chunks(data: bytes, size: int = 64 * 1024):
    for i in range(0, len(data), size):
        yield data[i:i + size]


@pytest.mark.parametrize("url", ["/api/selections", "/api/reviews"])
def test_json_routes_refuse_a_body_over_their_limit(client, url):
    big = json.dumps({"ids": ["demo_0001"] * 200_000, "id": "x", "task": "style", "action": "keep"}).encode()
    assert len(big) > 2 * MIB
    r = client.post(url, content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text[:200]
    assert len(r.content) < 300 and "too large" in r.json()["detail"]
    # without a Content-Length (chunked) the bytes are counted as they arrive
    r = client.post(url, content=_chunks(big), headers={"content-type": "application/json"})
    assert r.status_code == 413 and len(r.content) < 300


def test_forms_and_unknown_routes_have_a_limit_too(client):
    form = {"id": "demo_0001", "task": "style", "action": "keep", "label": "x" * (2 * MIB)}
    assert client.post("/review/decide", data=form).status_code == 413
    assert client.post("/no/such/route", content=b"x" * (2 * MIB)).status_code == 413
    # an upload route keeps its own, larger limit
    ok = client.post("/api/predict", files={"file": ("s.jpg", jpeg_bytes() + b"\0" * (2 * MIB), "image/jpeg")})
    assert ok.status_code == 200, ok.text[:300]


def test_a_map_selection_of_the_whole_catalogue_fits(client):
    ids = client.app.state.explorer.df["id"].tolist()
    r = client.post("/api/selections", json={"ids": ids * 3})
    assert r.status_code == 200 and r.json()["count"] == len(ids)


def test_validation_errors_do_not_echo_large_inputs(client):
    r = client.post("/api/selections", json={"ids": "a" * 500_000})
    assert r.status_code == 422
    assert len(r.content) < 2000, len(r.content)
    err = r.json()["errors"][0]
    assert err["loc"] == ["body", "ids"] and "500,000 characters" in err["input"]
    # many bad items: the first few errors, and how many were left out
    r = client.post("/api/selections", json={"ids": list(range(50_000))})
    assert r.status_code == 422 and len(r.content) < 10_000, len(r.content)
    body = r.json()
    assert len(body["errors"]) == 20 and body["errors_left_out"] == 49_980
    assert body["errors"][0]["input"] == 0  # a short input is still shown
    # a short input that is not plain JSON (bytes here) is shown as text
    r = client.post("/api/reviews", content=b"abc", headers={"content-type": "text/plain"})
    assert r.status_code == 422 and r.json()["errors"][0]["input"] == "b'abc'"
    # a page route says the same in its error page
    page = client.post("/review/decide", data={"id": "demo_0001", "task": "style"})
    assert page.status_code == 422 and "action" in page.text


# ---------------------------------------------------------------------- decoding uploads
def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_a_huge_image_is_decoded_reduced(client, monkeypatch):
    """A 20 kB one-bit PNG of 7000 x 7000 pixels (49 Mpx, under the 50 Mpx limit) is shrunk before it
    becomes RGB: no full-size RGB copy (147 MB) is made, and the original's size is still reported."""
    from artextract.web import uploads

    seen = []
    real = uploads._to_rgb
    monkeypatch.setattr(uploads, "_to_rgb", lambda im: seen.append(im.size) or real(im))
    data = _png(Image.new("1", (7000, 7000), 1))
    assert len(data) < 50_000
    img, size = uploads.decode_reduced(data, 50_000_000)
    assert size == (7000, 7000) and img.mode == "RGB" and max(img.size) == uploads.UPLOAD_SIDE
    assert img.getpixel((500, 500)) == (255, 255, 255)
    assert seen and max(w * h for w, h in seen) < 2_000_000, seen
    r = client.post("/api/predict", files={"file": ("big.png", data, "image/png")})
    assert r.status_code == 200 and (r.json()["width"], r.json()["height"]) == (7000, 7000)
    assert r.json()["predictions"]


def test_a_large_jpeg_is_decoded_at_a_fraction_of_its_size():
    from artextract.web.uploads import DecodeBudget, decode_reduced

    buf = io.BytesIO()
    Image.new("RGB", (6000, 4000), (200, 30, 30)).save(buf, "JPEG")
    budget = DecodeBudget(100_000_000)
    img, size = decode_reduced(buf.getvalue(), 50_000_000, budget)
    assert size == (6000, 4000) and img.size == (1024, 683)
    assert budget.peak == 1500 * 1000 and budget.in_use == 0  # decoded at 1/4: 1500 x 1000, not 24 Mpx


@pytest.mark.parametrize("mode,colour", [("1", 1), ("L", 90), ("P", 3), ("RGBA", (10, 200, 30, 0)),
                                         ("LA", (40, 128)), ("I;16", 40000), ("RGB", (10, 20, 240))])
def test_a_reduced_decode_has_the_colours_of_a_full_one(mode, colour):
    from artextract.data.images import load_image
    from artextract.web.uploads import decode_reduced

    im = Image.new(mode, (3100, 2200), colour)
    if mode == "P":
        im.putpalette([0, 0, 0] * 3 + [250, 120, 10] + [0, 0, 0] * 252)
    data = _png(im)
    small, size = decode_reduced(data, 50_000_000)
    full = load_image(data)
    assert size == full.size and max(small.size) == 1024 and small.mode == "RGB"
    assert abs(small.size[0] / small.size[1] - full.size[0] / full.size[1]) < 0.01
    a, b = small.getpixel((300, 300)), full.getpixel((1000, 1000))
    assert all(abs(x - y) <= 1 for x, y in zip(a, b)), (a, b)


def test_a_reduced_decode_turns_the_image_as_its_exif_says():
    from artextract.web.uploads import decode_reduced

    im = Image.new("RGB", (3000, 1000), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 300, 1000))  # red on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif)
    img, size = decode_reduced(buf.getvalue(), 50_000_000)
    assert size == (1000, 3000) and img.size == (341, 1024)
    r, g, b = img.getpixel((170, 20))  # the red band is now at the top
    assert r > 200 and b < 60


def test_the_decode_budget_bounds_the_pixels_in_flight():
    """Eight decodes of 4 Mpx each with a budget of 10 Mpx: at most two at a time, all of them done."""
    from artextract.web.uploads import DecodeBudget

    budget = DecodeBudget(10_000_000)
    lock = threading.Lock()
    now, most = [0], [0]

    def decode():
        with budget.hold(4_000_000):
            with lock:
                now[0] += 1
                most[0] = max(most[0], now[0])
            time.sleep(0.05)
            with lock:
                now[0] -= 1

    threads = [threading.Thread(target=decode) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert most[0] == 2 and budget.peak == 8_000_000 and budget.in_use == 0
    with budget.hold(50_000_000):  # larger than the budget: it runs alone
        assert budget.in_use == 10_000_000


def test_concurrent_uploads_stay_within_the_decode_budget(make_client):
    c = make_client(index=False, outliers=False, decode_budget_pixels=10_000_000)
    budget = c.app.state.decode_budget
    data = _png(Image.new("L", (2000, 2000), 128))  # 4 Mpx each
    codes = []

    def post():
        codes.append(c.post("/api/predict", files={"file": ("g.png", data, "image/png")}).status_code)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert codes == [200] * 8
    assert 4_000_000 <= budget.peak <= 10_000_000 and budget.in_use == 0
    # a decode that finds no room in time is a 503, with Retry-After
    budget.wait = 0.2
    with budget.hold(10_000_000):
        r = c.post("/api/predict", files={"file": ("g.png", data, "image/png")})
    assert r.status_code == 503 and r.headers["retry-after"] and "busy" in r.json()["detail"]


def test_serve_refuses_a_decode_budget_that_is_not_positive(web_demo, tmp_path, capsys):
    argv = ["serve", "--catalog", str(web_demo), "--db", str(tmp_path / "r.sqlite"), "--no-thumb-cache"]
    assert main(argv + ["--decode-budget-mpx", "0"]) == 2
    assert "must be positive" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_decode_budget_mpx(server_factory):
    """`serve --decode-budget-mpx 3`: the budget is 3 Mpx; a 4 Mpx upload, larger than it, still
    decodes (alone), and the server says its limits in /api/health."""
    s = server_factory(extra=["--decode-budget-mpx", "3"])
    health = httpx.get(s.url + "/api/health").json()
    assert health["limits"]["decode_budget_pixels"] == 3_000_000
    assert health["limits"]["max_upload_pixels"] == 50_000_000
    r = httpx.post(s.url + "/api/predict", files={"file": ("g.png", _png(Image.new("L", (2000, 2000), 99)),
                                                               "image/png")}, timeout=60)
    assert r.status_code == 200 and r.json()["width"] == 2000

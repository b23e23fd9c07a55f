"""A real browser (Debian's headless Chromium, driven by Playwright) against a live explorer.

Sign in, open the gallery, open a painting, upload an image and see predictions and neighbours,
open the collection map, colour it by a field, click a point and land on that painting, open an
explanation of where the model looked, record review decisions, kill and restart the server and
see the decisions kept. Screenshots go to
``$ARTEXTRACT_SCREENSHOTS`` when set (the README's images in docs/img come from there), else to the
test's temporary folder.
"""
from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest

from artextract.data.catalog import Catalog

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _skip_reason() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install playwright==1.65.2; .ci/run installs the test extras)"
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium; .ci/run does)"
    return None


pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")]


def _shot(page, out: Path, name: str, full_page: bool = False, element: str | None = None) -> Path:
    path = out / f"web-{name}.png"
    page.evaluate("() => window.scrollTo(0, 0)")  # the sticky top bar stays at the top of a full-page shot
    if element:
        page.locator(element).screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), full_page=full_page)
    if os.environ.get("ARTEXTRACT_SCREENSHOTS"):  # small files for the README
        from PIL import Image

        im = Image.open(path).convert("RGB")
        if im.width > 1100:
            im = im.resize((1100, round(im.height * 1100 / im.width)), Image.Resampling.LANCZOS)
        im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    return path


def test_browser_end_to_end(server_factory, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=120_000)  # the first face search scans the index; CI machines can be slow

    import subprocess
    import sys

    out = Path(os.environ.get("ARTEXTRACT_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    db = tmp_path / "reviews.sqlite"
    server = server_factory(db, wait=False)
    subprocess.run([sys.executable, "-m", "artextract", "users", "add", "curator", "--catalog",
                    str(server.catalog), "--db", str(db), "--password-stdin"], input="curator-pass-1\n", text=True,
                   check=True)
    server.wait_ready()
    cat = Catalog.load(server.catalog)
    upload_file = cat.image_paths()[11]
    external = []

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.set_default_timeout(60_000)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: external.append(r.url) if not r.url.startswith(
            (server.url, "data:", "blob:")) else None)

        # sign in (every page asks for it once the database has a user)
        page.goto(server.url + "/")
        page.wait_for_url(re.compile(r"/login\?next="))
        _shot(page, out, "login")
        page.fill("#login-name", "curator")
        page.fill("#login-password", "wrong password")
        page.click("#btn-login")
        expect(page.locator("#login-error")).to_contain_text("Wrong name or password")
        page.fill("#login-password", "curator-pass-1")
        page.click("#btn-login")
        expect(page.locator("#signed-in-as")).to_have_text("curator")

        # the map: colour by a field, then click a point and land on that painting
        page.goto(server.url + "/map")
        page.wait_for_function("() => window.artMap && window.artMap.ready", timeout=180_000)
        assert page.evaluate("() => window.artMap.n") == len(cat)
        page.select_option("#map-color", "genre")
        page.wait_for_function("() => window.artMap.colourField() === 'genre'")
        legend = page.locator("#map-legend li")
        expect(legend.first).to_be_visible()
        assert legend.count() == cat.df["genre"].nunique()
        # a point well apart from the others (so the click cannot hit a neighbour)
        target = page.evaluate("""() => {
            const m = window.artMap; let best = -1, bestD = -1;
            for (let i = 0; i < m.n; i++) {
                const [x, y] = m.pointAt(i); let d = 1e9;
                for (let j = 0; j < m.n; j++) { if (j === i) continue;
                    const [u, v] = m.pointAt(j); d = Math.min(d, Math.hypot(x - u, y - v)); }
                if (d > bestD) { bestD = d; best = i; }
            }
            return {i: best, id: m.ids[best], xy: m.pointAt(best), d: bestD};
        }""")
        assert target["d"] > 10, target
        box = page.locator("#map-canvas").bounding_box()
        page.mouse.move(box["x"] + target["xy"][0], box["y"] + target["xy"][1])
        expect(page.locator("#map-tip")).to_be_visible()
        expect(page.locator("#map-tip-title")).to_have_text(cat.df.set_index("id").loc[target["id"], "title"])
        _shot(page, out, "map")
        page.mouse.click(box["x"] + target["xy"][0], box["y"] + target["xy"][1])
        page.wait_for_url(re.compile(r"/painting/"))
        assert page.url.endswith("/painting/" + target["id"])

        # where the model looked: one click per task
        page.click("#explain-genre")
        expect(page.locator("#explain-img.loaded")).to_be_visible(timeout=120_000)
        assert page.evaluate("() => document.getElementById('explain-img').naturalWidth") == 384
        _shot(page, out, "explain", element=".painting")

        # a box selection on the map goes to the gallery
        page.goto(server.url + "/map?color=style")
        page.wait_for_function("() => window.artMap && window.artMap.ready", timeout=180_000)
        box = page.locator("#map-canvas").bounding_box()
        page.keyboard.down("Shift")
        page.mouse.move(box["x"] + 2, box["y"] + 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=5)
        page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] - 2, steps=5)
        page.mouse.up()
        page.keyboard.up("Shift")
        expect(page.locator("#map-selection")).to_be_visible()
        assert int(page.locator("#map-sel-count").inner_text()) == len(cat)
        page.click("#map-sel-gallery")
        page.wait_for_url(re.compile(r"/\?sel="))
        expect(page.locator("#selection-notice")).to_be_visible()

        # gallery: thumbnails, a filter, then a painting
        page.goto(server.url + "/")
        tiles = page.locator("#gallery-grid .tile")
        expect(tiles.first).to_be_visible()
        assert tiles.count() == min(48, len(cat))
        assert page.evaluate("() => document.querySelector('#gallery-grid img').naturalWidth") > 0
        _shot(page, out, "gallery")
        style = cat.df["style"].iloc[0]
        page.select_option("select[data-task=style]", f"style:{style}")
        page.wait_for_url(re.compile(r"label=style"))
        assert page.locator("#gallery-grid .tile").count() == int((cat.df["style"] == style).sum())
        page.goto(server.url + "/")
        page.check("input[name=flagged]")
        page.wait_for_url(re.compile(r"flagged=true"))
        expect(page.locator("#gallery-grid .tile .chip.flag").first).to_be_visible()
        assert page.locator("#gallery-grid .tile").count() == page.locator("#gallery-grid .chip.flag").count()
        page.locator("#gallery-grid .tile").first.click()

        # painting: image, labels, predictions, similar paintings (and a tab that loads on demand)
        page.wait_for_url(re.compile(r"/painting/"))
        expect(page.locator("#painting-image")).to_be_visible()
        assert page.evaluate("() => document.getElementById('painting-image').naturalWidth") > 0
        expect(page.locator("#predictions .pred-task").first).to_be_visible()
        assert page.locator("#predictions .pred-task").count() == len(cat.tasks)
        expect(page.locator("#similar-image .tile").first).to_be_visible()
        expect(page.locator(".flag-card").first).to_be_visible()
        page.click("button[data-tab=face]")
        expect(page.locator("#similar-face.loaded")).to_be_visible()
        expect(page.locator("#similar-image")).to_be_hidden()
        page.click("button[data-tab=image]")
        _shot(page, out, "painting", full_page=True)

        # upload: choose a file (the page submits it) and see predictions and neighbours
        page.click("nav >> text=Upload")
        page.set_input_files("#upload-input", str(upload_file))
        page.wait_for_selector("#upload-result", timeout=120_000)
        expect(page.locator("#upload-result .pred-task").first).to_be_visible()
        assert page.locator("#similar-image .tile").count() >= 3
        _shot(page, out, "upload", full_page=True)
        page.set_input_files("#upload-input", {"name": "notes.jpg", "mimeType": "image/jpeg",
                                               "buffer": b"not really a picture"})
        expect(page.locator("#upload-error")).to_contain_text("not an image")

        # review: accept the first suggestion; the queue moves on
        page.click("nav >> text=Review")
        item = page.locator("#review-item")
        first_id, first_task = item.get_attribute("data-id"), item.get_attribute("data-task")
        suggested = page.locator("#suggested-label").inner_text()
        _shot(page, out, "review")
        page.click("#btn-accept")
        page.wait_for_url(re.compile(r"after=0"))
        assert page.locator("#review-item").get_attribute("data-id") != first_id or \
            page.locator("#review-item").get_attribute("data-task") != first_task
        page.keyboard.press("k")  # keep the second one with the keyboard shortcut
        page.wait_for_url(re.compile(r"after=1"))
        assert "2 of" in page.locator(".filters").inner_text()

        # kill the server (no clean shutdown), start it again: the decisions are still there
        server.kill()
        server.start()
        page.goto(server.url + "/review?pos=0")  # sessions live in the database: still signed in
        expect(page.locator("#signed-in-as")).to_have_text("curator")
        expect(page.locator("#current-decision")).to_contain_text("accept")
        expect(page.locator("#current-decision")).to_contain_text(suggested)
        page.goto(server.url + "/review?pos=1")
        expect(page.locator("#current-decision")).to_contain_text("keep")
        page.goto(server.url + "/painting/" + first_id)
        expect(page.locator("#labels")).to_contain_text("corrected")

        # the download button gives the corrected catalogue
        page.goto(server.url + "/review")
        with page.expect_download() as dl:
            page.click("#download-catalog")
        path = tmp_path / "downloaded.parquet"
        dl.value.save_as(path)
        fixed = Catalog.load(path)
        assert fixed.df.set_index("id").loc[first_id, first_task] == suggested.replace(" ", "_") or \
            fixed.df.set_index("id").loc[first_id, first_task].replace("_", " ") == suggested
        browser.close()

    assert not errors, errors
    assert not external, f"the pages requested other hosts: {external[:5]}"
    assert (out / "web-painting.png").stat().st_size > 10_000
    assert (out / "web-map.png").stat().st_size > 10_000 and (out / "web-explain.png").stat().st_size > 10_000


# ---------------------------------------------------------------------------------------------- the lasso
def _inside(x: float, y: float, poly: list[tuple[float, float]]) -> bool:
    """Even-odd rule by ray casting, the same arithmetic as map.js."""
    inside = False
    for (ax, ay), (bx, by) in zip(poly, poly[1:] + poly[:1]):
        if (ay > y) != (by > y) and x < (bx - ax) * (y - ay) / (by - ay) + ax:
            inside = not inside
    return inside


def _edge_distance(x: float, y: float, poly: list[tuple[float, float]]) -> float:
    best = float("inf")
    for (ax, ay), (bx, by) in zip(poly, poly[1:] + poly[:1]):
        dx, dy = bx - ax, by - ay
        t = max(0.0, min(1.0, ((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy)))
        best = min(best, ((x - ax - t * dx) ** 2 + (y - ay - t * dy) ** 2) ** 0.5)
    return best


def _plan_lasso(xs, ys, shown, view, rect, viewport):
    """A concave star (integer page coordinates) whose inside holds some but not all shown points, with a
    shown point inside its bounding box but outside the star, and no point within 1.5 px of an edge.
    Returns (page vertices, canvas-pixel polygon, expected inside flags)."""
    import math

    cx, cy, k, W, H, dpr = (view[key] for key in ("cx", "cy", "k", "W", "H", "dpr"))
    pts = [((x - cx) * k + W / 2, (y - cy) * k + H / 2) for x, y in zip(xs, ys)]  # as map.js's sx, sy
    n_shown = sum(shown)
    for radius in (0.3, 0.22, 0.38, 0.15):
        r_out = radius * min(rect["width"], rect["height"])
        for fx in (0.5, 0.35, 0.65, 0.25, 0.75, 0.45, 0.55):
            for fy in (0.5, 0.35, 0.65, 0.25, 0.75, 0.45, 0.55):
                for turn in (0.0, 0.3):
                    ox, oy = rect["x"] + fx * rect["width"], rect["y"] + fy * rect["height"]
                    page_poly = []
                    for j in range(10):
                        r = r_out if j % 2 == 0 else 0.45 * r_out
                        a = turn + j * math.pi / 5
                        page_poly.append((round(ox + r * math.cos(a)), round(oy + r * math.sin(a))))
                    if not all(rect["x"] + 3 < px < rect["x"] + rect["width"] - 3 and
                               rect["y"] + 3 < py < rect["y"] + rect["height"] - 3 and
                               px < viewport["width"] and py < viewport["height"] for px, py in page_poly):
                        continue
                    poly = [((px - rect["x"]) * dpr, (py - rect["y"]) * dpr) for px, py in page_poly]
                    if min(_edge_distance(x, y, poly) for x, y in pts) < 1.5 * dpr:
                        continue
                    inside = [s and _inside(x, y, poly) for (x, y), s in zip(pts, shown)]
                    bx0, bx1 = min(p[0] for p in poly), max(p[0] for p in poly)
                    by0, by1 = min(p[1] for p in poly), max(p[1] for p in poly)
                    in_box = sum(s and bx0 <= x <= bx1 and by0 <= y <= by1 for (x, y), s in zip(pts, shown))
                    if 0 < sum(inside) < n_shown and in_box > sum(inside):
                        return page_poly, poly, inside
    raise AssertionError("no lasso fits this layout")


def _draw_lasso(page, page_poly):
    page.keyboard.down("Shift")
    page.mouse.move(*page_poly[0])
    page.mouse.down()
    for px, py in page_poly[1:]:
        page.mouse.move(px, py)
    page.mouse.up()
    page.keyboard.up("Shift")


def test_browser_map_lasso(server_factory, tmp_path):
    """A lasso drawn with the mouse selects exactly the shown points inside it (computed here from /api/map's
    coordinates and the page's view), after a zoom, a pan and a hidden colour too; the ids it sends to
    /api/selections are exactly those, for the gallery and the review queue."""
    from playwright.sync_api import expect, sync_playwright

    server = server_factory(tmp_path / "reviews.sqlite")
    viewport = {"width": 1360, "height": 900}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport=viewport)
        page.set_default_timeout(60_000)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))

        def open_map():
            page.goto(server.url + "/map?color=style")
            page.wait_for_function("() => window.artMap && window.artMap.ready", timeout=180_000)
            page.select_option("#map-tool", "lasso")

        def rect():
            return page.evaluate("() => { const r = document.getElementById('map-canvas').getBoundingClientRect();"
                                 " return {x: r.left, y: r.top, width: r.width, height: r.height}; }")

        open_map()
        d = page.evaluate("() => fetch('/api/map?color=style').then(r => r.json())")
        ids = [d["ids_prefix"] + m + d["ids_suffix"] for m in d["ids"].split("\n")]
        assert page.evaluate("() => window.artMap.ids") == ids
        codes = d["color"]["codes"]

        # the whole map as it opens: a star around some of the points
        view = page.evaluate("() => window.artMap.view()")
        page_poly, poly, inside = _plan_lasso(d["x"], d["y"], [True] * len(ids), view, rect(), viewport)
        _draw_lasso(page, page_poly)
        expect(page.locator("#map-selection")).to_be_visible()
        assert page.evaluate("() => window.artMap.lastLasso()") == pytest.approx(
            [c / view["dpr"] for xy in poly for c in xy])
        assert int(page.locator("#map-sel-count").inner_text()) == sum(inside)
        expect(page.locator("#map-lasso")).to_be_hidden()
        with page.expect_request(lambda r: r.url.endswith("/api/selections") and r.method == "POST") as req:
            page.click("#map-sel-gallery")
        assert req.value.post_data_json["ids"] == [i for i, s in zip(ids, inside) if s]
        page.wait_for_url(re.compile(r"/\?sel="))
        expect(page.locator("#selection-notice")).to_be_visible()
        assert page.locator("#gallery-grid .tile").count() == sum(inside)

        # zoomed in, panned, and the commonest style hidden from the legend
        open_map()
        hidden = max(set(codes), key=codes.count)
        page.click(f"#map-legend li[data-code='{hidden}']")
        r = rect()
        k0 = page.evaluate("() => window.artMap.view().k")
        page.mouse.move(r["x"] + r["width"] * 0.45, r["y"] + r["height"] * 0.55)
        page.mouse.wheel(0, -250)
        page.wait_for_function(f"() => window.artMap.view().k > {k0} * 1.2")
        page.mouse.down()
        page.mouse.move(r["x"] + r["width"] * 0.5, r["y"] + r["height"] * 0.5, steps=4)
        page.mouse.up()
        page.wait_for_url(re.compile(r"/map"))  # a pan, not a click on a point
        view = page.evaluate("() => window.artMap.view()")
        assert view["k"] > k0 * 1.2
        shown = [c != hidden for c in codes]
        page_poly, poly, inside = _plan_lasso(d["x"], d["y"], shown, view, r, viewport)
        _draw_lasso(page, page_poly)
        expect(page.locator("#map-selection")).to_be_visible()
        assert int(page.locator("#map-sel-count").inner_text()) == sum(inside)
        assert not any(s and codes[i] == hidden for i, s in enumerate(inside))
        with page.expect_request(lambda r: r.url.endswith("/api/selections") and r.method == "POST") as req:
            page.click("#map-sel-review")
        assert req.value.post_data_json["ids"] == [i for i, s in zip(ids, inside) if s]
        page.wait_for_url(re.compile(r"/review\?sel="))
        expect(page.locator("#selection-notice")).to_be_visible()

        # the box is still the default tool
        page.goto(server.url + "/map?color=style")
        page.wait_for_function("() => window.artMap && window.artMap.ready", timeout=180_000)
        assert page.locator("#map-tool").input_value() == "box"
        browser.close()
    assert not errors, errors

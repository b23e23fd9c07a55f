"""Where the model looked: /api/explain, the painting page's panel, `predict --explain`, and a
sanity check that a model trained on the demo corpus looks where the composition is."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from artextract.cli import main
from artextract.data.catalog import Catalog


@pytest.mark.slow
def test_explain_api(client, web_demo):
    r = client.get("/api/explain/demo_0003", params={"task": "style"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    im = Image.open(io.BytesIO(r.content))
    assert im.format == "PNG" and im.width == 384 and im.height > 384  # the view and the legend below
    assert r.headers["x-explain-method"] in ("attention", "gradcam")
    top = client.get("/api/paintings/demo_0003").json()["predictions"]["style"][0]
    assert r.headers["x-explain-label"] == top["label"]
    assert float(r.headers["x-explain-prob"]) == pytest.approx(top["prob"], abs=1e-3)
    classes = Catalog.load(web_demo).tasks["genre"].classes
    forced = client.get("/api/explain/demo_0003", params={"task": "genre", "label": classes[-1], "method": "gradcam"})
    assert forced.headers["x-explain-method"] == "gradcam" and forced.headers["x-explain-label"] == classes[-1]
    att = client.get("/api/explain/demo_0003", params={"task": "genre", "label": classes[-1], "method": "attention"})
    assert att.headers["x-explain-method"] == "attention" and att.content != forced.content
    assert client.get("/api/explain/demo_0003", params={"task": "colour"}).status_code == 400
    assert client.get("/api/explain/demo_0003", params={"task": "style", "label": "Cubism"}).status_code == 400
    assert client.get("/api/explain/nope", params={"task": "style"}).status_code == 404


def test_explain_needs_a_run_and_the_page_offers_it(client, make_client):
    page = client.get("/painting/demo_0003").text
    assert 'id="explain"' in page
    for t in ("artist", "genre", "style", "timeframe"):
        assert f'data-explain-src="/api/explain/demo_0003?task={t}"' in page
    bare = make_client(run=False)
    assert bare.get("/api/explain/demo_0003", params={"task": "style"}).status_code == 503
    assert 'id="explain"' not in bare.get("/painting/demo_0003").text


def test_the_maps_and_the_choice(real_parts, loaded_parts):
    from artextract.data.images import load_image
    from artextract.training.explain import concentration, explain

    catalog, *_ = real_parts
    run, _ = loaded_parts
    cat = Catalog.load(catalog)
    e = explain(run, load_image(cat.image_paths()[5]), "genre")
    assert set(e.maps) == {"attention", "gradcam"}
    grid = e.maps["attention"].shape
    assert e.maps["gradcam"].shape == grid and grid[0] >= 2
    assert e.maps["attention"].sum() == pytest.approx(1.0, abs=1e-4)  # softmax weights over the grid
    assert e.method == max(e.scores, key=e.scores.get)
    assert concentration(np.ones((4, 4))) == pytest.approx(0.0, abs=1e-9)
    one = np.zeros((4, 4))
    one[1, 2] = 3
    assert concentration(one) == pytest.approx(1.0)
    assert concentration(np.zeros((4, 4))) == 0.0


@pytest.mark.slow
def test_predict_explain_writes_the_overlays(real_parts, tmp_path, capsys):
    catalog, run_dir, _, _ = real_parts
    files = [str(p) for p in Catalog.load(catalog).image_paths()[:2]]
    out = tmp_path / "explained"
    assert main(["predict", "--run", str(run_dir), *files, "--explain", str(out), "--json"]) == 0
    import json

    assert json.loads(capsys.readouterr().out)["results"]  # stdout still one JSON document
    written = sorted(p.name for p in out.glob("*.png"))
    from pathlib import Path

    want = sorted(f"{Path(f).stem}.{t}.png" for f in files for t in ("artist", "genre", "style", "timeframe"))
    assert written == want
    assert Image.open(out / want[0]).size[0] == 384

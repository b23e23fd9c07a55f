"""The explorer with a real trained run and a real similarity index (skipped, with the reason, when
the training or similarity packages are not installed)."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from artextract.data.catalog import Catalog
from artextract.web.app import create_app
from artextract.web.explorer import WebConfig
from web_helpers import TEST_HOSTS

pytestmark = pytest.mark.slow


@pytest.fixture
def real_client(real_parts, tmp_path):
    from fastapi.testclient import TestClient

    catalog, run_dir, index_dir, outliers = real_parts
    cfg = WebConfig(catalog=catalog, run=run_dir, index=index_dir, outliers=outliers, db=tmp_path / "r.sqlite",
                    thumb_cache=tmp_path / "thumbs")
    return TestClient(create_app(cfg, allowed_hosts=TEST_HOSTS))


def test_real_predictions(real_parts, real_client):
    from artextract.data.images import load_image
    from artextract.training.inference import Run

    catalog, run_dir, _, _ = real_parts
    cat = Catalog.load(catalog)
    run = Run.load(run_dir)
    h = real_client.get("/api/health").json()
    assert h["run"]["loaded"] and h["index"]["loaded"]
    pid = cat.ids[4]
    d = real_client.get(f"/api/paintings/{pid}").json()
    assert set(d["predictions"]) == set(run.tasks)
    direct = run.predict_images([load_image(cat.image_paths()[4])], top_k=3)[0]
    for task, items in direct.items():
        assert [x["label"] for x in d["predictions"][task]] == [lbl for lbl, _ in items]
        assert d["predictions"][task][0]["prob"] == pytest.approx(items[0][1], abs=1e-5)
    data = cat.image_paths()[7].read_bytes()
    up = real_client.post("/api/predict", files={"file": ("p.jpg", data, "image/jpeg")}, params={"top_k": 2})
    assert up.status_code == 200
    assert set(up.json()["predictions"]) == set(run.tasks)
    page = real_client.get(f"/painting/{pid}").text
    assert 'class="pred-task"' in page and "No model run loaded" not in page
    bad = real_client.post("/api/predict", files={"file": ("x.jpg", b"GIF89a nonsense", "image/jpeg")})
    assert bad.status_code == 400


def test_real_similar(real_parts, real_client):
    catalog, _, _, _ = real_parts
    cat = Catalog.load(catalog)
    pid = cat.ids[2]
    r = real_client.get("/api/similar", params={"id": pid, "k": 5}).json()
    assert len(r["results"]) == 5 and pid not in [x["id"] for x in r["results"]]
    assert all(x["in_catalog"] and x["title"] for x in r["results"])
    scores = [x["score"] for x in r["results"]]
    assert scores == sorted(scores, reverse=True)
    buf = io.BytesIO()
    Image.open(cat.image_paths()[2]).save(buf, "PNG")
    up = real_client.post("/api/similar", files={"file": ("q.png", buf.getvalue(), "image/png")},
                          params={"k": 3}).json()
    assert up["results"][0]["id"] == pid  # the painting itself is its own nearest neighbour
    face = real_client.get("/api/similar", params={"id": pid, "mode": "face"})
    assert face.status_code == 200 and (face.json()["results"] or face.json()["message"])
    panel = real_client.get("/similar-panel", params={"id": pid, "mode": "face"})
    assert panel.status_code == 200 and "search failed" not in panel.text
    page = real_client.get(f"/painting/{pid}").text
    assert page.count('class="tile"') >= 5
    ghost = real_client.get("/api/similar", params={"id": "nope"})
    assert ghost.status_code == 404


def test_real_concurrent_uploads(real_parts, real_client):
    """Uploads in parallel threads through the real model and index give the same answers as one by one."""
    from concurrent.futures import ThreadPoolExecutor

    catalog, _, _, _ = real_parts
    files = [p.read_bytes() for p in Catalog.load(catalog).image_paths()[:6]]

    def ask(data):
        r = real_client.post("/api/predict", files={"file": ("p.jpg", data, "image/jpeg")},
                             params={"similar": "true", "k": 3})
        assert r.status_code == 200, r.text
        body = r.json()
        return body["predictions"], [x["id"] for x in body["similar"]["results"]]

    serial = [ask(d) for d in files]
    with ThreadPoolExecutor(6) as pool:
        parallel = list(pool.map(ask, files * 2))
    for i, (preds, ids) in enumerate(parallel):
        want_preds, want_ids = serial[i % len(files)]
        assert ids == want_ids
        for task in want_preds:
            assert [x["label"] for x in preds[task]] == [x["label"] for x in want_preds[task]]


def test_real_outliers_csv(real_parts, tmp_path):
    """The table written by `artextract outliers` loads as the review queue, whatever extra columns it has."""
    import importlib.util

    if importlib.util.find_spec("artextract.cli.commands.outliers") is None:
        pytest.skip("artextract.outliers (the `outliers` command) is not installed in this checkout")
    from fastapi.testclient import TestClient

    from artextract.cli import main

    catalog, run_dir, index_dir, _ = real_parts
    out = tmp_path / "outliers_style.csv"
    assert main(["outliers", "--catalog", str(catalog), "--task", "style", "--run", str(run_dir),
                 "--out", str(out)]) == 0
    c = TestClient(create_app(WebConfig(catalog=catalog, run=run_dir, index=index_dir, outliers=out,
                                        db=tmp_path / "r.sqlite", thumb_cache=""), allowed_hosts=TEST_HOSTS))
    table = c.get("/api/outliers", params={"flagged": "false"}).json()
    assert table["total"] > 0 and table["table"]["dropped_unknown_ids"] == 0
    queue = c.get("/api/review/queue").json()["items"]
    page = c.get("/review")
    assert page.status_code == 200
    if queue:
        it = queue[0]
        assert 'id="review-item"' in page.text
        r = c.post("/api/reviews", json={"id": it["id"], "task": it["task"], "action": "accept"})
        assert r.status_code == 200 and r.json()["label"] == it["suggested_label"]
        assert c.get("/painting/" + it["id"]).status_code == 200

"""The collection map: /api/map on the real index (layouts, colours, flagged points, the cache
beside the index), the page, and the size and speed of the payload for 100,000 paintings."""
from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from artextract.data.catalog import Catalog
from web_helpers import TEST_HOSTS


def ids_of(d: dict) -> list[str]:
    """The ids of a map payload (common prefix and suffix sent once, the middles joined by newlines)."""
    return [d["ids_prefix"] + m + d["ids_suffix"] for m in d["ids"].split("\n")]


def test_map_payload_on_the_real_index(client, web_demo, real_parts):
    cat = Catalog.load(web_demo)
    r = client.get("/api/map", params={"color": "style"})
    assert r.status_code == 200, r.text
    d = r.json()
    d["ids"], d["titles"] = ids_of(d), d["titles"].split("\n")
    assert d["ids_prefix"] == "demo_00" and d["ids_suffix"] == ""
    assert d["n"] == 40 and d["source"] == "index" and d["not_on_map"] == 0
    assert sorted(d["ids"]) == sorted(cat.ids)
    assert all(isinstance(v, int) and 0 <= v <= 99_999 for v in d["x"] + d["y"])
    assert min(d["x"]) == 0 or min(d["y"]) == 0  # scaled to fill the square
    by_id = cat.df.set_index("id")
    c = d["color"]
    assert c["field"] == "style" and set(c["values"]) == set(cat.df["style"])
    for pid, code in zip(d["ids"], c["codes"]):
        assert c["values"][code] == by_id.loc[pid, "style"]
    assert sum(c["counts"]) == 40 and c["other"] == 0
    planted = set(pd.read_csv(web_demo.parent / "planted_errors.csv")["id"])
    assert {d["ids"][i] for i in d["flagged"]} == planted
    assert d["titles"][0] == by_id.loc[d["ids"][0], "title"]
    assert d["dates"][0] == int(by_id.loc[d["ids"][0], "year"])
    # computed once, cached beside the index
    cache = real_parts[2] / "map_layout.npz"
    assert cache.is_file()
    z = np.load(cache)
    assert list(z["ids"]) == d["ids"] and z["xy"].shape == (40, 2)


def test_map_timeline_follows_the_year(client, web_demo):
    d = client.get("/api/map", params={"layout": "timeline"}).json()
    years = Catalog.load(web_demo).df.set_index("id").loc[ids_of(d), "year"].to_numpy(float)
    from scipy.stats import spearmanr

    assert spearmanr(d["x"], years).correlation > 0.95
    assert d["x_axis"]["label"] == "year" and d["x_axis"]["ticks"]
    assert d["color"] is None  # no colour asked for


def test_map_parts_and_colours(client, web_demo):
    only = client.get("/api/map", params={"color": "genre", "parts": "color"}).json()
    assert "x" not in only and "ids" not in only and only["color"]["field"] == "genre"
    xy = client.get("/api/map", params={"parts": "xy"}).json()
    assert "ids" not in xy and len(xy["x"]) == 40
    years = client.get("/api/map", params={"color": "year", "parts": "color"}).json()["color"]
    n_years = Catalog.load(web_demo).df["year"].nunique()
    if n_years > 20:  # many numeric values: quantile bins
        assert years["binned"] and len(years["values"]) <= 10
    else:
        assert len(years["values"]) == n_years
    assert client.get("/api/map", params={"layout": "spiral"}).status_code == 400
    assert client.get("/api/map", params={"color": "no_such_field"}).status_code == 400
    assert client.get("/api/map", params={"parts": "xy,nonsense"}).status_code == 400


def test_at_most_20_colours_and_the_rest_grey(make_client, web_demo, tmp_path):
    cat = Catalog.load(web_demo)
    df = cat.df.copy()
    df["owner"] = [f"owner {i % 25}" for i in range(len(df))]  # 25 values
    df.loc[0, "owner"] = None
    Catalog(df, cat.tasks, cat.image_root, cat.source).save(tmp_path / "wide.parquet")
    c = make_client(catalog=tmp_path / "wide.parquet", outliers=False)
    col = c.get("/api/map", params={"color": "owner", "parts": "color"}).json()["color"]
    assert len(col["values"]) == 20 and col["missing"] == 1
    assert col["other"] == 40 - 1 - sum(col["counts"]) and col["other"] > 0
    assert sorted(set(col["codes"]) - set(range(20))) == [-2, -1]


def test_map_page_and_what_it_needs(client, make_client):
    page = client.get("/map")
    assert page.status_code == 200
    assert 'id="map-canvas"' in page.text and 'src="/static/map.js' in page.text
    assert '<option value="style" selected>' in page.text
    assert client.get("/static/map.js").status_code == 200
    bare = make_client(run=False, index=False, outliers=False)
    assert "needs an embedding" in bare.get("/map").text
    assert bare.get("/api/map").status_code == 503


def test_a_map_selection_filters_the_gallery_and_the_queue(client, web_demo):
    planted = pd.read_csv(web_demo.parent / "planted_errors.csv")
    chosen = [planted["id"].iloc[0], "demo_0000", "not-an-id"]
    r = client.post("/api/selections", json={"ids": chosen}).json()
    assert r["count"] == 2
    gallery = client.get(r["gallery_url"]).text
    assert 'id="selection-notice"' in gallery and gallery.count('class="tile"') == 2
    review = client.get(r["review_url"]).text
    assert f'data-id="{planted["id"].iloc[0]}"' in review
    assert client.get("/?sel=expired").status_code == 404


@pytest.mark.slow
def test_map_of_100000_paintings_is_fast_and_compact(tmp_path):
    """A 100,000-painting synthetic catalogue and index: with the layout cached, /api/map answers in
    under 2 s and its JSON is under 8 MB."""
    from fastapi.testclient import TestClient

    from artextract.data.catalog import TaskSpec
    from artextract.similarity.index import EmbeddingIndex
    from artextract.web.app import create_app
    from artextract.web.explorer import WebConfig

    n = 100_000
    rng = np.random.default_rng(0)
    styles = [f"Style_{i}" for i in range(30)]
    df = pd.DataFrame({"id": [f"synthetic/painting_{i:06d}.jpg" for i in range(n)],
                       "path": [f"images/{i:06d}.jpg" for i in range(n)],
                       "split": rng.choice(["train", "val"], n).tolist(),
                       "style": rng.choice(styles, n).tolist(),
                       "title": [f"A painting of a rather long title, number {i}" for i in range(n)],
                       "year": rng.integers(1400, 2000, n)})
    Catalog(df, {"style": TaskSpec("style", styles)}, tmp_path, "synthetic").save(tmp_path / "big.parquet")
    centres = rng.normal(size=(30, 32)).astype(np.float32)
    X = centres[rng.integers(0, 30, n)] + 0.3 * rng.normal(size=(n, 32)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    EmbeddingIndex.build(df["id"].tolist(), X).save(tmp_path / "index")
    cfg = dict(catalog=tmp_path / "big.parquet", index=tmp_path / "index", db=tmp_path / "r.sqlite",
               thumb_cache="", map_sample=1000)
    # the layout, cached as the server caches it (laid out here by a 2-D PCA: this test is about
    # serving a cached map, not about t-SNE, which test_map_payload_on_the_real_index runs)
    from artextract.web.explorer import Explorer
    from artextract.web.map import first_axis, save_layout

    ex = Explorer(WebConfig(**cfg))
    Xc = X - X.mean(0)
    xy = (Xc @ np.linalg.svd(Xc[:20_000], full_matrices=False)[2][:2].T).astype(np.float32)
    save_layout(ex.map.cache_path(), {"ids": df["id"].tolist(), "xy": xy, "pc1": first_axis(X), "source": "index"},
                ex.map.cache_key())

    fresh = TestClient(create_app(WebConfig(**cfg), allowed_hosts=TEST_HOSTS))  # a new server: the layout comes from the cache
    t0 = time.perf_counter()
    r = fresh.get("/api/map", params={"color": "style"})
    took = time.perf_counter() - t0
    assert r.status_code == 200
    size = len(r.content)
    d = json.loads(r.content)
    assert d["n"] == n and len(d["x"]) == n and len(d["color"]["codes"]) == n
    assert ids_of(d)[:3] == df["id"].tolist()[:3] and len(d["titles"].split("\n")) == n
    assert len(d["color"]["values"]) == 20 and d["color"]["other"] > 0
    print(f"100,000 points: cached answer in {took:.2f} s, "
          f"{size / 1e6:.2f} MB of JSON")
    assert took < 2.0, took
    assert size < 8_000_000, size

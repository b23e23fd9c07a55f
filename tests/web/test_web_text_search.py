"""Search by text in the explorer: GET /api/search and the /search page (a box on the gallery), shown
only for an index whose embedder has a text tower (open_clip; random weights here), bounded, escaped,
and behind the Host check and sign-in like every other route."""
from __future__ import annotations

import numpy as np
import pytest

from web_helpers import TEST_HOSTS
from artextract.job import Job

QUERY = "a ship in a storm at night"


@pytest.fixture(scope="module")
def text_demo(tmp_path_factory):
    """A 12-painting demo corpus."""
    from artextract.data.demo import generate_demo

    return generate_demo(tmp_path_factory.mktemp("webtext"), n=12, size=64)


def _index(catalog, embedder, out):
    from artextract.similarity.index import EmbeddingIndex, index_catalog

    index_catalog(catalog, embedder, out, job=Job(progress=False, log=lambda *a: None))
    return EmbeddingIndex.load(out)


@pytest.fixture(scope="module")
def clip_index(text_demo, tmp_path_factory):
    """The corpus embedded by a randomly initialised open_clip ViT-B-32 (not centred), loaded."""
    from artextract.similarity.embed import BackboneEmbedder

    emb = BackboneEmbedder("open_clip:ViT-B-32", pretrained=False, center=False)
    return _index(text_demo, emb, tmp_path_factory.mktemp("webclip") / "clip.index")


@pytest.fixture(scope="module")
def tiny_index(text_demo, tmp_path_factory):
    from artextract.similarity.embed import BackboneEmbedder

    return _index(text_demo, BackboneEmbedder("tiny_cnn", pretrained=False),
                  tmp_path_factory.mktemp("webtiny") / "tiny.index")


def _client(catalog, tmp_path, index, users=()):
    from fastapi.testclient import TestClient

    from artextract.web.app import create_app
    from artextract.web.db import ReviewStore
    from artextract.web.explorer import Explorer, WebConfig

    db = tmp_path / f"reviews-{len(list(tmp_path.glob('reviews-*')))}.sqlite"
    store = ReviewStore(db)
    for name, pw in users:
        store.add_user(name, pw)
    ex = Explorer(WebConfig(catalog=catalog.path, db=db, thumb_cache=tmp_path / "thumbs"), index=index)
    return TestClient(create_app(explorer=ex, allowed_hosts=TEST_HOSTS))


@pytest.mark.slow
def test_search_by_text_api_and_page(text_demo, clip_index, tmp_path):
    clip = clip_index
    c = _client(text_demo, tmp_path, clip)
    assert 'id="text-search"' in c.get("/").text  # the box on the gallery

    r = c.get("/api/search", params={"text": QUERY, "k": 5})
    assert r.status_code == 200, r.text
    res = r.json()
    cos = clip.vectors() @ clip.embedder.embed_text([QUERY])[0]
    want = [clip.ids[i] for i in np.argsort(-cos, kind="stable")]
    assert res["query"] == {"text": QUERY} and [it["id"] for it in res["results"]] == want[:5]
    assert all(it["in_catalog"] and it["title"] for it in res["results"])

    page = c.get("/search", params={"text": QUERY})
    assert page.status_code == 200 and 'id="text-search-results"' in page.text
    assert page.text.count('class="tile"') == 12 and page.text.index(f'/painting/{want[0]}"') < \
        page.text.index(f'/painting/{want[1]}"')
    assert f'value="{QUERY}"' in page.text and 'maxlength="300"' in page.text

    # escaped everywhere it is shown
    evil = '<script>alert("x")</script>'
    page = c.get("/search", params={"text": evil})
    assert page.status_code == 200 and "<script>alert" not in page.text
    assert 'value="&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"' in page.text

    # bounded: 300 characters; a blank text is a 400 in words
    assert c.get("/api/search", params={"text": "x" * 300, "k": 1}).status_code == 200
    assert c.get("/api/search", params={"text": "x" * 301}).status_code == 422
    assert c.get("/search", params={"text": "x" * 301}).status_code == 422
    r = c.get("/api/search", params={"text": "   "})
    assert r.status_code == 400 and "empty" in r.json()["detail"]
    assert c.get("/api/search", params={"text": QUERY, "k": 101}).status_code == 422

    # the Host check and sign-in guard it like every route
    assert c.get("/api/search", params={"text": QUERY}, headers={"host": "evil.example"}).status_code == 400
    locked = _client(text_demo, tmp_path, clip, users=[("alice", "alice-password-1")])
    assert locked.get("/api/search", params={"text": QUERY}).status_code == 401
    assert locked.get("/search", params={"text": QUERY}, follow_redirects=False).status_code == 303


@pytest.mark.slow
def test_no_text_tower_no_box_and_a_400_in_words(text_demo, tiny_index, tmp_path):
    from artextract.similarity.api import MAX_TEXT_CHARS
    from artextract.web.explorer import MAX_TEXT_QUERY

    assert MAX_TEXT_QUERY == MAX_TEXT_CHARS
    c = _client(text_demo, tmp_path, tiny_index)
    assert c.get("/").status_code == 200 and 'id="text-search"' not in c.get("/").text
    r = c.get("/api/search", params={"text": QUERY})
    assert r.status_code == 400 and "tiny_cnn, which has no text tower" in r.json()["detail"]
    page = c.get("/search", params={"text": QUERY})
    assert page.status_code == 400 and "which has no text tower" in page.text and 'id="text-search"' not in page.text

    bare = _client(text_demo, tmp_path, None)
    assert 'id="text-search"' not in bare.get("/").text
    assert bare.get("/api/search", params={"text": QUERY}).status_code == 503

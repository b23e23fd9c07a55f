"""Limits of the explorer: a body limit on every route, 422 replies that do not echo large inputs."""
from __future__ import annotations

import json

import pytest

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
    # a page route says the same in its error page
    page = client.post("/review/decide", data={"id": "demo_0001", "task": "style"})
    assert page.status_code == 422 and "action" in page.text

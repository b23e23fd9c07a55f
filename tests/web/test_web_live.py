"""A live server (uvicorn in a subprocess): concurrent uploads and reviews, two servers on one
database, and decisions that survive a killed server."""
from __future__ import annotations

import random
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from web_helpers import jpeg_bytes

pytestmark = pytest.mark.slow


def test_concurrent_uploads_and_reviews_across_two_servers(server_factory, tmp_path):
    """Two server processes on one review database; uploads and decisions sent to both at once.
    (Stub model parts: this is about the server and the database; test_web_real runs concurrent
    uploads through the real model.)"""
    db = tmp_path / "shared.sqlite"
    a = server_factory(db, wait=False)
    b = server_factory(db, wait=False)
    a.wait_ready(), b.wait_ready()
    queue = httpx.get(a.url + "/api/review/queue").json()["items"]
    assert queue
    rng = random.Random(0)
    jobs = []
    for n in range(48):
        it = rng.choice(queue)
        jobs.append(("review", rng.choice([a, b]).url, {"id": it["id"], "task": it["task"],
                                                        "action": rng.choice(["accept", "keep"])}))
        if n % 3 == 0:
            jobs.append(("upload", rng.choice([a, b]).url, jpeg_bytes((64 + n, 64), (n * 5 % 255, 90, 140))))

    def do(job):
        kind, url, payload = job
        with httpx.Client(timeout=60) as c:
            if kind == "review":
                return kind, c.post(url + "/api/reviews", json=payload)
            return kind, c.post(url + "/api/predict", files={"file": ("u.jpg", payload, "image/jpeg")},
                                params={"similar": "true", "k": 3})

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(do, jobs))
    for kind, r in results:
        assert r.status_code == 200, (kind, r.text)
        if kind == "upload":
            assert r.json()["predictions"] and r.json()["similar"]["results"]
    reviews = sum(1 for k, _ in results if k == "review")
    hist = httpx.get(b.url + "/api/reviews/history", params={"limit": 10000}).json()
    assert len(hist) == reviews
    current = httpx.get(a.url + "/api/reviews").json()
    latest = {}
    for h in sorted(hist, key=lambda h: h["seq"]):
        latest[(h["id"], h["task"])] = h
    assert {(d["id"], d["task"]): d["seq"] for d in current} == {k: h["seq"] for k, h in latest.items()}
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_decisions_survive_a_killed_server(server_factory, tmp_path):
    s = server_factory()
    it = httpx.get(s.url + "/api/review/queue").json()["items"][0]
    r = httpx.post(s.url + "/api/reviews", json={"id": it["id"], "task": it["task"], "action": "accept"})
    assert r.status_code == 200
    s.kill()  # SIGKILL right after the answer: nothing gets to shut down cleanly
    s.start()
    cur = httpx.get(s.url + "/api/reviews").json()
    assert [(d["id"], d["task"], d["label"]) for d in cur] == [(it["id"], it["task"], it["suggested_label"])]

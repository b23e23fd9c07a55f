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


def _sign_in(http: httpx.Client, url: str, name: str, password: str) -> str:
    """Sign in through the form (like a browser); returns the session's CSRF token."""
    import re

    token = re.search(r'name="csrf_token" value="([^"]+)"', http.get(url + "/login").text).group(1)
    r = http.post(url + "/login", data={"name": name, "password": password, "csrf_token": token, "next": "/"})
    assert r.status_code == 303, r.text
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', http.get(url + "/").text).group(1)


def test_two_reviewers_decide_the_same_items_and_the_export_has_both(server_factory, real_parts, tmp_path):
    import io
    import subprocess
    import sys

    import pandas as pd

    catalog = real_parts[0]
    db = tmp_path / "team.sqlite"
    for name in ("alice", "bob"):
        subprocess.run([sys.executable, "-m", "artextract", "users", "add", name, "--catalog", str(catalog), "--db",
                        str(db), "--password-stdin"], input=f"{name}-secret-pw\n", text=True, check=True)
    s = server_factory(db)
    assert httpx.get(s.url + "/api/review/queue").status_code == 401
    with httpx.Client(timeout=60) as a, httpx.Client(timeout=60) as b:
        csrf_a = _sign_in(a, s.url, "alice", "alice-secret-pw")
        csrf_b = _sign_in(b, s.url, "bob", "bob-secret-pw")
        queue = a.get(s.url + "/api/review/queue").json()["items"][:3]
        for it in queue:  # alice through the page's form, bob through the JSON API
            r = a.post(s.url + "/review/decide", data={"id": it["id"], "task": it["task"], "action": "accept",
                                                       "csrf_token": csrf_a})
            assert r.status_code == 303
        second = b.get(s.url + "/api/review/queue", params={"show": "second"}).json()["items"]
        assert [(x["id"], x["task"]) for x in second] == [(x["id"], x["task"]) for x in queue]
        for it in queue:
            r = b.post(s.url + "/api/reviews", json={"id": it["id"], "task": it["task"], "action": "keep"},
                       headers={"X-CSRF-Token": csrf_b})
            assert r.status_code == 200 and r.json()["reviewer"] == "bob"
        csv = pd.read_csv(io.StringIO(a.get(s.url + "/api/reviews/export", params={"format": "csv"}).text))
    got = sorted(zip(csv["id"], csv["reviewer"], csv["action"]))
    assert got == sorted([(it["id"], who, act) for it in queue for who, act in (("alice", "accept"), ("bob", "keep"))])
    out = tmp_path / "agree.json"
    r = subprocess.run([sys.executable, "-m", "artextract", "review", "agreement", "--catalog", str(catalog), "--db",
                        str(db), "--json"], capture_output=True, text=True, check=True)
    out.write_text(r.stdout)
    import json

    rows = json.loads(r.stdout)
    assert sum(x["items"] for x in rows) == 3 and all(x["reviewer_a"] == "alice" for x in rows)


def test_serve_max_upload_mb_and_mpx(server_factory):
    import io

    from PIL import Image

    s = server_factory(extra=["--max-upload-mb", "0.05", "--max-upload-mpx", "0.01"])
    big = io.BytesIO()
    Image.effect_noise((300, 300), 90).convert("RGB").save(big, "PNG")
    assert len(big.getvalue()) > 0.05 * 1024 * 1024
    r = httpx.post(s.url + "/api/predict", files={"file": ("big.png", big.getvalue(), "image/png")}, timeout=60)
    assert r.status_code == 413 and "0.05 MB" in r.json()["detail"]
    # --max-upload-mpx: a small file of more than 0.01 megapixels (10,000 pixels) is refused too
    wide = jpeg_bytes((200, 100))
    assert len(wide) < 0.05 * 1024 * 1024
    r = httpx.post(s.url + "/api/predict", files={"file": ("wide.jpg", wide, "image/jpeg")}, timeout=60)
    assert r.status_code == 413 and "20,000 pixels > limit 10,000" in r.json()["detail"]
    ok = httpx.post(s.url + "/api/predict", files={"file": ("s.jpg", jpeg_bytes(), "image/jpeg")}, timeout=60)
    assert ok.status_code == 200 and ok.json()["predictions"]              # 96 x 80 = 7,680 pixels


def test_serve_no_auth_warns_and_lets_everyone_in(server_factory, real_parts, tmp_path):
    import subprocess
    import sys

    db = tmp_path / "open.sqlite"
    subprocess.run([sys.executable, "-m", "artextract", "users", "add", "carol", "--catalog", str(real_parts[0]),
                    "--db", str(db), "--password-stdin"], input="carol-secret-pw\n", text=True, check=True)
    s = server_factory(db, extra=["--no-auth"])
    assert httpx.get(s.url + "/api/review/queue").status_code == 200
    assert "warning: --no-auth" in s.log_path.read_text()

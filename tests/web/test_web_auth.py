"""Sign-in and reviewers: sessions, API tokens, CSRF, slowed failed sign-ins, queue views by
reviewer, the reviewer in the history and export, and `review agreement`."""
from __future__ import annotations

import io
import json
import re
import threading
import time

import pandas as pd
import numpy as np
import pytest

from artextract.cli import main
from artextract.web.db import ReviewStore

PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22"}


@pytest.fixture
def auth_client(make_client, tmp_path):
    """``auth_client(login_delay=...)`` -> a client of an explorer whose database has alice and bob."""
    def make(**cfg):
        db = tmp_path / "auth.sqlite"
        store = ReviewStore(db)
        for name, pw in PASSWORDS.items():
            if name not in [u["name"] for u in store.users()]:
                store.add_user(name, pw)
        return make_client(run=False, index=False, db=db, **cfg)

    return make


def sign_in(client, name: str, password: str | None = None):
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return client.post("/login", data={"name": name, "password": password or PASSWORDS[name], "next": "/review",
                                       "csrf_token": token}, follow_redirects=False)


def csrf_of(client) -> str:
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', client.get("/").text).group(1)


def test_without_a_session_pages_redirect_and_the_api_answers_401(auth_client):
    c = auth_client()
    r = c.get("/painting/demo_0001", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fpainting%2Fdemo_0001"
    assert c.get("/review?task=style", follow_redirects=False).headers["location"].startswith("/login?next=")
    for url in ("/api/paintings", "/api/reviews", "/thumb/demo_0001", "/openapi.json", "/api/map"):
        assert c.get(url).status_code == 401, url
    assert c.post("/api/reviews", json={"id": "demo_0001", "task": "style", "action": "keep"}).status_code == 401
    # the exceptions: sign-in page, static assets, health
    assert c.get("/login").status_code == 200 and 'id="login-form"' in c.get("/login").text
    assert c.get("/static/style.css").status_code == 200
    assert c.get("/api/health").json()["status"] == "ok"


@pytest.mark.slow
def test_wrong_password_401_right_one_a_session(auth_client):
    c = auth_client(login_delay=0.01)
    r = sign_in(c, "alice", "not-her-password")
    assert r.status_code == 401 and "Wrong name or password" in r.text
    assert sign_in(c, "mallory", "whatever-123").status_code == 401
    assert c.get("/api/paintings").status_code == 401
    r = sign_in(c, "alice")
    assert r.status_code == 303 and r.headers["location"] == "/review"
    cookie = r.headers["set-cookie"]
    assert "artextract_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie.replace(
        "Strict", "strict")
    assert c.get("/api/paintings").status_code == 200
    assert 'id="signed-in-as">alice<' in c.get("/").text
    # signing out ends the session on the server
    c.post("/logout", data={"csrf_token": csrf_of(c)}, follow_redirects=False)
    assert c.get("/api/paintings").status_code == 401


def test_a_login_without_its_form_token_is_refused(auth_client):
    c = auth_client()
    r = c.post("/login", data={"name": "alice", "password": PASSWORDS["alice"], "csrf_token": "forged"},
               follow_redirects=False)
    assert r.status_code == 403
    assert c.get("/api/paintings").status_code == 401


@pytest.mark.slow
def test_failed_sign_ins_are_slowed_down(auth_client):
    """Waits of 0, 1.5 and 3 s before the first three answers (each also verifies an argon2 hash,
    which takes up to a second on a busy machine)."""
    c = auth_client(login_delay=1.5)
    token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text).group(1)
    took = []
    for _ in range(3):
        t0 = time.perf_counter()
        r = c.post("/login", data={"name": "bob", "password": "wrong-wrong", "csrf_token": token})
        took.append(time.perf_counter() - t0)
        assert r.status_code == 401
        token = re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)
    assert took[1] > took[0] + 1.0 and took[2] > took[1] + 1.0, took


def _login_token(client) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)


@pytest.mark.slow
def test_parallel_wrong_guesses_are_slowed_as_much_as_sequential_ones(auth_client):
    """Twelve wrong passwords for bob sent at once from one address. One after another they would
    wait 0, 0.1, 0.2, 0.4, 0.8 s (doubling, at most 16 x 0.1 s) before being checked; sent at once they
    book their turns first, so the k-th check still comes no sooner than the sum of those waits, and
    the guesses whose turn is more than 1.6 s away are refused at once (429), unchecked."""
    from fastapi.testclient import TestClient

    c = auth_client(login_delay=0.1)
    # one browser session per guess (the same address): a shared cookie jar would race on the session
    clients = [TestClient(c.app, base_url=str(c.base_url)) for _ in range(12)]
    tokens = [_login_token(x) for x in clients]
    results = []
    t0 = time.perf_counter()

    def guess(i):
        r = clients[i].post("/login", data={"name": "bob", "password": f"wrong-guess-{i}", "csrf_token": tokens[i]})
        said = "Too many sign-in attempts" in r.text
        results.append((r.status_code, time.perf_counter() - t0, r.headers.get("retry-after") if said else None))

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    checked = sorted(t for code, t, _ in results if code == 401)
    refused = [ra for code, _, ra in results if code == 429]
    # on a busy machine the threads book later, so more of them can fall inside the horizon; what must
    # hold whatever the load is that the k-th check comes no sooner than in a sequential run
    assert len(checked) + len(refused) == 12 and len(checked) >= 4, results
    earliest = np.cumsum([0.0] + [min(0.1 * 2 ** k, 1.6) for k in range(11)])
    for t, e in zip(checked, earliest):
        assert t >= e - 0.01, (checked, e)
    assert all(ra and int(ra) >= 1 for ra in refused)


@pytest.mark.slow
def test_a_correct_sign_in_is_not_slowed_by_other_peoples_guesses(auth_client):
    """Someone elsewhere guesses alice's password, and someone at alice's own address guesses bob's:
    alice still signs in at once, while the guesser's next try at alice waits."""
    from fastapi.testclient import TestClient

    c = auth_client(login_delay=5.0)
    attacker = TestClient(c.app, client=("203.0.113.9", 40000))
    assert sign_in(attacker, "alice", "guess-number-1").status_code == 401
    assert sign_in(c, "bob", "guess-number-2").status_code == 401
    t0 = time.perf_counter()
    r = sign_in(c, "alice")
    assert r.status_code == 303 and time.perf_counter() - t0 < 2.5
    _, wait = c.app.state.login_throttle.book("alice", "203.0.113.9")
    assert wait > 4.0  # the guesser is slowed down (not alice)


def test_the_login_throttle_books_turns_like_sequential_attempts():
    from artextract.web.auth import LoginRefused, LoginThrottle

    now = [100.0]
    th = LoginThrottle(base=0.5, window=900, clock=lambda: now[0])
    assert th.cap == 8.0
    # five attempts at once get the turns five attempts one after another would get: 0, .5, 1.5, 3.5, 7.5 s
    waits = [th.book("Bob", "10.0.0.1")[1] for _ in range(5)]
    assert waits == [0.0, 0.5, 1.5, 3.5, 7.5]
    with pytest.raises(LoginRefused) as exc:  # the sixth's turn would be 15.5 s away: more than 8
        th.book("bob", "10.0.0.1")
    assert exc.value.retry_after == pytest.approx(7.5)
    # other addresses and other accounts are not slowed; nor is anyone after a success
    assert th.book("bob", "10.0.0.2")[1] == 0.0 and th.book("alice", "10.0.0.1")[1] == 0.0
    key, _ = th.book("carol", "10.0.0.3")
    th.failed(key)
    now[0] += 0.1
    key, wait = th.book("carol", "10.0.0.3")
    assert wait == pytest.approx(0.4)  # 0.5 s after the failed answer, not after its start
    th.succeeded(key)
    assert th.book("carol", "10.0.0.3")[1] == 0.0
    # failures are forgotten after the window; at most max_pairs pairs are kept
    now[0] += 1000
    assert th.book("bob", "10.0.0.1")[1] == 0.0
    small = LoginThrottle(base=1, max_pairs=3, clock=lambda: now[0])
    for i in range(10):
        small.book(f"user{i}", "10.0.0.9")
    assert len(small._pairs) == 3


def test_a_token_authenticates_the_api(auth_client, tmp_path, capsys):
    c = auth_client()
    assert main(["users", "token", "bob", "--catalog", str(c.app.state.explorer.catalog.path),
                 "--db", str(tmp_path / "auth.sqlite")]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("ae_")
    h = {"Authorization": f"Bearer {token}"}
    assert c.get("/api/paintings", headers=h).status_code == 200
    assert c.get("/api/paintings", headers={"Authorization": "Bearer ae_wrong"}).status_code == 401
    q = c.get("/api/review/queue", headers=h).json()["items"][0]
    r = c.post("/api/reviews", headers=h, json={"id": q["id"], "task": q["task"], "action": "accept"})
    assert r.status_code == 200 and r.json()["reviewer"] == "bob"  # no CSRF header needed with a token
    # only the token's hash is stored
    import sqlite3

    with sqlite3.connect(tmp_path / "auth.sqlite") as con:
        stored = [r[0] for r in con.execute("SELECT token_hash FROM api_tokens")]
    assert token not in stored and len(stored) == 1 and len(stored[0]) == 64


@pytest.mark.slow
def test_cross_site_and_token_less_form_posts_are_refused(auth_client):
    c = auth_client()
    sign_in(c, "alice")
    q = c.get("/api/review/queue").json()["items"][0]
    data = {"id": q["id"], "task": q["task"], "action": "accept"}
    # another site's form: no CSRF token (and, from a browser, a foreign Origin)
    assert c.post("/review/decide", data=data, follow_redirects=False).status_code == 403
    assert c.post("/review/decide", data={**data, "csrf_token": "guess"}, follow_redirects=False).status_code == 403
    r = c.post("/review/decide", data={**data, "csrf_token": csrf_of(c)}, headers={"Origin": "http://evil.example"},
               follow_redirects=False)
    assert r.status_code == 403
    # a JSON call from the session needs the header
    assert c.post("/api/reviews", json=data).status_code == 403
    assert c.get("/api/reviews").json() == []
    r = c.post("/review/decide", data={**data, "csrf_token": csrf_of(c)}, follow_redirects=False)
    assert r.status_code == 303
    r = c.post("/api/reviews", json={**data, "action": "keep"}, headers={"X-CSRF-Token": csrf_of(c)})
    assert r.status_code == 200


@pytest.mark.slow
def test_decisions_record_their_reviewer_and_the_queue_splits(auth_client, web_demo):
    alice, bob = auth_client(), auth_client()
    sign_in(alice, "alice")
    sign_in(bob, "bob")
    q = alice.get("/api/review/queue").json()["items"]
    first, second = q[0], q[1]
    r = alice.post("/review/decide", data={"id": first["id"], "task": first["task"], "action": "accept",
                                           "pos": 0, "csrf_token": csrf_of(alice)}, follow_redirects=False)
    assert r.status_code == 303
    hist = alice.get("/api/reviews/history").json()
    assert [(h["id"], h["reviewer"], h["source"]) for h in hist] == [(first["id"], "alice", "web")]
    # bob's views: "nobody decided" leaves the first item out; "second opinion" has only it
    open_ids = [(x["id"], x["task"]) for x in bob.get("/api/review/queue", params={"show": "open"}).json()["items"]]
    assert (first["id"], first["task"]) not in open_ids and len(open_ids) == len(q) - 1
    second_op = bob.get("/api/review/queue", params={"show": "second"}).json()["items"]
    assert [(x["id"], x["task"], x["reviewers"], x["to_do"]) for x in second_op] == [
        (first["id"], first["task"], ["alice"], True)]
    page = bob.get("/review", params={"show": "second"}).text
    assert f'data-id="{first["id"]}"' in page and "alice decided" in page
    # bob gives his opinion on it (a relabel), and decides another item too
    classes = alice.app.state.explorer.tasks[first["task"]].classes
    other = next(x for x in classes if x not in (first["given_label"], first["suggested_label"]))
    bob.post("/api/reviews", headers={"X-CSRF-Token": csrf_of(bob)},
             json={"id": first["id"], "task": first["task"], "action": "relabel", "label": other})
    bob.post("/api/reviews", headers={"X-CSRF-Token": csrf_of(bob)},
             json={"id": second["id"], "task": second["task"], "action": "keep"})
    assert bob.get("/api/review/queue", params={"show": "second"}).json()["items"][0]["to_do"] is False
    csv = pd.read_csv(io.StringIO(alice.get("/api/reviews/export", params={"format": "csv"}).text))
    rows = sorted(zip(csv["id"], csv["reviewer"], csv["final_label"]))
    assert rows == sorted([(first["id"], "alice", first["suggested_label"]), (first["id"], "bob", other),
                           (second["id"], "bob", second["given_label"])])
    # the item's current decision is the latest one (bob's), which the corrected catalogue takes
    cur = {(d["id"], d["task"]): d for d in alice.get("/api/reviews").json()}
    assert cur[(first["id"], first["task"])]["reviewer"] == "bob"
    # undo forgets only the reviewer's own decision
    bob.post("/api/reviews", headers={"X-CSRF-Token": csrf_of(bob)},
             json={"id": first["id"], "task": first["task"], "action": "undo"})
    cur = {(d["id"], d["task"]): d for d in alice.get("/api/reviews").json()}
    assert cur[(first["id"], first["task"])]["reviewer"] == "alice"


def test_review_agreement_kappa_of_a_hand_made_table(web_demo, tmp_path, capsys):
    """Two reviewers, ten items, two labels: they agree on 8 (po = 0.8), each says x half the time
    (pe = 0.5 * 0.5 + 0.5 * 0.5 = 0.5), so kappa = (0.8 - 0.5) / (1 - 0.5) = 0.6."""
    db = tmp_path / "r.sqlite"
    s = ReviewStore(db)
    a = "x x x x x y y y y y".split()
    b = "x x x x y y y y y x".split()
    for i, (la, lb) in enumerate(zip(a, b)):
        s.record(f"p{i}", "style", "relabel", la, reviewer="ann")
        s.record(f"p{i}", "style", "relabel", lb, reviewer="ben")
    s.record("p0", "genre", "relabel", "g", reviewer="ann")  # decided by one reviewer only: no pair
    s.record("p1", "style", "relabel", "x")  # without a reviewer: left out
    assert main(["review", "agreement", "--catalog", str(web_demo), "--db", str(db), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1
    r = rows[0]
    assert (r["task"], r["reviewer_a"], r["reviewer_b"], r["items"]) == ("style", "ann", "ben", 10)
    assert r["agreement"] == pytest.approx(0.8) and r["kappa"] == pytest.approx(0.6)
    assert main(["review", "agreement", "--catalog", str(web_demo), "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "ann" in out and "0.600" in out and "80.0%" in out


@pytest.mark.slow
def test_users_cli(web_demo, tmp_path, capsys, monkeypatch):
    db = tmp_path / "u.sqlite"
    base = ["--catalog", str(web_demo), "--db", str(db)]
    monkeypatch.setattr("sys.stdin", io.StringIO("long-enough-pw\n"))
    assert main(["users", "add", "carol", *base, "--password-stdin"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["users", "add", "dave", *base, "--password-stdin"]) == 2
    assert "at least 8" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("long-enough-pw\n"))
    assert main(["users", "add", "carol", *base, "--password-stdin"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["users", "add", "bad name!", *base, "--password-stdin"]) == 2
    assert main(["users", "token", "carol", *base]) == 0
    capsys.readouterr()
    assert main(["users", "list", *base, "--json"]) == 0
    users = json.loads(capsys.readouterr().out)
    assert [(u["name"], u["tokens"]) for u in users] == [("carol", 1)]
    store = ReviewStore(db)
    assert store.check_password("carol", "long-enough-pw") and not store.check_password("carol", "long-enough-pX")
    with __import__("sqlite3").connect(db) as con:
        h = con.execute("SELECT password_hash FROM users").fetchone()[0]
    assert h.startswith("$argon2id$") and "long-enough-pw" not in h
    assert main(["users", "remove", "carol", *base]) == 0
    assert main(["users", "remove", "carol", *base]) == 2
    assert main(["users", "token", "carol", *base]) == 2
    assert not store.has_users()


def test_serve_refuses_a_public_host_without_users(web_demo, tmp_path, capsys):
    base = ["serve", "--catalog", str(web_demo), "--db", str(tmp_path / "r.sqlite"), "--no-thumb-cache"]
    assert main(base + ["--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to listen on 0.0.0.0" in err and "users add" in err and "--no-auth" in err


def test_a_schema_1_database_is_migrated(tmp_path):
    import sqlite3

    p = tmp_path / "old.sqlite"
    with sqlite3.connect(p) as con:
        con.executescript("""
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
            INSERT INTO meta VALUES ('schema_version', '1');
            CREATE TABLE decision_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, task TEXT NOT NULL,
              action TEXT NOT NULL, label TEXT, given_label TEXT, suggested_label TEXT, decided_at TEXT NOT NULL,
              source TEXT);
            CREATE TABLE decisions (id TEXT NOT NULL, task TEXT NOT NULL, action TEXT NOT NULL, label TEXT,
              given_label TEXT, suggested_label TEXT, decided_at TEXT NOT NULL, seq INTEGER NOT NULL,
              PRIMARY KEY (id, task));
            INSERT INTO decision_log VALUES (1, 'a', 'style', 'keep', 'X', 'X', NULL, '2026-01-01T00:00:00', 'web');
            INSERT INTO decisions VALUES ('a', 'style', 'keep', 'X', 'X', NULL, '2026-01-01T00:00:00', 1);
        """)
    s = ReviewStore(p)
    assert s.get("a", "style")["label"] == "X" and s.get("a", "style")["reviewer"] == ""
    s.record("a", "style", "relabel", "Y", reviewer="alice")
    assert s.get("a", "style")["label"] == "Y"
    assert len(s.current_by_reviewer("a", "style")) == 2

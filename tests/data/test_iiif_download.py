"""``ingest iiif`` then ``download iiif`` against a local IIIF server on 127.0.0.1 that enforces the
Image API's limits and fails first requests (500, 429 with Retry-After, a dropped connection, a
truncated body): every image ends intact and every failure is reported."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from iiif_server import IIIFServer, Service

from artextract.cli import main
from artextract.data.catalog import Catalog, CatalogError
from artextract.data.download import DownloadOptions, download_iiif, iiif_size_parameter
from artextract.data.images import load_image

FIX = Path(__file__).resolve().parent / "iiif_fixtures"
FAKE = "http://127.0.0.1:9/"
FAST = ["--rate", "0", "--backoff", "0.05", "--retries", "3", "--timeout", "2", "--no-progress"]


def v3_manifest(name: str, service: str | None, width: int, height: int, version: int = 3,
                level: int = 2, url: str | None = None) -> bytes:
    svc = ([{"id": FAKE.rstrip("/") + service, "type": f"ImageService{version}", "profile": f"level{level}"}]
           if version == 3 else
           [{"@id": FAKE.rstrip("/") + service, "@type": "ImageService2",
             "profile": f"http://iiif.io/api/image/2/level{level}.json"}]) if service else []
    body = {"id": url or (FAKE.rstrip("/") + (service or "/x") + "/full/max/0/default.jpg"), "type": "Image",
            "format": "image/jpeg", "width": width, "height": height}
    if svc:
        body["service"] = svc
    m = {"@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{FAKE}iiif/gen/{name}/manifest.json",
         "type": "Manifest", "label": {"en": [name]},
         "metadata": [{"label": {"en": ["Artist"]}, "value": {"none": [f"Painter {name[0]}"]}}],
         "items": [{"id": f"{FAKE}iiif/gen/{name}/canvas/1", "type": "Canvas", "width": width, "height": height,
                    "items": [{"id": f"{FAKE}iiif/gen/{name}/page/1", "type": "AnnotationPage",
                               "items": [{"id": f"{FAKE}iiif/gen/{name}/anno/1", "type": "Annotation",
                                          "motivation": "painting", "body": body,
                                          "target": f"{FAKE}iiif/gen/{name}/canvas/1"}]}]}]}
    return json.dumps(m).encode()


def png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 120, 40)).save(buf, "PNG")
    return buf.getvalue()


GEN = {  # name -> (service path, Service)
    "level0": ("/img/level0", Service(1200, 800, 3, 0, sizes=[(150, 100), (300, 200), (600, 400), (1200, 800)], seed=1)),
    "small": ("/img/small", Service(300, 200, 3, 2, seed=2)),
    "level1v2": ("/img/level1v2", Service(1600, 1200, 2, 1, seed=3)),
    "gone": ("/img/gone", Service(800, 800, 3, 2, seed=4)),
    "noinfo": ("/img/noinfo", Service(900, 700, 3, 2, seed=5)),
    "wide": ("/img/wide", Service(3000, 1000, 2, 2, seed=6)),
}


def make_server(faults):
    docs = {"/iiif/collection/top.json": FIX / "collection-top.json",
            "/iiif/collection/dutch.json": FIX / "collection-dutch.json",
            "/iiif/v3/rembrandt/manifest.json": FIX / "v3-manifest-choice.json",
            "/iiif/v2/vermeer/manifest.json": FIX / "v2-manifest.json",
            "/iiif/v3/direct/manifest.json": FIX / "v3-manifest-direct.json"}
    services = {"/iiif/image/vermeer": Service(2000, 2240, 2, 2, max_width=400, seed=7),
                "/iiif/image3/nightwatch": Service(4000, 3300, 3, 2, max_area=100_000, seed=8)}
    gen = {"/iiif/gen/collection.json": json.dumps({
        "@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{FAKE}iiif/gen/collection.json",
        "type": "Collection", "label": {"en": ["generated"]},
        "items": [{"id": f"{FAKE}iiif/gen/{n}/manifest.json", "type": "Manifest"} for n in GEN]}).encode()}
    for name, (path, svc) in GEN.items():
        gen[f"/iiif/gen/{name}/manifest.json"] = v3_manifest(name, path, svc.width, svc.height, svc.version, svc.level)
        services[path] = svc
    docs.update(gen)
    files = {"/files/still-life.png": png(640, 480)}
    return IIIFServer(docs, services, files, faults)


def test_size_parameter_rules():
    # no info.json: the plain box
    assert iiif_size_parameter(512, 3) == "!512,512"
    assert iiif_size_parameter(8000, 2, cap=4096) == "!4096,4096"          # the NGA cap
    big = {"width": 4000, "height": 3000, "profile": "level2"}
    assert iiif_size_parameter(512, 3, big) == "!512,512"
    # an image that already fits: asked for whole, v3 max vs v2 full
    assert iiif_size_parameter(512, 3, {"width": 300, "height": 200}) == "max"
    assert iiif_size_parameter(512, 2, {"width": 300, "height": 200}) == "full"
    # limits
    assert iiif_size_parameter(512, 3, {**big, "maxWidth": 200}) == "!200,150"
    assert iiif_size_parameter(512, 3, {**big, "maxWidth": 400, "maxHeight": 100}) == "!133,100"
    assert iiif_size_parameter(512, 3, {**big, "maxArea": 40_000}) == "!230,173"
    # level 1: w, ; level 0: a listed size
    assert iiif_size_parameter(512, 2, {**big, "profile": ["http://iiif.io/api/image/2/level1.json"]}) == "512,"
    sizes = [{"width": 250, "height": 187}, {"width": 500, "height": 375}, {"width": 1000, "height": 750}]
    assert iiif_size_parameter(512, 3, {**big, "profile": "level0", "sizes": sizes}) == "500,375"
    assert iiif_size_parameter(100, 3, {**big, "profile": "level0", "sizes": sizes}) == "250,187"


@pytest.mark.slow
def test_ingest_then_download_with_faults(tmp_path):
    faults = {
        # ingest: the documents fail first
        "/iiif/gen/collection.json": ["500"], "/iiif/gen/small/manifest.json": ["429:1"],
        "/iiif/gen/level0/manifest.json": ["drop"], "/iiif/gen/wide/manifest.json": ["truncate"],
        # download: info.json and images fail first
        "/iiif/image/vermeer/info.json": ["500"],
        "/iiif/image/vermeer/full/!357,400/0/default.jpg": ["429:1"],
        "/iiif/image3/nightwatch/full/!348,287/0/default.jpg": ["drop"],
        "/img/level0/full/300,200/0/default.jpg": ["truncate"],
        "/img/small/full/max/0/default.jpg": ["500", "503"],
        "/files/still-life.png": ["truncate"],
        "/img/level1v2/full/512,/0/default.jpg": ["500"],
        "/img/gone/full/!512,512/0/default.jpg": ["404*"],
        "/img/noinfo/info.json": ["404*"],
        "/img/wide/full/!512,512/0/default.jpg": ["drop", "429:0"],
    }
    out = tmp_path / "museum.parquet"
    with make_server(faults) as srv:
        rewrite = ["--rewrite", f"{FAKE}={srv.base}/"]
        rc = main(["ingest", "iiif", FAKE + "iiif/collection/top.json", FAKE + "iiif/gen/collection.json",
                   FAKE + "iiif/v3/direct/manifest.json", "--out", str(out), "--tasks", "artist",
                   "--retries", "3", *rewrite])
        assert rc == 1   # the fixtures' missing, broken and unknown-type entries are reported
        cat = Catalog.load(out)
        assert len(cat) == 3 + len(GEN) and cat.image_root == (tmp_path / "iiif_images").resolve()
        report = json.loads((tmp_path / "museum.ingest_report.json").read_text())
        assert len(report["failures"]) == 3
        assert not any("gen/" in f["source"] for f in report["failures"])   # the faulty documents were retried

        rc = main(["download", "iiif", "--catalog", str(out), "--size", "512", *rewrite, *FAST])
        assert rc == 1   # one image is gone for good
        dl = json.loads((cat.image_root / "download_report.json").read_text())
        assert [f["id"] for f in dl["failed"]] == [f"{FAKE}iiif/gen/gone/manifest.json"]
        assert "404" in dl["failed"][0]["reason"] and srv.count("/img/gone/full/!512,512/0/default.jpg") == 1
        assert dl["counts"]["downloaded"] == len(cat) - 1 and dl["counts"]["info_fallback"] == 1
        assert dl["info_fallback"][0]["service"].endswith("/img/noinfo")
        assert srv.count("/iiif/image/vermeer/info.json") == 2        # read once per service (+1 retry)

        rows = {r["title"]: r for r in Catalog.load(out).df.to_dict("records")}
        expect = {  # title -> (request path, size the server gives)
            "The Milkmaid": ("/iiif/image/vermeer/full/!357,400/0/default.jpg", (357, 400)),    # maxWidth 400
            "The Night Watch": ("/iiif/image3/nightwatch/full/!348,287/0/default.jpg", (348, 287)),  # maxArea
            "Nature morte": ("/files/still-life.png", (640, 480)),                              # no service
            "level0": ("/img/level0/full/300,200/0/default.jpg", (300, 200)),                   # listed size
            "small": ("/img/small/full/max/0/default.jpg", (300, 200)),                          # v3 max
            "level1v2": ("/img/level1v2/full/512,/0/default.jpg", (512, 384)),                   # level 1: w,
            "noinfo": ("/img/noinfo/full/!512,512/0/default.jpg", (512, 398)),                   # fallback
            "wide": ("/img/wide/full/!512,512/0/default.jpg", (512, 171)),
        }
        for title, (path, size) in expect.items():
            f = cat.image_root / rows[title]["path"]
            assert f.read_bytes() == srv.served[path], title        # intact: what the server sent in full
            assert load_image(f).size == size, title
        assert not (cat.image_root / rows["gone"]["path"]).exists()
        assert not list(cat.image_root.glob(".*.part"))
        t = [h.time for h in srv.log if h.path == "/iiif/image/vermeer/full/!357,400/0/default.jpg"]
        assert len(t) == 2 and t[1] - t[0] >= 0.95                     # Retry-After honoured
        assert not any(p.endswith("/full/full/0/default.jpg") and "image3" in p for p in (h.path for h in srv.log))
        assert not any(p.startswith("/iiif/image/vermeer-verso") or "xray" in p for p in (h.path for h in srv.log))

        # resume: only the failure is tried again
        n = len(srv.log)
        srv.faults.clear()
        rc = main(["download", "iiif", "--catalog", str(out), "--size", "512", *rewrite, *FAST])
        assert rc == 0
        new = [h.path for h in srv.log[n:]]
        assert new == ["/img/gone/info.json", "/img/gone/full/!512,512/0/default.jpg"]
        assert Catalog.load(out).missing_images() == []


def test_no_network_and_wrong_catalogue(tmp_path):
    cat_path = tmp_path / "museum.parquet"
    with make_server({}) as srv:
        main(["ingest", "iiif", FAKE + "iiif/gen/collection.json", "--out", str(cat_path),
              "--rewrite", f"{FAKE}={srv.base}/"])
    cat = Catalog.load(cat_path)
    # the server is gone: the first request fails to connect, nothing else is tried
    s = download_iiif(cat, tmp_path / "imgs", DownloadOptions(rate=0, retries=5, backoff=1.0, progress=False))
    assert s.aborted and "no network?" in s.aborted and not s.downloaded and s.not_attempted == len(cat)
    assert main(["download", "iiif", "--catalog", str(cat_path), "--no-progress"]) == 2
    import pandas as pd
    df = pd.DataFrame({"id": ["a"], "path": ["a.jpg"], "split": ["train"]})
    with pytest.raises(CatalogError, match="image_service"):
        download_iiif(Catalog(df, {}, tmp_path), tmp_path)


def test_download_no_info_verbose_and_quiet(tmp_path, capsys):
    """`download iiif --no-info` asks every service for !SIZE,SIZE without reading info.json; the
    global `--verbose` shows the DEBUG messages (here: a retry) on stderr, which are hidden without it,
    and `--quiet` only the warnings."""
    svc = Service(1000, 800, 3, 2, seed=9)
    docs = {"/iiif/gen/one/manifest.json": v3_manifest("one", "/img/one", svc.width, svc.height)}
    box = "/img/one/full/!100,100/0/default.jpg"
    with IIIFServer(docs, {"/img/one": svc}, faults={box: ["500", "ok", "500"]}) as srv:
        cat_path = tmp_path / "one.parquet"
        assert main(["ingest", "iiif", FAKE + "iiif/gen/one/manifest.json", "--out", str(cat_path),
                     "--rewrite", f"{FAKE}={srv.base}/"]) == 0
        capsys.readouterr()
        rewrite = ["--rewrite", f"{FAKE}={srv.base}/"]
        assert main(["download", "iiif", "--catalog", str(cat_path), "--size", "100", "--out", str(tmp_path / "a"),
                     "--no-info", *rewrite, *FAST]) == 0
        quiet = capsys.readouterr().err
        assert srv.count("/img/one/info.json") == 0 and srv.count(box) == 2    # one 500, then the image
        assert main(["--verbose", "download", "iiif", "--catalog", str(cat_path), "--size", "100",
                     "--out", str(tmp_path / "b"), "--no-info", *rewrite, *FAST]) == 0
        loud = capsys.readouterr().err
        assert srv.count("/img/one/info.json") == 0 and srv.count(box) == 4
        # without --no-info the service's info.json is read first; --update-catalog, --report, --workers
        assert main(["download", "iiif", "--catalog", str(cat_path), "--size", "100", "--out", str(tmp_path / "c"),
                     "--update-catalog", "--report", str(tmp_path / "c.json"), "--workers", "1", *rewrite, *FAST]) == 0
        assert srv.count("/img/one/info.json") == 1
        assert Catalog.load(cat_path).image_root == (tmp_path / "c").resolve()
        assert len(json.loads((tmp_path / "c.json").read_text())["downloaded"]) == 1
        assert not (tmp_path / "c" / "download_report.json").exists()
        capsys.readouterr()
        assert main(["--quiet", "download", "iiif", "--catalog", str(cat_path), "--size", "100",
                     "--out", str(tmp_path / "d"), *rewrite, *FAST]) == 0
        hushed = capsys.readouterr().err
    assert "note: the catalogue still looks for images" in hushed and "downloaded 1" not in hushed
    assert "downloaded 1" in quiet
    assert load_image(tmp_path / "a" / Catalog.load(cat_path).df["path"][0]).size == (100, 80)
    assert "retrying in" not in quiet and "HTTP 500" not in quiet
    assert "retrying in" in loud and "HTTP 500" in loud

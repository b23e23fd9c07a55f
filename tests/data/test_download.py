"""IIIF downloader against a local fault-injecting server: retries, Retry-After, truncation, HTML bodies,
fail-fast without network, kill-and-resume."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import nga_fixtures as fx

from artextract.cli import main
from artextract.data.catalog import Catalog, CatalogError
from artextract.data.download import download_nga, iiif_image_url, parse_retry_after
from artextract.data.images import load_image
from artextract.data.nga import ingest_nga

FAST = dict(workers=4, rate=0, retries=3, backoff=0.05, max_backoff=0.5, timeout=1.0, progress=False)
PROJECT = Path(__file__).resolve().parents[2]


N = 60   # paintings in the generated sample (the `sample` fixture of conftest.py)


@pytest.fixture
def nga_catalog(tmp_path, sample) -> Path:
    """An NGA catalogue (N paintings, no images yet; image root tmp/nga_images)."""
    expected = fx.build_opendata(tmp_path / "opendata", sample)
    cat, _ = ingest_nga(tmp_path / "opendata", catalog_path=tmp_path / "nga.parquet")
    assert len(cat) == len(expected) == N
    return cat.save(tmp_path / "nga.parquet")


def _check_intact(folder: Path, ids, originals: dict[str, bytes]) -> None:
    for oid in ids:
        assert (folder / f"{oid}.jpg").read_bytes() == originals[oid], oid
        load_image(folder / f"{oid}.jpg")
    assert not list(folder.glob(".*.part")), "temporary files left behind"


def test_iiif_url_and_retry_after():
    u = "https://api.nga.gov/iiif/e879ab8f-0a66-4d84-8f7c-bafd62d662ee"
    assert iiif_image_url(u, 512) == u + "/full/!512,512/0/default.jpg"
    assert iiif_image_url(u + "/", 64, "http://127.0.0.1:8000/iiif/") == \
        "http://127.0.0.1:8000/iiif/e879ab8f-0a66-4d84-8f7c-bafd62d662ee/full/!64,64/0/default.jpg"
    assert iiif_image_url("https://example.org/iiif/x", 10, "http://m/iiif") == "https://example.org/iiif/x/full/!10,10/0/default.jpg"
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)


@pytest.mark.slow
def test_download_with_faults_then_resume(nga_catalog, tmp_path, sample):
    cat = Catalog.load(nga_catalog)
    files = sample.images()
    originals = sample.bytes_by_id()
    uid = dict(zip(cat.df["id"], cat.df["uuid"]))
    ids = cat.ids
    transient = {
        ids[0]: ["500"], ids[1]: ["429:1"], ids[2]: ["slow:3"], ids[3]: ["drop"], ids[4]: ["reset"],
        ids[5]: ["truncate"], ids[6]: ["truncate_nolen"], ids[7]: ["html"], ids[8]: ["html_as_jpeg"],
        ids[9]: ["503", "500", "drop"], ids[10]: ["500", "429:0"],
    }
    permanent = {ids[20]: ["404"], ids[21]: ["html*"], ids[22]: ["500*"]}
    faults = {uid[k]: v for k, v in {**transient, **permanent}.items()}
    # stale temporary file from an "interrupted run"
    root = cat.image_root
    root.mkdir(parents=True)
    (root / f".{ids[30]}.jpg.deadbeef.part").write_bytes(b"half")
    with fx.FaultServer(files, faults) as srv:
        s = download_nga(cat, root, base_url=srv.base_url, size=64, **FAST)
        assert len(s.downloaded) == N - 3 and not s.already_present and s.total == N
        failed = {f["id"]: f["reason"] for f in s.failed}
        assert set(failed) == set(permanent)
        assert "404" in failed[ids[20]] and srv.count(uid[ids[20]]) == 1          # 4xx: no retry
        assert "text/html" in failed[ids[21]] and srv.count(uid[ids[21]]) == 4    # 1 + 3 retries
        assert "500" in failed[ids[22]] and "after 4 attempts" in failed[ids[22]]
        assert s.aborted is None and s.retries >= len(transient) + 6
        # Retry-After honoured: the retry came at least 1 s later
        t = srv.times(uid[ids[1]])
        assert len(t) == 2 and t[1] - t[0] >= 0.95
        assert all(p.endswith("/full/!64,64/0/default.jpg") for p in (h.path for h in srv.log) if p.startswith("/iiif/"))
        good = [i for i in ids if i not in permanent]
        _check_intact(root, good, originals)
        for i in permanent:
            assert not (root / f"{i}.jpg").exists()
        report = json.loads((root / "download_report.json").read_text())
        assert report["counts"]["downloaded"] == N - 3 and report["counts"]["failed"] == 3
        assert {f["id"] for f in report["failed"]} == set(permanent)
        assert "failed 3" in s.summary() and ids[20] in s.summary()

        # resume: only the failures are tried again; a file broken on disk is fetched again
        n_before = len(srv.log)
        broken = root / f"{ids[40]}.jpg"
        broken.write_bytes(broken.read_bytes()[: len(broken.read_bytes()) * 9 // 10])
        srv.faults.clear()
        s2 = download_nga(cat, root, base_url=srv.base_url, size=64, **FAST)
        assert sorted(s2.downloaded) == sorted([*permanent, ids[40]])
        assert s2.replaced_invalid == [ids[40]] and len(s2.already_present) == N - 4 and not s2.failed
        assert len(srv.log) - n_before == 4
        _check_intact(root, ids, originals)
    assert Catalog.load(nga_catalog).missing_images() == []


@pytest.mark.slow
def test_concurrency_and_rate_are_bounded(nga_catalog, sample):
    cat = Catalog.load(nga_catalog)
    cat = cat.subset(np.arange(len(cat)) < 12)  # first 12 rows
    with fx.FaultServer(sample.images(), delay=0.05) as srv:
        s = download_nga(cat, cat.image_root, base_url=srv.base_url, workers=3, rate=20, progress=False)
        assert len(s.downloaded) == 12
        assert srv.max_inflight <= 3
        starts = sorted(h.time for h in srv.log)
        assert starts[-1] - starts[0] >= 11 / 20 * 0.9  # 12 requests at 20/s


def test_no_network_fails_fast(nga_catalog, tmp_path, capsys):
    cat = Catalog.load(nga_catalog)
    base = f"http://127.0.0.1:{fx.closed_port()}/iiif"
    t0 = time.monotonic()
    s = download_nga(cat, tmp_path / "imgs", base_url=base, retries=5, backoff=1.0, progress=False)
    assert time.monotonic() - t0 < 3
    assert s.aborted.startswith("cannot reach 127.0.0.1:") and "(no network?)" in s.aborted
    assert not s.downloaded and not s.failed and s.not_attempted == N
    assert not list((tmp_path / "imgs").glob("*.jpg"))
    rc = main(["download", "nga", "--catalog", str(nga_catalog), "--base-url", base, "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot reach 127.0.0.1" in err and "no network?" in err


def test_lost_network_mid_run_stops(nga_catalog, tmp_path, sample):
    cat = Catalog.load(nga_catalog)
    dead = f"http://127.0.0.1:{fx.closed_port()}/iiif"
    with fx.FaultServer(sample.images()) as srv:
        df = cat.df.copy()
        # the first image is reachable, then the "network" is gone
        df["iiifurl"] = [u.replace("https://api.nga.gov/iiif", srv.base_url if k == 0 else dead)
                         for k, u in enumerate(df["iiifurl"])]
        cat2 = Catalog(df, cat.tasks, cat.image_root, "nga")
        s = download_nga(cat2, tmp_path / "imgs", workers=2, rate=0, retries=2, backoff=0.01, progress=False)
    assert s.downloaded == [cat.ids[0]]
    assert s.aborted and "lost the connection" in s.aborted
    assert s.not_attempted > N // 2


@pytest.mark.slow
def test_update_catalog_and_default_out(nga_catalog, tmp_path, capsys, sample):
    originals = sample.bytes_by_id()
    with fx.FaultServer(sample.images()) as srv:
        common = ["--base-url", srv.base_url, "--no-progress", "--rate", "0", "--backoff", "0.05"]
        other = tmp_path / "elsewhere"
        assert main(["download", "nga", "--catalog", str(nga_catalog), "--out", str(other), *common]) == 0
        out = capsys.readouterr().err
        assert "--update-catalog" in out and f"downloaded {N}" in out
        assert len(Catalog.load(nga_catalog).missing_images()) == N
        assert main(["download", "nga", "--catalog", str(nga_catalog), "--out", str(other), "--update-catalog",
                     *common]) == 0
        assert f"already present {N}" in capsys.readouterr().err
        cat = Catalog.load(nga_catalog)
        assert cat.image_root == other.resolve() and cat.missing_images() == []
        _check_intact(other, cat.ids, originals)
        # default --out: the catalogue's image root
        cat.image_root = tmp_path / "root2"
        cat.save(nga_catalog)
        assert main(["download", "nga", "--catalog", str(nga_catalog), *common]) == 0
        assert Catalog.load(nga_catalog).missing_images() == []
        assert (tmp_path / "root2" / "download_report.json").is_file()
        # some failures: exit status 1
        srv.faults = {Catalog.load(nga_catalog).df["uuid"][0]: ["404"]}
        os.remove(tmp_path / "root2" / f"{cat.ids[0]}.jpg")
        assert main(["download", "nga", "--catalog", str(nga_catalog), *common]) == 1


def test_not_an_nga_catalogue(tmp_path):
    df = pd.DataFrame({"id": ["a"], "path": ["a.jpg"], "split": ["train"]})
    with pytest.raises(CatalogError, match="iiifurl"):
        download_nga(Catalog(df, {}, tmp_path), tmp_path)
    with pytest.raises(TypeError):
        download_nga(Catalog(df.assign(iiifurl=["x"]), {}, tmp_path), tmp_path, sizee=3)


@pytest.mark.slow
def test_kill_midway_and_resume(nga_catalog, tmp_path, sample):
    cat = Catalog.load(nga_catalog)
    root = cat.image_root
    originals = sample.bytes_by_id()
    uid = dict(zip(cat.df["id"], cat.df["uuid"]))
    faults = {uid[i]: ["500", "truncate"] for i in cat.ids[::10]}
    env = dict(os.environ, PYTHONPATH=str(PROJECT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with fx.FaultServer(sample.images(), faults, delay=0.04) as srv:
        cmd = [sys.executable, "-m", "artextract", "download", "nga", "--catalog", str(nga_catalog),
               "--base-url", srv.base_url, "--workers", "2", "--rate", "0", "--backoff", "0.05",
               "--timeout", "5", "--no-progress"]
        def run_until(n_files: int, sig: int) -> subprocess.CompletedProcess:
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                deadline = time.monotonic() + 30
                while len(list(root.glob("*.jpg"))) < n_files:
                    assert proc.poll() is None, proc.communicate()
                    assert time.monotonic() < deadline, "downloader made no progress"
                    time.sleep(0.02)
                proc.send_signal(sig)
                out, err = proc.communicate(timeout=20)
            finally:
                if proc.poll() is None:
                    proc.kill()
            return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

        # Ctrl-C: stops cleanly, says how to resume, writes the report
        res = run_until(10, signal.SIGINT)
        assert res.returncode == 130, res.stderr
        assert "interrupted" in res.stderr
        report = json.loads((root / "download_report.json").read_text())
        assert report["aborted"] == "interrupted" and report["counts"]["not_attempted"] > 0
        # SIGKILL: nothing to clean up with, still no partial file under a final name
        res = run_until(20, signal.SIGKILL)
        assert res.returncode == -signal.SIGKILL
        have = sorted(p.stem for p in root.glob("*.jpg"))
        assert 20 <= len(have) < N
        for i in have:   # every file with a final name is complete
            assert (root / f"{i}.jpg").read_bytes() == originals[i]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"already present {len(have)}" in res.stderr
    _check_intact(root, cat.ids, originals)
    report = json.loads((root / "download_report.json").read_text())
    assert report["counts"]["downloaded"] == N - len(have) and report["counts"]["failed"] == 0


# ---------------------------------------------------------------------- what a failure report says
SECRET = b"<html><body>internal admin page: db password hunter2</body></html>"


def test_a_non_image_answer_is_described_never_quoted(tmp_path, capsys):
    """A text page where an image was expected: the report gives the HTTP status, content type and size,
    never the page's words (they went to stderr and download_report.json). A file:// URL is refused
    with the reason. Loopback addresses stay allowed (the good image comes from 127.0.0.1)."""
    import io

    from iiif_server import IIIFServer
    from PIL import Image
    from support.http_server import LocalServer, Reply, Router

    buf = io.BytesIO()
    Image.new("RGB", (16, 12), (10, 200, 30)).save(buf, "PNG")
    page_router = Router().add(r"/.*", lambda req: Reply(200, SECRET, "text/html; charset=utf-8"))
    with IIIFServer(files={"/good.png": buf.getvalue(), "/page.jpg": SECRET}) as srv, LocalServer(page_router) as page:
        secret_file = tmp_path / "secret.png"
        secret_file.write_bytes(buf.getvalue())
        df = pd.DataFrame({"id": ["good", "html", "mislabelled", "local"],
                           "path": ["good.png", "html.jpg", "mislabelled.jpg", "local.png"],
                           "split": ["train"] * 4,
                           "image_url": [srv.base + "/good.png", page.base + "/x",
                                         srv.base + "/page.jpg", secret_file.as_uri()]})
        cat_path = tmp_path / "c.parquet"
        Catalog(df, {}, tmp_path / "images").save(cat_path)
        rc = main(["download", "iiif", "--catalog", str(cat_path), "--rate", "0", "--retries", "1",
                   "--backoff", "0.01", "--timeout", "2", "--no-progress"])
    assert rc == 1
    err = capsys.readouterr().err
    report_text = (tmp_path / "images" / "download_report.json").read_text()
    for text in (err, report_text):
        assert "hunter2" not in text and "admin" not in text and "<html" not in text
    failed = {f["id"]: f["reason"] for f in json.loads(report_text)["failed"]}
    size = f"{len(SECRET)} bytes"
    assert failed["html"].startswith(f"server sent text/html, not an image (HTTP 200, text/html, {size})")
    assert "not a valid image" in failed["mislabelled"] and f"(HTTP 200, image/jpeg, {size})" in failed["mislabelled"]
    assert failed["local"] == "file:// URLs are not downloaded: only http and https"
    assert (tmp_path / "images" / "good.png").is_file() and not (tmp_path / "images" / "local.png").exists()


def test_a_url_that_is_not_valid_is_a_failure_not_a_traceback(tmp_path):
    """A host that IDNA cannot encode made httpx raise UnicodeError in a worker thread (a traceback)."""
    from artextract.data.download import DownloadOptions, ImageTarget, download_images

    targets = [ImageTarget("a", tmp_path / "a.jpg", url="http://127..0.1:9/a.jpg"),
               ImageTarget("b", tmp_path / "b.jpg", url="http://" + "x" * 70 + ".example/b.jpg")]
    s = download_images(targets, tmp_path, DownloadOptions(retries=0, rate=0, progress=False, timeout=1))
    assert {f["id"]: f["reason"].split(" (")[0] for f in s.failed} == {"a": "not a valid URL", "b": "not a valid URL"}
    assert s.aborted is None

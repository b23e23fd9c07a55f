"""Fixtures of the web explorer tests: one small demo corpus with a real trained run (tiny_cnn, no
pretrained weights) and a real similarity index, built once per test session, an outlier table, and
apps and live servers that serve them."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest


from web_helpers import TEST_HOSTS, jpeg_bytes, make_outliers  # noqa: F401


@pytest.fixture(scope="session")
def real_parts(tmp_path_factory):
    """A 40-painting demo corpus, a real trained run (tiny_cnn, 2 epochs) and a real similarity index
    over it, and an outlier table of its planted errors: ``(catalog, run_dir, index_dir, outliers_csv)``.
    Read-only for tests."""
    from artextract.cli import main
    from artextract.data.catalog import Catalog
    from artextract.data.demo import generate_demo
    from artextract.job import Job
    from artextract.similarity.embed import RunEmbedder
    from artextract.similarity.index import index_catalog

    work = tmp_path_factory.mktemp("real")
    generate_demo(work / "demo", n=40, size=128, seed=3, noise=0.1)
    catalog = work / "demo" / "catalog.parquet"
    run_dir, index_dir = work / "run", work / "index"
    rc = main(["train", "--catalog", str(catalog), "--out", str(run_dir), "--backbone", "tiny_cnn",
               "--pretrained", "none", "--epochs", "2", "--cache-size", "64", "--no-progress"])
    assert rc == 0, "training the tiny test run failed"
    index_catalog(Catalog.load(catalog), RunEmbedder(run_dir), index_dir,
                  job=Job(progress=False, log=lambda *a: None))
    outliers = make_outliers(catalog, work / "outliers.csv")
    return catalog, run_dir, index_dir, outliers


@pytest.fixture(scope="session")
def web_demo(real_parts) -> Path:
    """The catalogue of the 40-painting demo corpus (the one the real run and index were built on)."""
    return real_parts[0]


@pytest.fixture(scope="session")
def web_outliers(real_parts) -> Path:
    return real_parts[3]


@pytest.fixture(scope="session")
def loaded_parts(real_parts):
    """The real run and index, loaded once: ``(run, index)``."""
    from artextract.similarity.index import EmbeddingIndex
    from artextract.training.inference import Run

    _, run_dir, index_dir, _ = real_parts
    return Run.load(run_dir), EmbeddingIndex.load(index_dir)


@pytest.fixture
def make_client(web_demo, web_outliers, loaded_parts, tmp_path):
    """Build a TestClient: ``make_client(run=True, index=True, outliers=True, allowed_hosts=TEST_HOSTS,
    ip_port=None, **config)`` with the real run and index (loaded once per session)."""
    from fastapi.testclient import TestClient

    from artextract.web.app import create_app
    from artextract.web.explorer import Explorer, WebConfig

    the_run, the_index = loaded_parts

    def make(run=True, index=True, outliers=True, catalog=None, allowed_hosts=TEST_HOSTS, ip_port=None, **cfg):
        catalog = catalog or web_demo
        if outliers is True:
            outliers = web_outliers
        config = WebConfig(catalog=catalog, outliers=outliers or None,
                           db=cfg.pop("db", tmp_path / "reviews.sqlite"),
                           thumb_cache=cfg.pop("thumb_cache", tmp_path / "thumbs"), **cfg)
        ex = Explorer(config, run=the_run if run else None, index=the_index if index else None)
        return TestClient(create_app(explorer=ex, allowed_hosts=allowed_hosts, ip_port=ip_port))

    return make


@pytest.fixture
def client(make_client):
    return make_client()


# ---------------------------------------------------------------------- live servers
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """The explorer in a subprocess on 127.0.0.1 and a free port (restartable, killable)."""

    def __init__(self, argv: list[str], log_path: Path, label: str):
        self.argv, self.log_path, self.label = argv, log_path, label
        self.proc = None
        self.port = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> "LiveServer":
        import subprocess

        self.port = free_port()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv + ["--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        return self.wait_ready() if wait else self

    def wait_ready(self, timeout: float = 180.0) -> "LiveServer":
        import time

        import httpx

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(self.url + "/api/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the explorer did not start: {self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers run (a crashed or killed server)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except Exception:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def server_factory(real_parts, tmp_path):
    """``server_factory(db=None, wait=True, extra=[])`` -> a started LiveServer: ``artextract serve`` itself,
    in a subprocess, on the real run and index."""
    servers: list[LiveServer] = []

    def make(db: Path | None = None, wait: bool = True, extra: list[str] | None = None) -> LiveServer:
        catalog, run_dir, index_dir, outliers = real_parts
        argv = [sys.executable, "-m", "artextract", "serve", "--catalog", str(catalog), "--run", str(run_dir),
                "--index", str(index_dir), "--outliers", str(outliers), "--log-level", "warning"]
        db = db or tmp_path / "reviews.sqlite"
        argv += ["--db", str(db), "--thumb-cache", str(tmp_path / f"thumbs{len(servers)}"), *(extra or [])]
        s = LiveServer(argv, tmp_path / f"server{len(servers)}.log", "real run and index")
        s.catalog = catalog
        servers.append(s)
        return s.start(wait)

    yield make
    for s in servers:
        s.stop()

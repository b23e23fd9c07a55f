"""Fixtures of the web explorer tests: a small demo corpus, an outlier table, and apps with stub or
real model parts."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from web_helpers import jpeg_bytes, make_outliers  # noqa: E402,F401
from web_stubs import StubIndex, StubRun, stub_find_similar  # noqa: E402

REAL_RUN = importlib.util.find_spec("artextract.training.inference") is not None
REAL_INDEX = (importlib.util.find_spec("artextract.similarity.index") is not None
              and importlib.util.find_spec("artextract.similarity.api") is not None)
NO_RUN_REASON = "artextract.training (the model run) is not installed in this checkout"
NO_INDEX_REASON = "artextract.similarity (index and find_similar) is not installed in this checkout"


@pytest.fixture(scope="session")
def web_demo(tmp_path_factory) -> Path:
    """A 40-painting demo corpus; returns the catalogue path. Read-only for tests."""
    from artextract.data.demo import generate_demo

    out = tmp_path_factory.mktemp("webdemo")
    generate_demo(out, n=40, size=128, seed=3, noise=0.1)
    return out / "catalog.parquet"


@pytest.fixture(scope="session")
def web_outliers(web_demo, tmp_path_factory) -> Path:
    return make_outliers(web_demo, tmp_path_factory.mktemp("outliers") / "outliers.csv")


@pytest.fixture
def make_client(web_demo, web_outliers, tmp_path):
    """Build a TestClient: ``make_client(run=True, index=True, outliers=True, **config)`` with stubs."""
    from fastapi.testclient import TestClient

    from artextract.data.catalog import Catalog
    from artextract.web.app import create_app
    from artextract.web.explorer import Explorer, WebConfig

    def make(run=True, index=True, outliers=True, catalog=None, **cfg):
        catalog = catalog or web_demo
        cat = Catalog.load(catalog)
        if outliers is True:
            outliers = web_outliers
        config = WebConfig(catalog=catalog, outliers=outliers or None,
                           db=cfg.pop("db", tmp_path / "reviews.sqlite"),
                           thumb_cache=cfg.pop("thumb_cache", tmp_path / "thumbs"), **cfg)
        ex = Explorer(config, run=StubRun(cat) if run else None, index=StubIndex(cat) if index else None,
                      similar_fn=stub_find_similar if index else None)
        return TestClient(create_app(explorer=ex))

    return make


@pytest.fixture
def client(make_client):
    return make_client()


# ---------------------------------------------------------------------- real run and index
@pytest.fixture(scope="session")
def real_parts(tmp_path_factory):
    """A real trained run (tiny_cnn, 2 epochs) and a real similarity index over a fresh 40-painting
    demo corpus: ``(catalog, run_dir, index_dir, outliers_csv)``."""
    if not REAL_RUN:
        pytest.skip(NO_RUN_REASON)
    if not REAL_INDEX:
        pytest.skip(NO_INDEX_REASON)
    from artextract.cli import main
    from artextract.data.catalog import Catalog
    from artextract.data.demo import generate_demo
    from artextract.similarity.embed import RunEmbedder
    from artextract.similarity.index import index_catalog

    work = tmp_path_factory.mktemp("real")
    generate_demo(work / "demo", n=40, size=128, seed=3, noise=0.1)
    catalog = work / "demo" / "catalog.parquet"
    run_dir, index_dir = work / "run", work / "index"
    rc = main(["train", "--catalog", str(catalog), "--out", str(run_dir), "--backbone", "tiny_cnn",
               "--pretrained", "none", "--epochs", "2", "--cache-size", "64", "--no-progress"])
    assert rc == 0, "training the tiny test run failed"
    index_catalog(Catalog.load(catalog), RunEmbedder(run_dir), index_dir, progress=False, log=lambda *a: None)
    outliers = make_outliers(catalog, work / "outliers.csv")
    return catalog, run_dir, index_dir, outliers


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
def server_factory(request, web_demo, web_outliers, tmp_path):
    """``server_factory(db=None, real=None, wait=True)`` -> a started LiveServer: the real `artextract serve`
    with a real run and index when those packages are installed (``real=None``), else (or with
    ``real=False``) the same app with the stub run and index, which starts much faster."""
    servers: list[LiveServer] = []
    have_real = REAL_RUN and REAL_INDEX

    def make(db: Path | None = None, real: bool | None = None, wait: bool = True) -> LiveServer:
        real = have_real if real is None else (real and have_real)
        if real:
            catalog, run_dir, index_dir, outliers = request.getfixturevalue("real_parts")
            argv = [sys.executable, "-m", "artextract", "serve", "--catalog", str(catalog), "--run", str(run_dir),
                    "--index", str(index_dir), "--outliers", str(outliers), "--log-level", "warning"]
            label = "real run and index"
        else:
            catalog, outliers = web_demo, web_outliers
            argv = [sys.executable, str(Path(__file__).parent / "web_stub_server.py"), "--catalog", str(catalog),
                    "--outliers", str(outliers)]
            label = "stub run and index" + ("" if have_real else
                                            f" ({NO_RUN_REASON if not REAL_RUN else NO_INDEX_REASON})")
        db = db or tmp_path / "reviews.sqlite"
        argv += ["--db", str(db), "--thumb-cache", str(tmp_path / f"thumbs{len(servers)}")]
        s = LiveServer(argv, tmp_path / f"server{len(servers)}.log", label)
        s.catalog = catalog
        servers.append(s)
        return s.start(wait)

    make.have_real = have_real
    yield make
    for s in servers:
        s.stop()

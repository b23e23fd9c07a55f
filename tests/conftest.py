"""Shared test helpers.

- ``shared_data`` (fixture): Path to ``../shared/data`` (the team's real WikiArt/NGA files, never
  copied into the project); the test is skipped when it is absent. ``ARTEXTRACT_SHARED_DATA=PATH``
  points it elsewhere; ``ARTEXTRACT_SHARED_DATA=/nonexistent`` runs the suite as a clean clone does.
  Every behaviour is tested on fixtures built in ``tests/``; the shared data only adds checks on
  real files.
- ``@pytest.mark.shared_data``: the same skip for tests that only build paths themselves
  (``SHARED_DATA`` below).
- ``demo_catalog`` (fixture, session): a small synthetic demo corpus (120 images, 64 px), generated
  once per run; treat it as read-only (copy it, or ``Catalog.subset``, before changing anything).
- ``tiny_run`` (fixture, session): one run trained once per session by ``artextract train`` on a
  copy of that corpus (``tiny_cnn``, random init, 64 px, 10 epochs, all four tasks), as
  ``TinyRun(run, catalog)``; read-only: tests that write (``evaluate``) give their own ``--out``.
  Tests of training itself train their own runs.
- ``run_copy`` (fixture): a private copy of ``tiny_run`` and its catalogue, for tests that write into a run.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NamedTuple

import pytest

SHARED_DATA = Path(os.environ.get("ARTEXTRACT_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
SHARED_DATA_REASON = "../shared/data not found: the shared WikiArt/NGA data is only present in the team's workspace"


def shared_data_available() -> bool:
    return SHARED_DATA.is_dir()


def pytest_configure(config):
    config.addinivalue_line("markers", "shared_data: needs ../shared/data (skipped when it is absent)")


def pytest_runtest_setup(item):
    if item.get_closest_marker("shared_data") is not None and not shared_data_available():
        pytest.skip(SHARED_DATA_REASON)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not shared_data_available():
        pytest.skip(SHARED_DATA_REASON)
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_catalog(tmp_path_factory):
    from artextract.data.demo import generate_demo

    return generate_demo(tmp_path_factory.mktemp("demo"), n=120, size=64)


class TinyRun(NamedTuple):
    run: Path        # the run folder
    catalog: Path    # the catalogue it was trained on (a copy of demo_catalog)


# the session's tiny run: learns in seconds (a high learning rate, no EMA) so tests can check it learned
TINY_RUN_ARGS = ["--backbone", "tiny_cnn", "--pretrained", "none", "--cache-size", "64", "--image-size", "64",
                 "--epochs", "10", "--lr", "1e-2", "--ema", "0", "--proj", "16", "--hidden", "16",
                 "--batch-size", "32", "--no-refit", "--no-progress"]


@pytest.fixture(scope="session")
def tiny_run(demo_catalog, tmp_path_factory) -> TinyRun:
    from artextract.cli import main

    root = tmp_path_factory.mktemp("tiny_run")
    shutil.copytree(Path(demo_catalog.path).parent, root / "demo", ignore=shutil.ignore_patterns("*.cache"))
    catalog = root / "demo" / "catalog.parquet"
    assert main(["train", "--catalog", str(catalog), "--out", str(root / "run"), *TINY_RUN_ARGS]) == 0
    return TinyRun(root / "run", catalog)


@pytest.fixture()
def run_copy(tiny_run, tmp_path):
    """A private copy of the session's tiny run and its catalogue, the run's config pointing at the copy:
    ``(run folder, catalogue path)``, for tests that write into a run (evaluations)."""
    import json
    shutil.copytree(tiny_run.run, tmp_path / "run", ignore=shutil.ignore_patterns("eval-*"))  # others evaluate it
    shutil.copytree(tiny_run.catalog.parent, tmp_path / "demo",
                    ignore=shutil.ignore_patterns("*.cache", "*.cache-location"))
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    cfg["catalog"] = str(tmp_path / "demo" / "catalog.parquet")
    (tmp_path / "run" / "config.json").write_text(json.dumps(cfg))
    return tmp_path / "run", tmp_path / "demo" / "catalog.parquet"

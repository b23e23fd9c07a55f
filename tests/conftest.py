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
"""
from __future__ import annotations

import os
from pathlib import Path

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

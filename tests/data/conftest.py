"""Fixtures shared by the importer and downloader tests of tests/data."""
from __future__ import annotations

import nga_fixtures as fx
import pytest


@pytest.fixture(scope="session")
def sample(tmp_path_factory) -> fx.Sample:
    """60 generated images named like the NGA sample, that the local IIIF server serves (read-only)."""
    return fx.generate_sample(tmp_path_factory.mktemp("nga_sample"), n=60)

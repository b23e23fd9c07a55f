"""Fixtures for the similarity tests: a 60-painting synthetic demo corpus and its tiny_cnn index
(random weights: fast, and enough for near-copy retrieval and round trips)."""
from __future__ import annotations

from pathlib import Path

import pytest

from artextract.job import Job


@pytest.fixture(scope="session")
def sim_demo(tmp_path_factory):
    from artextract.data.demo import generate_demo

    return generate_demo(tmp_path_factory.mktemp("simdemo"), n=60, size=64)


@pytest.fixture(scope="session")
def sim_index_dir(sim_demo, tmp_path_factory) -> Path:
    from artextract.similarity.embed import BackboneEmbedder
    from artextract.similarity.index import index_catalog

    out = tmp_path_factory.mktemp("simindex") / "demo.index"
    index_catalog(sim_demo, BackboneEmbedder("tiny_cnn", pretrained=False), out,
                  job=Job(progress=False, log=lambda *a: None))
    return out

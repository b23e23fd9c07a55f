"""One cache folder per catalogue: `prepare --cache DIR` records DIR beside the catalogue, and every
command that reads prepared images or feature stores uses it (or its own --cache) instead of decoding
the images again into the default CATALOG.cache."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

import artextract.data.cache as cache_mod
from artextract.cli import main
from artextract.data.cache import cache_location_file, default_cache_dir
from artextract.data.catalog import Catalog

TINY = ["--backbone", "tiny_cnn", "--pretrained", "none", "--cache-size", "64", "--image-size", "64",
        "--proj", "8", "--hidden", "8", "--batch-size", "16", "--epochs", "1", "--no-refit", "--no-progress"]


@pytest.fixture
def small(demo_catalog, tmp_path) -> Path:
    """24 demo paintings in a catalogue of their own, with no cache anywhere yet."""
    shutil.copytree(Path(demo_catalog.path).parent, tmp_path / "demo", ignore=shutil.ignore_patterns("*.cache"))
    cat = Catalog.load(tmp_path / "demo" / "catalog.parquet")
    return cat.subset(np.arange(len(cat)) < 24).save(tmp_path / "demo" / "small.parquet")


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """The image files decoded into a prepared cache from now on (24 images: decoded in this process)."""
    seen: list[str] = []
    real = cache_mod.decode_resized

    def counting(path, size):
        seen.append(str(path))
        return real(path, size)

    monkeypatch.setattr(cache_mod, "decode_resized", counting)
    return seen


@pytest.mark.slow
def test_train_uses_the_cache_that_prepare_was_told(small, tmp_path, decodes, caplog):
    cache = tmp_path / "scratch" / "cache"
    default = small.with_suffix(".cache")
    assert main(["prepare", "--catalog", str(small), "--size", "64", "--cache", str(cache)]) == 0
    assert len(decodes) == 24 and (cache / "s64" / "index.json").is_file() and not default.exists()
    record = cache_location_file(small)
    assert record == small.with_suffix(".cache-location")
    assert json.loads(record.read_text()) == {"cache": str(cache.resolve())}
    decodes.clear()
    caplog.set_level(logging.INFO, logger="artextract")
    run = tmp_path / "run"
    assert main(["train", "--catalog", str(small), "--out", str(run), *TINY]) == 0
    # no second cache beside the catalogue, no image decoded again; the features are stored in DIR
    assert not default.exists() and decodes == []
    assert list((cache / "features").iterdir())
    assert f"using the prepared cache at {cache.resolve()}" in caplog.text
    # the other readers of the catalogue find it too: evaluate, index (a run's embedding) and prepare itself
    assert main(["evaluate", "--run", str(run), "--catalog", str(small), "--out", str(tmp_path / "ev")]) == 0
    assert main(["index", "--catalog", str(small), "--run", str(run), "--out", str(tmp_path / "index"),
                 "--no-progress"]) == 0
    caplog.clear()
    assert main(["prepare", "--catalog", str(small), "--size", "64"]) == 0
    assert "0 added, 24 already prepared" in caplog.text
    assert not default.exists() and decodes == []


def test_a_commands_own_cache_wins_and_prepare_can_go_back_to_the_default(small, tmp_path, decodes):
    recorded, other = tmp_path / "recorded", tmp_path / "other"
    assert main(["prepare", "--catalog", str(small), "--size", "64", "--cache", str(recorded)]) == 0
    decodes.clear()
    # --cache of one command: that run reads and fills OTHER; the record stays as it was
    assert main(["duplicates", "--catalog", str(small), "--backbone", "none", "--cache-size", "64",
                 "--cache", str(other), "--no-progress"]) == 0
    assert len(decodes) == 24 and (other / "s64" / "index.json").is_file()
    assert default_cache_dir(Catalog.load(small)) == recorded.resolve()
    assert default_cache_dir(Catalog.load(small, cache_dir=other)) == other
    assert default_cache_dir(Catalog.load(small, cache_dir=other).subset([True] * 24)) == other
    decodes.clear()
    assert main(["duplicates", "--catalog", str(small), "--backbone", "none", "--cache-size", "64",
                 "--no-progress"]) == 0
    assert decodes == []  # the recorded folder: prepared already
    # `prepare --cache CATALOG.cache` chooses the default again: the record goes
    default = small.with_suffix(".cache")
    assert main(["prepare", "--catalog", str(small), "--size", "64", "--cache", str(default)]) == 0
    assert not cache_location_file(small).exists()
    assert default_cache_dir(Catalog.load(small)) == default


def test_an_unreadable_record_is_ignored_with_a_warning(small, caplog):
    cache_location_file(small).write_text("not json")
    caplog.set_level(logging.INFO, logger="artextract")
    assert default_cache_dir(Catalog.load(small)) == small.with_suffix(".cache")
    assert f"ignoring {cache_location_file(small)}" in caplog.text


def test_serve_reads_its_thumbnails_from_the_chosen_cache(small, tmp_path):
    from artextract.web.explorer import Explorer, WebConfig

    cache = tmp_path / "scratch"
    assert main(["prepare", "--catalog", str(small), "--size", "64", "--cache", str(cache)]) == 0
    for cfg in (WebConfig(catalog=small, db=tmp_path / "r.sqlite"),                      # the recorded folder
                WebConfig(catalog=small, db=tmp_path / "r.sqlite", cache=str(cache))):  # serve --cache
        ex = Explorer(cfg)
        assert ex.images._prepared.dir.resolve() == cache.resolve() / "s64"   # thumbnails from prepared images
        assert ex.images.disk_dir.resolve() == cache.resolve() / "web-thumbs"
    assert not small.with_suffix(".cache").exists()

"""Every `--json` prints exactly one JSON document on stdout, on a cold cache too: the messages of
prepare and feature extraction that run first go to stderr.

Each command runs on a fresh copy of a demo corpus (no prepared images, no features) with the cheap
random-init backbone; stdout and stderr are captured at the file-descriptor level."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from artextract.cli import main

TINY = ["--backbone", "tiny_cnn", "--pretrained", "none"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """`artextract demo-data --n 60 --size 64`, never touched afterwards (copied per test)."""
    out = tmp_path_factory.mktemp("json_corpus") / "demo"
    assert main(["demo-data", "--out", str(out), "--n", "60", "--size", "64"]) == 0
    return out


@pytest.fixture()
def cold(corpus, tmp_path) -> Path:
    """A private copy of the corpus with a cold cache; returns its catalogue."""
    dst = tmp_path / "demo"
    shutil.copytree(corpus, dst, ignore=shutil.ignore_patterns("*.cache"))
    return dst / "catalog.parquet"


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory) -> Path:
    """A tiny trained run on another copy of the corpus."""
    base = tmp_path_factory.mktemp("json_run")
    shutil.copytree(corpus, base / "demo", ignore=shutil.ignore_patterns("*.cache"))
    out = base / "run"
    assert main(["train", "--catalog", str(base / "demo" / "catalog.parquet"), "--out", str(out), *TINY,
                 "--cache-size", "64", "--image-size", "64", "--epochs", "2", "--no-progress"]) == 0
    return out


def one_json(capfd, argv: list[str]):
    """Run a command; its stdout must be exactly one JSON document. Returns (document, stderr)."""
    capfd.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capfd.readouterr()
    assert rc == 0, err
    return json.loads(out), err


def test_catalog_info(cold, capfd):
    doc, _ = one_json(capfd, ["catalog", "info", cold, "--json"])
    assert doc["rows"] == 60 and "style" in doc["tasks"]


@pytest.mark.slow
def test_evaluate_on_a_cold_cache(run, cold, capfd):
    doc, err = one_json(capfd, ["evaluate", "--run", run, "--catalog", cold, "--json"])
    assert set(doc) == {"artist", "genre", "style", "timeframe"} and doc["style"]["n"] > 0
    assert "preparing" in err and "computing tiny_cnn features" in err  # the cold cache was filled first


def test_predict(run, cold, capfd):
    doc, _ = one_json(capfd, ["predict", "--run", run, Path(cold).parent / "images", "--top-k", "2", "--json"])
    assert len(doc["results"]) == 60 and not doc["errors"]


def test_outliers_summary_on_a_cold_cache(cold, tmp_path, capfd):
    doc, err = one_json(capfd, ["outliers", "--catalog", cold, "--task", "style,genre", *TINY,
                                "--out", tmp_path / "issues.csv", "--json"])
    assert [t["task"] for t in doc["tasks"]] == ["style", "genre"]
    assert doc["rows"] == 120 and doc["flagged"] == sum(t["flagged"] for t in doc["tasks"])
    assert all(len(t["top"]) <= 5 and t["checked"] == 60 for t in doc["tasks"])
    assert "computing tiny_cnn features" in err


def test_duplicates_summary_on_a_cold_cache(cold, tmp_path, capfd):
    doc, err = one_json(capfd, ["duplicates", "--catalog", cold, *TINY, "--out", tmp_path / "pairs.csv", "--json"])
    assert doc["pairs"] == sum(doc["relations"].values()) and doc["out"].endswith("pairs.csv")
    assert "computing tiny_cnn features" in err


def test_similarity_commands(cold, tmp_path, capfd):
    index = tmp_path / "demo.index"
    capfd.readouterr()
    assert main(["index", "--catalog", str(cold), *TINY, "--out", str(index)]) == 0
    out, err = capfd.readouterr()
    assert out == "" and "built" in err  # a command without a result table prints nothing on stdout
    doc, _ = one_json(capfd, ["similar", "--index", index, "--id", "demo_0003", "-k", "4", "--json"])
    assert len(doc["results"]) == 4
    doc, _ = one_json(capfd, ["similar", "--index", index, "--all", "-k", "2", "--json"])
    assert len(doc) == 60
    doc, _ = one_json(capfd, ["evaluate-retrieval", "--index", index, "--catalog", cold, "--relevance", "style",
                              "--json"])
    assert doc["queries"] == 60

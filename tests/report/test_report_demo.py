"""`artextract demo` end to end at a reduced size, and the report's sections."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from artextract.cli import main
from artextract.data.catalog import Catalog
from artextract.report.build import SECTIONS


@pytest.mark.slow
def test_demo_end_to_end_writes_a_full_report(tmp_path, capsys):
    out = tmp_path / "demo-output"
    assert main(["demo", "--out", str(out), "--n", "60", "--epochs", "3"]) == 0
    printed = capsys.readouterr().out
    html = (out / "report.html").read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in html, section
    # metrics for every task, confusion matrices and the map are real pictures
    for task in ("artist", "genre", "style", "timeframe"):
        assert f"<td>{task}</td>" in html
    assert len(re.findall(r'<img class="cm"[^>]*src="data:image/png;base64,', html)) == 5  # 4 tasks + map
    assert "synthetic demo corpus" in html
    assert (out / "run" / "eval-val" / "metrics.json").exists()
    # the next commands are printed
    assert "artextract serve --catalog" in printed and "artextract ingest wikiart" in printed
    # a second run reuses what is done: the weights, the checkpoint, the index and the corpus are not
    # written again (the run's config.json and split.json are rewritten with the same content)
    rewritten = ("config.json", "split.json")

    def stamps():
        files = [p for p in (*(out / "run").rglob("*"), *(out / "index").rglob("*"), out / "data" / "catalog.parquet")
                 if p.is_file() and "eval-" not in str(p) and p.name not in rewritten]
        return {str(p): p.stat().st_mtime_ns for p in files}

    before = stamps()
    contents = {n: json.loads((out / "run" / n).read_text()) for n in rewritten}
    assert {"model.safetensors", "state.pt", "last.safetensors"} <= {Path(k).name for k in before}
    assert any("/index/" in k for k in before)
    capsys.readouterr()
    assert main(["demo", "--out", str(out), "--n", "60", "--epochs", "3"]) == 0
    again = capsys.readouterr().out
    assert stamps() == before
    assert {n: json.loads((out / "run" / n).read_text()) for n in rewritten} == contents
    assert "index for similarity search" not in again and "generate the synthetic corpus" not in again


def test_demo_fresh_redoes_every_step(tmp_path, monkeypatch, capsys):
    """`demo` reuses what a folder holds (the corpus, the index, the run's checkpoint); `demo --fresh`
    deletes the folder first and runs every step again. The steps themselves are recorded, not run
    (the test above runs them)."""
    import artextract.cli.commands.demo as demo_command
    import artextract.report.build as build

    from artextract.data.demo import generate_demo

    steps: list[tuple[str, list[str]]] = []
    real_step = demo_command._step

    def step(name, argv):
        steps.append((name, argv))
        if argv[0] == "demo-data":      # the one step run for real (seconds): the report reads the catalogue
            real_step(name, argv + ["--size", "32"])

    monkeypatch.setattr(demo_command, "_step", step)
    monkeypatch.setattr(build, "build_report", lambda out, **kw: Path(out) / "report.html")
    out = tmp_path / "demo-output"
    generate_demo(out / "data", n=6, size=32)
    from artextract.similarity.index import EmbeddingIndex

    EmbeddingIndex.build(["a", "b", "c"], np.eye(3, dtype=np.float32)).save(out / "index")  # a whole index
    for part in ("run/state.pt", "notes.txt"):
        (out / part).parent.mkdir(parents=True, exist_ok=True)
        (out / part).write_text("from an earlier run")

    def names():
        return [n for n, _ in steps]

    def train_argv():
        return next(a for n, a in steps if n.startswith("train"))

    assert main(["demo", "--out", str(out), "--n", "20", "--epochs", "1", "--no-progress"]) == 0
    assert "generate the synthetic corpus" not in names() and "index for similarity search" not in names()
    assert "--resume" in train_argv() and (out / "notes.txt").exists()
    steps.clear()
    assert main(["demo", "--out", str(out), "--n", "20", "--epochs", "1", "--no-progress", "--fresh"]) == 0
    assert names()[0] == "generate the synthetic corpus" and "index for similarity search" in names()
    assert "--resume" not in train_argv() and not (out / "notes.txt").exists() and not (out / "run").exists()
    assert steps[0][1][steps[0][1].index("--n") + 1] == "20" and len(Catalog.load(out / "data" / "catalog.parquet")) == 20
    assert "Report: " in capsys.readouterr().out


def _record_steps(monkeypatch, run=()):
    """Record the demo's steps (``[(name, argv)]``), running for real only those whose command is in ``run``;
    the report is not written."""
    import artextract.cli.commands.demo as demo_command
    import artextract.report.build as build

    steps: list[tuple[str, list[str]]] = []
    real_step = demo_command._step

    def step(name, argv):
        steps.append((name, argv))
        if argv[0] in run:
            real_step(name, argv)

    monkeypatch.setattr(demo_command, "_step", step)
    monkeypatch.setattr(build, "build_report", lambda out, **kw: Path(out) / "report.html")
    return steps


def test_demo_cache_goes_to_every_step_that_reads_prepared_images(tmp_path, monkeypatch):
    from artextract.data.demo import generate_demo

    steps = _record_steps(monkeypatch)
    out, cache = tmp_path / "demo-output", tmp_path / "scratch" / "demo.cache"
    generate_demo(out / "data", n=6, size=32)
    assert main(["demo", "--out", str(out), "--no-progress", "--cache", str(cache)]) == 0
    given = {argv[0]: argv[argv.index("--cache") + 1] for _, argv in steps if "--cache" in argv}
    assert given == {c: str(cache) for c in ("prepare", "train", "evaluate", "outliers", "index")}


@pytest.mark.slow
def test_demo_rebuilds_a_half_built_index(tiny_run, tmp_path, monkeypatch, caplog):
    """An index folder that a killed `artextract index` left behind is found incomplete, said so, and
    rebuilt by the demo's index step (run for real, on the session's tiny run)."""
    import logging

    from artextract.similarity.index import EmbeddingIndex, index_status

    out = tmp_path / "demo-output"
    shutil.copytree(tiny_run.catalog.parent, out / "data")  # the catalogue, its images and their cache
    shutil.copytree(tiny_run.run, out / "run")
    cat, index = out / "data" / "catalog.parquet", out / "index"
    n = len(Catalog.load(cat))
    assert main(["index", "--catalog", str(cat), "--run", str(out / "run"), "--out", str(index),
                 "--no-progress"]) == 0

    def drop_ids(d):  # an update killed after index.faiss and before ids.json and meta.json
        ids = json.loads((d / "ids.json").read_text())
        (d / "ids.json").write_text(json.dumps({"ids": ids["ids"][:-5], "paths": ids["paths"][:-5]}))

    def truncate(d):
        data = (d / "index.faiss").read_bytes()
        (d / "index.faiss").write_bytes(data[: len(data) // 3])

    caplog.set_level(logging.INFO, logger="artextract")
    for damage in (lambda d: (d / "index.faiss").unlink(), drop_ids, truncate):
        damage(index)
        assert not index_status(index).complete
        steps = _record_steps(monkeypatch, run=("index", "evaluate-retrieval"))
        caplog.clear()
        assert main(["demo", "--out", str(out), "--no-progress"]) == 0
        assert f"the index {index} is incomplete" in caplog.text and "rebuilding it" in caplog.text
        argv = next(a for _, a in steps if a[0] == "index")
        assert "--rebuild" in argv
        assert index_status(index).complete
        idx = EmbeddingIndex.load(index)
        assert len(idx) == n and len(idx.search_id(idx.ids[0], k=5)) == 5
    # a whole index is left as it is
    steps = _record_steps(monkeypatch)
    assert main(["demo", "--out", str(out), "--no-progress"]) == 0
    assert "index" not in [a[0] for _, a in steps]

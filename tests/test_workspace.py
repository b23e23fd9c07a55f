"""The workspace: one module holds the path rules; every artefact says whether it is missing, partial,
complete or stale; a stale evaluation is rebuilt, never shown as current; ``artextract status``."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from artextract import workspace
from artextract.cli import main
from artextract.data.catalog import Catalog

SRC = Path(__file__).resolve().parents[1] / "src" / "artextract"


def test_one_module_holds_the_path_rules():
    # the artefacts' file and folder names are written as strings in workspace.py alone
    pattern = re.compile(r"""["'](?:\.cache|state\.pt|index\.faiss|ids\.json|engine\.json|web-thumbs|"""
                         r"""model\.safetensors|last\.safetensors|split\.json|\.cache-location)["']|f["']eval-""")
    offenders = []
    for f in SRC.rglob("*.py"):
        if f.name == "workspace.py":
            continue
        for i, line in enumerate(f.read_text().splitlines(), 1):
            if pattern.search(line.split("#")[0]):
                offenders.append(f"{f.relative_to(SRC)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


@pytest.mark.slow
def test_an_evaluation_from_another_catalogue_is_stale_and_the_report_rebuilds_it(run_copy, tmp_path, capsys):
    run, cat_path = run_copy
    assert workspace.evaluation_status(run, "val", cat_path).status == workspace.MISSING
    assert main(["evaluate", "--run", str(run), "--catalog", str(cat_path)]) == 0
    assert workspace.evaluation_status(run, "val", cat_path).status == workspace.COMPLETE
    before = json.loads((run / "eval-val" / "metrics.json").read_text())
    # another catalogue: the same paintings, every val style label moved to another class
    cat = Catalog.load(cat_path)
    classes = cat.task("style").classes
    val = cat.df["split"] == "val"
    cat.df.loc[val, "style"] = [classes[(classes.index(v) + 1) % len(classes)] for v in cat.df.loc[val, "style"]]
    other = cat.save(tmp_path / "demo" / "relabelled.parquet")
    st = workspace.evaluation_status(run, "val", other)
    assert st.status == workspace.STALE and "another catalogue" in st.detail
    capsys.readouterr()
    assert main(["report", "--run", str(run), "--catalog", str(other), "--out", str(tmp_path / "rep")]) == 0
    assert "is stale: made from another catalogue" in capsys.readouterr().err
    after = json.loads((run / "eval-val" / "metrics.json").read_text())
    assert after["style"]["accuracy"] != before["style"]["accuracy"]       # the report shows the new catalogue's
    html = (tmp_path / "rep" / "report.html").read_text()
    assert f"{after['style']['accuracy']:.3f}" in html
    assert workspace.evaluation_status(run, "val", other).status == workspace.COMPLETE
    # changed weights make it stale too
    (run / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes() + b" ")
    assert "weights changed" in workspace.evaluation_status(run, "val", other).detail


@pytest.mark.slow
def test_status_lists_every_artefact_and_its_state(run_copy, tmp_path, capsys):
    run, cat_path = run_copy
    assert main(["status", "--catalog", str(cat_path)]) == 0
    out = capsys.readouterr().out
    assert "catalogue" in out and "prepared images  missing" in out and "build: artextract prepare" in out
    assert main(["index", "--catalog", str(cat_path), "--out", str(tmp_path / "idx"), "--backbone", "tiny_cnn",
                 "--pretrained", "none", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["status", "--index", str(tmp_path / "idx"), "--json"]) == 0
    items = json.loads(capsys.readouterr().out)                           # one JSON document
    kinds = {(a["kind"], a["status"]) for a in items}
    assert ("index", "complete") in kinds and ("catalogue", "complete") in kinds   # the index found its catalogue
    assert any(k == "feature store" and s == "complete" for k, s in kinds)
    (tmp_path / "idx" / "index.faiss").unlink()                            # a killed build's leftovers
    assert main(["status", "--index", str(tmp_path / "idx"), "--cache", str(cat_path.with_suffix(".cache"))]) == 0
    assert re.search(r"index\s+partial", capsys.readouterr().out)
    assert main(["status", "--run", str(run)]) == 0
    assert re.search(r"run\s+complete", capsys.readouterr().out)
    (run / "model.safetensors").unlink()
    assert main(["status", "--run", str(run)]) == 0
    assert re.search(r"run\s+partial.*no weights", capsys.readouterr().out)
    assert main(["status"]) == 2


def test_path_rules():
    assert workspace.default_cache_path("a/w.parquet") == Path("a/w.cache")
    assert workspace.cache_location_file("a/w.parquet") == Path("a/w.cache-location")
    assert workspace.eval_dir("r", "test") == Path("r/eval-test")
    assert workspace.prepared_dir("c", 256) == Path("c/s256")
    assert workspace.features_dir("c", "x") == Path("c/features/x")


def test_the_design_docs_stores_table_is_the_workspaces_own():
    doc = (SRC.parents[1] / "docs" / "design.md").read_text()
    table = doc.split("<!-- workspace-table:start -->\n")[1].split("\n<!-- workspace-table:end -->")[0]
    assert table == workspace.layout_table()


def test_a_workspace_gathers_each_catalogues_cache_and_review_database(tmp_path, monkeypatch):
    monkeypatch.delenv(workspace.WORKSPACE_ENV, raising=False)
    monkeypatch.delenv("ARTEXTRACT_ENGINE_CACHE", raising=False)
    a, b = tmp_path / "a" / "catalog.parquet", tmp_path / "b" / "catalog.parquet"
    assert workspace.default_cache_path(a) == tmp_path / "a" / "catalog.cache"
    assert workspace.review_db_path(a) == tmp_path / "a" / "catalog.reviews.sqlite"
    with workspace.using(tmp_path / "ws") as ws:
        assert ws == (tmp_path / "ws").resolve()
        ca, cb = workspace.default_cache_path(a), workspace.default_cache_path(b)
        assert ca.parent == ws / "caches" and ca != cb                 # same file name, different catalogues
        assert ca.name.startswith("catalog-")
        assert workspace.review_db_path(a).parent == ws / "reviews"
        assert workspace.engine_cache_dir() == ws / "engines"
        with workspace.using(None):                                     # a command run from inside a command
            assert workspace.default_cache_path(a) == ca
    assert workspace.default_cache_path(a) == tmp_path / "a" / "catalog.cache"
    monkeypatch.setenv(workspace.WORKSPACE_ENV, str(tmp_path / "env"))
    assert workspace.default_cache_path(a).parent == (tmp_path / "env" / "caches").resolve()


def test_every_command_honours_workspace(demo_catalog, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(workspace.WORKSPACE_ENV, raising=False)
    shutil.copytree(Path(demo_catalog.path).parent, tmp_path / "demo",
                    ignore=shutil.ignore_patterns("*.cache", "*.cache-location"))
    cat = tmp_path / "demo" / Path(demo_catalog.path).name
    ws = tmp_path / "ws"
    assert main(["prepare", "--catalog", str(cat), "--size", "64", "--workspace", str(ws)]) == 0
    with workspace.using(ws):
        cache = workspace.default_cache_path(cat)
    assert workspace.prepared_dir(cache, 64).is_dir()
    assert not cat.with_suffix(".cache").exists()                      # nothing written beside the catalogue
    capsys.readouterr()
    assert main(["--workspace", str(ws), "status", "--catalog", str(cat), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert str(cache) in json.dumps(out)
    # without the workspace the same catalogue has no prepared images yet
    assert main(["status", "--catalog", str(cat), "--json"]) == 0
    assert str(cache) not in capsys.readouterr().out

"""The artefact layer: every artefact answers status, ensure and load, on real small artefacts (the demo
corpus, the session's tiny run)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from artextract import artefacts, workspace
from artextract.cli import main
from artextract.data.catalog import Catalog
from artextract.errors import ArtExtractError, NotBuilt
from artextract.job import Job


@pytest.fixture()
def catalog(demo_catalog, tmp_path):
    """A private copy of the demo corpus, with no cache yet."""
    shutil.copytree(Path(demo_catalog.path).parent, tmp_path / "demo",
                    ignore=shutil.ignore_patterns("*.cache", "*.cache-location"))
    return Catalog.load(tmp_path / "demo" / Path(demo_catalog.path).name)


def _job():
    said: list[str] = []
    return Job(progress=False, log=said.append), said


def test_prepared_images_missing_then_complete_after_ensure(catalog):
    images = artefacts.PreparedImages(catalog, 64)
    st = images.status()
    assert st.status == workspace.MISSING and st.path == str(workspace.prepared_dir(catalog.path.with_suffix(".cache"), 64))
    with pytest.raises(NotBuilt) as exc:
        images.load()
    assert exc.value.hint == f"artextract prepare --catalog {catalog.path} --size 64"
    assert isinstance(exc.value, ArtExtractError) and "build it with `artextract prepare" in str(exc.value)
    job, said = _job()
    cache = images.ensure(job)
    assert any(m.startswith(f"preparing {len(catalog)} image(s)") for m in said)
    assert images.status().status == workspace.COMPLETE
    assert cache.dir == images.load().dir and all(cache.has(k) for k in catalog.ids)
    said.clear()
    images.ensure(job)                                       # complete: nothing to do, nothing said
    assert said == []


def test_a_feature_store_is_built_by_ensure_and_loaded_after(catalog):
    store = artefacts.FeatureStore(catalog, "tiny_cnn", pretrained=False, size=64, cache_size=64)
    assert store.status().status == workspace.MISSING
    with pytest.raises(NotBuilt) as exc:
        store.load()
    assert exc.value.hint.startswith(f"artextract duplicates --catalog {catalog.path} --backbone tiny_cnn "
                                     "--pretrained none")
    job, said = _job()
    fs = store.ensure(job)
    assert any("preparing" in m for m in said) and any(m.startswith("computing tiny_cnn features") for m in said)
    st = store.status()
    assert st.status == workspace.COMPLETE and f"{len(catalog):,} of {len(catalog):,}" in st.detail
    loaded = store.load()
    assert loaded.available(catalog.ids).all()
    assert (loaded.get_pooled(catalog.ids[:3]) == fs.get_pooled(catalog.ids[:3])).all()
    # the same backbone's mirrored view is another store, still to build
    assert artefacts.FeatureStore(catalog, "tiny_cnn", pretrained=False, size=64, view="flip",
                                  cache_size=64).status().status == workspace.MISSING
    # `artextract status` finds the store with its spec
    found = artefacts.FeatureStore.found(catalog, st.path)
    assert found.status().status == workspace.COMPLETE and found.backbone == "tiny_cnn" and found.size == 64


def test_a_stale_feature_store_is_reported_and_rebuilt_by_ensure(catalog):
    store = artefacts.FeatureStore(catalog, "tiny_cnn", pretrained=False, size=64, cache_size=64)
    first = store.ensure(Job(progress=False))
    ref = first.get_pooled(catalog.ids[:4])
    for part in ("maps", "pooled", "stats"):                 # as if made from another weights file
        f = store.dir / part / "index.json"
        info = json.loads(f.read_text())
        info["meta"] = {**info["meta"], "weights": "/elsewhere/old.safetensors"}
        f.write_text(json.dumps(info))
    st = store.status()
    assert st.status == workspace.STALE and "/elsewhere/old.safetensors" in st.detail
    with pytest.raises(NotBuilt):
        store.load()                                         # never read as current
    job, said = _job()
    again = store.ensure(job)
    assert any(m.startswith("stale: feature store") and "rebuilding" in m for m in said)
    assert store.status().status == workspace.COMPLETE
    assert (again.get_pooled(catalog.ids[:4]) == ref).all()   # the same settings give the same features


def test_a_missing_run_cannot_be_ensured_and_names_the_train_command(tmp_path, tiny_run):
    missing = artefacts.Run(tmp_path / "nope")
    for call in (missing.load, missing.ensure):
        with pytest.raises(NotBuilt) as exc:
            call()
        assert exc.value.hint == f"artextract train --catalog CATALOG --out {tmp_path / 'nope'}"
        assert "does not exist" in str(exc.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotBuilt, match="not a training run"):
        artefacts.Run(tmp_path / "empty").load()
    run = artefacts.Run(tiny_run.run)
    assert run.status().status == workspace.COMPLETE
    assert run.catalog_path() == str(tiny_run.catalog.resolve())
    assert run.load().tasks.keys() == run.ensure().tasks.keys()


def test_a_missing_run_fails_the_command_with_the_train_command(tmp_path, capsys):
    assert main(["predict", "--run", str(tmp_path / "nope"), str(tmp_path / "x.jpg")]) == 2
    err = capsys.readouterr().err
    assert "run" in err and "does not exist" in err and "build it with `artextract train" in err


@pytest.mark.slow
def test_a_stale_evaluation_is_reported_and_rebuilt_by_ensure(run_copy):
    run, cat_path = run_copy
    ev = artefacts.Evaluation(run, cat_path, "val")
    assert ev.status().status == workspace.MISSING
    with pytest.raises(NotBuilt) as exc:
        ev.load()
    assert exc.value.hint == f"artextract evaluate --run {run} --catalog {cat_path} --split val"
    job, said = _job()
    before = ev.ensure(job)
    assert any(m.startswith("evaluating the run on val (no ") for m in said)
    assert ev.status().status == workspace.COMPLETE and before == ev.load()
    # the catalogue's bytes change: every val style label moved to another class, saved in place
    cat = Catalog.load(cat_path)
    classes = cat.task("style").classes
    val = cat.df["split"] == "val"
    cat.df.loc[val, "style"] = [classes[(classes.index(v) + 1) % len(classes)] for v in cat.df.loc[val, "style"]]
    cat.save(cat_path)
    st = ev.status()
    assert st.status == workspace.STALE and "another catalogue" in st.detail
    with pytest.raises(NotBuilt, match="is stale"):
        ev.load()                                            # never shown as current
    said.clear()
    after = ev.ensure(job)
    assert any("is stale: made from another catalogue" in m for m in said)
    assert ev.status().status == workspace.COMPLETE
    assert after["style"]["accuracy"] != before["style"]["accuracy"]
    assert after == json.loads((workspace.eval_dir(run, "val") / workspace.METRICS).read_text())


@pytest.mark.slow
def test_an_index_is_built_rebuilt_when_partial_and_loaded(catalog, tmp_path):
    from artextract.similarity.embed import BackboneEmbedder

    d = tmp_path / "idx"
    embedder = BackboneEmbedder("tiny_cnn", pretrained=False)
    index = artefacts.Index(d, catalog, embedder)
    assert index.status().status == workspace.MISSING
    with pytest.raises(NotBuilt) as exc:
        artefacts.Index(d).load()
    assert exc.value.hint == f"artextract index --catalog CATALOG --out {d}" and "does not exist" in str(exc.value)
    job, said = _job()
    built = index.ensure(job)
    assert len(built) == len(catalog) and index.summary["created"]
    assert artefacts.Index(d).status().status == workspace.COMPLETE
    assert artefacts.Index(d).catalog_path() == str(catalog.path.resolve())
    (d / workspace.INDEX_FILE).unlink()                      # a killed build's leftovers
    assert artefacts.Index(d).status().status == workspace.PARTIAL
    with pytest.raises(NotBuilt, match="partial"):
        artefacts.Index(d).load()
    said.clear()
    assert len(artefacts.Index(d, catalog, embedder).ensure(job)) == len(catalog)
    assert any(f"the index {d} is incomplete" in m and "rebuilding it" in m for m in said)
    assert len(artefacts.Index(d).load()) == len(catalog)
    other = BackboneEmbedder("tiny_cnn", pretrained=False, center=False)
    assert artefacts.Index(d, catalog, other).status().status == workspace.STALE


def test_an_outlier_table_and_a_review_store(tmp_path):
    table = artefacts.OutlierTable(tmp_path / "o.csv", tmp_path / "c.parquet")
    assert table.status().status == workspace.MISSING
    with pytest.raises(NotBuilt) as exc:
        table.ensure()                                        # made by `artextract outliers` only
    assert exc.value.hint == f"artextract outliers --catalog {tmp_path / 'c.parquet'} --task TASK --out {tmp_path / 'o.csv'}"
    (tmp_path / "o.csv").write_text("id,task,given_label\na,style,'=x\n")
    assert table.status().status == workspace.COMPLETE
    assert table.load()["given_label"].tolist() == ["=x"]   # as it was given, not as written for spreadsheets
    (tmp_path / "o.csv").write_text("a,b\n1,2\n")
    assert table.status().status == workspace.PARTIAL

    reviews = artefacts.ReviewStore(tmp_path / "c.parquet")
    assert reviews.path == workspace.review_db_path(tmp_path / "c.parquet")
    with pytest.raises(NotBuilt, match="no review database"):
        reviews.load()
    store = reviews.ensure()
    assert store.counts() is not None and reviews.status().status == workspace.COMPLETE
    assert reviews.load().path == store.path

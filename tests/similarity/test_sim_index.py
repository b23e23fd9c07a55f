"""EmbeddingIndex: build, save/load round trip for every index type, incremental add, self-exclusion,
near-copy retrieval, clear errors."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from artextract.data.images import ImageLoadError
from artextract.job import Job
from artextract.similarity import EmbeddingIndex, SimilarityError, find_similar
from artextract.similarity.embed import BackboneEmbedder, l2_normalize
from artextract.similarity.index import index_catalog


def clustered(n: int, d: int = 32, clusters: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    x = centres[rng.integers(clusters, size=n)] + 0.35 * rng.normal(size=(n, d))
    return l2_normalize(x)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_round_trip(tmp_path, kind):
    x = clustered(2000)
    ids = [f"p{i}" for i in range(len(x))]
    idx = EmbeddingIndex.build(ids, x, index_type=kind, paths=[f"/imgs/{i}.jpg" for i in ids])
    before = idx.search_vectors(x[:50], 10)
    idx.save(tmp_path / "ix")
    back = EmbeddingIndex.load(tmp_path / "ix")
    assert back.ids == ids and back.index_type == kind and len(back) == 2000
    assert back.paths[3].endswith("p3.jpg")
    np.testing.assert_allclose(back.vectors(), x, atol=1e-6)
    assert back.params == idx.params
    after = back.search_vectors(x[:50], 10)
    np.testing.assert_array_equal(before[1], after[1])
    meta = json.loads((tmp_path / "ix" / "meta.json").read_text())
    assert meta["count"] == 2000 and meta["index_type"] == kind
    # approximate search finds the exact neighbours at the default settings
    exact = EmbeddingIndex.build(ids, x).search_vectors(x[:200], 10)[1]
    got = back.search_vectors(x[:200], 10)[1]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, got)])
    assert recall >= 0.95, recall


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_add_updates_a_saved_index(tmp_path, kind):
    x = clustered(1500, seed=1)
    ids = [f"p{i}" for i in range(len(x))]
    idx = EmbeddingIndex.build(ids[:1000], x[:1000], index_type=kind)
    idx.save(tmp_path / "ix")
    idx = EmbeddingIndex.load(tmp_path / "ix")
    assert idx.add(ids[900:], x[900:]) == 500  # 100 already there are left alone
    idx.save(tmp_path / "ix")
    back = EmbeddingIndex.load(tmp_path / "ix")
    assert len(back) == 1500 and back.ids == ids
    assert back.search_id("p1400", 1)[0]["id"] != "p1400"
    np.testing.assert_allclose(back.vector("p1400"), x[1400], atol=1e-6)


def test_search_id_never_returns_itself_even_with_exact_duplicates():
    x = clustered(300, seed=2)
    x = np.concatenate([x, x[:5]])  # five exact duplicates under other ids
    ids = [f"p{i}" for i in range(300)] + [f"dup{i}" for i in range(5)]
    idx = EmbeddingIndex.build(ids, x)
    for i in range(5):
        res = idx.search_id(f"p{i}", 10)
        assert len(res) == 10 and all(r["id"] != f"p{i}" for r in res)
        assert res[0]["id"] == f"dup{i}" and res[0]["score"] == pytest.approx(1.0, abs=1e-5)
        assert [r["rank"] for r in res] == list(range(1, 11))
    # k larger than the collection: everything else, once
    small = EmbeddingIndex.build(ids[:4], x[:4])
    assert sorted(r["id"] for r in small.search_id("p0", 10)) == ["p1", "p2", "p3"]


def test_catalogue_index_near_copy_comes_first(sim_demo, sim_index_dir, tmp_path):
    idx = EmbeddingIndex.load(sim_index_dir)
    assert len(idx) == 60 and idx.meta["embedding"]["backbone"] == "tiny_cnn"
    assert idx.meta["catalogs"] == [str(sim_demo.path.resolve())]
    for item_id in ("demo_0007", "demo_0031", "demo_0052"):
        src = Image.open(idx.image_path(item_id)).convert("RGB")
        # a near-exact copy: re-encoded as a lower-quality JPEG, a little larger, slightly brighter
        copy = src.resize((src.width * 3 // 2, src.height * 3 // 2), Image.Resampling.BICUBIC)
        copy = Image.fromarray(np.clip(np.asarray(copy, np.float32) * 1.03, 0, 255).astype(np.uint8))
        buf = io.BytesIO()
        copy.save(buf, "JPEG", quality=70)
        for query in (buf.getvalue(), copy):
            res = find_similar(idx, image=query, k=5)
            assert res["results"][0]["id"] == item_id, res["results"][:2]
            assert res["results"][0]["score"] > 0.95
        # by id the painting itself is never returned
        res = find_similar(idx, id=item_id, k=59)
        assert len(res["results"]) == 59 and item_id not in {r["id"] for r in res["results"]}


def test_index_catalog_adds_only_new_paintings(sim_demo, tmp_path):
    emb = BackboneEmbedder("tiny_cnn", pretrained=False)
    first = sim_demo.subset(np.arange(len(sim_demo)) < 40)
    first.path = sim_demo.path
    out = tmp_path / "ix"
    idx, s = index_catalog(first, emb, out, job=Job(progress=False, log=lambda *a: None))
    assert s["created"] and s["added"] == 40
    v7 = idx.vector("demo_0007")
    msgs = []
    idx2, s2 = index_catalog(sim_demo, BackboneEmbedder("tiny_cnn", pretrained=False), out,
                             job=Job(progress=False, log=msgs.append))
    assert not s2["created"] and s2["added"] == 20 and s2["already"] == 40
    assert any("20 painting(s) not yet in" in m for m in msgs)
    assert len(EmbeddingIndex.load(out)) == 60
    np.testing.assert_allclose(idx2.vector("demo_0007"), v7, atol=1e-6)  # same centring as the first build
    # another model cannot be mixed into the same index
    with pytest.raises(SimilarityError, match="--rebuild"):
        index_catalog(sim_demo, BackboneEmbedder("tiny_cnn", pretrained=False, center=False), out,
                      job=Job(progress=False, log=lambda *a: None))


def test_clear_errors(sim_index_dir, tmp_path):
    idx = EmbeddingIndex.load(sim_index_dir)
    with pytest.raises(SimilarityError, match="'no_such_painting' is not in the index"):
        find_similar(idx, id="no_such_painting")
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not an image")
    with pytest.raises(ImageLoadError, match="not an image"):
        find_similar(idx, image=notes)
    with pytest.raises(ImageLoadError):
        find_similar(idx, image=b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(SimilarityError, match="does not exist"):
        find_similar(idx, image=tmp_path / "missing.jpg")
    with pytest.raises(SimilarityError, match="give one of an image, the id of an indexed painting, or a text"):
        find_similar(idx)
    with pytest.raises(SimilarityError, match="mode"):
        find_similar(idx, id="demo_0001", mode="xray")
    with pytest.raises(SimilarityError, match="does not exist"):
        EmbeddingIndex.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SimilarityError, match="not a similarity index"):
        EmbeddingIndex.load(tmp_path / "empty")
    with pytest.raises(SimilarityError, match="vectors"):
        idx.add(["x"], np.ones((1, idx.dim + 1), np.float32))


def test_interrupted_save_is_detected(tmp_path):
    x = clustered(100)
    idx = EmbeddingIndex.build([f"p{i}" for i in range(100)], x)
    idx.save(tmp_path / "ix")
    ids = json.loads((tmp_path / "ix" / "ids.json").read_text())
    ids["ids"] = ids["ids"][:90]
    ids["paths"] = ids["paths"][:90]
    (tmp_path / "ix" / "ids.json").write_text(json.dumps(ids))
    with pytest.raises(SimilarityError, match="inconsistent"):
        EmbeddingIndex.load(tmp_path / "ix")

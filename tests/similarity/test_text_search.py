"""Search by text: `artextract similar --text` and `find_similar(index, text=...)` over an index built
with an open_clip backbone (random weights: what must hold with any weights), and the refusals of an
index whose embedder has no text tower."""
from __future__ import annotations

import json

import numpy as np
import pytest

from artextract.cli import build_parser, main
from artextract.job import Job

QUERY = "a ship in a storm at night"


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def text_demo(tmp_path_factory):
    from artextract.data.demo import generate_demo

    return generate_demo(tmp_path_factory.mktemp("textdemo"), n=12, size=64)


@pytest.fixture(scope="module")
def clip_index_dir(text_demo, tmp_path_factory):
    """12 paintings embedded by a randomly initialised open_clip ViT-B-32 (built by the CLI, not centred)."""
    out = tmp_path_factory.mktemp("clipindex") / "clip.index"
    rc = main(["index", "--catalog", str(text_demo.path), "--backbone", "open_clip:ViT-B-32", "--pretrained", "none",
               "--no-center", "--out", str(out), "--no-progress"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def clip_index(clip_index_dir):
    from artextract.similarity.index import EmbeddingIndex

    return EmbeddingIndex.load(clip_index_dir)


@pytest.fixture(scope="module")
def tiny_index_dir(text_demo, tmp_path_factory):
    from artextract.similarity.embed import BackboneEmbedder
    from artextract.similarity.index import index_catalog

    out = tmp_path_factory.mktemp("tinyindex") / "tiny.index"
    index_catalog(text_demo, BackboneEmbedder("tiny_cnn", pretrained=False), out,
                  job=Job(progress=False, log=lambda *a: None))
    return out


def _cosine_order(index, text_vec):
    cos = index.vectors() @ text_vec
    order = np.argsort(-cos, kind="stable")
    return [index.ids[i] for i in order], cos[order]


def test_similar_help_shows_a_text_example():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    text = sub.choices["similar"].format_help()
    assert "--text" in text and "artextract similar --index clip.index --text 'a ship in a storm at night'" in text
    assert "open_clip" in sub.choices["index"].format_help()  # --no-center says open_clip is never centred


@pytest.mark.slow
def test_text_and_image_vectors_share_one_unit_sphere(clip_index, text_demo):
    emb = clip_index.embedder
    assert emb.has_text and clip_index.meta["embedding"]["center"] is False
    t = emb.embed_text([QUERY, "a portrait of a woman"])
    stored = clip_index.vectors()
    img = clip_index.embed_images([text_demo.image_path(text_demo.df["path"].iloc[0])])
    assert t.shape == (2, clip_index.dim) and stored.shape == (12, clip_index.dim) and img.shape == (1, clip_index.dim)
    for v in (t, stored, img):
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(t[0], t[1])  # two texts, two vectors


@pytest.mark.slow
def test_cli_text_ranking_is_the_cosine_order(clip_index_dir, clip_index, capsys):
    rc, out, err = run_cli(capsys, "similar", "--index", clip_index_dir, "--text", QUERY, "-k", "12", "--json")
    assert rc == 0
    res = json.loads(out)  # exactly one JSON document on stdout, nothing else
    assert res["mode"] == "image" and res["query"] == {"text": QUERY} and res["message"] is None
    want_ids, want_cos = _cosine_order(clip_index, clip_index.embedder.embed_text([QUERY])[0])
    assert [r["id"] for r in res["results"]] == want_ids  # every painting: a text excludes none
    np.testing.assert_allclose([r["score"] for r in res["results"]], want_cos, atol=1e-5)
    assert [r["rank"] for r in res["results"]] == list(range(1, 13)) and all(r["path"] for r in res["results"])

    rc, out, _ = run_cli(capsys, "similar", "--index", clip_index_dir, "--text", QUERY, "-k", "3")
    lines = out.splitlines()
    assert rc == 0 and lines[0] == f"text search for {QUERY!r}" and "rank" in lines[1]
    assert [ln.split()[2] for ln in lines[2:]] == want_ids[:3]


@pytest.mark.slow
def test_api_text_search_through_approximate_indexes(clip_index, text_demo, tmp_path, capsys):
    from artextract.similarity.api import find_similar
    from artextract.similarity.index import EmbeddingIndex

    want_ids, _ = _cosine_order(clip_index, clip_index.embedder.embed_text([QUERY])[0])
    res = find_similar(clip_index, text=QUERY, k=5)
    assert [r["id"] for r in res["results"]] == want_ids[:5]
    # the stored features are reused: other index types are built without the model
    for kind, extra in (("hnsw", []), ("ivf", ["--nlist", "2", "--nprobe", "2"])):
        out = tmp_path / f"{kind}.index"
        rc, _, _ = run_cli(capsys, "index", "--catalog", text_demo.path, "--backbone", "open_clip:ViT-B-32",
                           "--pretrained", "none", "--index-type", kind, *extra, "--out", out, "--no-progress")
        assert rc == 0
        idx = EmbeddingIndex.load(out)
        assert idx.index_type == kind and idx.meta["embedding"]["center"] is False  # open_clip: not centred by default
        res = find_similar(idx, text=QUERY, k=5)
        assert [r["id"] for r in res["results"]] == want_ids[:5], kind


def test_index_without_text_tower_refuses_in_words(tiny_index_dir, capsys):
    for extra in ([], ["--json"]):
        rc, out, err = run_cli(capsys, "similar", "--index", tiny_index_dir, "--text", QUERY, *extra)
        assert rc == 2 and out == ""
        assert "tiny_cnn, which has no text tower" in err and "open_clip:ViT-B-32" in err


def test_text_is_a_query_source_of_its_own(tiny_index_dir, capsys):
    for argv in (["--text", QUERY, "--id", "demo_0001"], ["--text", QUERY, "--all"], []):
        rc, out, err = run_cli(capsys, "similar", "--index", tiny_index_dir, *argv)
        assert rc == 2 and out == "" and "give one of IMAGE, --id ID, --text TEXT or --all" in err
    for mode in ("face", "pose"):
        rc, out, err = run_cli(capsys, "similar", "--index", tiny_index_dir, "--text", QUERY, "--mode", mode)
        assert rc == 2 and out == "" and f"cannot be used with --mode {mode}" in err
    rc, out, err = run_cli(capsys, "similar", "--index", tiny_index_dir, "--text", QUERY, "--draw", "drawn")
    assert rc == 2 and out == "" and "a text query has no image to draw" in err


def test_api_refusals(tiny_index_dir, tmp_path):
    from artextract.similarity.api import MAX_TEXT_CHARS, find_similar, text_search_unavailable
    from artextract.similarity.embed import RunEmbedder, TextSearchUnavailable
    from artextract.similarity.index import EmbeddingIndex, SimilarityError

    tiny = EmbeddingIndex.load(tiny_index_dir)
    with pytest.raises(TextSearchUnavailable, match="tiny_cnn, which has no text tower"):
        find_similar(tiny, text=QUERY)
    with pytest.raises(TextSearchUnavailable, match="no text tower"):
        tiny.embedder.embed_text([QUERY])
    for bad, why in (("   ", "empty"), ("x" * (MAX_TEXT_CHARS + 1), f"the limit is {MAX_TEXT_CHARS}")):
        with pytest.raises(SimilarityError, match=why):
            find_similar(tiny, text=bad)
    with pytest.raises(SimilarityError, match="give one of"):
        find_similar(tiny, text=QUERY, id="demo_0001")
    with pytest.raises(SimilarityError, match="cannot be used with mode 'face'"):
        find_similar(tiny, text=QUERY, mode="face")

    # a trained run's embedding and precomputed vectors have no text tower either
    vecs = np.eye(3, 4, dtype=np.float32)
    run_index = EmbeddingIndex.build(["a", "b", "c"], vecs, embedder=RunEmbedder(tmp_path / "run"))
    assert "trained run" in text_search_unavailable(run_index)
    with pytest.raises(TextSearchUnavailable, match="no text tower; text search needs an index built with an "
                                                     "open_clip backbone"):
        find_similar(run_index, text=QUERY)
    assert "no text tower" in text_search_unavailable(EmbeddingIndex.build(["a", "b", "c"], vecs))

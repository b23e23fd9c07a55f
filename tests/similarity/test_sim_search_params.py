"""`index --nprobe/--ef-search/--pq-m` and `similar`/`evaluate-retrieval --nprobe/--ef-search` end to
end: each is recorded where it belongs and changes what the search does."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from artextract.cli import main
from artextract.data.catalog import Catalog
from artextract.similarity import EmbeddingIndex

TINY = ["--backbone", "tiny_cnn", "--pretrained", "none", "--no-progress"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def neighbours(capsys, index, *extra) -> dict[str, list[str]]:
    """query id -> its 5 neighbours, from `similar --all`."""
    rc, so, err = run_cli(capsys, "similar", "--index", index, "--all", "-k", "5", "--json", *extra)
    assert rc == 0, err
    return {q["query_id"]: [r["id"] for r in q["results"]] for q in json.loads(so)}


def retrieval(capsys, index, catalog, *extra) -> dict:
    rc, so, err = run_cli(capsys, "evaluate-retrieval", "--index", index, "--catalog", catalog, "--relevance", "artist",
                          "-k", "5", "--json", *extra)
    assert rc == 0, err
    return json.loads(so)


@pytest.fixture
def loaded(monkeypatch):
    """The indexes the commands load (to look at the search parameters they searched with)."""
    seen = []
    real = EmbeddingIndex.load

    def load(directory):
        seen.append(real(directory))
        return seen[-1]

    monkeypatch.setattr(EmbeddingIndex, "load", staticmethod(load))
    return seen


def test_ivf_nprobe(sim_demo, tmp_path, capsys, loaded):
    flat, ivf = tmp_path / "flat.index", tmp_path / "ivf.index"
    assert run_cli(capsys, "index", "--catalog", sim_demo.path, *TINY, "--out", flat)[0] == 0
    rc, _, err = run_cli(capsys, "index", "--catalog", sim_demo.path, *TINY, "--out", ivf, "--index-type", "ivf",
                         "--nlist", "8", "--nprobe", "2")
    assert rc == 0 and "nlist 8, nprobe 2" in err
    assert EmbeddingIndex.load(ivf).params["nprobe"] == 2                       # recorded with the index
    exact = neighbours(capsys, flat)
    # all 8 cells probed: the exact neighbours; one cell: some are missed
    assert neighbours(capsys, ivf, "--nprobe", "8") == exact and loaded[-1]._ivf().nprobe == 8
    one = neighbours(capsys, ivf, "--nprobe", "1")
    assert loaded[-1]._ivf().nprobe == 1 and one != exact
    assert EmbeddingIndex.load(ivf).params["nprobe"] == 2                       # a search changes nothing saved
    r8 = retrieval(capsys, ivf, sim_demo.path, "--nprobe", "8")
    r1 = retrieval(capsys, ivf, sim_demo.path, "--nprobe", "1")
    assert "nprobe 8" in r8["index"] and "nprobe 1" in r1["index"]
    assert r8["precision_at_k"] == pytest.approx(retrieval(capsys, flat, sim_demo.path)["precision_at_k"])
    assert r1["map_at_k"] != pytest.approx(r8["map_at_k"])


def test_hnsw_ef_search(sim_demo, tmp_path, capsys, loaded):
    hnsw = tmp_path / "hnsw.index"
    rc, _, err = run_cli(capsys, "index", "--catalog", sim_demo.path, *TINY, "--out", hnsw, "--index-type", "hnsw",
                         "--ef-search", "7")
    assert rc == 0 and "efSearch 7" in err
    idx = EmbeddingIndex.load(hnsw)
    assert idx.params["ef_search"] == 7 and idx.index.hnsw.efSearch == 7
    neighbours(capsys, hnsw, "--ef-search", "9")
    assert loaded[-1].index.hnsw.efSearch == 9
    assert "efSearch 11" in retrieval(capsys, hnsw, sim_demo.path, "--ef-search", "11")["index"]
    assert loaded[-1].index.hnsw.efSearch == 11
    neighbours(capsys, hnsw)
    assert loaded[-1].index.hnsw.efSearch == 7                                  # the index's own


@pytest.mark.slow   # an ivfpq index needs 1,000 paintings to train on
def test_ivfpq_pq_m_sets_the_code_size(sim_demo, tmp_path, capsys):
    """1,020 rows (the 60 demo images, each listed 17 times under its own id)."""
    df = pd.concat([sim_demo.df.assign(id=sim_demo.df["id"] + f"_{i}") for i in range(17)], ignore_index=True)
    cat = Catalog(df, sim_demo.tasks, sim_demo.image_root, sim_demo.source).save(tmp_path / "big.parquet")
    out = tmp_path / "pq.index"
    rc, _, err = run_cli(capsys, "index", "--catalog", cat, *TINY, "--image-size", "32", "--out", out,
                         "--index-type", "ivfpq", "--pq-m", "4", "--nprobe", "3")
    assert rc == 0, err
    idx = EmbeddingIndex.load(out)
    from artextract.similarity.index import default_pq_m

    assert idx.params["pq_m"] == 4 != default_pq_m(idx.dim) and idx._ivf().code_size == 4
    assert idx.bytes_per_vector() == 4 + 8 + 8 and "PQ4" in err and "20 bytes/vector" in err
    assert idx.params["nprobe"] == 3 and idx._ivf().nprobe == 3
    res = neighbours(capsys, out, "--nprobe", str(idx.params["nlist"]))
    # the 17 copies of a picture share one vector: each query's neighbours are copies of it
    assert np.mean([all(n.rsplit("_", 1)[0] == q.rsplit("_", 1)[0] for n in ns) for q, ns in res.items()]) > 0.9

"""index_status: a folder is a whole index only as EmbeddingIndex.save leaves it when it finishes
(meta.json last, with the count that index.faiss and ids.json must match)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from artextract.similarity import EmbeddingIndex
from artextract.similarity.embed import BackboneEmbedder
from artextract.similarity.index import index_status, is_complete


def _saved(tmp_path, kind="flat"):
    rng = np.random.default_rng(0)
    emb = BackboneEmbedder("tiny_cnn", pretrained=False, mean=np.zeros(8, np.float32))  # centred: mean.npy
    EmbeddingIndex.build([f"p{i}" for i in range(60)], rng.normal(size=(60, 8)), index_type=kind,
                         embedder=emb).save(tmp_path / "ix")
    return tmp_path / "ix"


def _drop_ids(d):
    ids = json.loads((d / "ids.json").read_text())
    (d / "ids.json").write_text(json.dumps({"ids": ids["ids"][:50], "paths": ids["paths"][:50]}))


def _truncate(name):
    def cut(d):
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: len(data) // 2])
    return cut


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_a_finished_save_is_complete(tmp_path, kind):
    d = _saved(tmp_path, kind)
    assert index_status(d) == (True, True, "") and is_complete(d)
    assert index_status(tmp_path / "nothing") == (False, False, "it does not exist")


@pytest.mark.parametrize("damage, reason", [
    (lambda d: (d / "meta.json").unlink(), "no meta.json"),         # killed before its last file
    (lambda d: (d / "index.faiss").unlink(), "no index.faiss"),
    (lambda d: (d / "ids.json").unlink(), "no ids.json"),
    (lambda d: (d / "mean.npy").unlink(), "no mean.npy"),
    (_drop_ids, "disagree"),                                        # an update killed between its files
    (_truncate("index.faiss"), "index.faiss cannot be read"),
    (_truncate("meta.json"), "meta.json cannot be read"),
    (lambda d: [p.unlink() for p in d.iterdir()], "no meta.json"),  # only the folder (and its lock) made
])
def test_what_a_killed_build_leaves_is_incomplete(tmp_path, damage, reason):
    d = _saved(tmp_path)
    damage(d)
    st = index_status(d)
    assert st.exists and not st.complete and reason in st.reason
    assert not is_complete(d)

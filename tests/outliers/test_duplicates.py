"""Near duplicates: a re-encoded copy across splits (a leak) and an exact copy within a split."""
import json
import shutil

import pandas as pd
import pytest
from PIL import Image

from artextract.cli import main
from artextract.data.catalog import Catalog
from artextract.job import Job
from artextract.outliers.duplicates import COLUMNS, find_duplicates, hamming_pairs, relation


def corpus_with_copies(root, tmp_path):
    cat = Catalog.load(root / "catalog.parquet")
    img = tmp_path / "imgs"
    shutil.copytree(root / "images", img / "images")
    df = cat.df.copy()
    a = df.loc[df["split"] == "train"].iloc[3]
    b = df.loc[df["split"] == "train"].iloc[10]
    # a: re-encoded smaller and at low quality, put in validation -> a train/val leak
    im = Image.open(img / a["path"]).convert("RGB")
    im.resize((58, 58)).save(img / "images" / "leak_copy.jpg", quality=55)
    shutil.copy(img / b["path"], img / "images" / "train_copy.jpg")
    extra = pd.DataFrame([{**a.to_dict(), "id": "leak_copy", "path": "images/leak_copy.jpg", "split": "val"},
                          {**b.to_dict(), "id": "train_copy", "path": "images/train_copy.jpg", "split": "train"}])
    c2 = Catalog(pd.concat([df, extra], ignore_index=True), cat.tasks, img, cat.source)
    c2.save(tmp_path / "dup.parquet")
    return c2, a["id"], b["id"]


@pytest.mark.slow   # embeds the corpus with an ImageNet backbone
def test_copies_are_found_within_and_across_splits(demo_outliers_corpus, tmp_path):
    root, _ = demo_outliers_corpus
    cat, a, b = corpus_with_copies(root, tmp_path)
    df = find_duplicates(cat, job=Job(progress=False, log=lambda *_: None))
    assert list(df.columns) == COLUMNS
    pairs = {frozenset((r.id_a, r.id_b)): r for r in df.itertuples()}
    leak = pairs[frozenset((a, "leak_copy"))]
    assert leak.relation == "leak train/val" and leak.phash_distance <= 6 and "hash" in leak.found_by
    assert df.iloc[0]["relation"] == "leak train/val"  # leaks come first
    same = pairs[frozenset((b, "train_copy"))]
    assert same.relation == "within train" and same.phash_distance == 0 and same.dhash_distance == 0
    assert "hash" in same.found_by and "embedding" in same.found_by
    assert len(df) <= 6  # the synthetic paintings themselves are not duplicates of one another


def test_cli_duplicates_hashes_only(demo_outliers_corpus, tmp_path, capsys):
    root, _ = demo_outliers_corpus
    cat, a, _ = corpus_with_copies(root, tmp_path)
    out = tmp_path / "pairs.csv"
    assert main(["duplicates", "--catalog", str(tmp_path / "dup.parquet"), "--backbone", "none", "--out", str(out),
                 "--no-progress"]) == 0
    df = pd.read_csv(out)
    assert {a, "leak_copy"} in [{r.id_a, r.id_b} for r in df.itertuples()]
    assert df["cosine"].isna().all()
    assert "leak train/val" in capsys.readouterr().out


def test_hamming_pairs_and_relation():
    import numpy as np

    codes = np.zeros((3, 8), np.uint8)
    codes[1, 0] = 0b111  # 3 bits from row 0
    codes[2] = 255       # 64 bits from row 0
    a, b, d = hamming_pairs(codes, 3)
    assert list(zip(a, b, d)) == [(0, 1, 3)]
    assert relation("train", "train") == "within train" and relation("val", "train") == "leak train/val"


@pytest.mark.slow   # hashes and embeds the corpus, six runs
def test_cli_thresholds(demo_outliers_corpus, tmp_path, capsys):
    """--phash-max/--dhash-max bound the hash distances of the pairs found by hashing, --cosine-min the
    cosine of those found by the embedding alone (here a random tiny_cnn's)."""
    root, _ = demo_outliers_corpus
    _, a, b = corpus_with_copies(root, tmp_path)
    leak, copy = frozenset((a, "leak_copy")), frozenset((b, "train_copy"))

    def pairs(*extra):
        out = tmp_path / "pairs.csv"
        assert main(["duplicates", "--catalog", str(tmp_path / "dup.parquet"), "--out", str(out), "--cache-size", "64",
                     "--no-progress", "--json", *extra]) == 0
        assert json.loads(capsys.readouterr().out)["pairs"] == len(df := pd.read_csv(out))
        return df, {frozenset((r.id_a, r.id_b)) for r in df.itertuples()}

    hashes = ["--backbone", "none"]
    default, found = pairs(*hashes)
    assert {leak, copy} <= found
    assert ((default["phash_distance"] <= 6) & (default["dhash_distance"] <= 8)).all()   # the defaults
    exact, found0 = pairs(*hashes, "--phash-max", "0", "--dhash-max", "0")
    assert copy in found0 and leak not in found0                   # the re-encoded copy is not bit-exact
    assert (exact[["phash_distance", "dhash_distance"]] == 0).all().all()
    wide, found_wide = pairs(*hashes, "--phash-max", "24", "--dhash-max", "24")
    assert found < found_wide and (wide[["phash_distance", "dhash_distance"]] <= 24).all().all()
    only_p, found_p = pairs(*hashes, "--phash-max", "24", "--dhash-max", "8")
    assert found <= found_p < found_wide and (only_p["dhash_distance"] <= 8).all()
    only_d, found_d = pairs(*hashes, "--phash-max", "6", "--dhash-max", "24")
    assert found <= found_d < found_wide and (only_d["phash_distance"] <= 6).all()
    # the embedding alone: only pairs at or above --cosine-min
    tiny = ["--backbone", "tiny_cnn", "--pretrained", "none"]
    loose, _ = pairs(*tiny, "--cosine-min", "0.9")
    by_embedding = loose[loose["found_by"] == "embedding"]
    assert len(by_embedding) and (by_embedding["cosine"] >= 0.9).all()
    strict, found_strict = pairs(*tiny, "--cosine-min", "1.01")
    assert not (strict["found_by"] == "embedding").any() and copy in found_strict and len(strict) < len(loose)

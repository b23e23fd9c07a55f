"""Extra checks on the real ArtGAN label files (../shared/data/wikiart_labels) and the shared image
sample (../shared/data/wikiart_sample); skipped when they are absent. Every behaviour is tested on
fixtures in test_wikiart.py: this test only confirms the real files hold what the fixtures mimic (one
test, so that a clone without the shared data skips once)."""
from __future__ import annotations

import json

import pandas as pd

from artextract.cli import main
from artextract.data.catalog import Catalog
from artextract.data.wikiart import TASKS, ingest_wikiart, read_labels, read_split_file, repair_mojibake

from test_wikiart import check_raw_file_quirks

VLAMINCK = "Post_Impressionism/maurice-de-vlaminck_the-village.jpg"


def _rows(labels_dir, name, num_classes):
    rows, bad = read_split_file(labels_dir / name, num_classes)
    assert bad == [], f"{name}: {bad[:3]}"
    return rows


def test_real_artgan_label_files_sample_and_cli(shared_data, tmp_path, capsys):
    _check_label_files(shared_data)
    _check_sample_and_cli(shared_data, tmp_path, capsys)


def _check_label_files(shared_data):
    labels_dir = shared_data / "wikiart_labels"
    check_raw_file_quirks(labels_dir)
    df, specs, stats = read_labels(labels_dir)
    # classes, in ArtGAN index order
    assert {t: s.num_classes for t, s in specs.items()} == {"artist": 23, "genre": 10, "style": 27}
    assert specs["style"].classes[0] == "Abstract_Expressionism" and specs["style"].classes[3] == "Art_Nouveau"
    assert specs["style"].classes[26] == "Ukiyo_e" and specs["artist"].classes[22] == "Vincent_van_Gogh"
    assert specs["genre"].classes[0] == "abstract_painting" and specs["genre"].classes[9] == "still_life"
    # every row parses
    files = {"artist": ("artist_train", "artist_val"), "genre": ("genre_train.csv", "genre_val.csv"),
             "style": ("style_train.csv", "style_val.csv")}
    rows = {name: _rows(labels_dir, name, specs[t].num_classes) for t, names in files.items() for name in names}
    assert {k: len(v) for k, v in rows.items()} == {
        "artist_train": 13346, "artist_val": 5706, "genre_train.csv": 45503, "genre_val.csv": 19492,
        "style_train.csv": 57025, "style_val.csv": 24421}
    assert stats["malformed"] == []
    # the join
    assert len(df) == 81_446 and df["id"].is_unique
    assert int(df["artist"].notna().sum()) == 19_052
    assert int(df["genre"].notna().sum()) == 64_994 - 1      # one path lost its conflicting genre label
    assert int(df[list(TASKS)].notna().all(axis=1).sum()) == 16_250
    an = df[df["folder"] == "Art_Nouveau_Modern"]
    assert len(an) == 4_334 and set(an["style"]) == {"Art_Nouveau"}
    other = df[df["folder"] != "Art_Nouveau_Modern"]
    assert (other["folder"] == other["style"]).all()
    # the duplicated genre row
    assert sorted(k for p, k in rows["genre_val.csv"] if p == VLAMINCK) == [1, 4]
    assert stats["duplicates"] == 1 and stats["conflicts"] == [f"genre:{VLAMINCK}"]
    # split rule
    val_listed = {p for name in ("artist_val", "genre_val.csv", "style_val.csv") for p, _ in rows[name]}
    train_listed = {p for name in ("artist_train", "genre_train.csv", "style_train.csv") for p, _ in rows[name]}
    assert len(val_listed) == 24_672 and len(train_listed & val_listed) == 566
    assert set(df.loc[df["split"] == "val", "id"]) == val_listed
    assert not {p for p, _ in rows["style_train.csv"]} & {p for p, _ in rows["style_val.csv"]}
    # mojibake: all 709 non-ASCII paths repair
    odd = [p for p in df["id"] if not p.isascii()]
    assert len(odd) == 709 and all(repair_mojibake(p) and "ã" not in repair_mojibake(p) for p in odd)


def _check_sample_and_cli(shared_data, tmp_path, capsys):
    labels_dir, sample_dir = shared_data / "wikiart_labels", shared_data / "wikiart_sample"
    cat, rep = ingest_wikiart(labels_dir, sample_dir)
    assert len(cat) == 1_403 and rep.rows_listed == 81_446 and rep.missing_count == 81_446 - 1_403
    assert rep.duplicate_rows == 1 and len(rep.conflicting_labels) == 1
    man = pd.read_csv(sample_dir / "manifest.csv", dtype=str, keep_default_na=False).set_index("relative_path")
    df = cat.df.set_index("id")
    assert set(df.index) == set(man.index) and (df["path"] == df.index).all()
    for t in TASKS:
        want = man[t].replace("", None)
        got = df.loc[man.index, t]
        assert (got.isna() == want.isna()).all() and (got.dropna() == want.dropna()).all(), t
    any_val = (man[["artgan_style_split", "artgan_genre_split", "artgan_artist_split"]] == "val").any(axis=1)
    assert (df.loc[man.index, "split"] == any_val.map({True: "val", False: "train"})).all()
    assert (df.loc[man.index, "artist_slug"] == man["artist_slug"]).all()

    out = tmp_path / "wikiart.parquet"
    assert main(["ingest", "wikiart", "--labels", str(labels_dir), "--images", str(sample_dir), "--out", str(out)]) == 0
    text = capsys.readouterr().err
    assert "1,403" in text and "81,446" in text and "conflicting labels" in text
    assert main(["catalog", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["rows"] == 1_403 and info["splits"] == {"train": 1_403}
    assert info["tasks"]["style"]["classes_present"] == 11
    assert Catalog.load(out).missing_images() == []

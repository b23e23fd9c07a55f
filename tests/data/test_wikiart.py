"""WikiArt importer on the real ArtGAN label files (../shared/data/wikiart_labels) and the shared
image sample (../shared/data/wikiart_sample): counts, class order and every quirk of the files."""
from __future__ import annotations

import json
import shutil
import unicodedata

import pandas as pd
import pytest
from PIL import Image

from artextract.cli import main
from artextract.data.catalog import Catalog, CatalogError
from artextract.data.wikiart import (
    TASKS,
    ingest_wikiart,
    read_classes,
    read_labels,
    read_split_file,
    repair_mojibake,
)

VLAMINCK = "Post_Impressionism/maurice-de-vlaminck_the-village.jpg"
GREGOIRE = "Naive_Art_Primitivism/grã©goire-michonze_birds.jpg"  # as written in style_train.csv


@pytest.fixture(scope="module")
def labels_dir(shared_data):
    return shared_data / "wikiart_labels"


@pytest.fixture(scope="module")
def sample_dir(shared_data):
    return shared_data / "wikiart_sample"


@pytest.fixture(scope="module")
def labels(labels_dir):
    return read_labels(labels_dir)


@pytest.fixture(scope="module")
def sample(labels_dir, sample_dir):
    return ingest_wikiart(labels_dir, sample_dir)


@pytest.fixture
def reuse_labels(monkeypatch, labels):
    """Make ingest_wikiart reuse the parsed label files (parsing 165k rows takes a second or two);
    tests of the parsing itself and the end-to-end ones use the real thing."""
    import artextract.data.wikiart as wikiart

    df, specs, stats = labels
    monkeypatch.setattr(wikiart, "read_labels", lambda _dir: (df.copy(), dict(specs), dict(stats)))


def _split_rows(labels_dir, name, num_classes):
    rows, bad = read_split_file(labels_dir / name, num_classes)
    assert bad == [], f"{name}: {bad[:3]}"
    return rows


# ---------------------------------------------------------------------- classes
def test_class_counts_and_artgan_index_order(labels):
    _, specs, _ = labels
    assert list(specs) == list(TASKS)
    assert {t: s.num_classes for t, s in specs.items()} == {"artist": 23, "genre": 10, "style": 27}
    assert specs["style"].classes[0] == "Abstract_Expressionism"
    assert specs["style"].classes[3] == "Art_Nouveau"
    assert specs["style"].classes[26] == "Ukiyo_e"
    assert specs["artist"].classes[0] == "Albrecht_Durer"
    assert specs["artist"].classes[22] == "Vincent_van_Gogh"
    assert specs["genre"].classes[0] == "abstract_painting"
    assert specs["genre"].classes[9] == "still_life"
    assert not any(s.ordered for s in specs.values())
    assert "Art_Nouveau_Modern" not in specs["style"].classes


def test_class_file_lines_out_of_order_and_with_gaps(tmp_path):
    f = tmp_path / "style_class.txt"
    f.write_bytes(b"1 B\r\n0 A\r\n\r\n2 C\r\n")
    assert read_classes(f) == ["A", "B", "C"]
    f.write_text("0 A\n2 C\n")
    with pytest.raises(CatalogError, match="not 0..1"):
        read_classes(f)
    f.write_text("0 A\nB\n")
    with pytest.raises(CatalogError, match=r"style_class.txt:2: expected '<index> <name>'"):
        read_classes(f)


# ---------------------------------------------------------------------- raw file quirks
def test_raw_file_quirks_are_really_there(labels_dir):
    # artist files: no extension, two header lines, double comma; LF
    assert not (labels_dir / "artist_train.csv").exists() and (labels_dir / "artist_train").is_file()
    head = (labels_dir / "artist_train").read_bytes()[:200].split(b"\n")
    assert head[0].startswith(b"(Path to image),, (Groundtruth class)")
    assert head[1] == b""
    assert b",," in head[2] and not head[2].endswith(b"\r")
    # genre/style CSVs: no header, CRLF
    for name in ("genre_train.csv", "genre_val.csv", "style_train.csv", "style_val.csv"):
        first = (labels_dir / name).read_bytes()[:300].split(b"\n")[0]
        assert first.endswith(b"\r") and first.count(b",") == 1 and b"Path" not in first
    # class files: only the style one has .txt
    assert (labels_dir / "style_class.txt").is_file() and (labels_dir / "artist_class").is_file()
    assert (labels_dir / "genre_class").is_file()


def test_split_files_parse_completely(labels_dir, labels):
    _, specs, stats = labels
    n = {}
    for t, files in (("artist", ("artist_train", "artist_val")), ("genre", ("genre_train.csv", "genre_val.csv")),
                     ("style", ("style_train.csv", "style_val.csv"))):
        for name in files:
            rows = _split_rows(labels_dir, name, specs[t].num_classes)
            assert all("," not in p and not p.endswith("\r") and p == p.strip() for p, _ in rows)
            n[name] = len(rows)
    assert n == {"artist_train": 13346, "artist_val": 5706, "genre_train.csv": 45503, "genre_val.csv": 19492,
                 "style_train.csv": 57025, "style_val.csv": 24421}
    assert stats["malformed"] == []


def test_double_comma_rows(labels_dir, labels):
    rows = _split_rows(labels_dir, "artist_val", 23)
    _, specs, _ = labels
    raw = [ln for ln in (labels_dir / "artist_val").read_text().splitlines()[2:] if ln]
    assert all(",," in ln for ln in raw)
    p, k = rows[0]
    assert raw[0] == f"{p},,{k}"
    assert p.split("/")[0] in specs["style"].classes + ["Art_Nouveau_Modern"]


def test_malformed_rows_are_reported_not_fatal(tmp_path):
    f = tmp_path / "genre_train.csv"
    f.write_bytes(b"A/a.jpg,1\r\nA/b.jpg,x\r\nA/c.jpg,10\r\nA/d.jpg,-1\r\nno comma\r\n,3\r\nA/e.jpg,,2\r\n")
    rows, bad = read_split_file(f, 10)
    assert rows == [("A/a.jpg", 1), ("A/e.jpg", 2)]
    assert len(bad) == 5
    assert "genre_train.csv:3: label 10 out of range 0..9" in bad
    assert "genre_train.csv:2: A/b.jpg,x" in bad


# ---------------------------------------------------------------------- the join
def test_listed_paths_and_label_coverage(labels):
    df, _, _ = labels
    assert len(df) == 81_446 == 57_025 + 24_421
    assert df["id"].is_unique
    assert int(df["style"].notna().sum()) == 81_446  # style lists every path
    assert int(df["artist"].notna().sum()) == 19_052
    assert int(df["genre"].notna().sum()) == 64_994 - 1  # one path lost its conflicting genre label
    assert int(df[list(TASKS)].notna().all(axis=1).sum()) == 16_250
    # a painting is never dropped for lacking a label: most have style only, or style and genre
    only_style = df["style"].notna() & df["artist"].isna() & df["genre"].isna()
    assert int(only_style.sum()) > 10_000


def test_art_nouveau_modern_folder_is_class_art_nouveau(labels):
    df, _, _ = labels
    an = df[df["folder"] == "Art_Nouveau_Modern"]
    assert len(an) == 4_334
    assert set(an["style"]) == {"Art_Nouveau"}
    assert not (df["folder"] == "Art_Nouveau").any()
    # every other folder is its class name
    other = df[df["folder"] != "Art_Nouveau_Modern"]
    assert (other["folder"] == other["style"]).all()


def test_duplicated_genre_row_with_conflicting_labels_is_dropped_and_reported(labels_dir, labels):
    rows = _split_rows(labels_dir, "genre_val.csv", 10)
    assert sorted(k for p, k in rows if p == VLAMINCK) == [1, 4]
    df, _, stats = labels
    assert stats["duplicates"] == 1
    assert stats["conflicts"] == [f"genre:{VLAMINCK}"]
    row = df.set_index("id").loc[VLAMINCK]
    assert pd.isna(row["genre"])  # label dropped for that task only ...
    assert row["style"] == "Post_Impressionism"  # ... the painting and its other labels stay
    assert row["split"] == "val"


def test_split_rule_no_val_image_in_train(labels_dir, labels):
    df, specs, _ = labels
    split = dict(zip(df["id"], df["split"]))
    val_listed, train_listed = set(), set()
    for t, (tr, va) in {"artist": ("artist_train", "artist_val"), "genre": ("genre_train.csv", "genre_val.csv"),
                        "style": ("style_train.csv", "style_val.csv")}.items():
        val_listed |= {p for p, _ in _split_rows(labels_dir, va, specs[t].num_classes)}
        train_listed |= {p for p, _ in _split_rows(labels_dir, tr, specs[t].num_classes)}
    assert {p for p, s in split.items() if s == "val"} == val_listed
    assert {p for p, s in split.items() if s == "train"} == train_listed - val_listed
    # 566 paths are train for one task and val for another; 251 of them are in style_train.csv
    assert len(val_listed) == 24_672 and len(train_listed & val_listed) == 566
    assert int((df["split"] == "val").sum()) == 24_421 + 251
    # ArtGAN's style split itself does not overlap
    style_tr = {p for p, _ in _split_rows(labels_dir, "style_train.csv", 27)}
    style_va = {p for p, _ in _split_rows(labels_dir, "style_val.csv", 27)}
    assert not style_tr & style_va


# ---------------------------------------------------------------------- mojibake
def test_repair_mojibake():
    assert repair_mojibake(GREGOIRE) == "Naive_Art_Primitivism/grégoire-michonze_birds.jpg"
    assert repair_mojibake("grã©goire") == "grégoire"
    assert repair_mojibake("Impressionism/joaquã\xadn-sorolla_study-of-vineyard.jpg") == (
        "Impressionism/joaquín-sorolla_study-of-vineyard.jpg")
    assert repair_mojibake("Symbolism/arnold-bã¶cklin_the-plague-1898.jpg") == "Symbolism/arnold-böcklin_the-plague-1898.jpg"
    assert repair_mojibake("Art_Nouveau_Modern/eugã¨ne-grasset_froideur.jpg") == "Art_Nouveau_Modern/eugène-grasset_froideur.jpg"
    assert repair_mojibake("Baroque/rembrandt_self-portrait.jpg") is None  # ASCII: nothing to do
    assert repair_mojibake("Realism/grégoire.jpg") is None  # already correct UTF-8 stays as is


def test_every_non_ascii_listed_path_repairs(labels):
    df, _, _ = labels
    odd = [p for p in df["id"] if not p.isascii()]
    assert len(odd) == 709
    fixed = [repair_mojibake(p) for p in odd]
    assert None not in fixed
    assert not any("ã" in f for f in fixed)


def _jpeg(path, color=(120, 60, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 12), color).save(path)


def test_images_found_under_repaired_written_nfd_and_renamed_names(labels_dir, labels, reuse_labels, tmp_path):
    images = tmp_path / "wikiart"
    repaired = "Naive_Art_Primitivism/grégoire-michonze_birds.jpg"
    written = "Naive_Art_Primitivism/grã©goire-michonze_in-the-village-1978.jpg"  # saved exactly as listed
    sorolla = "Impressionism/joaquã\xadn-sorolla_study-of-vineyard.jpg"
    sorolla_nfd = unicodedata.normalize("NFD", repair_mojibake(sorolla))  # as macOS HFS+ would store it
    nouveau = "Art_Nouveau_Modern/eugã¨ne-grasset_froideur.jpg"
    renamed = "Art_Nouveau/eugène-grasset_froideur.jpg"  # folder renamed to the class name
    plain = next(p for p in labels[0]["id"] if p.startswith("Baroque/"))
    for rel in (repaired, written, sorolla_nfd, renamed, plain, "Baroque/not-listed-anywhere.jpg"):
        _jpeg(images / rel)
    (images / "Baroque" / "a-folder.jpg").mkdir()  # a folder named like an image is not an image

    cat, rep = ingest_wikiart(labels_dir, images)
    got = dict(zip(cat.df["id"], cat.df["path"]))
    expected = {GREGOIRE: repaired, written: written, sorolla: sorolla_nfd, nouveau: renamed, plain: plain}
    assert got == expected
    assert rep.repaired_paths == 3
    assert rep.rows_kept == len(expected) and rep.missing_count == 81_446 - len(expected)
    row = cat.df.set_index("id").loc[nouveau]
    assert row["style"] == "Art_Nouveau" and row["folder"] == "Art_Nouveau_Modern"
    for rel in cat.df["path"]:  # every kept path opens
        assert cat.image_path(rel).is_file()
    assert "mojibake paths matched after repair: 3" in rep.summary()


def test_missing_images_folder_is_a_clear_error(labels_dir, tmp_path):
    with pytest.raises(CatalogError, match="images folder .* does not exist"):
        ingest_wikiart(labels_dir, tmp_path / "nope")
    with pytest.raises(CatalogError, match="WikiArt Dataset"):
        ingest_wikiart(tmp_path, tmp_path)


# ---------------------------------------------------------------------- the shared sample
def test_sample_gives_1403_rows_matching_the_manifest(sample, sample_dir):
    cat, rep = sample
    assert len(cat) == 1_403
    assert rep.rows_listed == 81_446 and rep.rows_kept == 1_403 and rep.missing_count == 81_446 - 1_403
    assert 0 < len(rep.missing_examples) <= 5
    assert not any((sample_dir / p).exists() for p in rep.missing_examples)
    assert rep.duplicate_rows == 1 and len(rep.conflicting_labels) == 1
    man = pd.read_csv(sample_dir / "manifest.csv", dtype=str, keep_default_na=False).set_index("relative_path")
    df = cat.df.set_index("id")
    assert set(df.index) == set(man.index)
    assert (df["path"] == df.index).all()  # ASCII sample: the path on disk is the listed path
    for t in TASKS:
        expected = man[t].replace("", None)
        got = df.loc[man.index, t]
        assert (got.isna() == expected.isna()).all(), t
        assert (got.dropna() == expected.dropna()).all(), t
    any_val = (man[["artgan_style_split", "artgan_genre_split", "artgan_artist_split"]] == "val").any(axis=1)
    expected_split = any_val.map({True: "val", False: "train"})
    assert (df.loc[man.index, "split"] == expected_split).all()
    assert (df.loc[man.index, "artist_slug"] == man["artist_slug"]).all()
    assert cat.missing_images() == []
    assert cat.source == "wikiart"
    assert [cat.task(t).num_classes for t in TASKS] == [23, 10, 27]


def test_cli_ingest_wikiart_and_catalog_info_json(labels_dir, sample_dir, sample, tmp_path, capsys):
    out = tmp_path / "wikiart.parquet"
    rc = main(["ingest", "wikiart", "--labels", str(labels_dir), "--images", str(sample_dir), "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().err
    assert "1,403" in text and "81,446" in text and "conflicting labels" in text
    assert main(["catalog", "info", str(out), "--json", "--check-files"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["rows"] == 1_403
    assert info["source"] == "wikiart"
    assert info["splits"] == {"train": 1_403}
    assert {t: info["tasks"][t]["num_classes"] for t in TASKS} == {"artist": 23, "genre": 10, "style": 27}
    assert info["tasks"]["style"]["labelled"] == 1_403
    assert info["tasks"]["style"]["classes_present"] == 11
    assert list(info["tasks"]["style"]["class_counts"])[0] == "Abstract_Expressionism"
    assert info["missing_images"] == {"count": 0, "examples": []}
    # the saved catalogue round-trips, image root included
    cat = Catalog.load(out)
    ref = sample[0]
    assert cat.tasks == ref.tasks
    pd.testing.assert_frame_equal(cat.df[["id", "path", "split", *TASKS]].astype(object),
                                  ref.df[["id", "path", "split", *TASKS]].astype(object).where(
                                      ref.df[["id", "path", "split", *TASKS]].notna(), None))
    assert cat.image_root == sample_dir.resolve()
    # human-readable info too
    assert main(["catalog", "info", str(out)]) == 0
    assert "missing images: not checked" in capsys.readouterr().out
    assert main(["catalog", "info", str(out), "--check-files"]) == 0
    assert "missing images: none" in capsys.readouterr().out


def test_cli_ingest_wikiart_with_no_images_found_is_a_user_error(labels_dir, reuse_labels, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = main(["ingest", "wikiart", "--labels", str(labels_dir), "--images", str(tmp_path / "empty"),
               "--out", str(tmp_path / "w.parquet")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "none of the 81,446 listed images were found" in err
    assert not (tmp_path / "w.parquet").exists()


def test_subset_of_sample_copied_elsewhere(labels_dir, sample_dir, reuse_labels, tmp_path):
    """--images may hold any subset; a copy of a few sample files gives exactly those rows."""
    picked = sorted(p.relative_to(sample_dir).as_posix() for p in (sample_dir / "Pointillism").glob("*.jpg"))[:3]
    for rel in picked:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sample_dir / rel, tmp_path / rel)
    cat, rep = ingest_wikiart(labels_dir, tmp_path)
    assert sorted(cat.df["id"]) == picked and rep.missing_count == 81_446 - 3

"""WikiArt importer on label files in the exact ArtGAN format (tests/data/artgan_fixtures.py) and
generated images: class order, every quirk of the files, the join, the split rule, mojibake on disk
and the CLI. test_wikiart_real.py repeats the checks on the real files when ../shared/data is there."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

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

import artgan_fixtures as ag


@pytest.fixture(scope="module")
def artgan(tmp_path_factory):
    """ArtGAN-format label files (read-only) and what they hold."""
    folder = tmp_path_factory.mktemp("WikiArt Dataset")
    return folder, ag.write_labels(folder)


@pytest.fixture(scope="module")
def labels_dir(artgan):
    return artgan[0]


@pytest.fixture(scope="module")
def expected(artgan):
    return artgan[1]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Generated images for some listed paths (read-only); listed path -> path on disk."""
    folder = tmp_path_factory.mktemp("wikiart_images")
    return folder, ag.write_images(folder)


@pytest.fixture(scope="module")
def labels(labels_dir):
    return read_labels(labels_dir)


def _split_rows(labels_dir, name, num_classes):
    rows, bad = read_split_file(labels_dir / name, num_classes)
    assert bad == [], f"{name}: {bad[:3]}"
    return rows


# ---------------------------------------------------------------------- classes
def test_class_counts_and_artgan_index_order(labels):
    _, specs, _ = labels
    assert list(specs) == list(TASKS)
    assert {t: s.classes for t, s in specs.items()} == ag.TASK_CLASSES
    assert specs["style"].classes.index("Art_Nouveau") == 1
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
def check_raw_file_quirks(labels_dir: Path) -> None:
    """The ArtGAN quirks, byte by byte (applied to the fixture here and to the real files in
    test_wikiart_real.py, so the fixture stays faithful)."""
    # artist files: no extension, two header lines, double comma; LF
    assert not (labels_dir / "artist_train.csv").exists() and (labels_dir / "artist_train").is_file()
    for name in ("artist_train", "artist_val"):
        head = (labels_dir / name).read_bytes()[:400].split(b"\n")
        assert head[0].rstrip(b" ") == b"(Path to image),, (Groundtruth class)"   # a trailing space or not
        assert head[1] == b""
        assert b",," in head[2] and not head[2].endswith(b"\r")
    # genre/style CSVs: no header, CRLF
    for name in ("genre_train.csv", "genre_val.csv", "style_train.csv", "style_val.csv"):
        data = (labels_dir / name).read_bytes()
        first = data[:300].split(b"\n")[0]
        assert first.endswith(b"\r") and first.count(b",") == 1 and b"Path" not in first
        assert data.count(b"\n") == data.count(b"\r\n")
    # class files: only the style one has .txt
    assert (labels_dir / "style_class.txt").is_file() and (labels_dir / "artist_class").is_file()
    assert (labels_dir / "genre_class").is_file()
    assert not (labels_dir / "genre_class.txt").exists() and not (labels_dir / "artist_class.txt").exists()


def test_raw_file_quirks_are_really_there(labels_dir):
    check_raw_file_quirks(labels_dir)


def test_split_files_parse_completely(labels_dir, labels, expected):
    _, specs, stats = labels
    n = {}
    for t, files in (("artist", ("artist_train", "artist_val")), ("genre", ("genre_train.csv", "genre_val.csv")),
                     ("style", ("style_train.csv", "style_val.csv"))):
        for name in files:
            rows = _split_rows(labels_dir, name, specs[t].num_classes)
            assert all("," not in p and not p.endswith("\r") and p == p.strip() for p, _ in rows)
            n[name] = len(rows)
    assert n == expected.rows
    assert stats["malformed"] == []


def test_double_comma_rows(labels_dir, labels):
    rows = _split_rows(labels_dir, "artist_val", len(ag.ARTISTS))
    _, specs, _ = labels
    raw = [ln for ln in (labels_dir / "artist_val").read_text().splitlines()[2:] if ln]
    assert raw and all(",," in ln for ln in raw)
    assert [f"{p},,{k}" for p, k in rows] == raw
    assert all(p.split("/")[0] in specs["style"].classes + ["Art_Nouveau_Modern"] for p, _ in rows)


def test_malformed_rows_are_reported_not_fatal(tmp_path):
    f = tmp_path / "genre_train.csv"
    f.write_bytes(b"A/a.jpg,1\r\nA/b.jpg,x\r\nA/c.jpg,10\r\nA/d.jpg,-1\r\nno comma\r\n,3\r\nA/e.jpg,,2\r\n")
    rows, bad = read_split_file(f, 10)
    assert rows == [("A/a.jpg", 1), ("A/e.jpg", 2)]
    assert len(bad) == 5
    assert "genre_train.csv:3: label 10 out of range 0..9" in bad
    assert "genre_train.csv:2: A/b.jpg,x" in bad
    assert "genre_train.csv:4: label -1 out of range 0..9" in bad


def test_malformed_rows_reach_the_import_report(artgan, tmp_path):
    folder = tmp_path / "labels"
    shutil.copytree(artgan[0], folder)
    with open(folder / "style_val.csv", "ab") as fh:
        fh.write(b"Baroque/broken-row\r\nBaroque/x.jpg,99\r\n")
    _, _, stats = read_labels(folder)
    assert stats["malformed"] == ["style_val.csv:9: Baroque/broken-row",
                                  f"style_val.csv:10: label 99 out of range 0..{len(ag.STYLES) - 1}"]


def test_odd_lines_are_reported_never_a_traceback_or_a_split_line(tmp_path):
    """A label in superscript digits ("²".isdigit() is true, int("²") fails) is malformed, not a
    ValueError; a mojibake path with U+0085 ("Å" read as Latin-1, lower-cased: "ã\x85") stays one line
    (str.splitlines broke it in two); a path that leaves the image folder or holds a NUL is refused."""
    f = tmp_path / "style_train.csv"
    f.write_bytes("A/ok.jpg,1\r\nA/sup.jpg,\u00b2\r\nA/\u00e3\x85ke_boats.jpg,2\r\n../../etc/passwd,1\r\n"
                  "/etc/passwd,1\r\nA/../../x.jpg,1\r\nA/nul\x00.jpg,1\r\nC:\\x.jpg,1\r\n".encode())
    rows, bad = read_split_file(f, 10)
    assert rows == [("A/ok.jpg", 1), ("A/\u00e3\x85ke_boats.jpg", 2)]
    assert bad == ["style_train.csv:2: A/sup.jpg,\u00b2", "style_train.csv:4: the path leaves the image folder",
                   "style_train.csv:5: the path leaves the image folder",
                   "style_train.csv:6: the path leaves the image folder",
                   "style_train.csv:7: the path contains a NUL character",
                   "style_train.csv:8: the path leaves the image folder"]
    c = tmp_path / "style_class.txt"
    c.write_text("0 A\n\u00b9 B\n")
    with pytest.raises(CatalogError, match="expected '<index> <name>'"):
        read_classes(c)


def test_every_data_line_is_accounted_for(artgan, images, tmp_path):
    folder = tmp_path / "labels"
    shutil.copytree(artgan[0], folder)
    with open(folder / "style_val.csv", "ab") as fh:
        fh.write(b"Baroque/broken-row\r\n/etc/passwd,1\r\n")
    cat, rep = ingest_wikiart(folder, images[0])
    acc = rep.account()
    data_lines = sum(1 for f in folder.iterdir() if "class" not in f.name
                     for ln in f.read_bytes().decode().replace("\r\n", "\n").split("\n")
                     if ln.strip() and not ln.startswith("(Path"))
    assert acc.records == rep.lines_read == data_lines
    assert acc.records == acc.imported + acc.reported and acc.imported > 0
    assert acc.left_out == {"malformed": 2, "duplicate lines collapsed": 2,
                            "image not on disk": rep.lines_missing}
    assert "/etc/passwd" not in set(cat.df["id"])


# ---------------------------------------------------------------------- the join
def test_listed_paths_and_label_coverage(labels, expected):
    df, _, _ = labels
    assert df["id"].is_unique
    assert sorted(df["id"]) == sorted(expected.labels)
    got = df.set_index("id")
    for path, want in expected.labels.items():
        for t in TASKS:
            value = got.at[path, t]
            assert (None if pd.isna(value) else value) == want[t], (path, t)
    # a painting is never dropped for lacking a label: some have style only
    only_style = df["style"].notna() & df["artist"].isna() & df["genre"].isna()
    assert int(only_style.sum()) == sum(1 for v in expected.labels.values()
                                        if v["artist"] is None and v["genre"] is None)
    assert int(only_style.sum()) >= 5


def test_art_nouveau_modern_folder_is_class_art_nouveau(labels):
    df, _, _ = labels
    an = df[df["folder"] == "Art_Nouveau_Modern"]
    assert len(an) == 4
    assert set(an["style"]) == {"Art_Nouveau"}
    assert not (df["folder"] == "Art_Nouveau").any()
    other = df[df["folder"] != "Art_Nouveau_Modern"]
    assert (other["folder"] == other["style"]).all()


def test_duplicated_genre_row_with_conflicting_labels_is_dropped_and_reported(labels_dir, labels):
    rows = _split_rows(labels_dir, "genre_val.csv", len(ag.GENRES))
    assert sorted(k for p, k in rows if p == ag.CONFLICT) == [1, 3]
    assert sorted(k for p, k in _split_rows(labels_dir, "genre_train.csv", 4) if p == ag.SAME_DUP) == [0, 0]
    df, _, stats = labels
    assert stats["duplicates"] == 2
    assert stats["conflicts"] == [f"genre:{ag.CONFLICT}"]
    got = df.set_index("id")
    assert pd.isna(got.at[ag.CONFLICT, "genre"])             # label dropped for that task only ...
    assert got.at[ag.CONFLICT, "style"] == "Post_Impressionism"  # ... the painting and its other labels stay
    assert got.at[ag.CONFLICT, "split"] == "val"
    assert got.at[ag.SAME_DUP, "genre"] == "landscape"       # the same label twice: kept


def test_split_rule_no_val_image_in_train(labels_dir, labels, expected):
    df, specs, _ = labels
    split = dict(zip(df["id"], df["split"]))
    assert split == expected.split
    val_listed, train_listed = set(), set()
    for t, (tr, va) in {"artist": ("artist_train", "artist_val"), "genre": ("genre_train.csv", "genre_val.csv"),
                        "style": ("style_train.csv", "style_val.csv")}.items():
        val_listed |= {p for p, _ in _split_rows(labels_dir, va, specs[t].num_classes)}
        train_listed |= {p for p, _ in _split_rows(labels_dir, tr, specs[t].num_classes)}
    assert {p for p, s in split.items() if s == "val"} == val_listed
    assert {p for p, s in split.items() if s == "train"} == train_listed - val_listed
    # two paths are train for style and val for another task: val
    crossed = train_listed & val_listed
    assert sorted(crossed) == ["Abstract_Expressionism/joan-mitchell_city-landscape.jpg",
                               "Post_Impressionism/paul-cezanne_bathers.jpg"]
    assert all(split[p] == "val" for p in crossed)


# ---------------------------------------------------------------------- mojibake
def test_repair_mojibake():
    assert repair_mojibake("Naive_Art_Primitivism/grã©goire-michonze_birds.jpg") == (
        "Naive_Art_Primitivism/grégoire-michonze_birds.jpg")
    assert repair_mojibake("grã©goire") == "grégoire"
    assert repair_mojibake("Impressionism/joaquã\xadn-sorolla_study-of-vineyard.jpg") == (
        "Impressionism/joaquín-sorolla_study-of-vineyard.jpg")
    assert repair_mojibake("Symbolism/arnold-bã¶cklin_the-plague-1898.jpg") == "Symbolism/arnold-böcklin_the-plague-1898.jpg"
    assert repair_mojibake("Art_Nouveau_Modern/eugã¨ne-grasset_froideur.jpg") == "Art_Nouveau_Modern/eugène-grasset_froideur.jpg"
    assert repair_mojibake("Baroque/rembrandt_self-portrait.jpg") is None  # ASCII: nothing to do
    assert repair_mojibake("Realism/grégoire.jpg") is None  # already correct UTF-8 stays as is


def test_every_non_ascii_listed_path_repairs(labels):
    df, _, _ = labels
    odd = sorted(p for p in df["id"] if not p.isascii())
    assert odd == sorted([ag.MOJIBAKE, ag.MOJIBAKE_AS_LISTED, ag.MOJIBAKE_NFD, ag.NOUVEAU])
    fixed = [repair_mojibake(p) for p in odd]
    assert None not in fixed
    assert not any("ã" in f for f in fixed)


def test_images_found_under_repaired_written_nfd_and_renamed_names(labels_dir, images):
    folder, on_disk = images
    cat, rep = ingest_wikiart(labels_dir, folder)
    got = dict(zip(cat.df["id"], cat.df["path"]))
    assert got == on_disk
    assert rep.repaired_paths == 3          # the one saved as listed needs no repair
    assert rep.rows_listed == len(ag._table())
    assert rep.rows_kept == len(on_disk) and rep.missing_count == rep.rows_listed - len(on_disk)
    assert "Baroque/not-listed-anywhere.jpg" not in got.values()
    row = cat.df.set_index("id").loc[ag.NOUVEAU]
    assert row["style"] == "Art_Nouveau" and row["folder"] == "Art_Nouveau_Modern"
    for rel in cat.df["path"]:  # every kept path opens
        assert cat.image_path(rel).is_file()
    assert "mojibake paths matched after repair: 3" in rep.summary()
    assert rep.duplicate_rows == 2 and rep.conflicting_labels == [f"genre:{ag.CONFLICT}"]
    assert (cat.df["artist_slug"] == [p.split("/", 1)[1].split("_", 1)[0] for p in cat.df["id"]]).all()


def test_missing_images_folder_is_a_clear_error(labels_dir, tmp_path):
    with pytest.raises(CatalogError, match="images folder .* does not exist"):
        ingest_wikiart(labels_dir, tmp_path / "nope")
    with pytest.raises(CatalogError, match="WikiArt Dataset"):
        ingest_wikiart(tmp_path, tmp_path)


# ---------------------------------------------------------------------- the CLI
def test_cli_ingest_wikiart_and_catalog_info_json(labels_dir, images, expected, tmp_path, capsys):
    folder, on_disk = images
    out = tmp_path / "wikiart.parquet"
    rc = main(["ingest", "wikiart", "--labels", str(labels_dir), "--images", str(folder), "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().err
    n_listed = len(expected.labels)
    assert f"paintings listed in the label files: {n_listed}" in text
    assert f"paintings with an image on disk:      {len(on_disk)}" in text
    assert "conflicting labels" in text and "mojibake paths matched after repair: 3" in text
    assert main(["catalog", "info", str(out), "--json", "--check-files"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["rows"] == len(on_disk)
    assert info["source"] == "wikiart"
    want_splits = pd.Series([expected.split[p] for p in on_disk]).value_counts().to_dict()
    assert info["splits"] == want_splits
    assert {t: info["tasks"][t]["num_classes"] for t in TASKS} == {t: len(c) for t, c in ag.TASK_CLASSES.items()}
    assert info["tasks"]["style"]["labelled"] == len(on_disk)
    assert info["tasks"]["genre"]["labelled"] == sum(expected.labels[p]["genre"] is not None for p in on_disk)
    assert info["tasks"]["style"]["classes_present"] == len({expected.labels[p]["style"] for p in on_disk})
    assert list(info["tasks"]["style"]["class_counts"])[0] == "Abstract_Expressionism"
    assert info["missing_images"] == {"count": 0, "examples": []}
    # the saved catalogue round-trips, image root included
    cat = Catalog.load(out)
    ref, _ = ingest_wikiart(labels_dir, folder)
    assert cat.tasks == ref.tasks
    cols = ["id", "path", "split", *TASKS]
    pd.testing.assert_frame_equal(cat.df[cols].astype(object),
                                  ref.df[cols].astype(object).where(ref.df[cols].notna(), None))
    assert cat.image_root == folder.resolve()
    assert main(["catalog", "info", str(out)]) == 0
    assert "missing images: not checked" in capsys.readouterr().out
    assert main(["catalog", "info", str(out), "--check-files"]) == 0
    assert "missing images: none" in capsys.readouterr().out


def test_cli_ingest_wikiart_with_no_images_found_is_a_user_error(labels_dir, expected, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = main(["ingest", "wikiart", "--labels", str(labels_dir), "--images", str(tmp_path / "empty"),
               "--out", str(tmp_path / "w.parquet")])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"none of the {len(expected.labels)} listed images were found" in err
    assert "Traceback" not in err
    assert not (tmp_path / "w.parquet").exists()


def test_subset_copied_elsewhere(labels_dir, images, tmp_path):
    """--images may hold any subset; a copy of a few files gives exactly those rows."""
    folder, on_disk = images
    picked = sorted(p for p in on_disk if p.startswith("Impressionism/claude-monet"))[:2]
    assert len(picked) == 2
    for rel in picked:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / rel, tmp_path / rel)
    cat, rep = ingest_wikiart(labels_dir, tmp_path)
    assert sorted(cat.df["id"]) == picked and rep.missing_count == len(ag._table()) - 2


def test_cli_period_name(labels_dir, images, tmp_path):
    """`--period-name` names the period task; here read from the years in the WikiArt file names."""
    folder, _ = images
    out = tmp_path / "wikiart.parquet"
    assert main(["ingest", "wikiart", "--labels", str(labels_dir), "--images", str(folder), "--out", str(out),
                 "--period-from", "id", "--period-bins", "100", "--period-name", "century"]) == 0
    cat = Catalog.load(out)
    assert "period" not in cat.tasks and cat.tasks["century"].ordered
    by_id = dict(zip(cat.df["id"], cat.df["century"]))
    dated = {i: c for i, c in by_id.items() if c is not None}
    assert dated and len(dated) < len(by_id)                      # titles without a year stay unlabelled
    for i, c in dated.items():
        year = int(i.rsplit("-", 1)[1][:4])
        assert c == f"{year // 100 * 100} to {year // 100 * 100 + 99}", i

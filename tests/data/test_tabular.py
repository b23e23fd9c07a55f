"""Generic CSV importer: malformed rows, missing images, unknown split values, seeded split."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from artextract.cli import main
from artextract.data.catalog import Catalog, CatalogError
from artextract.data.tabular import ingest_csv, stratified_split


@pytest.fixture
def images(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(8):
        Image.new("RGB", (8, 8), (i * 30, 0, 0)).save(root / f"{i}.jpg")
    return root


def _csv(tmp_path, text: str):
    p = tmp_path / "paintings.csv"
    p.write_text(text)
    return p


def test_clean_csv_with_split_column(tmp_path, images):
    csv = _csv(tmp_path, "file,school,century,split,title\n0.jpg,Dutch,17th,train,A\n1.jpg,Italian,16th,val,B\n"
                         "2.jpg,Dutch,,Test ,C\n")
    cat, msgs = ingest_csv(csv, images, id_col=None, path_col="file", tasks=["school", "century"],
                           split_col="split", ordered=["century"])
    assert msgs == []
    assert cat.df["id"].tolist() == ["0.jpg", "1.jpg", "2.jpg"]
    assert cat.df["split"].tolist() == ["train", "val", "test"]  # case and spaces normalised
    assert cat.task("school").classes == ["Dutch", "Italian"]
    assert cat.task("century").classes == ["16th", "17th"] and cat.task("century").ordered
    assert cat.df["century"].isna().tolist() == [False, False, True]  # blank label -> no label, row kept
    assert cat.df["title"].tolist() == ["A", "B", "C"]  # other columns kept as metadata
    assert cat.missing_images() == []


def test_malformed_blank_duplicate_and_missing_rows_are_reported(tmp_path, images):
    csv = _csv(tmp_path, "file,school,split\n"
                         "0.jpg,Dutch,train\n"
                         "1.jpg,Dutch,train,EXTRA,FIELDS\n"  # malformed: too many fields
                         ",Dutch,train\n"  # no image path
                         "0.jpg,Italian,val\n"  # duplicated id
                         "9.jpg,Dutch,train\n"  # image not on disk
                         "sub/8.jpg,Dutch,train\n"  # image not on disk either
                         "2.jpg,Italian,val\n")
    cat, msgs = ingest_csv(csv, images, id_col=None, path_col="file", tasks=["school"], split_col="split")
    assert cat.df["id"].tolist() == ["0.jpg", "2.jpg"]
    assert cat.df["school"].tolist() == ["Dutch", "Italian"]  # the first of a duplicated id wins
    text = "\n".join(msgs)
    assert "skipped 1 malformed row(s)" in text and "1.jpg,Dutch,train,EXTRA,FIELDS" in text
    assert "skipped 1 row(s) without an image path" in text
    assert "skipped 1 row(s) with a duplicated id" in text
    assert "left out 2 row(s) whose image is not on disk" in text and "9.jpg" in text


def test_classes_come_from_kept_rows_only(tmp_path, images):
    csv = _csv(tmp_path, "file,school\n0.jpg,Dutch\n9.jpg,Flemish\n")
    cat, _ = ingest_csv(csv, images, id_col=None, path_col="file", tasks=["school"])
    assert cat.task("school").classes == ["Dutch"]


@pytest.mark.parametrize("value", ["validation", "holdout", "TRAINING"])
def test_unknown_split_value_is_a_clear_error(tmp_path, images, value):
    csv = _csv(tmp_path, f"file,school,split\n0.jpg,Dutch,train\n1.jpg,Dutch,{value}\n")
    with pytest.raises(CatalogError, match=rf"split column 'split' has values other than train/val/test: .*{value.lower()}"):
        ingest_csv(csv, images, id_col=None, path_col="file", tasks=["school"], split_col="split")


def test_blank_split_value_is_a_clear_error(tmp_path, images):
    csv = _csv(tmp_path, "file,school,split\n0.jpg,Dutch,train\n1.jpg,Dutch,\n2.jpg,Dutch\n")
    with pytest.raises(CatalogError, match="values other than train/val/test: .*missing"):
        ingest_csv(csv, images, id_col=None, path_col="file", tasks=["school"], split_col="split")


def test_unknown_column_is_a_clear_error(tmp_path, images):
    csv = _csv(tmp_path, "file,school\n0.jpg,Dutch\n")
    with pytest.raises(CatalogError, match="has no column 'century'; columns: file, school"):
        ingest_csv(csv, images, id_col=None, path_col="file", tasks=["school", "century"])
    with pytest.raises(CatalogError, match="has no column 'path'"):
        ingest_csv(csv, images, id_col=None, path_col="path", tasks=["school"])


def test_id_column_and_seeded_stratified_split(tmp_path, images):
    rows = "\n".join(f"obj{i},{i}.jpg,{'Dutch' if i % 2 else 'Italian'}" for i in range(8))
    csv = _csv(tmp_path, "objectid,file,school\n" + rows + "\n")
    a, msgs = ingest_csv(csv, images, id_col="objectid", path_col="file", tasks=["school"], seed=3, val_fraction=0.25)
    b, _ = ingest_csv(csv, images, id_col="objectid", path_col="file", tasks=["school"], seed=3, val_fraction=0.25)
    assert a.df["id"].tolist() == [f"obj{i}" for i in range(8)]
    assert a.df["split"].tolist() == b.df["split"].tolist()
    assert a.df.groupby("school")["split"].apply(lambda s: (s == "val").sum()).tolist() == [1, 1]
    assert any("seeded split (25% val, stratified on school)" in m for m in msgs)


def test_stratified_split_keeps_singletons_in_train():
    import pandas as pd

    s = stratified_split(pd.Series(["a", "a", "a", "a", "b", None, None]), 0.5, seed=0)
    assert s[4] == "train"  # a class with one member cannot be validated
    assert (s[:4] == "val").sum() == 2
    assert sorted(s[5:]) == ["train", "val"]  # missing labels form their own stratum


def test_cli_ingest_csv(tmp_path, images, capsys):
    csv = _csv(tmp_path, "file,school,century\n" + "".join(f"{i}.jpg,S{i % 2},C{i % 3}\n" for i in range(8))
               + "7.jpg,S1\n99.jpg,S0,C0\n")
    out = tmp_path / "mine.parquet"
    assert main(["ingest", "csv", "--csv", str(csv), "--images", str(images), "--path-col", "file",
                 "--tasks", "school,century", "--ordered", "century", "--out", str(out)]) == 0
    text = capsys.readouterr().err
    assert "left out 1 row(s) whose image is not on disk" in text and "wrote" in text
    cat = Catalog.load(out)
    assert len(cat) == 8 and cat.task("century").ordered and cat.image_root == images.resolve()
    assert main(["catalog", "info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 8
    # a bad split column is an error message and exit status 2, not a traceback
    bad = _csv(tmp_path, "file,school,split\n0.jpg,S0,dev\n")
    assert main(["ingest", "csv", "--csv", str(bad), "--images", str(images), "--path-col", "file",
                 "--tasks", "school", "--split-col", "split", "--out", str(tmp_path / "x.parquet")]) == 2
    assert "values other than train/val/test" in capsys.readouterr().err


@pytest.mark.parametrize("fraction,n_val", [(None, 2), ("0.5", 4), ("0.75", 6)])
def test_cli_id_col_val_fraction_and_period_name(tmp_path, images, fraction, n_val):
    """`--id-col` names the id column, `--val-fraction` the share of each class in val (4 per class
    here: 20% rounds to 1, 50% to 2, 75% to 3), `--period-name` the period task."""
    rows = "".join(f"obj{i},{i}.jpg,{'Dutch' if i % 2 else 'Italian'},c. {1600 + 30 * i}\n" for i in range(8))
    csv = _csv(tmp_path, "objectid,file,school,date\n" + rows)
    out = tmp_path / "c.parquet"
    argv = ["ingest", "csv", "--csv", str(csv), "--images", str(images), "--path-col", "file", "--tasks", "school",
            "--id-col", "objectid", "--period-from", "date", "--period-bins", "100", "--period-name", "century",
            "--out", str(out)]
    assert main(argv + (["--val-fraction", fraction] if fraction else [])) == 0
    cat = Catalog.load(out)
    assert cat.df["id"].tolist() == [f"obj{i}" for i in range(8)] and cat.df["path"].tolist()[0] == "0.jpg"
    assert (cat.df["split"] == "val").sum() == n_val
    assert cat.df.groupby("school")["split"].apply(lambda s: (s == "val").sum()).tolist() == [n_val // 2] * 2
    assert "period" not in cat.tasks and cat.tasks["century"].ordered
    assert cat.df["century"].tolist()[:2] == ["1600 to 1699", "1600 to 1699"] and cat.df["century"].iloc[-1] == "1800 to 1899"
    if fraction == "0.5":  # --seed draws another split of the same size
        assert main(argv + ["--val-fraction", "0.5", "--seed", "3"]) == 0
        other = Catalog.load(out).df
        assert (other["split"] == "val").sum() == 4 and other["split"].tolist() != cat.df["split"].tolist()
    # without --id-col the ids are the paths
    assert main(argv[:argv.index("--id-col")] + ["--out", str(out)]) == 0
    assert Catalog.load(out).df["id"].tolist() == [f"{i}.jpg" for i in range(8)]


# ---------------------------------------------------------------------- every record accounted for
def test_a_field_longer_than_the_csv_module_default_keeps_its_row(tmp_path, images, capsys):
    """Python's csv module refuses fields over 131,072 characters; pandas' python engine then dropped
    the row without a word (a 3-row file gave 2 paintings, exit 0)."""
    long_notes = "x" * 131_073
    csv = _csv(tmp_path, f"path,notes\n0.jpg,short\n1.jpg,{long_notes}\n2.jpg,also short\n")
    out = tmp_path / "c.parquet"
    assert main(["ingest", "csv", "--csv", str(csv), "--images", str(images), "--out", str(out)]) == 0
    cat = Catalog.load(out)
    assert cat.df["id"].tolist() == ["0.jpg", "1.jpg", "2.jpg"]
    assert cat.df.set_index("id").loc["1.jpg", "notes"] == long_notes


def test_every_record_is_imported_or_reported_with_its_reason(tmp_path, images):
    from artextract.data.catalog import RowAccount

    csv = _csv(tmp_path, "objectid,file,school\n"
                         "a,0.jpg,Dutch\n"
                         ",1.jpg,Dutch\n"                 # no id
                         "b,,Dutch\n"                     # no path, with the id of a later row
                         "b,2.jpg,Dutch\n"                # kept: the row above has no path
                         "c,3.jpg,Dutch,EXTRA\n"          # too many fields
                         "\n"                             # a blank line is not a record
                         "a,4.jpg,Italian\n"              # duplicated id
                         "d,99.jpg,Italian\n"             # not on disk
                         f"e,{'n' * 300}.jpg,Italian\n")  # a name too long for the file system: not on disk
    acc = RowAccount()
    cat, msgs = ingest_csv(csv, images, id_col="objectid", path_col="file", tasks=["school"], account=acc)
    assert cat.df["id"].tolist() == ["a", "b"]
    assert acc.records == 8 and acc.imported == 2 and acc.reported == 6
    assert acc.left_out == {"malformed (more fields than the header)": 1, "without an image path": 1,
                            "without an id": 1, "with a duplicated id": 1, "image not on disk": 2}
    text = "\n".join(msgs)
    assert "skipped 1 row(s) without an id in column 'objectid'" in text and "line 6: c,3.jpg" in text
    assert "8 record(s) read: 2 imported, 6 left out" in text


def test_an_unclosed_quote_is_an_error_not_a_swallowed_file(tmp_path, images):
    csv = _csv(tmp_path, 'path,notes\n0.jpg,"a note\n1.jpg,b\n2.jpg,c\n')
    with pytest.raises(CatalogError, match=r"line 2: a quoted field is opened and never closed.*3 line"):
        ingest_csv(csv, images, id_col=None, path_col="path", tasks=[])
    # a closed multi-line field is fine, and said
    csv = _csv(tmp_path, 'path,notes\n0.jpg,"two\nlines"\n1.jpg,b\n')
    cat, msgs = ingest_csv(csv, images, id_col=None, path_col="path", tasks=[])
    assert cat.df["notes"].tolist() == ["two\nlines", "b"]
    assert any("1 row(s) hold line breaks inside quoted fields (2 lines, e.g. lines 2-3)" in m for m in msgs)


def test_metadata_columns_never_replace_the_catalogue_columns(tmp_path, images):
    csv = _csv(tmp_path, "file,id,path,split,school\n0.jpg,x,elsewhere.jpg,nonsense,Dutch\n"
                         "1.jpg,x,,,Dutch\n")
    cat, _ = ingest_csv(csv, images, id_col=None, path_col="file", tasks=["school"])
    assert cat.df["id"].tolist() == ["0.jpg", "1.jpg"] and cat.df["path"].tolist() == ["0.jpg", "1.jpg"]
    assert cat.df["csv_id"].tolist() == ["x", "x"] and cat.df["csv_path"].tolist() == ["elsewhere.jpg", None]
    assert set(cat.df["split"]) <= {"train", "val"} and cat.df["csv_split"].tolist() == ["nonsense", None]
    with pytest.raises(CatalogError, match="'split' cannot be a task"):
        ingest_csv(csv, images, id_col=None, path_col="file", tasks=["split"])


# ---------------------------------------------------------------------- encodings
TEXT = "path,school\n0.jpg,Flämische Schule\n1.jpg,École de Paris\n"


@pytest.mark.parametrize("encoding,note", [("utf-8", None), ("utf-8-sig", None), ("utf-16", None),
                                           ("utf-16-le", "read as UTF-16-LE"), ("cp1252", "read it as Windows-1252"),
                                           ("latin-1", "read it as Windows-1252")])
def test_the_encoding_is_detected(tmp_path, images, encoding, note):
    p = tmp_path / "p.csv"
    p.write_bytes(TEXT.encode(encoding))
    cat, msgs = ingest_csv(p, images, id_col=None, path_col="path", tasks=["school"])
    assert cat.df["id"].tolist() == ["0.jpg", "1.jpg"]          # a BOM is not part of the first column's name
    assert cat.task("school").classes == ["Flämische Schule", "École de Paris"]
    assert (note is None and not any("read" in m for m in msgs)) or any(note in m for m in msgs)


def test_cli_encoding_option(tmp_path, images, capsys):
    p = tmp_path / "p.csv"
    p.write_bytes(TEXT.encode("latin-1"))
    out = tmp_path / "c.parquet"
    argv = ["ingest", "csv", "--csv", str(p), "--images", str(images), "--tasks", "school", "--out", str(out)]
    assert main(argv) == 0                                     # no UnicodeDecodeError traceback
    err = capsys.readouterr().err
    assert "is not valid UTF-8 text: byte(s) e4 at offset 20 (line 2)" in err and "--encoding" in err
    assert main(argv + ["--encoding", "latin-1"]) == 0
    assert "not valid" not in capsys.readouterr().err
    assert Catalog.load(out).task("school").classes == ["Flämische Schule", "École de Paris"]
    # the wrong encoding, or an unknown one: a message and exit status 2
    assert main(argv + ["--encoding", "utf-8"]) == 2
    assert "is not valid utf-8 text" in capsys.readouterr().err
    assert main(argv + ["--encoding", "klingon"]) == 2
    assert "unknown encoding 'klingon'" in capsys.readouterr().err
    p.write_bytes(b"\xff\xfe" + TEXT.encode("utf-16-le")[:-1])   # a UTF-16 BOM, then a broken last character
    assert main(argv) == 2
    assert "UTF-16 byte order mark" in capsys.readouterr().err

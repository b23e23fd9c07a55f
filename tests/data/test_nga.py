"""NGA open data importer: real column layout, multi-line fields, timeframe labels, primary views."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import nga_fixtures as fx

from artextract.cli import main
from artextract.data.catalog import Catalog, CatalogError, RowAccount
from artextract.data.nga import NGA_TIMEFRAMES, ingest_nga, normalize_timeframe


@pytest.fixture
def opendata(tmp_path, sample):
    folder = tmp_path / "opendata"
    expected = fx.build_opendata(folder, sample)
    return folder, expected


def test_timeframes_are_the_20_ordered_nga_classes():
    assert NGA_TIMEFRAMES == fx.TIMEFRAMES
    assert len(NGA_TIMEFRAMES) == 20
    assert normalize_timeframe(" 1401   to 1500") == "1401 to 1500"
    assert normalize_timeframe("Before 1300") == "before 1300"
    assert normalize_timeframe("") is None and normalize_timeframe(None) is None
    assert normalize_timeframe("15th century") is None


def test_fixture_csv_really_has_multiline_fields(opendata):
    folder, _ = opendata
    text = (folder / "objects.csv").read_text()
    header = text.splitlines()[0].split(",")
    assert header == fx.object_columns()
    # many more physical lines than records: quoted fields span lines
    assert text.count("\n") > 3 * len(pd.read_csv(folder / "objects.csv", usecols=["objectid"], dtype=str))


def test_ingest_with_images(opendata, tmp_path, sample):
    folder, expected = opendata
    cat, msgs = ingest_nga(folder, sample.dir)
    assert len(cat) == len(sample) == 60
    assert set(cat.ids) == set(expected)
    assert cat.source == "nga"
    assert cat.image_root == sample.dir.resolve()
    assert cat.missing_images() == []
    df = cat.df.set_index("id")
    # labels
    tf = cat.task("timeframe")
    assert tf.ordered and tf.classes == NGA_TIMEFRAMES
    for oid, e in expected.items():
        assert df.at[oid, "timeframe"] == e["timeframe"] or (e["timeframe"] is None and df.at[oid, "timeframe"] is None)
        assert df.at[oid, "artist"] == e["artist"]
        assert df.at[oid, "attribution"] == e["artist"]
        # primary view only: the manifest's uuid and IIIF base, never the alternate / higher-sequence one
        assert df.at[oid, "uuid"] == e["uuid"]
        assert df.at[oid, "iiifurl"] == e["iiifurl"]
        assert df.at[oid, "title"] == e["title"]
        assert df.at[oid, "beginyear"] == e["beginyear"]
        assert df.at[oid, "path"] == f"{oid}.jpg"
    assert not cat.task("artist").ordered
    assert cat.task("artist").classes == sorted(fx.ARTISTS)
    for col in ("displaydate", "endyear", "medium"):
        assert col in df.columns
    assert "provenancetext" not in df.columns and "inscription" not in df.columns
    # missing timeframes: blanks and the unknown value
    n_blank = sum(e["timeframe"] is None for e in expected.values())
    assert cat.df["timeframe"].isna().sum() == n_blank
    assert any("14th century" in m for m in msgs)
    assert any("alternate view" in m for m in msgs)
    assert any("several primary views" in m for m in msgs)
    assert any("left out 3 object" in m for m in msgs)      # paintings without any image
    # split: seeded, stratified on timeframe
    assert set(cat.df["split"]) == {"train", "val"}
    # each timeframe (and the missing ones) sends round(20%) of its paintings to val, at least 1, never all
    for tf_value, group in cat.df.groupby(cat.df["timeframe"].fillna("missing")):
        n = len(group)
        want = 0 if n < 2 else min(max(round(n * 0.2), 1), n - 1)
        assert (group["split"] == "val").sum() == want, tf_value
    again, _ = ingest_nga(folder, sample.dir)
    assert again.df["split"].tolist() == cat.df["split"].tolist()
    other, _ = ingest_nga(folder, sample.dir, seed=1)
    assert other.df["split"].tolist() != cat.df["split"].tolist()
    # round trip through Parquet keeps the ordered task and the metadata
    path = cat.save(tmp_path / "nga.parquet")
    loaded = Catalog.load(path)
    assert loaded.task("timeframe").ordered
    assert loaded.task("timeframe").classes == NGA_TIMEFRAMES
    assert loaded.df["iiifurl"].tolist() == cat.df["iiifurl"].tolist()
    assert loaded.image_root == sample.dir.resolve()
    info = loaded.info(check_files=True)
    assert info["tasks"]["timeframe"]["ordered"] is True
    assert info["missing_images"]["count"] == 0


def test_chunked_reading_gives_the_same_catalogue(opendata, sample):
    folder, _ = opendata
    a, _ = ingest_nga(folder, sample.dir)
    b, _ = ingest_nga(folder, sample.dir, chunksize=7)
    pd.testing.assert_frame_equal(a.df, b.df)


def test_openaccess_column_of_newer_exports(tmp_path, sample):
    folder = tmp_path / "od"
    fx.build_opendata(folder, sample, openaccess=True)
    cat, _ = ingest_nga(folder, sample.dir)
    assert len(cat) == len(sample)
    assert set(cat.df["openaccess"]) == {"1"}


def test_without_images_uses_default_root_and_keeps_rows(opendata, tmp_path):
    folder, expected = opendata
    cat, msgs = ingest_nga(folder, catalog_path=tmp_path / "cats" / "nga.parquet")
    assert len(cat) == len(expected)
    assert cat.image_root == (tmp_path / "cats" / "nga_images").resolve()
    assert len(cat.missing_images()) == len(expected)
    assert any("artextract download nga" in m for m in msgs)


def test_classification_filter(opendata):
    folder, expected = opendata
    n = len(expected)
    drawings, _ = ingest_nga(folder, classification="drawing")
    assert len(drawings) == 4 and all(i.startswith("900") for i in drawings.ids)
    both, _ = ingest_nga(folder, classification="Painting,Sculpture")
    assert len(both) == n + 4
    everything, _ = ingest_nga(folder, classification="all", with_artist=False)
    assert len(everything) == n + fx.N_OTHER_CLASSIFICATIONS and "artist" not in everything.tasks
    with pytest.raises(CatalogError, match="no object"):
        ingest_nga(folder, classification="Tapestry")


def test_artist_min_count(opendata):
    folder, expected = opendata
    counts = pd.Series([e["artist"] for e in expected.values()]).value_counts()
    assert counts.iloc[0] == 30 and (counts.iloc[1:] == 6).all()       # one artist has half the paintings
    cat, msgs = ingest_nga(folder, artist_min_count=10)
    assert cat.task("artist").classes == [fx.ARTISTS[-1]]
    assert cat.df["artist"].isna().sum() == 30
    assert (cat.df["attribution"] == cat.df["artist"]).sum() == 30      # attribution itself is kept
    everyone, _ = ingest_nga(folder, artist_min_count=6)
    assert everyone.task("artist").classes == sorted(fx.ARTISTS)


def test_missing_files_give_clear_errors(tmp_path, opendata, sample):
    with pytest.raises(CatalogError, match="no objects.csv"):
        ingest_nga(tmp_path)
    folder, _ = opendata
    only_objects = tmp_path / "only"
    only_objects.mkdir()
    (only_objects / "objects.csv").write_bytes((folder / "objects.csv").read_bytes())
    with pytest.raises(CatalogError, match="published_images"):
        ingest_nga(only_objects)
    # with the images folder, objects.csv alone is enough
    cat, msgs = ingest_nga(only_objects, sample.dir)
    assert len(cat) == len(sample) and cat.missing_images() == []
    (tmp_path / "wrong").mkdir()
    (tmp_path / "wrong" / "objects.csv").write_text("a,b\n1,2\n")
    with pytest.raises(CatalogError, match="visualbrowsertimespan"):
        ingest_nga(tmp_path / "wrong", sample.dir)


def _small_opendata(folder: Path, objects: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "objects.csv").write_bytes(objects)
    (folder / "published_images.csv").write_bytes(
        b"uuid,iiifurl,viewtype,sequence,depictstmsobjectid\n"
        + b"".join(f"u{i},https://api.nga.gov/iiif/u{i},primary,0,{i}\n".encode() for i in range(1, 9)))
    return folder


def test_every_objects_record_is_imported_or_reported(tmp_path):
    """pandas' C parser, used before, turned a NUL byte into hundreds of thousands of rows and dropped a
    line of spaces without a word; every record is now imported or reported with its reason."""
    head = b"objectid,title,visualbrowsertimespan,classification,provenancetext\n"
    rows = [b"1,A,1401 to 1500,Painting,short", b"2,B\x00nul,1401 to 1500,Painting,x",
            b"3,C,1401 to 1500,Painting," + b"p" * 200_000,            # a field over the csv module's default limit
            b"   ",                                                    # a record of spaces: no objectid
            b"4,D,1401 to 1500,Painting,x,EXTRA",                      # more fields than the header
            b"5,E,1401 to 1500,Drawing,x", b"1,A again,1401 to 1500,Painting,x",
            b'6,F,1401 to 1500,Painting,"two\nlines"', b"99,G,1401 to 1500,Painting,no image anywhere"]
    acc = RowAccount()
    cat, msgs = ingest_nga(_small_opendata(tmp_path / "od", head + b"\n".join(rows) + b"\n"), account=acc,
                           catalog_path=tmp_path / "nga.parquet")
    assert sorted(cat.ids, key=int) == ["1", "2", "3", "6"]
    assert cat.df.set_index("id").loc["2", "title"] == "B\x00nul"
    assert acc.records == len(rows) == acc.imported + acc.reported
    assert acc.left_out == {"malformed": 1, "of another classification": 2, "with a duplicated objectid": 1,
                            "with neither a published image nor an image on disk": 1}
    assert any("skipped 1 malformed line(s), e.g. ['line 6: 6 fields, the header has 5']" in m for m in msgs)


@pytest.mark.parametrize("classification", ["Painting", "all"])
def test_an_objects_csv_without_rows_gives_an_empty_catalogue(tmp_path, classification):
    """Found by the fuzzer: a header-only objects.csv raised KeyError / IndexError on the empty tables."""
    od = _small_opendata(tmp_path / "od", b"objectid,title,visualbrowsertimespan,classification\n")
    acc = RowAccount()
    cat, msgs = ingest_nga(od, classification=classification, catalog_path=tmp_path / "n.parquet", account=acc)
    assert len(cat) == 0 and acc.records == 0
    cat.save(tmp_path / "n.parquet")


@pytest.mark.parametrize("objects,message", [
    ("objectid,title,visualbrowsertimespan\n1,Caf\u00e9,1401 to 1500\n".encode("latin-1"),
     r"is not UTF-8 text \(byte e9 at offset 42, line 2\); NGA open data exports are UTF-8"),
    (b'objectid,title,visualbrowsertimespan\n1,"open,1401 to 1500\n2,b,1401 to 1500\n',
     "line 2: a quoted field is opened and never closed"),
    (b"", "is empty"), (b"\n\n", "is empty"),
])
def test_unreadable_objects_csv_is_a_clear_error(tmp_path, objects, message):
    with pytest.raises(CatalogError, match=message):
        ingest_nga(_small_opendata(tmp_path / "od", objects), classification="all")


def test_repository_layout_with_data_folder(tmp_path, sample):
    fx.build_opendata(tmp_path / "opendata" / "data", sample)
    cat, _ = ingest_nga(tmp_path / "opendata", sample.dir)
    assert len(cat) == len(sample)


def test_cli_ingest_nga(opendata, tmp_path, capsys, sample):
    folder, _ = opendata
    out = tmp_path / "nga.parquet"
    assert main(["ingest", "nga", "--opendata", str(folder), "--out", str(out)]) == 0
    text = capsys.readouterr().err
    assert "artextract download nga" in text
    cat = Catalog.load(out)
    assert len(cat) == 60 and cat.image_root == (tmp_path / "nga_images").resolve()
    assert main(["ingest", "nga", "--opendata", str(folder), "--images", str(sample.dir), "--out", str(out),
                 "--classification", "Painting"]) == 0
    assert Catalog.load(out).missing_images() == []
    assert main(["catalog", "info", str(out)]) == 0
    assert "(ordered)" in capsys.readouterr().out
    assert main(["ingest", "nga", "--opendata", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_help_has_examples(capsys):
    for argv in (["ingest", "nga", "--help"], ["download", "nga", "--help"], ["download", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        assert "example:" in capsys.readouterr().out


def test_cli_artist_val_fraction_and_period_options(opendata, tmp_path, sample):
    """`--no-artist`, `--artist-min-count`, `--val-fraction` (per timeframe: round(n * f), at least 1,
    at most n - 1 of a timeframe with n >= 2 objects) and `--period-name`, through the command line."""
    folder, expected = opendata
    out = tmp_path / "nga.parquet"
    base = ["ingest", "nga", "--opendata", str(folder), "--images", str(sample.dir), "--out", str(out)]
    assert main(base + ["--no-artist"]) == 0
    cat = Catalog.load(out)
    assert "artist" not in cat.tasks and "timeframe" in cat.tasks and len(cat) == 60
    assert main(base + ["--artist-min-count", "10"]) == 0
    cat = Catalog.load(out)
    assert cat.task("artist").classes == [fx.ARTISTS[-1]] and cat.df["artist"].isna().sum() == 30

    def val_per_timeframe(fraction):
        assert main(base + ["--val-fraction", str(fraction)]) == 0
        df = Catalog.load(out).df
        got = df.groupby(df["timeframe"].fillna("-"))["split"].apply(lambda s: int((s == "val").sum()))
        n = df.groupby(df["timeframe"].fillna("-")).size()
        want = n.apply(lambda m: 0 if m < 2 else min(max(int(round(m * fraction)), 1), m - 1))
        assert got.to_dict() == want.to_dict()
        return int(got.sum())

    assert val_per_timeframe(0.2) < val_per_timeframe(0.6)
    assert main(base + ["--period-from", "displaydate", "--period-bins", "50", "--period-name", "dated"]) == 0
    cat = Catalog.load(out)
    assert "period" not in cat.tasks and cat.tasks["dated"].ordered
    # "c. YEAR" is YEAR +- 5 years: the 50-year bin of YEAR
    lo = cat.df["displaydate"].str[3:].astype(int) // 50 * 50
    assert cat.df["dated"].tolist() == [f"{a} to {a + 49}" for a in lo]

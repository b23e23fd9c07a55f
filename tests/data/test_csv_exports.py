"""CSV files written for people (the review decisions, the outliers and duplicates tables) neutralise
cells that a spreadsheet would run as a formula (OWASP "CSV Injection"): a text cell starting with
=, +, -, @, a tab or a carriage return gets a leading '. The Parquet catalogue export keeps labels as
they are, and the programs that read an outliers CSV back (the web app, the report) undo the quote."""
from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from artextract.cli import main
from artextract.data.catalog import Catalog, TaskSpec
from artextract.utils import csv_safe_frame, csv_safe_value, csv_unescape_frame, csv_unescape_value

EVIL = ['=HYPERLINK("http://evil.example","click")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
        "\tTAB", "\rCR", "'=already quoted"]


@pytest.mark.parametrize("value,safe", [
    ("=1+1", "'=1+1"), ("+x", "'+x"), ("-x", "'-x"), ("@x", "'@x"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("-", "'-"), ("'=x", "''=x"), ("''@x", "'''@x"),
    ("-1", "-1"), ("+2.5", "+2.5"), ("-1.5e3", "-1.5e3"), ("-.5", "-.5"),          # plain numbers stay numbers
    ("'s-Hertogenbosch", "'s-Hertogenbosch"), ("Baroque", "Baroque"), ("", ""), ("a=b", "a=b"),
    (None, None), (3, 3), (-1.0, -1.0),
])
def test_csv_safe_value_and_its_inverse(value, safe):
    assert csv_safe_value(value) == safe
    assert csv_unescape_value(csv_safe_value(value)) == value


def test_csv_safe_frame_touches_text_only_and_round_trips():
    df = pd.DataFrame({"id": ["a", "=b", None], "score": [-1.0, 2.0, np.nan], "n": [-1, 2, 3],
                       "label": pd.Series(["-x", "y", "@z"], dtype="category")})
    df["=col"] = ["x", "y", "z"]
    safe = csv_safe_frame(df)
    assert safe["id"].tolist()[:2] == ["a", "'=b"] and pd.isna(safe["id"][2])
    assert safe["label"].tolist() == ["'-x", "y", "'@z"] and list(safe.columns)[-1] == "'=col"
    assert safe["score"].dtype == df["score"].dtype and safe["n"].tolist() == [-1, 2, 3]
    assert df["id"].tolist()[1] == "=b"                                    # the input is not changed
    text = safe.to_csv(index=False)
    back = csv_unescape_frame(pd.read_csv(io.StringIO(text), dtype={"id": str, "label": str}))
    assert back["id"].tolist()[:2] == ["a", "=b"] and back["label"].tolist() == ["-x", "y", "@z"]
    assert list(back.columns)[-1] == "=col" and back["n"].tolist() == [-1, 2, 3]


def _no_formula_cell(text: str) -> None:
    """Every cell of a CSV text is plain: it does not start with a formula character, or is a number."""
    import csv
    import re

    number = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
    for row in csv.reader(io.StringIO(text, newline="")):
        for cell in row:
            assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r") or number.fullmatch(cell), f"formula {cell!r}"


@pytest.fixture
def reviewed(tmp_path):
    """A catalogue whose style labels start with formula characters, and review decisions on it."""
    from artextract.web.db import ReviewStore

    classes = sorted(EVIL[:4])
    df = pd.DataFrame({"id": ["=a", "-b", "c"], "path": ["a.jpg", "b.jpg", "c.jpg"], "split": ["train"] * 3,
                       "style": [classes[0], classes[1], classes[2]]})
    cat = Catalog(df, {"style": TaskSpec("style", classes)}, tmp_path)
    cat.save(tmp_path / "c.parquet")
    store = ReviewStore(tmp_path / "reviews.db")
    store.record("=a", "style", "relabel", classes[3], given_label=classes[0], suggested_label=classes[1],
                 reviewer="@alice")
    store.record("-b", "style", "accept", given_label=classes[1], suggested_label=classes[2], reviewer="bob")
    return cat, store, classes


def test_review_export_csv_file_is_safe_and_the_parquet_export_is_not_altered(reviewed, tmp_path):
    from artextract.web.review import export_reviews

    cat, store, classes = reviewed
    export_reviews(cat, store, tmp_path / "decisions.csv")
    text = (tmp_path / "decisions.csv").read_text()
    _no_formula_cell(text)
    df = pd.read_csv(tmp_path / "decisions.csv", dtype=str)
    assert set(df["id"]) == {"'=a", "'-b"} and "'@alice" in set(df["reviewer"])
    assert set(csv_unescape_frame(df)["final_label"]) == {classes[3], classes[2]}
    export_reviews(cat, store, tmp_path / "reviewed.parquet")           # the catalogue keeps its labels
    out = Catalog.load(tmp_path / "reviewed.parquet")
    assert out.df.set_index("id").loc["=a", "style"] == classes[3] and out.task("style").classes == classes


def test_review_export_route_is_safe(reviewed):
    from artextract.web.routes.review import api_export

    cat, store, classes = reviewed
    resp = api_export("csv", SimpleNamespace(catalog=cat, reviews=store))
    text = resp.body.decode()
    _no_formula_cell(text)
    assert "'=HYPERLINK" in text or "'+1+cmd" in text
    assert resp.headers["content-disposition"] == 'attachment; filename="c.reviews.csv"'


def test_the_web_app_reads_a_safe_outliers_csv_back(reviewed, tmp_path):
    from artextract.web.review import OutlierTable

    cat, _, classes = reviewed
    df = pd.DataFrame({"id": ["=a", "-b"], "task": ["style", "style"], "given_label": [classes[0], classes[1]],
                       "suggested_label": [classes[1], classes[2]], "score": [0.9, -0.5], "rank": [1, 2],
                       "flagged": [True, True]})
    csv_safe_frame(df).to_csv(tmp_path / "o.csv", index=False)
    table = OutlierTable(tmp_path / "o.csv", cat)
    assert [(r["id"], r["given_label"], r["suggested_label"]) for r in table.queue] == [
        ("=a", classes[0], classes[1]), ("-b", classes[1], classes[2])]
    assert table.unknown_ids == 0 and table.queue[1]["score"] == -0.5


@pytest.mark.slow   # embeds 25 small images with a random tiny_cnn (about ten seconds)
def test_outliers_and_duplicates_csv_are_safe(tmp_path):
    rng = np.random.default_rng(0)
    img = tmp_path / "imgs"
    img.mkdir()
    rows = []
    for i in range(24):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(img / f"{i}.png")
        rows.append({"id": f"-{i}x" if i < 3 else f"p{i}", "path": f"{i}.png", "split": "train",
                     "style": EVIL[0] if i % 2 else EVIL[3]})
    Image.open(img / "5.png").save(img / "dup.png")
    rows.append({"id": "=dup", "path": "dup.png", "split": "train", "style": EVIL[3]})
    df = pd.DataFrame(rows)
    Catalog(df, {"style": TaskSpec("style", sorted(set(df["style"])))}, img).save(tmp_path / "c.parquet")
    out = tmp_path / "o.csv"
    assert main(["outliers", "--catalog", str(tmp_path / "c.parquet"), "--task", "style", "--backbone", "tiny_cnn",
                 "--pretrained", "none", "--out", str(out), "--no-progress"]) == 0
    _no_formula_cell(out.read_text())
    back = csv_unescape_frame(pd.read_csv(out, dtype={"id": str, "given_label": str}))
    assert set(back["id"]) == set(df["id"]) and set(back["given_label"]) == {EVIL[0], EVIL[3]}
    dup = tmp_path / "d.csv"
    assert main(["duplicates", "--catalog", str(tmp_path / "c.parquet"), "--backbone", "none", "--out", str(dup),
                 "--no-progress"]) == 0
    _no_formula_cell(dup.read_text())
    assert "'=dup" in dup.read_text()
    assert Path(out).stat().st_size > 0
    # the neighbours tables of `similar`
    index = tmp_path / "idx"
    assert main(["index", "--catalog", str(tmp_path / "c.parquet"), "--backbone", "tiny_cnn", "--pretrained", "none",
                 "--out", str(index), "--no-progress"]) == 0
    for query, name in ((["--all"], "all.csv"), (["--id", "=dup"], "one.csv")):
        assert main(["similar", "--index", str(index), *query, "-k", "3", "--out", str(tmp_path / name)]) == 0
        text = (tmp_path / name).read_text()
        _no_formula_cell(text)
        assert "'=dup" in text


def test_per_class_csv_of_an_evaluation_is_safe(tmp_path):
    from artextract.training.metrics import per_class_table, write_per_class_csv
    classes = EVIL[:4] + ["Baroque"]
    y = np.arange(10) % 5
    probs = np.eye(5)[y]
    write_per_class_csv(tmp_path / "per_class.csv", per_class_table(probs, y, classes))
    text = (tmp_path / "per_class.csv").read_text()
    _no_formula_cell(text)
    back = csv_unescape_frame(pd.read_csv(tmp_path / "per_class.csv"))
    assert list(back["class"]) == classes and list(back["support"]) == [2] * 5

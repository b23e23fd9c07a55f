"""`artextract serve` and `artextract review export`."""
from __future__ import annotations

import pandas as pd
import pytest

from artextract.cli import build_parser, main
from artextract.data.catalog import Catalog
from artextract.web.db import ReviewStore
from artextract.web.explorer import default_db_path


@pytest.mark.parametrize("argv", [["serve", "--help"], ["review", "export", "--help"], ["review", "--help"],
                                  ["review", "agreement", "--help"], ["users", "--help"], ["users", "add", "--help"],
                                  ["users", "list", "--help"], ["users", "remove", "--help"],
                                  ["users", "token", "--help"]])
def test_help_has_an_example(argv, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(argv)
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out and "artextract " in out.split("example:")[1]


def test_serve_defaults_to_loopback():
    args = build_parser().parse_args(["serve", "--catalog", "c.parquet"])
    assert args.host == "127.0.0.1" and args.port == 8000 and args.max_upload_mb == 20


def test_serve_refuses_what_it_cannot_load(web_demo, tmp_path, capsys):
    base = ["serve", "--catalog", str(web_demo), "--db", str(tmp_path / "r.sqlite"), "--no-thumb-cache"]
    assert main(base + ["--outliers", str(tmp_path / "missing.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert main(base + ["--outliers", str(bad)]) == 2
    assert "lacks the column" in capsys.readouterr().err
    assert main(base + ["--run", str(tmp_path / "no-run")]) == 2
    err = capsys.readouterr().err
    assert "run" in err and "Traceback" not in err
    assert main(base + ["--index", str(tmp_path / "no-index")]) == 2
    assert "index" in capsys.readouterr().err
    assert main(["serve", "--catalog", str(tmp_path / "nope.parquet")]) == 2


def test_review_export_cli(web_demo, tmp_path, capsys):
    cat = Catalog.load(web_demo)
    db = tmp_path / "r.sqlite"
    style = cat.tasks["style"].classes
    a, b = cat.ids[0], cat.ids[1]
    new = next(c for c in style if c != cat.df.loc[0, "style"])
    s = ReviewStore(db)
    s.record(a, "style", "relabel", new, given_label=cat.df.loc[0, "style"])
    s.record(b, "genre", "keep", given_label=cat.df.loc[1, "genre"])
    s.record("ghost", "style", "relabel", new)  # not in the catalogue: reported, skipped

    out = tmp_path / "out" / "fixed.parquet"
    assert main(["review", "export", "--catalog", str(web_demo), "--db", str(db), "--out", str(out)]) == 0
    assert "1 label(s) changed" in capsys.readouterr().out
    fixed = Catalog.load(out)
    assert fixed.df.set_index("id").loc[a, "style"] == new
    assert not fixed.missing_images(), "the image root still points at the images"
    assert fixed.extra["reviewed"]["applied"] == 1

    csv = tmp_path / "dec.csv"
    assert main(["review", "export", "--catalog", str(web_demo), "--db", str(db), "--out", str(csv)]) == 0
    df = pd.read_csv(csv)
    assert len(df) == 3 and set(df["action"]) == {"relabel", "keep"}

    # --format overrides the --out suffix: decisions as CSV into a .txt, a catalogue into a .csv
    assert main(["review", "export", "--catalog", str(web_demo), "--db", str(db), "--out", str(tmp_path / "dec.txt"),
                 "--format", "csv"]) == 0
    assert "3 decision(s)" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "dec.txt").equals(df)
    assert main(["review", "export", "--catalog", str(web_demo), "--db", str(db), "--out", str(tmp_path / "cat.csv"),
                 "--format", "catalog"]) == 0
    assert "1 label(s) changed" in capsys.readouterr().out
    assert Catalog.load(tmp_path / "cat.csv").df.set_index("id").loc[a, "style"] == new
    assert main(["review", "export", "--catalog", str(web_demo), "--db", str(db), "--out", str(tmp_path / "x.csv"),
                 "--format", "auto"]) == 0 and "decision(s)" in capsys.readouterr().out

    assert main(["review", "export", "--catalog", str(web_demo), "--db", str(db), "--out", str(web_demo)]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert main(["review", "export", "--catalog", str(web_demo), "--db", str(tmp_path / "none.sqlite"),
                 "--out", str(csv)]) == 2
    assert "no review database" in capsys.readouterr().err


def test_default_db_beside_the_catalogue(web_demo):
    assert default_db_path(web_demo) == web_demo.parent / "catalog.reviews.sqlite"

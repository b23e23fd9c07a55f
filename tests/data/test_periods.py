"""Dates from free text into ordered period bins: a table of real-world strings (display dates as
museums write them) with their year range, NGA timeframe and 50-year bin; the importers' option."""
from __future__ import annotations

import pandas as pd
import pytest

from artextract.cli import main
from artextract.data.catalog import Catalog, CatalogError
from artextract.data.nga import NGA_TIMEFRAMES
from artextract.data.periods import NGA_BOUNDS, add_period_task, make_bins, parse_period, period_task

#: text -> (start, end, NGA timeframe, 50-year bin)
TABLE = [
    ("1850-1899", 1850, 1899, "1851 to 1875", "1850 to 1899"),
    ("c. 1665", 1660, 1670, "1651 to 1700", "1650 to 1699"),
    ("17th century", 1601, 1700, "1601 to 1650", "1650 to 1699"),
    ("1630s", 1630, 1639, "1601 to 1650", "1600 to 1649"),
    ("after 1500", 1500, 1525, "1501 to 1550", "1500 to 1549"),
    ("before 1518", 1493, 1518, "1501 to 1550", "1500 to 1549"),
    ("c. 1665/1670", 1665, 1670, "1651 to 1700", "1650 to 1699"),
    ("probably 1780s", 1780, 1789, "1776 to 1800", "1750 to 1799"),
    ("c. 1520/1525", 1520, 1525, "1501 to 1550", "1500 to 1549"),
    ("early 16th century", 1501, 1533, "1501 to 1550", "1500 to 1549"),
    ("mid-19th century", 1834, 1867, "1826 to 1850", "1850 to 1899"),
    ("late 15th c.", 1468, 1500, "1401 to 1500", "1450 to 1499"),
    ("first half of the 17th century", 1601, 1650, "1601 to 1650", "1600 to 1649"),
    ("1840-50", 1840, 1850, "1826 to 1850", "1800 to 1849"),
    ("1889/1890", 1889, 1890, "1876 to 1900", "1850 to 1899"),
    ("c. 1910–1915", 1910, 1915, "1901 to 1925", "1900 to 1949"),
    ("dated 1632", 1632, 1632, "1601 to 1650", "1600 to 1649"),
    ("1505 - 1510", 1505, 1510, "1501 to 1550", "1500 to 1549"),
    ("1950s", 1950, 1959, "1951 to 1975", "1950 to 1999"),
    ("1600s", 1600, 1699, "1601 to 1650", "1600 to 1649"),
    ("c. 1475", 1470, 1480, "1401 to 1500", "1450 to 1499"),
    ("1906", 1906, 1906, "1901 to 1925", "1900 to 1949"),
    ("Nineteenth century", 1801, 1900, "1826 to 1850", "1850 to 1899"),
    ("1856-01-01T00:00:00Z", 1856, 1856, "1851 to 1875", "1850 to 1899"),
    ("1665, reworked 1680", 1665, 1680, "1651 to 1700", "1650 to 1699"),
    ("14th century", 1301, 1400, "1300 to 1400", "1350 to 1399"),
    ("c. 1250", 1245, 1255, "before 1300", "1250 to 1299"),
    ("2007", 2007, 2007, "2001 to present", "2000 to 2049"),
    ("5th century BC", -500, -401, "before 1300", "500 BC to 451 BC"),
    ("1st quarter 18th century", 1701, 1725, "1701 to 1725", "1700 to 1749"),
]
UNREADABLE = ["n.d.", "undated", "unknown", "Dynasty of the Ming", "?"]


@pytest.mark.parametrize("text,start,end,nga,fifty", TABLE)
def test_parse_and_bin(text, start, end, nga, fifty):
    assert parse_period(text) == (start, end)
    mid = (start + end) / 2
    assert make_bins("nga").classes[make_bins("nga").index(mid)] == nga
    assert nga in NGA_TIMEFRAMES


def test_table_as_a_task():
    values = pd.Series([t[0] for t in TABLE] + UNREADABLE + [None, ""])
    res = period_task(values, "nga")
    assert res.labels.tolist()[: len(TABLE)] == [t[3] for t in TABLE]
    assert res.labels[len(TABLE):].isna().all()
    assert res.n_unparsed == len(UNREADABLE) and res.n_blank == 2
    assert res.width.tolist()[: len(TABLE)] == [t[2] - t[1] for t in TABLE]
    fifty = period_task(values, 50)
    assert fifty.labels.tolist()[: len(TABLE)] == [t[4] for t in TABLE]
    assert fifty.bins.classes[0] == "500 BC to 451 BC" and fifty.bins.classes[-1] == "2000 to 2049"
    assert all(b[1] - b[0] == 49 for b in fifty.bins.bounds)


def test_nga_bounds_match_the_timeframe_names():
    for name, (lo, hi) in zip(NGA_TIMEFRAMES, NGA_BOUNDS):
        if lo is None:
            assert name == f"before {hi + 1}"
        elif hi is None:
            assert name == f"{lo} to present"
        else:
            assert name == f"{lo} to {hi}"


def test_add_period_task_and_errors(tmp_path):
    df = pd.DataFrame({"id": [str(i) for i in range(len(TABLE) + 2)], "path": [f"{i}.jpg" for i in range(len(TABLE) + 2)],
                       "split": "train", "displaydate": [t[0] for t in TABLE] + ["n.d.", None]})
    cat = Catalog(df, {}, tmp_path)
    c2, msgs = add_period_task(cat, "displaydate", "nga")
    assert c2.tasks["period"].ordered and c2.tasks["period"].classes == NGA_TIMEFRAMES
    assert c2.df["period"].tolist()[: len(TABLE)] == [t[3] for t in TABLE]
    assert c2.df["period_start"].tolist()[:2] == [1850, 1660] and c2.df["period_width"].tolist()[:2] == [49, 10]
    assert c2.extra["periods"]["period"]["bounds"][0] == [None, 1299]
    assert any("1 value(s) of displaydate could not be read" in m for m in msgs)
    c2.save(tmp_path / "c.parquet")
    back = Catalog.load(tmp_path / "c.parquet")
    assert back.tasks["period"].ordered and back.extra["periods"]["period"]["bins"] == "nga"
    c3, _ = add_period_task(cat, "displaydate", "100", name="century")
    assert c3.tasks["century"].classes[0] == "500 BC to 401 BC"
    assert len(c3.tasks["century"].classes) == 26 and c3.tasks["century"].classes[-1] == "2000 to 2099"
    with pytest.raises(CatalogError, match="no such column"):
        add_period_task(cat, "date", "nga")
    with pytest.raises(CatalogError, match="nga' or a whole number"):
        add_period_task(cat, "displaydate", "decades")


def test_csv_importer_option(tmp_path):
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    rows = []
    for i, (text, *_rest) in enumerate(TABLE[:6]):
        Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / f"{i}.png")
        rows.append({"file": f"{i}.png", "school": "Dutch" if i % 2 else "French", "date": text})
    pd.DataFrame(rows).to_csv(tmp_path / "p.csv", index=False)
    out = tmp_path / "p.parquet"
    assert main(["ingest", "csv", "--csv", str(tmp_path / "p.csv"), "--images", str(tmp_path / "imgs"),
                 "--path-col", "file", "--tasks", "school", "--period-from", "date", "--period-bins", "25",
                 "--out", str(out)]) == 0
    cat = Catalog.load(out)
    assert cat.tasks["period"].ordered and cat.df["period"].tolist()[0] == "1850 to 1874"
    assert cat.tasks["period"].classes[:2] == ["1500 to 1524", "1525 to 1549"]   # contiguous bins
    assert main(["ingest", "csv", "--csv", str(tmp_path / "p.csv"), "--images", str(tmp_path / "imgs"),
                 "--path-col", "file", "--period-from", "nodate", "--out", str(out)]) == 2


def test_nga_importer_option_and_timeframe_tolerance(tmp_path):
    import nga_fixtures as fx

    sample = fx.generate_sample(tmp_path / "images")
    fx.build_opendata(tmp_path / "opendata", sample)
    out = tmp_path / "nga.parquet"
    assert main(["ingest", "nga", "--opendata", str(tmp_path / "opendata"), "--images", str(sample.dir),
                 "--out", str(out), "--period-from", "displaydate"]) == 0
    cat = Catalog.load(out)
    assert cat.tasks["period"].ordered and cat.tasks["timeframe"].ordered
    dated = cat.df.dropna(subset=["period"])
    assert len(dated) > 0 and (dated["period_width"] == 10).all()       # "c. YEAR": +-5 years
    # the NGA timeframe's tolerance comes from beginyear/endyear
    import numpy as np

    from artextract.outliers.ordered import date_tolerance

    rows = np.arange(len(cat))
    lo, hi = date_tolerance(cat, "timeframe", rows)
    b = make_bins("nga")
    for r in rows[:20]:
        by, ey = cat.df["beginyear"][r], cat.df["endyear"][r]
        if pd.notna(by):
            assert lo[r] == b.index(by) and hi[r] == b.index(ey)
    lo2, hi2 = date_tolerance(cat, "period", rows)
    assert (lo2[dated.index] <= hi2[dated.index]).all()


#: more forms: values that are not text, eras written with full stops, abbreviated and BC ranges,
#: the ends of the century rule, words around the date, "not before/after"
MORE = [
    (1850, (1850, 1850)), (1850.0, (1850, 1850)), (1850.5, None), (True, None), (None, None),
    (float("nan"), None), ("", None), ("   ", None), ("1850 ,;.", (1850, 1850)), ("(1850)", (1850, 1850)),
    ("500 BC", (-500, -500)), ("500 B.C.", (-500, -500)), ("500 b. c.", (-500, -500)), ("44 b.c.", (-44, -44)),
    ("c. 500 B.C.", (-505, -495)), ("100-44 BC", (-100, -44)), ("100-44 B.C.", (-100, -44)),
    ("1st century BC", (-100, -1)), ("1st century", (1, 100)), ("21st century", (2001, 2100)),
    ("22nd century", None), ("twelfth century", (1101, 1200)),
    ("1895-05", (1895, 1905)), ("1850-99", (1850, 1899)), ("1665/7", (1665, 1667)), ("12-14", None),
    ("1650 to 1660", (1650, 1660)), ("1850 and 1855", (1850, 1855)), ("ca. 1850-1855", (1850, 1855)),
    ("AD 800", (800, 800)), ("800 AD", (800, 800)), ("44", (44, 44)),
    ("painted in 1850", (1850, 1850)), ("1850-1855 (reworked 1860)", (1850, 1855)),
    ("early 1630s", (1630, 1632)), ("mid-1850s", (1853, 1856)), ("late 1600s", (1667, 1699)),
    ("2nd quarter 17th century", (1626, 1650)), ("first half of the 16th century", (1501, 1550)),
    ("not after 1600", (1575, 1600)), ("not before 1600", (1600, 1625)), ("before 1600", (1575, 1600)),
    ("since 1600", (1600, 1625)), ("c 1850", (1845, 1855)), ("2001-01-05", (2001, 2001)),
]


@pytest.mark.parametrize("value,expected", MORE)
def test_more_forms(value, expected):
    assert parse_period(value) == expected


def test_bins_beyond_their_ends():
    nga = make_bins("nga")
    assert [nga.index(y) for y in (-500, 1299, 1300, 2000, 2001, 2050)] == [0, 0, 1, 18, 19, 19]
    fifty = make_bins(50, [(1800, 1810), (1900, 1950)])
    assert fifty.classes[:3] == ["1800 to 1849", "1850 to 1899", "1900 to 1949"]
    assert fifty.bounds[:3] == [(1800, 1849), (1850, 1899), (1900, 1949)]
    last = len(fifty.classes) - 1
    assert [fifty.index(y) for y in (1700, 1799, 1800, 1849, 1850, 1950, 2100)] == [0, 0, 0, 0, 1, last, last]

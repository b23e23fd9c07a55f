"""The written pages (the report, the outlier page) render through the shared Jinja templates: every
value from the catalogue or a file is escaped, the explorer's stylesheet is inlined, and the page is
one file that needs nothing from elsewhere."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from artextract import render
from artextract.data.catalog import Catalog, TaskSpec

EVIL = '<script>alert("x")</script>'


@pytest.fixture
def evil_catalog(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    ids = [f"p{i}<b>" for i in range(6)]
    for i in range(6):
        Image.new("RGB", (48, 48), (40 * i, 90, 160)).save(root / f"{i}.png")
    df = pd.DataFrame({"id": ids, "path": [f"{i}.png" for i in range(6)], "split": ["train"] * 6,
                       "style": [EVIL, "B&B", EVIL, "B&B", EVIL, "B&B"]})
    cat = Catalog(df, {"style": TaskSpec("style", sorted({EVIL, "B&B"}))}, root, f"source {EVIL}")
    cat.save(tmp_path / "cat.parquet")
    return Catalog.load(tmp_path / "cat.parquet")


def test_the_report_escapes_what_it_shows(evil_catalog, tmp_path):
    from artextract.report.build import SECTIONS, build_report
    from artextract.similarity.index import EmbeddingIndex

    ids = evil_catalog.df["id"].tolist()
    EmbeddingIndex.build(ids, np.eye(6, dtype=np.float32) + 0.1).save(tmp_path / "index")
    csv = tmp_path / "issues.csv"
    pd.DataFrame({"id": ids[:2], "task": "style", "given_label": [EVIL, "B&B"], "suggested_label": ["B&B", EVIL],
                  "score": [0.9, 0.8], "rank": [1, 2], "flagged": [True, True],
                  "neighbor_ids": ["|".join(ids[2:4])] * 2}).to_csv(csv, index=False)
    page = build_report(tmp_path / "rep", catalog=evil_catalog, outliers_csv=str(csv), index_dir=tmp_path / "index",
                        title=f"title {EVIL}", next_steps=[f"step {EVIL}"])
    html = page.read_text()
    assert "<script" not in html and "<b>\"" not in html and 'p0<b>' not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html        # shown, as text
    assert "p0&lt;b&gt;" in html and "B&amp;B" in html and "<title>title &lt;script&gt;" in html
    for section in SECTIONS:
        assert f'id="{section}"' in html
    assert render.stylesheet().strip()[:40] in html                   # the explorer's stylesheet, inlined
    assert not re.search(r'(src|href)="(https?:)?//', html)            # nothing from elsewhere
    assert html.count('src="data:image/jpeg;base64,') >= 2 * 3          # painting thumbnails, embedded


def test_the_outlier_page_escapes_what_it_shows(evil_catalog, tmp_path):
    from artextract.outliers.report import write_report

    ids = evil_catalog.df["id"].tolist()
    df = pd.DataFrame({"id": ids, "task": "style", "given_label": evil_catalog.df["style"],
                       "suggested_label": ["B&B", EVIL] * 3, "suggested_prob": 0.5, "score": np.linspace(1, 0, 6),
                       "rank": range(1, 7), "flagged": [True, True, False, False, False, False],
                       "split": "train", "neighbor_ids": ["|".join(ids[2:5])] * 6,
                       "neighbor_similarities": ["0.9|0.8|0.7"] * 6, "note": [f"note {EVIL}"] + [""] * 5})
    page = write_report(evil_catalog, df, tmp_path / "out", title=f"check {EVIL}")
    html = page.read_text()
    assert "<script" not in html and 'p0<b>' not in html
    assert "note &lt;script&gt;" in html and "<title>check &lt;script&gt;" in html
    assert len(list((tmp_path / "out" / "thumbs").glob("*.jpg"))) == 5   # two flagged and their three neighbours
    assert html.count('src="thumbs/') == 2 * 4

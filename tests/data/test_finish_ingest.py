"""The end every importer shares (:func:`artextract.data.ingest.finish_ingest`): the period task, the
saved catalogue, the report and the log lines, in that order."""
from __future__ import annotations

import json
import logging
import time

import pandas as pd
import pytest

from artextract.data.catalog import Catalog, TaskSpec
from artextract.data.images import SkipReport
from artextract.data.ingest import finish_ingest
from artextract.data.periods import add_period_task


def _catalog(tmp_path) -> Catalog:
    df = pd.DataFrame({"id": ["a", "b", "c"], "path": ["a.jpg", "b.jpg", "c.jpg"], "split": ["train", "train", "val"],
                       "style": ["x", "y", "x"], "date": ["c. 1665", "1850-1899", "n.d."]})
    return Catalog(df, {"style": TaskSpec("style", ["x", "y"])}, tmp_path / "images", source="test")


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "artextract.data.ingest"]


@pytest.fixture
def info(caplog):
    caplog.set_level(logging.INFO, logger="artextract")
    return caplog


def test_messages_then_the_file_written(tmp_path, info):
    out = tmp_path / "c.parquet"
    msgs = ["first", "second"]
    cat = finish_ingest(_catalog(tmp_path), out, messages=msgs)
    assert out.is_file() and len(Catalog.load(out)) == 3 and cat.path == out
    assert _lines(info) == ["first", "second", f"wrote {out} (3 paintings)"]


def test_the_period_task_is_added_and_its_messages_logged(tmp_path, info):
    out = tmp_path / "c.parquet"
    msgs = ["imported"]
    cat = finish_ingest(_catalog(tmp_path), out, messages=msgs, period_from="date", period_bins="50",
                        period_name="period")
    _, expected = add_period_task(_catalog(tmp_path), "date", "50", name="period")
    assert "period" in cat.tasks and "period" in Catalog.load(out).tasks
    assert msgs == ["imported", *expected]
    assert _lines(info) == ["imported", *expected, f"wrote {out} (3 paintings)"]


def test_a_written_report_is_named_after_the_messages(tmp_path, info):
    out = tmp_path / "c.parquet"
    skipped = SkipReport("ingest folder")
    skipped.add("bad.jpg", "not an image")
    t0 = time.time()
    finish_ingest(_catalog(tmp_path), out, messages=["m"], report=skipped, report_path=out.with_suffix(".skipped.json"),
                  report_label="skip report", t0=t0)
    lines = _lines(info)
    assert json.loads(out.with_suffix(".skipped.json").read_text())["skipped"][0]["id"] == "bad.jpg"
    assert lines[:2] == ["m", f"skip report: {out.with_suffix('.skipped.json')}"]
    assert lines[2].startswith(f"wrote {out} (3 paintings) in ") and lines[2].endswith("s")


def test_a_summary_stands_for_the_messages_and_the_last_line_names_root_and_hint(tmp_path, info):
    out = tmp_path / "c.parquet"

    class Report:
        messages: list[str] = []

        def write(self, path):
            path.write_text(json.dumps(self.messages))
            return path

        def summary(self):
            return "summary: " + ", ".join(self.messages)

    report = Report()
    report.messages = ["read 3"]
    cat = finish_ingest(_catalog(tmp_path), out, messages=report.messages, period_from="date", report=report,
                        report_path=tmp_path / "r.json", summary=True, noun="row(s)", show_root=True,
                        t0=time.time(), hint="get the images")
    lines = _lines(info)
    assert json.loads((tmp_path / "r.json").read_text()) == report.messages and len(report.messages) > 1
    assert lines[0] == "summary: " + ", ".join(report.messages)
    assert lines[1].startswith(f"wrote {out} (3 row(s), image root {cat.image_root}) in ")
    assert lines[1].endswith("; get the images") and len(lines) == 2

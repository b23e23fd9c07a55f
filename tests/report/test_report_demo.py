"""`artextract demo` end to end at a reduced size, and the report's sections."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from artextract.cli import main
from artextract.report.build import SECTIONS


@pytest.mark.slow
def test_demo_end_to_end_writes_a_full_report(tmp_path, capsys):
    out = tmp_path / "demo-output"
    assert main(["demo", "--out", str(out), "--n", "60", "--epochs", "3"]) == 0
    printed = capsys.readouterr().out
    html = (out / "report.html").read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in html, section
    # metrics for every task, confusion matrices and the map are real pictures
    for task in ("artist", "genre", "style", "timeframe"):
        assert f"<td>{task}</td>" in html
    assert len(re.findall(r'<img class="cm"[^>]*src="data:image/png;base64,', html)) == 5  # 4 tasks + map
    assert "synthetic demo corpus" in html
    assert (out / "run" / "eval-val" / "metrics.json").exists()
    # the next commands are printed
    assert "artextract serve --catalog" in printed and "artextract ingest wikiart" in printed
    # a second run reuses what is done: the weights, the checkpoint, the index and the corpus are not
    # written again (the run's config.json and split.json are rewritten with the same content)
    rewritten = ("config.json", "split.json")

    def stamps():
        files = [p for p in (*(out / "run").rglob("*"), *(out / "index").rglob("*"), out / "data" / "catalog.parquet")
                 if p.is_file() and "eval-" not in str(p) and p.name not in rewritten]
        return {str(p): p.stat().st_mtime_ns for p in files}

    before = stamps()
    contents = {n: json.loads((out / "run" / n).read_text()) for n in rewritten}
    assert {"model.safetensors", "state.pt", "last.safetensors"} <= {Path(k).name for k in before}
    assert any("/index/" in k for k in before)
    capsys.readouterr()
    assert main(["demo", "--out", str(out), "--n", "60", "--epochs", "3"]) == 0
    again = capsys.readouterr().out
    assert stamps() == before
    assert {n: json.loads((out / "run" / n).read_text()) for n in rewritten} == contents
    assert "index for similarity search" not in again and "generate the synthetic corpus" not in again

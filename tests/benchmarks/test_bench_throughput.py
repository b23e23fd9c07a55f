"""The throughput benchmark runs end to end (tiny backbone, CPU) and writes one row per measurement."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_throughput_benchmark_rows(tmp_path):
    out = tmp_path / "tp.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_throughput.py"), "--backbones", "tiny_cnn",
                        "--batch", "2", "--steps", "1", "--warmup", "1", "--size", "64", "--device", "cpu",
                        "--engines", "torch:fp32,openvino:fp32",
                        "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [x["what"] for x in rows][:4] == ["embed", "embed", "head", "finetune"]
    assert [(x["engine"], x["precision"]) for x in rows[:2]] == [("torch", "fp32"), ("openvino", "fp32")]
    # the fine-tuning step runs as train --finetune does; with bf16 autocast, an fp32 row to compare
    assert [x["what"] for x in rows][4:] == (["finetune-fp32"] if rows[3]["autocast"] != "none" else [])
    assert all(x["backbone"] == "tiny_cnn" and x["images_per_s"] > 0 and x["image_size"] == 64 for x in rows)
    assert "img/s" in r.stdout

"""Every collection shape, generated: ingest -> prepare -> train -> evaluate -> outliers -> index ->
similar -> report on catalogues that hypothesis draws, each command ending in a result (exit 0) or a clear
message (exit 2, ``artextract CMD: error: ...`` on stderr), never a traceback.

Shapes drawn and named: sizes from 1 to a few hundred (one above a multiple of the batch size among
them), a task with one class, a class with one painting, a task with no labels at all, 500 classes, only
validation rows, 200x4000 px scrolls and 4000x200 px friezes, grayscale, 16-bit and alpha images.
``HYPOTHESIS_PROFILE=long`` draws more (see docs/data.md).
"""
from __future__ import annotations

import csv
import io
import json
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from artextract.cli import main  # noqa: E402

MODES = ("RGB", "L", "I;16", "RGBA", "P")
SHAPES = ("square", "scroll", "frieze")
TINY = ["--backbone", "tiny_cnn", "--pretrained", "none", "--cache-size", "32", "--image-size", "32",
        "--no-progress"]


def _image(path: Path, i: int, mode: str, shape: str) -> None:
    w, h = {"square": (48, 48), "scroll": (200, 4000), "frieze": (4000, 200)}[shape]
    rng = np.random.default_rng(i)
    if mode == "I;16":
        Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16)).save(path.with_suffix(".png"))
        return
    rgb = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    img = rgb.convert(mode) if mode != "P" else rgb.convert("P", palette=Image.ADAPTIVE)
    img.save(path.with_suffix(".png"))


@st.composite
def collections(draw):
    n = draw(st.one_of(st.integers(1, 12), st.sampled_from([64, 65, 129]), st.integers(13, 300)))
    k_style = draw(st.sampled_from([1, 2, 3, 7, 500]))
    shape = draw(st.sampled_from(SHAPES))
    mode = draw(st.sampled_from(MODES))
    splits = draw(st.sampled_from(["seeded", "val-only", "mixed"]))
    genre = draw(st.sampled_from(["labelled", "empty", "one-class"]))
    return dict(n=n, k_style=k_style, shape=shape, mode=mode, splits=splits, genre=genre)


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:   # argparse's own refusals are messages too
            rc = int(exc.code or 0)
    return rc, out.getvalue(), err.getvalue()


def _ok_or_message(cmd: str, rc: int, err: str) -> None:
    assert "Traceback" not in err, f"{cmd}: traceback\n{err[-2000:]}"
    assert rc in (0, 1, 2), f"{cmd}: exit {rc}\n{err[-2000:]}"
    if rc == 2:
        assert re.search(r"error: \S", err), f"{cmd}: exit 2 without a message\n{err[-2000:]}"


def _pipeline(root: Path, c: dict) -> dict:
    imgs = root / "imgs"
    imgs.mkdir(parents=True)
    rows = []
    for i in range(c["n"]):
        # shapes and modes cycle so one collection holds several; the drawn one comes first
        mode = MODES[(MODES.index(c["mode"]) + i) % len(MODES)]
        shape = SHAPES[(SHAPES.index(c["shape"]) + i // 3) % len(SHAPES)] if i % 5 == 0 else "square"
        _image(imgs / f"p{i:04d}", i, mode, shape)
        style = f"s{i % c['k_style']:03d}" if c["k_style"] > 1 else "only"
        genre = {"labelled": f"g{i % 3}", "empty": "", "one-class": "portrait"}[c["genre"]]
        split = {"seeded": None, "val-only": "val", "mixed": "train" if i % 4 else "val"}[c["splits"]]
        row = {"path": f"p{i:04d}.png", "style": style, "genre": genre}
        if split:
            row["split"] = split
        rows.append(row)
    with open(root / "c.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cat = root / "c.parquet"
    steps = {}
    argv = ["ingest", "csv", "--csv", str(root / "c.csv"), "--images", str(imgs), "--tasks", "style,genre",
            "--out", str(cat)] + (["--split-col", "split"] if c["splits"] != "seeded" else [])
    steps["ingest"] = _run(argv)
    if steps["ingest"][0] != 0:
        return steps
    steps["prepare"] = _run(["prepare", "--catalog", str(cat), "--size", "32"])
    steps["train"] = _run(["train", "--catalog", str(cat), "--out", str(root / "run"), *TINY, "--epochs", "1",
                           "--proj", "8", "--hidden", "8"])
    trained = steps["train"][0] == 0
    if trained:
        steps["evaluate"] = _run(["evaluate", "--run", str(root / "run"), "--catalog", str(cat),
                                  "--out", str(root / "eval"), "--split", "val"])
    steps["outliers"] = _run(["outliers", "--catalog", str(cat), "--task", "style", "--out", str(root / "o.csv"),
                              "--backbone", "tiny_cnn", "--pretrained", "none", "--no-progress"])
    steps["index"] = _run(["index", "--catalog", str(cat), "--out", str(root / "idx"), "--backbone", "tiny_cnn",
                           "--pretrained", "none", "--no-progress"])
    if steps["index"][0] == 0:
        steps["similar"] = _run(["similar", "--index", str(root / "idx"), "--id", "p0000.png", "-k", "3", "--json"])
    if trained:
        steps["report"] = _run(["report", "--run", str(root / "run"), "--catalog", str(cat),
                                "--out", str(root / "report")])
    return steps


PROFILE = dict(max_examples=3, deadline=None, derandomize=True, database=None,
               suppress_health_check=list(HealthCheck))


@pytest.mark.slow
@settings(**PROFILE)
@given(collections())
@example(dict(n=1, k_style=2, shape="square", mode="RGB", splits="seeded", genre="labelled"))
@example(dict(n=65, k_style=3, shape="scroll", mode="L", splits="seeded", genre="one-class"))
@example(dict(n=40, k_style=500, shape="frieze", mode="I;16", splits="mixed", genre="empty"))
@example(dict(n=12, k_style=1, shape="square", mode="RGBA", splits="val-only", genre="labelled"))
@example(dict(n=30, k_style=7, shape="square", mode="P", splits="mixed", genre="labelled"))
@example(dict(n=520, k_style=500, shape="square", mode="RGB", splits="seeded", genre="labelled"))
def test_every_collection_shape_ends_in_a_result_or_a_message(tmp_path_factory, c):
    root = tmp_path_factory.mktemp("shape")
    steps = _pipeline(root, c)
    for cmd, (rc, out, err) in steps.items():
        _ok_or_message(cmd, rc, err)
    assert steps["ingest"][0] == 0, steps["ingest"][2][-2000:]
    if "similar" in steps and steps["similar"][0] == 0:
        json.loads(steps["similar"][1])                   # --json: one JSON document on stdout
    # a collection with training rows of a labelled task trains (the one-painting-above case among them)
    if c["splits"] != "val-only" and c["n"] >= 2 and c["k_style"] > 1:
        assert steps["train"][0] == 0, steps["train"][2][-2000:]

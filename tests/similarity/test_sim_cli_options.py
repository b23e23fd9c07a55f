"""`index --index-type/--faces/--poses` and `similar --mode pose|face --draw` end to end, on a small
catalogue of synthetic pictures that the face and pose models recognise."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageOps

import sim_synth_images as synth
from artextract.cli import main
from artextract.data.catalog import Catalog, TaskSpec
from artextract.data.demo import STYLES
from artextract.similarity import EmbeddingIndex


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """A catalogue of 6 synthetic pictures: two portraits, two figures with arms up, one with arms down
    (all with a face), one landscape (no face, no body)."""
    root = tmp_path_factory.mktemp("pictures")
    pics = {
        "portrait_a": synth.portrait(320),
        "portrait_b": ImageOps.mirror(synth.portrait(400, background=(120, 90, 60))),
        "up": synth.figure(arms="up"),
        "up_moved": synth.on_canvas(synth.figure(200, 300, arms="up", shirt=(40, 120, 60)), (520, 420), (300, 100)),
        "down": synth.figure(arms="down"),
        "landscape": synth.landscape(),
    }
    for name, img in pics.items():
        img.save(root / f"{name}.jpg", quality=92)
    df = pd.DataFrame({"id": list(pics), "path": [f"{n}.jpg" for n in pics], "split": "train",
                       "style": [STYLES[i % len(STYLES)] for i in range(len(pics))]})
    cat = Catalog(df, {"style": TaskSpec("style", list(STYLES))}, root)
    return cat.save(root / "catalog.parquet")


def run_cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_index_type_faces_and_poses(pictures, tmp_path, capsys, kind):
    out = tmp_path / f"{kind}.index"
    extra = ["--nlist", "2"] if kind == "ivf" else ["--hnsw-m", "8"] if kind == "hnsw" else []
    rc, so, err = run_cli(capsys, "index", "--catalog", pictures, "--backbone", "tiny_cnn", "--pretrained", "none",
                          "--out", out, "--index-type", kind, *extra, "--faces", "--poses", "--no-progress")
    assert rc == 0, err
    assert "6 painting(s) added" in err
    assert f"{kind} index of 6 paintings" in err
    if kind == "ivf":
        assert "nlist 2" in err
    if kind == "hnsw":
        assert "M 8" in err
    # --faces and --poses detected now, not at the first search: every picture but the landscape has
    # a face (the figures have drawn faces too) and a body (the portraits show shoulders)
    assert "faces: 5 of 6 paintings have at least one detected face" in err
    assert "poses: 5 of 6 paintings have a detected body" in err
    idx = EmbeddingIndex.load(out)
    assert idx.index_type == kind and len(idx) == 6
    # the descriptors are stored: a face search detects nothing more
    rc, so, err = run_cli(capsys, "similar", "--index", out, "--id", "portrait_a", "--mode", "face", "--json", "--no-progress")
    res = json.loads(so)
    assert rc == 0 and "detecting faces" not in err
    assert res["coverage"] == {"with_face": 5, "without_face": 1}
    assert {r["id"] for r in res["results"]} <= {"portrait_b", "up", "up_moved", "down"} and res["results"]
    # and the image search works on every index type: a file of the catalogue finds itself first
    rc, so, _ = run_cli(capsys, "similar", "--index", out, Catalog.load(pictures).image_path("up.jpg"), "-k", "2",
                          "--json")
    assert rc == 0 and json.loads(so)["results"][0]["id"] == "up"


@pytest.mark.slow
def test_similar_pose_and_face_draw(pictures, tmp_path, capsys):
    out = tmp_path / "pics.index"
    rc, _, err = run_cli(capsys, "index", "--catalog", pictures, "--backbone", "tiny_cnn", "--pretrained", "none",
                         "--out", out, "--no-progress")
    assert rc == 0, err
    draw = tmp_path / "drawn"
    rc, so, err = run_cli(capsys, "similar", "--index", out, "--id", "up", "--mode", "pose", "-k", "2",
                          "--draw", draw, "--json", "--no-progress")
    assert rc == 0, err
    res = json.loads(so)
    assert res["mode"] == "pose" and res["results"][0]["id"] == "up_moved"   # same pose, moved and smaller
    assert "up" not in [r["id"] for r in res["results"]]
    files = sorted(p.name for p in draw.iterdir())
    assert files == ["00_query.jpg", *[f"{i:02d}_{r['id']}.jpg" for i, r in enumerate(res["results"], 1)]]
    assert f"drew {len(files)} image(s) into {draw}" in err
    # the skeleton is drawn on: the query picture changed, at its own size
    cat = Catalog.load(pictures)
    original = Image.open(cat.image_path("up.jpg")).convert("RGB")
    drawn = Image.open(draw / "00_query.jpg").convert("RGB")
    assert drawn.size == original.size
    assert np.abs(np.asarray(drawn, int) - np.asarray(original, int)).mean() > 1.0
    # face mode: boxes drawn on the query and its match
    fdraw = tmp_path / "faces"
    rc, so, err = run_cli(capsys, "similar", "--index", out, "--id", "portrait_a", "--mode", "face", "-k", "1",
                          "--draw", fdraw, "--no-progress")
    assert rc == 0 and "face search for portrait_a" in so
    top = so.splitlines()[-1].split()[2]
    assert top in {"portrait_b", "up", "up_moved", "down"}
    assert sorted(p.name for p in fdraw.iterdir()) == ["00_query.jpg", f"01_{top}.jpg"]
    # a painting without a body: said, nothing drawn but the query
    rc, so, err = run_cli(capsys, "similar", "--index", out, "--id", "landscape", "--mode", "pose", "--draw",
                          tmp_path / "none", "--no-progress")
    assert rc == 0 and "no body detected in painting 'landscape'" in so
    assert sorted(p.name for p in (tmp_path / "none").iterdir()) == ["00_query.jpg"]

"""The index / similar / evaluate-retrieval commands end to end, their errors, and --run when a
trained run can be made."""
from __future__ import annotations

import csv
import json

import pytest

from artextract.cli import build_parser, main
from artextract.data.demo import STYLES


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_help_has_examples():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in ("index", "similar", "evaluate-retrieval"):
        text = sub.choices[name].format_help()
        assert "example:" in text and f"artextract {name}" in text


@pytest.mark.slow
def test_index_similar_evaluate(sim_demo, tmp_path, capsys):
    out = tmp_path / "demo.index"
    rc, _, err = run_cli(capsys, "index", "--catalog", sim_demo.path, "--backbone", "tiny_cnn", "--pretrained", "none",
                         "--out", out, "--no-progress")
    assert rc == 0 and "built" in err and "60 painting(s) added" in err
    rc, _, err = run_cli(capsys, "index", "--catalog", sim_demo.path, "--backbone", "tiny_cnn", "--pretrained", "none",
                         "--out", out, "--no-progress")
    assert rc == 0 and "updated" in err and "0 painting(s) added, 60 already indexed" in err

    rc, so, _ = run_cli(capsys, "similar", "--index", out, "--id", "demo_0003", "-k", "4", "--json")
    res = json.loads(so)
    assert rc == 0 and res["mode"] == "image" and len(res["results"]) == 4
    assert res["query"] == {"id": "demo_0003"} and all(r["id"] != "demo_0003" for r in res["results"])
    rc, so, _ = run_cli(capsys, "similar", "--index", out, "--id", "demo_0003", "-k", "3")
    assert rc == 0 and "rank" in so
    assert all(any(s in line for s in STYLES) for line in so.splitlines()[2:])  # labels from the catalogue

    img = sim_demo.image_path(sim_demo.df.set_index("id").loc["demo_0010", "path"])
    rc, so, _ = run_cli(capsys, "similar", "--index", out, img, "-k", "2", "--out", tmp_path / "one.csv")
    rows = list(csv.DictReader(open(tmp_path / "one.csv")))
    assert rc == 0 and rows[0]["neighbor_id"] == "demo_0010" and rows[0]["rank"] == "1"

    rc, _, err = run_cli(capsys, "similar", "--index", out, "--all", "-k", "5", "--out", tmp_path / "all.csv")
    rows = list(csv.DictReader(open(tmp_path / "all.csv")))
    assert rc == 0 and list(rows[0]) == ["query_id", "rank", "neighbor_id", "score"]
    assert len(rows) == 300 and len({r["query_id"] for r in rows}) == 60
    assert all(r["query_id"] != r["neighbor_id"] for r in rows)

    rc, so, _ = run_cli(capsys, "evaluate-retrieval", "--index", out, "--catalog", sim_demo.path,
                        "--relevance", "artist", "-k", "5", "--json")
    res = json.loads(so)
    # the command reports what the library computes on the same index
    from artextract.similarity import EmbeddingIndex
    from artextract.similarity.evaluate import evaluate_index

    want = evaluate_index(EmbeddingIndex.load(out), sim_demo, "artist", k=5)
    assert rc == 0 and res["queries"] == 60
    for key in ("precision_at_k", "recall_at_k", "map_at_k"):
        assert res[key] == pytest.approx(want[key]), key
    # near-copies of an artist's palette and marks: far above the 1/10 of a random ranking
    assert res["precision_at_k"] > 0.3, res
    rc, so, _ = run_cli(capsys, "evaluate-retrieval", "--index", out, "--catalog", sim_demo.path,
                        "--relevance", "timeframe")
    assert rc == 0 and "precision@10" in so and "mAP@10" in so

    # faces: none in the synthetic demo, and that is said, not an error
    rc, so, err = run_cli(capsys, "similar", "--index", out, "--id", "demo_0002", "--mode", "face", "--no-progress")
    assert rc == 0 and "no face detected in painting 'demo_0002'" in so and "0 with face, 60 without face" in so
    assert "detecting faces in 60 painting(s)" in err


def test_cli_errors(sim_index_dir, sim_demo, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "similar", "--index", sim_index_dir, "--id", "nope")
    assert rc == 2 and "'nope' is not in the index" in err and "Traceback" not in err
    bad = tmp_path / "readme.jpg"
    bad.write_text("not really a jpeg")
    rc, _, err = run_cli(capsys, "similar", "--index", sim_index_dir, bad)
    assert rc == 2 and "readme.jpg" in err and "not an image" in err
    rc, _, err = run_cli(capsys, "similar", "--index", sim_index_dir)
    assert rc == 2 and "IMAGE, --id ID, --text TEXT or --all" in err
    rc, _, err = run_cli(capsys, "similar", "--index", tmp_path / "none", "--id", "x")
    assert rc == 2 and "does not exist" in err
    rc, _, err = run_cli(capsys, "evaluate-retrieval", "--index", sim_index_dir, "--catalog", sim_demo.path,
                         "--relevance", "mood")
    assert rc == 2 and "unknown task 'mood'" in err
    rc, _, err = run_cli(capsys, "index", "--catalog", sim_demo.path, "--backbone", "tiny_cnn", "--pretrained",
                         "none", "--no-center", "--out", sim_index_dir, "--no-progress")
    assert rc == 2 and "--rebuild" in err
    rc, _, err = run_cli(capsys, "index", "--catalog", sim_demo.path, "--run", tmp_path / "no_run",
                         "--out", tmp_path / "x.index")
    assert rc == 2 and "does not exist" in err


@pytest.mark.slow
def test_index_from_a_trained_run(sim_demo, tiny_run, tmp_path, capsys):
    run_dir = tiny_run.run
    capsys.readouterr()
    out = tmp_path / "run.index"
    rc, _, err = run_cli(capsys, "index", "--catalog", sim_demo.path, "--run", run_dir, "--out", out, "--no-progress")
    assert rc == 0 and "60 painting(s) added" in err and "trained run" in err
    from artextract.similarity import EmbeddingIndex, find_similar

    idx = EmbeddingIndex.load(out)
    assert idx.meta["embedding"] == {"kind": "run", "run": str(run_dir.resolve())}
    path = idx.image_path("demo_0020")
    res = find_similar(idx, image=path, k=3)
    assert res["results"][0]["id"] == "demo_0020" and res["results"][0]["score"] > 0.99
    rc, so, _ = run_cli(capsys, "evaluate-retrieval", "--index", out, "--catalog", sim_demo.path,
                        "--relevance", "style", "--json")
    res = json.loads(so)
    # the run learned style: its embedding retrieves the same style far above a random ranking's 11/59
    assert rc == 0 and res["queries"] == 60 and res["precision_at_k"] > 0.3, res

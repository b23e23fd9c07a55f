"""Synthetic demo corpus: deterministic, quick, every task present, planted errors consistent."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from artextract.cli import main
from artextract.data.catalog import Catalog
from artextract.data.demo import ARTISTS, GENRES, STYLES, TIMEFRAMES, generate_demo
from artextract.data.images import load_image


def _snapshot(root):
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / "images").rglob("*.jpg"))}
    return files, Catalog.load(root / "catalog.parquet").df, (root / "planted_errors.csv").read_bytes()


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    """Two runs with seed 0 and one with seed 1 (40 images of the default size each), timed."""
    out, seconds = {}, {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        root = tmp_path_factory.mktemp(f"demo_{name}")
        t0 = time.perf_counter()
        generate_demo(root, n=40, seed=seed)
        seconds[name] = time.perf_counter() - t0
        out[name] = _snapshot(root)
    return out, seconds


def test_same_seed_same_bytes_and_labels(three_runs):
    (files_a, df_a, planted_a), (files_b, df_b, planted_b) = three_runs[0]["a"], three_runs[0]["b"]
    assert len(files_a) == 40 and files_a == files_b  # identical JPEG bytes
    pd.testing.assert_frame_equal(df_a, df_b)
    assert planted_a == planted_b


def test_different_seed_differs(three_runs):
    (files_a, df_a, _), (files_c, df_c, _) = three_runs[0]["a"], three_runs[0]["c"]
    assert files_a.keys() == files_c.keys()  # same ids and folders (artists cycle) ...
    assert sum(files_a[k] != files_c[k] for k in files_a) == 40  # ... different pixels
    assert not df_a[["genre", "timeframe", "split"]].equals(df_c[["genre", "timeframe", "split"]])


def test_generation_takes_seconds(three_runs):
    seconds = three_runs[1]
    # 40 images of the default 128 px each; the default corpus (300) is ~8x this
    assert max(seconds.values()) < 6.0, seconds


def test_all_tasks_present_and_timeframe_ordered(demo_catalog):
    cat = demo_catalog
    assert len(cat) == 120
    assert list(cat.tasks) == ["artist", "genre", "style", "timeframe"]
    assert cat.task("timeframe").ordered and cat.task("timeframe").classes == TIMEFRAMES
    assert [int(c[:4]) for c in TIMEFRAMES] == sorted(int(c[:4]) for c in TIMEFRAMES)
    assert not any(cat.task(t).ordered for t in ("artist", "genre", "style"))
    assert cat.task("artist").classes == list(ARTISTS) and cat.task("style").classes == STYLES
    assert cat.task("genre").classes == GENRES
    for t in cat.tasks:
        assert cat.df[t].notna().all(), t
        assert (cat.label_indices(t) >= 0).all()
        assert set(cat.df[t]) == set(cat.task(t).classes), f"{t}: not every class occurs"
    assert set(cat.df["split"]) == {"train", "val"}
    val_share = (cat.df["split"] == "val").groupby(cat.df["style"]).mean()
    assert ((val_share > 0.1) & (val_share < 0.3)).all()
    assert cat.source.startswith("demo") and cat.extra["synthetic"] is True
    assert cat.missing_images() == []


def test_images_are_what_was_asked_for(demo_catalog):
    for p in demo_catalog.image_paths()[:10]:
        img = load_image(p)
        assert img.size == (64, 64) and img.mode == "RGB"
    arr = np.stack([np.asarray(load_image(p)) for p in demo_catalog.image_paths()[:10]])
    assert arr.std() > 10  # not blank


def test_planted_errors_are_consistent_with_the_catalogue(demo_catalog):
    cat = demo_catalog
    planted = pd.read_csv(cat.path.parent / "planted_errors.csv", dtype=str)
    assert list(planted.columns) == ["id", "task", "true_label", "given_label"]
    n_noisy = round(len(cat) * 0.03)
    assert planted["task"].value_counts().to_dict() == {"style": n_noisy, "genre": n_noisy}
    df = cat.df.set_index("id")
    for r in planted.itertuples():
        assert r.given_label == df.at[r.id, r.task]  # the catalogue carries the wrong label
        assert r.true_label != r.given_label and r.true_label in cat.task(r.task).classes
        assert df.at[r.id, "split"] == "train"  # validation stays honest
    # style follows the artist except where an error was planted
    style_of = {a: v[0] for a, v in ARTISTS.items()}
    wrong_style = set(planted.loc[planted["task"] == "style", "id"])
    for pid, row in df.iterrows():
        assert (row["style"] == style_of[row["artist"]]) == (pid not in wrong_style)
    for r in planted[planted["task"] == "style"].itertuples():
        assert r.true_label == style_of[df.at[r.id, "artist"]]


def test_cli_demo_data(tmp_path, capsys):
    assert main(["demo-data", "--out", str(tmp_path / "d"), "--n", "12", "--size", "32", "--seed", "5"]) == 0
    assert "wrote 12 synthetic paintings" in capsys.readouterr().err
    cat = Catalog.load(tmp_path / "d" / "catalog.parquet")
    assert len(cat) == 12 and cat.extra["seed"] == 5 and cat.image_root == (tmp_path / "d").resolve()

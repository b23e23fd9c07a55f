"""Prepared-image cache and the slot store under it: incremental, and safe to kill at any moment."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import artextract.data.cache as cache_mod
from artextract.cli import main
from artextract.data.cache import PreparedCache, decode_resized, ensure_prepared
from artextract.data.catalog import Catalog, TaskSpec
from artextract.data.store import OK, SlotStore
from artextract.job import Job

SIZE = 16


def make_catalog(root, n: int, start: int = 0, side=(24, 18)) -> Catalog:
    """``n`` small noise JPEGs ``img{start}..`` under ``root/images`` and a saved catalogue."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(start, start + n):
        rel = f"img{i:05d}.jpg"
        p = root / "images" / rel
        if not p.exists():
            arr = np.random.default_rng(i).integers(0, 256, (side[1], side[0], 3), dtype=np.uint8)
            Image.fromarray(arr).save(p, quality=85)
        rows.append({"id": f"p{i:05d}", "path": rel, "split": "train", "style": "A"})
    cat = Catalog(pd.DataFrame(rows), {"style": TaskSpec("style", ["A"])}, root / "images")
    cat.save(root / "catalog.parquet")
    return cat


def reference(cat: Catalog, size: int = SIZE) -> dict[str, np.ndarray]:
    return {k: decode_resized(p, size) for k, p in zip(cat.ids, cat.image_paths())}


def assert_ok_slots_hold_reference(cache: PreparedCache, ref: dict[str, np.ndarray]) -> int:
    """Every slot marked OK holds exactly the reference pixels; returns how many are OK."""
    n_ok = 0
    for k, arr in ref.items():
        if cache.has(k):
            assert np.array_equal(cache.get(k), arr), f"slot of {k} is marked OK but holds other pixels"
            n_ok += 1
    return n_ok


# ---------------------------------------------------------------------- basics
def test_prepare_then_nothing_to_do(tmp_path):
    cat = make_catalog(tmp_path, 12)
    cache = PreparedCache(tmp_path / "c", SIZE)
    res = cache.prepare(cat, workers=1, job=Job(progress=False))
    assert (res.added, res.already, len(res.failed)) == (12, 0, 0)
    ref = reference(cat)
    assert assert_ok_slots_hold_reference(cache, ref) == 12
    assert cache.images.dtype == np.uint8 and cache.images.shape[1:] == (SIZE, SIZE, 3)
    # reopening reads the same pixels; a second run decodes nothing
    again = PreparedCache(tmp_path / "c", SIZE)
    assert assert_ok_slots_hold_reference(again, ref) == 12
    res = again.prepare(cat, workers=1, job=Job(progress=False))
    assert (res.added, res.already) == (0, 12)
    assert (again.slots(cat.ids) >= 0).all() and again.slots(["unknown"]).tolist() == [-1]
    # other sizes live side by side
    assert PreparedCache(tmp_path / "c", 8).dir != cache.dir


def test_process_pool_gives_the_same_pixels(tmp_path):
    cat = make_catalog(tmp_path, 40)  # more than 32 items: the worker-pool path
    cache = PreparedCache(tmp_path / "c", SIZE)
    assert cache.prepare(cat, workers=2, batch=8, job=Job(progress=False)).added == 40
    assert assert_ok_slots_hold_reference(cache, reference(cat)) == 40


def test_incremental_add_decodes_only_new_images(tmp_path, monkeypatch):
    full = make_catalog(tmp_path, 30)
    first = full.subset(np.arange(30) < 20)
    cache = PreparedCache(tmp_path / "c", SIZE)
    assert cache.prepare(first, workers=1, job=Job(progress=False)).added == 20
    before = {k: cache.get(k).copy() for k in first.ids}

    decoded = []
    real = cache_mod._decode
    monkeypatch.setattr(cache_mod, "_decode", lambda a: decoded.append(a[0]) or real(a))
    res = PreparedCache(tmp_path / "c", SIZE).prepare(full, workers=1, job=Job(progress=False))
    assert (res.added, res.already) == (10, 20)
    assert decoded == full.ids[20:]  # only the new ones
    cache = PreparedCache(tmp_path / "c", SIZE)
    assert all(np.array_equal(cache.get(k), v) for k, v in before.items())  # growing kept the old pixels
    assert assert_ok_slots_hold_reference(cache, reference(full)) == 30


def test_limit_then_resume_equals_uninterrupted_run(tmp_path):
    cat = make_catalog(tmp_path, 25)
    part = PreparedCache(tmp_path / "part", SIZE)
    assert part.prepare(cat, workers=1, batch=4, limit=10, job=Job(progress=False)).added == 10
    assert len(part.store.todo(cat.ids)) == 15
    res = PreparedCache(tmp_path / "part", SIZE).prepare(cat, workers=1, job=Job(progress=False))
    assert (res.added, res.already) == (15, 10)
    whole = PreparedCache(tmp_path / "whole", SIZE)
    whole.prepare(cat, workers=1, job=Job(progress=False))
    part = PreparedCache(tmp_path / "part", SIZE)
    assert np.array_equal(part.store.gather(cat.ids), whole.store.gather(cat.ids))


# ---------------------------------------------------------------------- kill -9
KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    import artextract.data.cache as c
    from artextract.data.catalog import Catalog
    from artextract.job import Job
    real = c._decode
    def slow(a):  # a few ms per image so the parent can kill us in the middle of the run
        time.sleep(0.004)
        return real(a)
    c._decode = slow
    c.PreparedCache(sys.argv[2], int(sys.argv[3])).prepare(Catalog.load(sys.argv[1]), workers=1, batch=16,
                                                            job=Job(progress=False))
    print("finished")
""")


def _ok_count(store_dir) -> int:
    p = store_dir / "status.u8"
    return int((np.fromfile(p, np.uint8) == OK).sum()) if p.exists() else 0


@pytest.mark.slow
def test_kill_9_midway_then_resume(tmp_path):
    n = 500
    cat = make_catalog(tmp_path, n, side=(20, 20))
    cache_dir = tmp_path / "c"
    store_dir = cache_dir / f"s{SIZE}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(cat.path), str(cache_dir), str(SIZE)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 60
    try:
        while _ok_count(store_dir) < 40:  # wait for a few flushed batches, then kill mid-run
            assert proc.poll() is None, f"prepare ended before it could be killed: {proc.communicate()}"
            assert time.time() < deadline, "prepare made no progress"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL and b"finished" not in out

    ref = reference(cat)
    idx = json.loads((store_dir / "index.json").read_text())
    assert idx["ids"] == cat.ids  # slots were reserved (and the index published) before any pixels
    killed = PreparedCache(cache_dir, SIZE)
    done = assert_ok_slots_hold_reference(killed, ref)  # no slot marked OK holds garbage
    assert 40 <= done < n, done

    # make it worse: a half-written batch may have left anything in slots that are not OK
    data = np.memmap(store_dir / "data.bin", np.uint8, "r+")
    status = np.fromfile(store_dir / "status.u8", np.uint8)
    rng = np.random.default_rng(0)
    per = SIZE * SIZE * 3
    for slot in np.flatnonzero(status[: len(idx["ids"])] != OK)[:50]:
        data[slot * per:(slot + 1) * per] = rng.integers(0, 256, per, dtype=np.uint8)
    data.flush()
    del data

    res = PreparedCache(cache_dir, SIZE).prepare(cat, workers=1, batch=16, job=Job(progress=False))
    assert (res.added, res.already, len(res.failed)) == (n - done, done, 0)
    resumed = PreparedCache(cache_dir, SIZE)
    assert assert_ok_slots_hold_reference(resumed, ref) == n
    whole = PreparedCache(tmp_path / "whole", SIZE)
    whole.prepare(cat, workers=1, job=Job(progress=False))
    assert np.array_equal(resumed.store.gather(cat.ids), whole.store.gather(cat.ids))


# ---------------------------------------------------------------------- failures and the CLI
def test_failures_are_kept_until_retried(tmp_path):
    cat = make_catalog(tmp_path, 5)
    broken = tmp_path / "images" / cat.df["path"][2]
    good_bytes = broken.read_bytes()
    broken.write_bytes(good_bytes[:40])
    cache = PreparedCache(tmp_path / "c", SIZE)
    res = cache.prepare(cat, workers=1, job=Job(progress=False))
    assert res.added == 4 and [s["id"] for s in res.failed.skipped] == [cat.ids[2]]
    assert json.loads((cache.dir / "failures.json").read_text()) == {cat.ids[2]: res.failed.skipped[0]["reason"]}
    broken.write_bytes(good_bytes)  # fixed on disk, but not retried unless asked
    cache = PreparedCache(tmp_path / "c", SIZE)
    assert cache.prepare(cat, workers=1, job=Job(progress=False)).added == 0
    cache.retry_failures()
    res = cache.prepare(cat, workers=1, job=Job(progress=False))
    assert (res.added, res.already, len(res.failed)) == (1, 4, 0)
    assert cache.failures == {}


def test_cli_prepare_and_skip_report(demo_catalog, tmp_path, capsys):
    # a private copy: `prepare --cache` records its folder beside the catalogue
    shutil.copytree(Path(demo_catalog.path).parent, tmp_path / "demo",
                    ignore=shutil.ignore_patterns("*.cache", "*.cache-location"))
    args = ["prepare", "--catalog", str(tmp_path / "demo" / Path(demo_catalog.path).name), "--size", "24",
            "--cache", str(tmp_path / "c"), "--workers", "1"]
    assert main(args) == 0
    assert f"{len(demo_catalog)} added, 0 already prepared" in capsys.readouterr().err
    assert main(args) == 0
    assert f"0 added, {len(demo_catalog)} already prepared" in capsys.readouterr().err

    cat = make_catalog(tmp_path / "own", 4)
    (tmp_path / "own" / "images" / cat.df["path"][1]).write_bytes(b"")
    args = ["prepare", "--catalog", str(cat.path), "--size", "16", "--workers", "1"]
    assert main(args) == 0
    out = capsys.readouterr().err
    assert "3 added" in out and "1 file(s) skipped" in out and "empty file (0 bytes)" in out
    report = tmp_path / "own" / "catalog.cache" / "s16" / "skip_report.json"  # default cache: next to the catalogue
    assert json.loads(report.read_text())["skipped"] == [{"id": cat.ids[1], "reason": "empty file (0 bytes)"}]
    Image.new("RGB", (9, 9)).save(tmp_path / "own" / "images" / cat.df["path"][1], "JPEG")
    assert main(args + ["--retry-failed"]) == 0
    assert "1 added, 3 already prepared" in capsys.readouterr().err


def test_ensure_prepared(tmp_path):
    cat = make_catalog(tmp_path, 6)
    said = []
    cache = ensure_prepared(cat, SIZE, job=Job(progress=False, log=said.append))
    assert cache.dir == tmp_path / "catalog.cache" / f"s{SIZE}"
    assert len(said) == 1 and "preparing 6 image(s)" in said[0]
    ensure_prepared(cat, SIZE, job=Job(progress=False, log=said.append))
    assert len(said) == 1  # nothing to say the second time


# ---------------------------------------------------------------------- the slot store
def test_slot_store_shape_dtype_and_meta_mismatch(tmp_path):
    s = SlotStore(tmp_path / "s", (4, 3), np.float16, meta={"model": "a"})
    s.reserve(["x", "y"])
    s.put("x", np.ones((4, 3), np.float16))
    s.flush()
    with pytest.raises(ValueError, match=r"holds items of shape \[4, 3\] <f2, not \[4, 4\] <f2; delete it to rebuild"):
        SlotStore(tmp_path / "s", (4, 4), np.float16)
    with pytest.raises(ValueError, match=r"not \[4, 3\] <f4"):
        SlotStore(tmp_path / "s", (4, 3), np.float32)
    with pytest.raises(ValueError, match="was built with"):
        SlotStore(tmp_path / "s", (4, 3), np.float16, meta={"model": "b"})
    again = SlotStore(tmp_path / "s", (4, 3), "float16", meta={"model": "a"})
    assert again.has("x") and not again.has("y") and not again.has("z")
    assert np.array_equal(again.get("x"), np.ones((4, 3), np.float16))
    with pytest.raises(KeyError, match="not prepared"):
        again.get("y")
    with pytest.raises(KeyError, match="1 id"):
        again.gather(["x", "y"])
    assert again.todo(["x", "y", "z"]) == ["y", "z"]


def test_slot_store_grows_and_unflushed_puts_are_not_ok(tmp_path):
    s = SlotStore(tmp_path / "s", (2,), np.int32)
    for i in range(7):  # grows one slot at a time; reserving flushes what was put before
        s.reserve([f"k{i}"])
        s.put(f"k{i}", np.array([i, -i], np.int32))
    s.reserve(["k7", "k8", "k9"])
    for i in range(7, 10):
        s.put(f"k{i}", np.array([i, -i], np.int32))
    # k7..k9 were written but never flushed: a reader (or a resumed run) must not trust them
    other = SlotStore(tmp_path / "s", (2,), np.int32)
    assert [other.has(f"k{i}") for i in range(10)] == [True] * 7 + [False] * 3
    assert other.gather([f"k{i}" for i in range(7)])[:, 1].tolist() == [0, -1, -2, -3, -4, -5, -6]
    assert other.capacity >= 10 and len(other.ids) == 10
    s.flush()
    assert SlotStore(tmp_path / "s", (2,), np.int32).has("k9")
    s.reserve(["bad", "new"])
    s.fail("bad", "corrupt image data")
    s.flush()
    other = SlotStore(tmp_path / "s", (2,), np.int32)
    assert other.failures == {"bad": "corrupt image data"}
    assert other.todo(["bad", "new", "k1"]) == ["new"]
    assert other.todo(["bad", "new", "k1"], retry_failed=True) == ["bad", "new"]

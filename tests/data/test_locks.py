"""Stores are safe when two jobs meet: one writer at a time, the other waits and says so, or stops
with the holder's pid; a killed holder leaves no stale lock."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from artextract.data.cache import PreparedCache
from artextract.data.catalog import Catalog, TaskSpec
from artextract.data.lock import StoreBusy, store_lock

HOLD = """
import sys, time
from artextract.data.lock import store_lock
with store_lock(sys.argv[1], "feature store"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(path, seconds):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_busy_store_names_its_holder_and_a_killed_holder_frees_it(tmp_path):
    p = _holder(tmp_path / "store", 60)
    try:
        with pytest.raises(StoreBusy) as exc:
            with store_lock(tmp_path / "store", "feature store", timeout=0):
                pass
        assert f"pid {p.pid}" in str(exc.value) and "feature store" in str(exc.value)
        p.send_signal(signal.SIGKILL)
        p.wait()
        t0 = time.monotonic()
        with store_lock(tmp_path / "store", "feature store", timeout=5):
            pass
        assert time.monotonic() - t0 < 2
    finally:
        p.kill()
        p.wait()


@pytest.mark.slow
def test_a_second_job_waits_and_says_so(tmp_path, caplog):
    p = _holder(tmp_path / "store", 1.5)
    try:
        t0 = time.monotonic()
        with caplog.at_level("WARNING"), store_lock(tmp_path / "store", "index", timeout=30):
            waited = time.monotonic() - t0
        assert waited > 0.5
        assert f"in use by pid {p.pid}" in caplog.text and "waiting" in caplog.text
    finally:
        p.wait()


def _catalog(root, n=150) -> Catalog:
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        arr = np.random.default_rng(i).integers(0, 256, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / "images" / f"{i:04d}.jpg")
        rows.append({"id": f"p{i:04d}", "path": f"{i:04d}.jpg", "split": "train", "style": "A"})
    (root / "images" / "bad.jpg").write_bytes(b"not a jpeg")
    rows.append({"id": "bad", "path": "bad.jpg", "split": "train", "style": "A"})
    cat = Catalog(pd.DataFrame(rows), {"style": TaskSpec("style", ["A"])}, root / "images")
    cat.save(root / "catalog.parquet")
    return cat


@pytest.mark.slow
def test_two_prepare_runs_on_one_cache_both_end_cleanly_and_the_store_is_complete(tmp_path):
    cat = _catalog(tmp_path)
    cmd = [sys.executable, "-m", "artextract", "prepare", "--catalog", str(tmp_path / "catalog.parquet"),
           "--size", "32", "--workers", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # a third job holds the cache's lock while both start, so the two meet for certain; they then race
    holder = _holder(tmp_path / "catalog.cache" / "s32", 15)  # longer than two interpreters take to start
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    holder.wait()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "Traceback" not in err and "Errno" not in err
    for _, err in outs:
        assert "in use by pid" in err  # each waited (for the holder, then perhaps the other), and said so
    cache = PreparedCache(tmp_path / "catalog.cache", 32)
    good = [k for k in cat.ids if k != "bad"]
    assert all(cache.has(k) for k in good)
    assert "bad" in cache.failures and not cache.has("bad")
    assert not list(cache.dir.glob("*.tmp"))
    # the pixels are the ones one job alone would have written
    from artextract.data.cache import decode_resized
    for k in good[::37]:
        np.testing.assert_array_equal(cache.get(k), decode_resized(cat.image_paths()[cat.ids.index(k)], 32))


@pytest.mark.slow
def test_a_timed_out_wait_is_a_clear_error_and_the_store_is_untouched(tmp_path):
    _catalog(tmp_path, n=5)
    holder = _holder(tmp_path / "catalog.cache" / "s32", 60)
    try:
        r = subprocess.run([sys.executable, "-m", "artextract", "prepare", "--catalog", str(tmp_path / "catalog.parquet"),
                            "--size", "32"], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "ARTEXTRACT_LOCK_TIMEOUT": "0"})
    finally:
        holder.kill()
        holder.wait()
    assert r.returncode == 2
    assert f"in use by pid {holder.pid}" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "catalog.cache" / "s32" / "index.json").exists()  # nothing was reserved or written

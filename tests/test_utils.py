"""artextract.utils: atomic writes, L2 normalisation."""
from __future__ import annotations

import numpy as np
import pytest

from artextract.utils import atomic_path, atomic_write_bytes, atomic_write_text, l2_normalize


def test_atomic_writes_replace_and_leave_no_temporary(tmp_path):
    p = tmp_path / "a.json"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    atomic_write_bytes(p, b"\x00\x01", fsync=True)
    assert p.read_bytes() == b"\x00\x01"
    assert [q.name for q in tmp_path.iterdir()] == ["a.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(p, suffix=".part") as tmp:
            assert tmp.name.startswith(".a.txt.") and tmp.suffix == ".part"
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert p.read_text() == "old" and [q.name for q in tmp_path.iterdir()] == ["a.txt"]


def test_l2_normalize():
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    z = l2_normalize(x)
    assert z.dtype == np.float32 and z.flags.c_contiguous
    assert np.allclose(z, [[0.6, 0.8], [0.0, 0.0]])
    assert l2_normalize(np.array([0.0, 2.0])).shape == (1, 2)

"""Helpers shared by the web explorer tests (a module with a unique name, so imports never
pick up another folder's conftest)."""
from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

#: the Host names the test apps answer to: Starlette's TestClient sends "testserver"
TEST_HOSTS = ["testserver"]


def make_outliers(catalog_path: Path, out: Path) -> Path:
    """An outlier table in the format of `artextract outliers` (a subset of its per-method columns and
    its neighbour evidence: ids, labels and similarities joined by ``|``)."""
    from artextract.data.catalog import Catalog

    cat = Catalog.load(catalog_path)
    planted = pd.read_csv(catalog_path.parent / "planted_errors.csv")
    ids = cat.ids
    rows = []
    for r in planted.itertuples():
        i = ids.index(r.id)
        rows.append({"id": r.id, "task": r.task, "given_label": r.given_label, "suggested_label": r.true_label,
                     "suggested_prob": 0.9 - 0.01 * len(rows), "score": 0.95 - 0.02 * len(rows),
                     "flagged": True, "score_knn": 0.5,
                     "neighbor_ids": "|".join(nb := ids[(i + 1) % 40: (i + 1) % 40 + 3]),
                     "neighbor_labels": "|".join(cat.df.set_index("id").loc[nb, r.task]),
                     "neighbor_similarities": "|".join(f"{0.9 - 0.1 * j:.3f}" for j in range(len(nb))),
                     "note": "planted"})
    # two rows that are not flagged: on painting pages only, not in the queue
    for j in (0, 1):
        pid = ids[j]
        rows.append({"id": pid, "task": "genre", "given_label": cat.df.loc[j, "genre"],
                     "suggested_label": "portrait", "suggested_prob": 0.2, "score": 0.05, "flagged": False,
                     "score_knn": 0.1, "neighbor_ids": "", "neighbor_labels": "", "neighbor_similarities": "",
                     "note": ""})
    df = pd.DataFrame(rows)
    df.insert(df.columns.get_loc("flagged"), "rank", range(1, len(df) + 1))
    df.to_csv(out, index=False)
    return out


def jpeg_bytes(size=(96, 80), colour=(180, 60, 40)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG")
    return buf.getvalue()

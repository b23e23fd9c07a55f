"""Loading a catalogue checks it: a file that is not a usable catalogue is a CatalogError in words
(not a KeyError or JSONDecodeError), and a catalogue with a null id never gets as far as the web app."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from artextract.cli import main
from artextract.data.catalog import META_KEY, Catalog, CatalogError, TaskSpec


def _write(path, columns: dict, meta) -> str:
    table = pa.table(columns)
    raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    pq.write_table(table.replace_schema_metadata({META_KEY: raw}), path)
    return str(path)


META = {"format_version": 1, "source": "test", "image_root": ".", "extra": {},
        "tasks": {"style": {"classes": ["a", "b"], "ordered": False}}}
GOOD = {"id": ["1", "2"], "path": ["1.jpg", "2.jpg"], "split": ["train", "val"], "style": ["a", "b"]}


@pytest.mark.parametrize("columns,meta,message", [
    (GOOD, b"{not json", "its metadata is not JSON"),
    (GOOD, b"\xff\xfe", "its metadata is not JSON"),
    (GOOD, [1, 2], "its metadata is a JSON list, not an object"),
    (GOOD, {**META, "tasks": None}, "no task list"),
    (GOOD, {**META, "tasks": {"style": {"ordered": True}}}, "task 'style' in its metadata has no class list"),
    (GOOD, {k: v for k, v in META.items() if k != "image_root"}, "no image root"),
    ({k: v for k, v in GOOD.items() if k != "style"}, META,
     r"its metadata lists the task\(s\) 'style' but the table has no such column"),
    ({k: v for k, v in GOOD.items() if k != "path"}, META, "it has no 'path' column"),
    ({k: v for k, v in GOOD.items() if k != "id"}, META, "it has no 'id' column"),
    ({**GOOD, "id": ["1", None]}, META, r"1 row\(s\) have no id \(e.g. row\(s\) \[1\]\)"),
    ({**GOOD, "id": ["1", "1"]}, META, r"ids must be unique; duplicated: \['1'\]"),
    ({**GOOD, "path": ["1.jpg", None]}, META, r"every painting needs an image path; 1 row\(s\) have none"),
    ({**GOOD, "style": ["a", "z"]}, META, r"labels that are not among its classes: \['z'\]"),
], ids=["bad-json", "bad-bytes", "json-list", "no-tasks", "no-classes", "no-root", "task-column-missing",
        "no-path", "no-id", "null-id", "duplicate-id", "null-path", "unknown-label"])
def test_a_catalogue_is_checked_when_it_loads(tmp_path, capsys, columns, meta, message):
    path = _write(tmp_path / "c.parquet", columns, meta)
    with pytest.raises(CatalogError, match=message):
        Catalog.load(path)
    # the command line says it in words, exit status 2, no traceback
    assert main(["catalog", "info", path]) == 2
    err = capsys.readouterr().err
    assert "is not a usable catalogue" in err and "Traceback" not in err


def test_a_good_catalogue_still_loads(tmp_path):
    cat = Catalog.load(_write(tmp_path / "c.parquet", GOOD, META))
    assert cat.ids == ["1", "2"] and cat.task("style").classes == ["a", "b"]


def test_a_null_id_cannot_be_built_either():
    import pandas as pd

    with pytest.raises(CatalogError, match="ids must not be empty"):
        Catalog(pd.DataFrame({"id": ["1", None], "path": ["a", "b"], "split": ["train", "val"]}), {}, ".")
    with pytest.raises(CatalogError, match="needs an image path"):
        Catalog(pd.DataFrame({"id": ["1", "2"], "path": ["a", None], "split": ["train", "val"]}),
                {"t": TaskSpec("t", [])}, ".")

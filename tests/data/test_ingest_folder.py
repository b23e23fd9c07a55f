"""`artextract ingest folder`: one sub-folder per class (torchvision's ImageFolder layout)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from artextract.cli import main
from artextract.data.catalog import Catalog, CatalogError
from artextract.data.folder import ingest_folder


def _img(path, seed: int, fmt: str = "JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, fmt)


@pytest.fixture()
def folder(tmp_path):
    """Baroque: 4 images, one of them one level deeper; Cubism: 3 PNGs plus a corrupt JPEG, a truncated
    one, and a text file that is not an image by name; one loose image at the root."""
    root = tmp_path / "paintings"
    for i in range(3):
        _img(root / "Baroque" / f"b{i}.jpg", i)
    _img(root / "Baroque" / "rembrandt" / "deep.jpg", 10)
    for i in range(3):
        _img(root / "Cubism" / f"c{i}.png", 20 + i, "PNG")
    (root / "Cubism" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    _img(root / "Cubism" / "cut.jpg", 30)
    data = (root / "Cubism" / "cut.jpg").read_bytes()
    (root / "Cubism" / "cut.jpg").write_bytes(data[: len(data) // 2])
    (root / "Cubism" / "notes.txt").write_text("not an image")
    _img(root / "loose.jpg", 40)
    return root


def test_one_row_per_readable_image_labelled_by_the_first_folder(folder):
    cat, msgs, skipped = ingest_folder(folder)
    assert cat.tasks == {"label": cat.task("label")} and cat.task("label").classes == ["Baroque", "Cubism"]
    df = cat.df.set_index("id")
    assert sorted(df.index) == sorted(["Baroque/b0.jpg", "Baroque/b1.jpg", "Baroque/b2.jpg",
                                       "Baroque/rembrandt/deep.jpg", "Cubism/c0.png", "Cubism/c1.png",
                                       "Cubism/c2.png"])
    assert df.loc["Baroque/rembrandt/deep.jpg", "label"] == "Baroque"  # deeper paths keep the first level
    assert (df["path"] == df.index).all() and cat.image_root == folder.resolve()
    assert all(cat.image_path(p).is_file() for p in df["path"])
    # the corrupt and the truncated file are reported with a reason, the text file is ignored
    assert {s["id"] for s in skipped.skipped} == {"Cubism/broken.jpg", "Cubism/cut.jpg"}
    assert all(s["reason"] for s in skipped.skipped)
    text = "\n".join(msgs)
    assert "2 file(s) skipped" in text and "loose.jpg" in text
    # a seeded split stratified on the label: both classes in train and in val
    assert set(df["split"]) == {"train", "val"}
    assert set(df.loc[df["split"] == "val", "label"]) == {"Baroque", "Cubism"}
    again, _, _ = ingest_folder(folder)
    assert again.df["split"].tolist() == cat.df["split"].tolist()


def test_task_name_and_bad_input(folder, tmp_path):
    cat, _, _ = ingest_folder(folder, task="style")
    assert cat.tasks.keys() == {"style"} and "label" not in cat.df.columns
    with pytest.raises(CatalogError, match="not a folder"):
        ingest_folder(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    (empty / "Baroque").mkdir(parents=True)
    (empty / "Baroque" / "bad.jpg").write_bytes(b"nope")
    with pytest.raises(CatalogError, match="no readable image"):
        ingest_folder(empty)
    with pytest.raises(CatalogError, match="not a usable task name"):
        ingest_folder(folder, task="split")


def test_cli_ingest_folder(folder, tmp_path, capsys):
    out = tmp_path / "mine.parquet"
    assert main(["ingest", "folder", "--images", str(folder), "--task", "style", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""  # messages on stderr only
    assert "Cubism/broken.jpg" in captured.err and "wrote" in captured.err
    cat = Catalog.load(out)
    assert len(cat) == 7 and cat.source == "folder" and cat.task("style").classes == ["Baroque", "Cubism"]
    report = json.loads((tmp_path / "mine.skipped.json").read_text())
    assert {s["id"] for s in report["skipped"]} == {"Cubism/broken.jpg", "Cubism/cut.jpg"}
    assert main(["catalog", "info", str(out), "--json", "--check-files"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["rows"] == 7 and info["tasks"]["style"]["labelled"] == 7
    assert info["missing_images"]["count"] == 0
    # default task name
    assert main(["ingest", "folder", "--images", str(folder), "--out", str(tmp_path / "d.parquet")]) == 0
    assert Catalog.load(tmp_path / "d.parquet").tasks.keys() == {"label"}
    # a folder that does not exist: a clear error, exit status 2
    capsys.readouterr()
    assert main(["ingest", "folder", "--images", str(tmp_path / "nope"), "--out", str(tmp_path / "x.parquet")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_catalog_info_stats_files_only_when_asked(tmp_path, capsys, monkeypatch):
    import pandas as pd

    from artextract.data.catalog import Catalog, TaskSpec

    df = pd.DataFrame({"id": ["a", "b"], "path": ["a.jpg", "b.jpg"], "split": "train", "style": ["X", "Y"]})
    cat = Catalog(df, {"style": TaskSpec("style", ["X", "Y"])}, tmp_path)
    (tmp_path / "a.jpg").write_bytes(b"x")
    cat.save(tmp_path / "c.parquet")
    calls = []
    real = Catalog.missing_images
    monkeypatch.setattr(Catalog, "missing_images", lambda self: calls.append(1) or real(self))
    assert main(["catalog", "info", str(tmp_path / "c.parquet"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["missing_images"] is None and not calls
    assert main(["catalog", "info", str(tmp_path / "c.parquet"), "--json", "--check-files"]) == 0
    assert json.loads(capsys.readouterr().out)["missing_images"] == {"count": 1, "examples": ["b.jpg"]}
    assert calls == [1]


def test_cli_val_fraction_and_period_name(tmp_path):
    """`--val-fraction` is each class's share in val (5 images per class: 20% -> 1, 60% -> 3);
    `--period-name` names the period task read here from the years in the file names (the ids)."""
    root = tmp_path / "dated"
    for c, cls in enumerate(("Baroque", "Cubism")):
        for i in range(5):
            _img(root / cls / f"work-{1610 + 300 * c + i}.jpg", 10 * c + i)
    out = tmp_path / "d.parquet"
    base = ["ingest", "folder", "--images", str(root), "--workers", "1", "--out", str(out)]
    for fraction, per_class in ((None, 1), ("0.6", 3)):
        assert main(base + (["--val-fraction", fraction] if fraction else [])) == 0
        df = Catalog.load(out).df
        assert df.groupby("label")["split"].apply(lambda s: (s == "val").sum()).tolist() == [per_class] * 2
    assert main(base + ["--period-from", "id", "--period-bins", "100", "--period-name", "century"]) == 0
    cat = Catalog.load(out)
    assert "period" not in cat.tasks and cat.tasks["century"].ordered
    assert dict(zip(cat.df["label"], cat.df["century"])) == {"Baroque": "1600 to 1699", "Cubism": "1900 to 1999"}


def test_every_image_file_is_imported_or_reported_and_odd_names_do_not_crash(folder, tmp_path):
    """A file name whose bytes are not UTF-8 cannot be stored in the catalogue (Parquet text): it is
    reported (the catalogue save raised before); every image file found is imported or left out with
    its reason."""
    import os

    from artextract.data.catalog import RowAccount

    _img(folder / "Baroque" / "ok-\u00e9\u0085.jpg", 50)
    raw = os.path.join(os.fsencode(folder / "Cubism"), b"caf\xe9.jpg")          # Latin-1 bytes in a name
    Image.new("RGB", (8, 8)).save(raw.decode(os.sys.getfilesystemencoding(), "surrogateescape"), "JPEG")
    acc = RowAccount()
    cat, msgs, skipped = ingest_folder(folder, account=acc)
    assert "Baroque/ok-\u00e9\u0085.jpg" in set(cat.ids)
    assert acc.records == 12 and acc.imported == len(cat) == 8
    assert acc.left_out == {"not in a class folder": 1, "unreadable or unusable": 3}
    assert {s["id"]: s["reason"] for s in skipped.skipped}["'Cubism/caf\\udce9.jpg'"].startswith(
        "the file or folder name is not valid UTF-8")
    out = tmp_path / "f.parquet"
    assert main(["ingest", "folder", "--images", str(folder), "--out", str(out)]) == 0
    assert len(Catalog.load(out)) == 8 and len(json.loads(out.with_suffix(".skipped.json").read_text())["skipped"]) == 3


def test_a_file_that_cannot_be_read_is_a_load_error_not_a_traceback(tmp_path):
    from artextract.data.images import ImageLoadError, load_image

    with pytest.raises(ImageLoadError, match="cannot read the file|file not found"):
        load_image(tmp_path / ("n" * 300 + ".jpg"))                             # a name too long for the disk
    with pytest.raises(ImageLoadError, match="NUL byte|file not found"):
        load_image(str(tmp_path / "a\0b.jpg"))

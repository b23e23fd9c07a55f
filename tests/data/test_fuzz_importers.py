"""Fuzzing every importer (CSV, ArtGAN label files, NGA CSVs, IIIF JSON, image folders) with Hypothesis.

Each test starts from the real fixtures of the test suite (the ArtGAN-format files of
``artgan_fixtures``, the NGA export of ``nga_fixtures`` with the headers in ``tests/fixtures/nga``,
the IIIF documents in ``tests/data/iiif_fixtures``, a CSV and a class-folder tree like those of
``test_tabular`` and ``test_ingest_folder``) and mutates them: bytes inserted, deleted, replaced
(quotes, separators, line breaks, NUL, byte order marks, bytes that are not UTF-8), lines dropped,
doubled and swapped, fields replaced by generated text (long fields, control and non-Latin
characters), JSON values replaced by generated JSON, files replaced by broken images.

Every run must end in a catalogue (that saves and loads again) or in the project's own error with a
message (:class:`CatalogError`); any other exception is a failure. Where the importer can count its
input, no record may vanish: records in = imported + reported, the records counted here
independently of the importer.

The suite runs a bounded number of examples (profile ``fuzz``, a few seconds). A longer run::

    HYPOTHESIS_PROFILE=long pytest tests/data/test_fuzz_importers.py

(``long``: 2,000 examples per importer, random seeds; a failure prints the input that reproduces it.)
"""
from __future__ import annotations

import copy
import csv
import io
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import artgan_fixtures as ag  # noqa: E402
import nga_fixtures as fx  # noqa: E402

from artextract.data.catalog import Catalog, CatalogError, RowAccount  # noqa: E402
from artextract.data.folder import ingest_folder  # noqa: E402
from artextract.data.iiif import ingest_iiif  # noqa: E402
from artextract.data.images import IMAGE_EXTS  # noqa: E402
from artextract.data.nga import ingest_nga  # noqa: E402
from artextract.data.tabular import allow_long_fields, decode_text, ingest_csv  # noqa: E402
from artextract.data.wikiart import ingest_wikiart  # noqa: E402

HERE = Path(__file__).resolve().parent
IIIF_FIX = HERE / "iiif_fixtures"
FAKE = "http://127.0.0.1:9/"

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
           HealthCheck.large_base_example]
settings.register_profile("fuzz", max_examples=25, deadline=None, derandomize=True, database=None,
                          suppress_health_check=_HEALTH)
settings.register_profile("long", max_examples=2000, deadline=None, database=None, suppress_health_check=_HEALTH)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "fuzz")
if PROFILE not in ("fuzz", "long"):
    PROFILE = "fuzz"


def fuzz(examples: int):
    """The test's settings: ``examples`` in the suite's bounded run, the ``long`` profile's otherwise."""
    if PROFILE == "long":
        return settings(settings.get_profile("long"))
    return settings(settings.get_profile("fuzz"), max_examples=examples)


# ---------------------------------------------------------------------- generic mutations
INTERESTING = [b'"', b",", b",,", b"\n", b"\r", b"\r\n", b"\x00", b"\xff", b"\xe9", b"\xc3", b"\xef\xbb\xbf",
               b"\xff\xfe", b"\xc2\x85", b"\xe2\x80\xa8", b" ", b"\t", b"=", b"-", b"..", b"/", b"\\", b"'",
               b'""', b"\"\n\"", "é".encode(), "ã\x85".encode(), b"1", b"99999999999999999999", "²".encode()]
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
FIELD = st.one_of(TEXT, st.sampled_from(["", " ", '"', '""', "a,b", "x\ny", "\x00", "-1", "=1+1", "nan", "NA",
                                         "None", "..", "../../etc/passwd", "/etc/passwd", "Style/a.jpg"]),
                  st.builds(lambda n, c: c * n, st.sampled_from([10, 1000, 131_073]), st.sampled_from("xé\"")))


@st.composite
def mutate_bytes(draw, data: bytes, max_ops: int = 3) -> bytes:
    """A few byte-level edits: insert, delete, replace, truncate."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(0, max_ops))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
        pos = draw(st.integers(0, len(buf)))
        chunk = draw(st.one_of(st.sampled_from(INTERESTING), st.binary(min_size=1, max_size=6)))
        if op == "insert":
            buf[pos:pos] = chunk
        elif op == "delete":
            del buf[pos:pos + draw(st.integers(1, 8))]
        elif op == "replace":
            buf[pos:pos + len(chunk)] = chunk
        elif len(buf) > 1:
            del buf[max(1, pos):]
    return bytes(buf)


@st.composite
def mutate_lines(draw, data: bytes, sep: bytes = b",", max_ops: int = 3) -> bytes:
    """A few line- and field-level edits: drop, double or swap lines, replace or add a field."""
    lines = data.split(b"\n")
    for _ in range(draw(st.integers(0, max_ops))):
        if not lines:
            break
        op = draw(st.sampled_from(["drop", "double", "swap", "field", "add_field", "blank"]))
        i = draw(st.integers(0, len(lines) - 1))
        if op == "drop":
            del lines[i]
        elif op == "double":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "blank":
            lines.insert(i, draw(st.sampled_from([b"", b"\r", b"   ", b","])))
        else:
            fields = lines[i].split(sep)
            value = draw(FIELD).encode("utf-8")
            if op == "field":
                fields[draw(st.integers(0, len(fields) - 1))] = value
            else:
                fields.insert(draw(st.integers(0, len(fields))), value)
            lines[i] = sep.join(fields)
    return b"\n".join(lines)


def mutated(data: bytes, sep: bytes = b","):
    """Line/field edits, then byte edits, of ``data`` (sometimes none of either)."""
    return mutate_lines(data, sep).flatmap(lambda d: mutate_bytes(d))


def csv_records(text: str) -> int:
    """The data records of CSV text as the csv module counts them (blank lines are not records)."""
    allow_long_fields()
    rows = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
    return max(0, len(rows) - 1)


def saves_and_loads(cat: Catalog, folder: Path) -> Catalog:
    """A catalogue an importer returned can be saved and loaded back, with the same rows."""
    path = cat.save(folder / "fuzz.parquet")
    back = Catalog.load(path)
    assert back.ids == [str(i) for i in cat.ids] and len(back) == len(cat)
    return back


class Fixture(tuple):
    """A fixture's values, shown by name only when Hypothesis prints a failing example."""

    def __new__(cls, name, *values):
        self = super().__new__(cls, values)
        self.name = name
        return self

    def __repr__(self) -> str:
        return f"<fixture {self.name}>"


def clear_error(exc: CatalogError) -> None:
    msg = str(exc)
    assert msg.strip() and "Traceback" not in msg, repr(msg)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Eight small images 0.jpg ... 7.jpg (read-only)."""
    root = tmp_path_factory.mktemp("fuzz_images")
    for i in range(8):
        Image.new("RGB", (8, 8), (i * 30, 0, 0)).save(root / f"{i}.jpg")
    return root


# ---------------------------------------------------------------------- ingest csv
CSV_BASE = ("path,school,century,title,split\n"
            + "".join(f"{i}.jpg,{'Dutch' if i % 2 else 'Italian'},{16 + i % 3}th,Title {i},{'train' if i % 3 else 'val'}\n"
                      for i in range(8))
            + "9.jpg,Dutch,17th,Not on disk,train\n")


@fuzz(40)
@hypothesis.given(data=st.data(), encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252"]),
                  split_col=st.sampled_from([None, "split"]), id_col=st.sampled_from([None, "title"]))
def test_fuzz_ingest_csv(images, data, encoding, split_col, id_col):
    raw = data.draw(mutated(CSV_BASE.encode(encoding)), label="csv bytes")
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "in.csv"
        p.write_bytes(raw)
        acc = RowAccount()
        try:
            cat, msgs = ingest_csv(p, images, id_col=id_col, path_col="path", tasks=["school", "century"],
                                   split_col=split_col, ordered=["century"], account=acc)
        except CatalogError as exc:
            clear_error(exc)
            return
        text, _, _ = decode_text(raw, p)            # decodes: the importer decoded it the same way
        records = csv_records(text)
        assert records == acc.records == len(cat) + acc.reported, (records, len(cat), acc)
        assert all(isinstance(i, str) and i for i in cat.ids)
        if acc.reported:
            assert any("record(s) read" in m for m in msgs)
        saves_and_loads(cat, Path(tmp))


# ---------------------------------------------------------------------- ingest wikiart (ArtGAN files)
@pytest.fixture(scope="module")
def artgan(tmp_path_factory):
    """The ArtGAN-format label files and images of artgan_fixtures (read-only): (files, images dir)."""
    labels = tmp_path_factory.mktemp("fuzz_artgan_labels")
    ag.write_labels(labels)
    imgs = tmp_path_factory.mktemp("fuzz_artgan_images")
    ag.write_images(imgs)
    return Fixture("artgan", {f.name: f.read_bytes() for f in labels.iterdir()}, imgs)


def artgan_data_lines(raw: bytes) -> int:
    """Data lines of an ArtGAN split file: not blank, not a header (independent of the importer)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    lines = re.split(r"\r\n|\n|\r", text)
    return sum(1 for ln in lines if ln.strip() and not ln.strip().startswith("(Path to image)"))


@fuzz(30)
@hypothesis.given(data=st.data(), which=st.sampled_from(["artist_train", "artist_val", "genre_train.csv",
                                                          "genre_val.csv", "style_train.csv", "style_val.csv",
                                                          "style_class.txt", "genre_class"]))
def test_fuzz_ingest_wikiart(artgan, data, which):
    files, imgs = artgan
    changed = data.draw(mutated(files[which]), label=which)
    with tempfile.TemporaryDirectory() as tmp:
        labels = Path(tmp) / "labels"
        labels.mkdir()
        for name, raw in files.items():
            (labels / name).write_bytes(changed if name == which else raw)
        try:
            cat, rep = ingest_wikiart(labels, imgs)
        except CatalogError as exc:
            clear_error(exc)
            return
        acc = rep.account()
        lines = sum(artgan_data_lines((labels / n).read_bytes()) for n in files if "class" not in n)
        assert lines == acc.records == acc.imported + acc.reported, (lines, acc)
        assert rep.rows_kept + rep.missing_count == rep.rows_listed == len(cat) + rep.missing_count
        assert all(not p.startswith("/") and ".." not in p.split("/") for p in cat.df["path"])
        saves_and_loads(cat, Path(tmp))


# ---------------------------------------------------------------------- ingest nga
@pytest.fixture(scope="module")
def nga(tmp_path_factory):
    """objects.csv and published_images.csv of nga_fixtures.build_opendata on 12 generated images."""
    sample = fx.generate_sample(tmp_path_factory.mktemp("fuzz_nga_sample"), n=12)
    od = tmp_path_factory.mktemp("fuzz_nga_opendata")
    fx.build_opendata(od, sample)
    return Fixture("nga", (od / "objects.csv").read_bytes(), (od / "published_images.csv").read_bytes(), sample.dir)


@fuzz(25)
@hypothesis.given(data=st.data(), which=st.sampled_from(["objects.csv", "objects.csv", "published_images.csv"]),
                  classification=st.sampled_from(["Painting", "all"]), with_images=st.booleans())
def test_fuzz_ingest_nga(nga, data, which, classification, with_images):
    objects, published, sample_dir = nga
    base = objects if which == "objects.csv" else published
    changed = data.draw(mutated(base), label=which)
    with tempfile.TemporaryDirectory() as tmp:
        od = Path(tmp) / "od"
        od.mkdir()
        (od / "objects.csv").write_bytes(changed if which == "objects.csv" else objects)
        (od / "published_images.csv").write_bytes(changed if which != "objects.csv" else published)
        acc = RowAccount()
        try:
            cat, msgs = ingest_nga(od, sample_dir if with_images else None, classification=classification,
                                   catalog_path=Path(tmp) / "nga.parquet", account=acc, chunksize=7)
        except CatalogError as exc:
            clear_error(exc)
            return
        text = (od / "objects.csv").read_bytes().decode("utf-8-sig")     # it decoded: it is UTF-8
        records = csv_records(text)
        assert records == acc.records == len(cat) + acc.reported, (records, len(cat), acc)
        saves_and_loads(cat, Path(tmp))


# ---------------------------------------------------------------------- ingest iiif
IIIF_LAYOUT = {  # URL path under FAKE -> fixture file (the collections link these URLs)
    "iiif/collection/top.json": "collection-top.json", "iiif/collection/dutch.json": "collection-dutch.json",
    "iiif/v3/rembrandt/manifest.json": "v3-manifest-choice.json", "iiif/v2/vermeer/manifest.json": "v2-manifest.json",
    "iiif/v3/direct/manifest.json": "v3-manifest-direct.json", "iiif/broken/manifest.json": "broken-manifest.json",
    "iiif/v3/noimage/manifest.json": "v3-manifest-no-image.json",
}
MANIFESTS = ["v2-manifest.json", "v3-manifest-choice.json", "v3-manifest-direct.json", "v3-manifest-no-image.json"]
JSON_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
              st.floats(allow_nan=False, allow_infinity=False), TEXT,
              st.sampled_from(["Manifest", "Collection", "sc:Manifest", "Image", "image/jpeg", "painting",
                               "http://iiif.io/api/image/2/level2.json", "http://iiif.io/api/image/x", "/etc/passwd",
                               "file:///etc/passwd", FAKE + "iiif/v2/vermeer/manifest.json", "\ud800",
                               "<p>html &amp; text</p>"])),
    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(
        st.sampled_from(["id", "@id", "type", "@type", "items", "label", "value", "body", "service", "format",
                         "width", "height", "@context", "profile", "metadata", "sequences", "canvases", "images",
                         "resource", "none", "en", "@value", "@language"]), kids, max_size=4)),
    max_leaves=8)


def _nodes(doc, path=()):
    """Every (path, value) in a JSON document."""
    yield path, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _nodes(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _nodes(v, path + (i,))


@st.composite
def mutated_json(draw, doc):
    """A few tree edits of a JSON document: a value replaced by generated JSON, a key deleted, a list
    item doubled; the tree serialised, then (sometimes) its bytes edited."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(0, 3))):
        nodes = list(_nodes(doc))
        path, _ = draw(st.sampled_from(nodes))
        if not path:
            continue
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        op = draw(st.sampled_from(["replace", "replace", "delete", "double"]))
        key = path[-1]
        if op == "replace":
            parent[key] = draw(JSON_VALUE)
        elif op == "delete":
            del parent[key]
        elif isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
    raw = json.dumps(doc, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 4)) == 0:
        raw = draw(mutate_bytes(raw))
    return raw


def _fixture_json(name: str):
    try:
        return json.loads((IIIF_FIX / name).read_text())
    except json.JSONDecodeError:
        return None


@fuzz(40)
@hypothesis.given(data=st.data(), name=st.sampled_from(MANIFESTS), all_canvases=st.booleans())
def test_fuzz_ingest_iiif_manifest(data, name, all_canvases):
    """One manifest in, so one row (or one row per canvas with an image), or the failure that says why."""
    raw = data.draw(mutated_json(_fixture_json(name)), label=name)
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "m.json"
        p.write_bytes(raw)
        try:   # URLs a mutation puts in are read from an empty folder: no network
            cat, rep = ingest_iiif([str(p)], all_canvases=all_canvases, tasks=[], images=tmp, retries=0, timeout=1,
                                   rewrite={FAKE: str(Path(tmp) / "nothing") + "/", "http": str(Path(tmp) / "none")})
        except CatalogError as exc:
            clear_error(exc)
            assert "no manifest with an image could be read" in str(exc)
            return
        assert len(cat) >= 1 and rep.rows == len(cat)
        if rep.collections == 0 and not all_canvases:   # still a manifest: its one row, nothing failed
            assert len(cat) == 1 and rep.manifests == 1 and not rep.failures
        rep.write(Path(tmp) / "report.json")
        saves_and_loads(cat, Path(tmp))


@fuzz(25)
@hypothesis.given(data=st.data(), which=st.sampled_from(sorted(IIIF_LAYOUT)))
def test_fuzz_ingest_iiif_collection(data, which):
    """The fixtures' nested collections (read through --rewrite from a folder laid out like the URLs),
    one document mutated: a catalogue and a report, or a CatalogError; never a local file read from a
    reference a document made (they are http URLs here, rewritten to the folder)."""
    doc = _fixture_json(IIIF_LAYOUT[which])
    raw = data.draw(mutated_json(doc) if doc is not None else mutate_bytes((IIIF_FIX / IIIF_LAYOUT[which]).read_bytes()),
                    label=which)
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        for url_path, name in IIIF_LAYOUT.items():
            dest = site / url_path
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(raw if url_path == which else (IIIF_FIX / name).read_bytes())
        try:
            cat, rep = ingest_iiif([FAKE + "iiif/collection/top.json"],   # other URLs: an empty folder, no network
                                   rewrite={FAKE: str(site) + "/", "http": str(Path(tmp) / "none")},
                                   tasks=data.draw(st.sampled_from([[], ["artist"]]), label="tasks"),
                                   images=tmp, retries=0, timeout=1)
        except CatalogError as exc:
            clear_error(exc)
            return
        assert rep.rows == len(cat) >= 1
        assert all(f["reason"].strip() for f in rep.failures)
        rep.write(Path(tmp) / "report.json")
        saves_and_loads(cat, Path(tmp))


# ---------------------------------------------------------------------- ingest folder
def _image_bytes(fmt: str, seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(buf, fmt)
    return buf.getvalue()


GOOD_IMAGES = [_image_bytes("JPEG", 1), _image_bytes("PNG", 2)]
NAME = st.one_of(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",),
                                                exclude_characters="/\x00"), min_size=1, max_size=20),
                 st.sampled_from(["Baroque", "Cubism", "id", "path", "split", " ", "-", "=x", "é\x85"]),
                 st.just(os.fsdecode(b"caf\xe9")))                           # a name of non-UTF-8 bytes
CONTENT = st.one_of(st.sampled_from(GOOD_IMAGES), st.sampled_from(GOOD_IMAGES).flatmap(lambda b: mutate_bytes(b, 2)),
                    st.sampled_from([b"", b"not an image", GOOD_IMAGES[0][:40]]))


@fuzz(20)
@hypothesis.given(files=st.lists(st.tuples(st.lists(NAME, min_size=0, max_size=2), NAME,
                                           st.sampled_from([".jpg", ".JPG", ".png", ".jpeg", ".txt", ".gif"]), CONTENT),
                                 min_size=0, max_size=8),
                  task=st.sampled_from(["label", "style"]))
def test_fuzz_ingest_folder(files, task):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "imgs"
        root.mkdir()
        for folders, stem, ext, content in files:
            if stem in (".", "..") or any(f in (".", "..") for f in folders):
                continue
            path = root.joinpath(*folders, stem + ext)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                if path.parent.is_dir() and not path.is_dir():
                    path.write_bytes(content)
            except OSError:          # a name the file system refuses (too long ...): not an input
                continue
        found = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS
                 and not any(part.startswith(".") for part in p.relative_to(root).parts)]
        acc = RowAccount()
        try:
            cat, msgs, skipped = ingest_folder(root, task=task, account=acc, workers=2)
        except CatalogError as exc:
            clear_error(exc)
            assert acc.imported == 0 or not found
            return
        assert len(found) == acc.records == len(cat) + acc.reported, (len(found), len(cat), acc)
        assert acc.left_out.get("unreadable or unusable", 0) == len(skipped)
        skipped.write(Path(tmp) / "skipped.json")
        saves_and_loads(cat, Path(tmp))

"""Test helpers for the NGA importer and downloader.

- :func:`generate_sample` writes a folder of small generated JPEGs named ``<objectid>.jpg`` (the
  layout of ``shared/data/nga_sample`` and of what ``artextract download nga`` writes) and returns
  a :class:`Sample`; :func:`real_sample` reads the shared sample of real NGA images instead
  (skipping when ``../shared/data`` is absent).
- :func:`build_opendata` writes ``objects.csv`` and ``published_images.csv`` in the real NGA format
  (the real column headers, kept in ``tests/fixtures/nga``; rows written here) around a sample:
  multi-line quoted fields, blank and odd timeframes, non-painting rows, alternate views, a
  duplicated primary view, objects without images.
- :class:`FaultServer` serves those images as a IIIF server on 127.0.0.1 and injects faults (a
  :class:`support.http_server.LocalServer` with an image route).
"""
from __future__ import annotations

import csv
import io
import os
import re
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.http_server import LocalServer, Reply, Request, Router, closed_port  # noqa: F401

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nga"
SHARED = Path(os.environ.get("ARTEXTRACT_SHARED_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data")
NGA_DIR = SHARED / "nga"
SAMPLE_DIR = SHARED / "nga_sample"

TIMEFRAMES = [
    "before 1300", "1300 to 1400", "1401 to 1500", "1501 to 1550", "1551 to 1600", "1601 to 1650",
    "1651 to 1700", "1701 to 1725", "1726 to 1750", "1751 to 1775", "1776 to 1800", "1801 to 1825",
    "1826 to 1850", "1851 to 1875", "1876 to 1900", "1901 to 1925", "1926 to 1950", "1951 to 1975",
    "1976 to 2000", "2001 to present",
]
ARTISTS = ["Giotto", "Duccio di Buoninsegna", "Workshop of Duccio", "Sienese 14th Century",
           "Fra Angelico and Fra Filippo Lippi", 'Master of the "Saint" Lucy Legend']


@dataclass
class Sample:
    """A folder of ``<objectid>.jpg`` images and, per image, the fields of its primary NGA view."""

    dir: Path
    rows: list[dict]   # relative_path, objectid, image_uuid, iiifurl, iiifthumburl, width, height

    def __len__(self) -> int:
        return len(self.rows)

    def images(self) -> dict[str, bytes]:
        """uuid -> bytes of the image (what the IIIF server serves)."""
        return {m["image_uuid"]: (self.dir / m["relative_path"]).read_bytes() for m in self.rows}

    def bytes_by_id(self) -> dict[str, bytes]:
        """objectid -> bytes of the image (what the downloader must write)."""
        return {m["objectid"]: (self.dir / m["relative_path"]).read_bytes() for m in self.rows}


def _uuid(n: int) -> str:
    return str(uuidlib.UUID(int=0xABCDEF << 96 | n))


def generate_sample(folder: Path, n: int = 60) -> Sample:
    """Write ``n`` distinct small JPEGs (varied sizes and colours) named ``<objectid>.jpg``."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        oid = str(11 + 37 * i)                    # NGA object ids are plain integers
        uid = str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"nga-test-{oid}"))
        w, h = 48 + (i * 13) % 40, 40 + (i * 29) % 48
        img = Image.new("RGB", (w, h), ((40 * i) % 256, (90 + 17 * i) % 256, (200 - 11 * i) % 256))
        d = ImageDraw.Draw(img)
        d.rectangle([i % 10, (3 * i) % 15, w // 2 + i % 7, h - 5], fill=((7 * i) % 256, 250 - (5 * i) % 200, 60))
        d.ellipse([w // 3, h // 4, w - 3, h // 2 + i % 9], outline=(255, 255, (31 * i) % 256), width=2)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
        (folder / f"{oid}.jpg").write_bytes(buf.getvalue())
        base = f"https://api.nga.gov/iiif/{uid}"
        rows.append({"relative_path": f"{oid}.jpg", "objectid": oid, "image_uuid": uid, "iiifurl": base,
                     "iiifthumburl": f"{base}/full/!200,200/0/default.jpg", "width": str(w), "height": str(h)})
    return Sample(folder, rows)


def require_shared() -> None:
    missing = [p for p in (NGA_DIR / "objects.header_only.csv", NGA_DIR / "sql_tables" / "published_images.sql",
                           SAMPLE_DIR / "manifest.csv") if not p.is_file()]
    if missing:
        pytest.skip(f"shared test data not found ({missing[0]}); it lives in ../shared/data next to the project")


def real_sample() -> Sample:
    """The shared sample of real NGA images (``../shared/data/nga_sample``); skips when absent."""
    require_shared()
    with open(SAMPLE_DIR / "manifest.csv", newline="", encoding="utf-8") as fh:
        return Sample(SAMPLE_DIR, list(csv.DictReader(fh)))


def object_columns() -> list[str]:
    """The columns of NGA's objects.csv, in order."""
    with open(FIXTURES / "objects.header.csv", newline="", encoding="utf-8") as fh:
        return next(csv.reader(fh))


def published_image_columns(openaccess: bool) -> list[str]:
    """The columns of published_images (+ openaccess for newer exports)."""
    with open(FIXTURES / "published_images.header.csv", newline="", encoding="utf-8") as fh:
        cols = next(csv.reader(fh))
    return cols + (["openaccess"] if openaccess else [])


def real_published_image_columns() -> list[str]:
    """The columns of published_images as listed in the shared export's .sql schema."""
    require_shared()
    text = (NGA_DIR / "sql_tables" / "published_images.sql").read_text()
    return [c for c in re.findall(r"^\s*([a-z_]+)\s*\|", text, flags=re.M) if c != "column"]


def real_object_columns() -> list[str]:
    require_shared()
    with open(NGA_DIR / "objects.header_only.csv", newline="", encoding="utf-8") as fh:
        return next(csv.reader(fh))


N_OTHER_CLASSIFICATIONS = 20      # non-painting objects written by build_opendata (4 of each)
N_PAINTINGS_WITHOUT_IMAGE = 3


def build_opendata(folder: Path, sample: Sample, openaccess: bool = False) -> dict:
    """Write objects.csv and published_images.csv to ``folder``; return what the importer should find."""
    folder.mkdir(parents=True, exist_ok=True)
    ocols, pcols = object_columns(), published_image_columns(openaccess)
    rows, images = [], []
    expected: dict[str, dict] = {}
    man = sample.rows
    for i, m in enumerate(man):
        oid = m["objectid"]
        if i % 9 == 4:
            tf_raw, tf = "", None                               # blank = missing
        elif i == 10:
            tf_raw, tf = "  1401  to 1500 ", "1401 to 1500"    # odd whitespace
        elif i == 11:
            tf_raw, tf = "14th century", None                   # not a class
        else:
            tf = TIMEFRAMES[i % len(TIMEFRAMES)]
            tf_raw = tf
        artist = ARTISTS[min(i % 10, len(ARTISTS) - 1)]   # the last artist has half the paintings
        begin = 1250 + 7 * i
        row = {c: "" for c in ocols}
        row.update({
            "objectid": oid, "accessioned": "1", "accessionnum": f"1939.1.{i}", "locationid": "",
            "title": f'Madonna, "Child" and Saints #{i}',
            "displaydate": f"c. {begin}", "beginyear": str(begin), "endyear": str(begin + 5),
            "visualbrowsertimespan": tf_raw, "medium": "tempera on panel, gold ground",
            "dimensions": f"painted surface: {40 + i} x 30 cm (15 3/4 x 11 13/16 in.)\nframed: 60 x 45 cm",
            "inscription": f'on the book: "Ego sum lux mundi, {i}"\nlower left, "signed",\n\nverso: label' if i % 3 else "",
            "markings": "stamp, on verso,\r\nred wax seal",
            "attributioninverted": artist, "attribution": artist,
            "provenancetext": (f'Private collection, Florence, "{i}"; sold 1810, to\n(Sotheby\'s, London, 1 May 1900, no. {i});\n'
                               "by inheritance,\n\n\"quoted\" line, with commas, and ;semicolons\n" * (1 + i % 4)),
            "creditline": "Samuel H. Kress Collection", "classification": "Painting",
            "subclassification": "", "visualbrowserclassification": "painting", "parentid": "",
            "isvirtual": "0", "departmentabbr": "DCRS", "lastdetectedmodification": "2025-03-01 10:00:00.0-05",
            "wikidataid": f"Q{1000 + i}",
        })
        rows.append(row)
        expected[oid] = {"timeframe": tf, "artist": artist, "uuid": m["image_uuid"], "iiifurl": m["iiifurl"],
                         "title": row["title"], "beginyear": begin}
        primary = {"uuid": m["image_uuid"], "iiifurl": m["iiifurl"], "iiifthumburl": m["iiifthumburl"],
                   "viewtype": "primary", "sequence": "0", "width": m["width"], "height": m["height"],
                   "maxpixels": "" if i % 2 else "640", "created": "2014-05-02 11:14:00-04",
                   "modified": "2024-01-02 10:00:00-05", "depictstmsobjectid": oid,
                   "assistivetext": f'A painting of the "Madonna",\nwith saints, {i}', "openaccess": "1"}
        alt = dict(primary, uuid=_uuid(i), iiifurl=f"https://api.nga.gov/iiif/{_uuid(i)}", viewtype="alternate",
                   sequence="1", iiifthumburl=f"https://api.nga.gov/iiif/{_uuid(i)}/full/!200,200/0/default.jpg")
        if i % 5 == 0:          # an alternate view listed before the primary one
            images.append(alt)
        images.append(primary)
        if i == 7:              # a second primary view with a higher sequence: not chosen
            images.append(dict(primary, uuid=_uuid(5000 + i), iiifurl=f"https://api.nga.gov/iiif/{_uuid(5000 + i)}",
                               sequence="2"))
    # non-painting objects, with images: left out
    for j, cls in enumerate(["Drawing", "Print", "Sculpture", "Photograph", "Decorative Art"] * 4):
        oid = str(900000 + j)
        row = {c: "" for c in ocols}
        row.update({"objectid": oid, "title": f"Study, {j}", "classification": cls, "visualbrowsertimespan": "1901 to 1925",
                    "provenancetext": "line one\nline, two", "isvirtual": "0", "departmentabbr": "DCGPD"})
        rows.append(row)
        images.append({"uuid": _uuid(9000 + j), "iiifurl": f"https://api.nga.gov/iiif/{_uuid(9000 + j)}",
                       "viewtype": "primary", "sequence": "0", "depictstmsobjectid": oid, "openaccess": "1"})
    # paintings without any published image: left out
    for j in range(3):
        row = {c: "" for c in ocols}
        row.update({"objectid": str(800000 + j), "title": "Lost", "classification": "Painting",
                    "visualbrowsertimespan": "1851 to 1875", "isvirtual": "0", "departmentabbr": "DCRS"})
        rows.append(row)
    # an image of no object
    images.append({"uuid": _uuid(99999), "iiifurl": f"https://api.nga.gov/iiif/{_uuid(99999)}", "viewtype": "primary",
                   "sequence": "0", "depictstmsobjectid": "", "openaccess": "0"})
    # interleave: paintings and others mixed, so chunked reading sees both in every chunk
    order = sorted(range(len(rows)), key=lambda k: (k * 7919) % len(rows))
    with open(folder / "objects.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=ocols, lineterminator="\n")
        w.writeheader()
        for k in order:
            w.writerow(rows[k])
    with open(folder / "published_images.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=pcols, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for im in images:
            w.writerow({c: im.get(c, "") for c in pcols})
    return expected


# ---------------------------------------------------------------------------------------- server
class FaultServer(LocalServer):
    """A IIIF server on 127.0.0.1 that serves ``files`` (uuid -> bytes) and injects faults.

    ``faults[uuid]`` is a list of actions consumed one per request (the actions of
    :mod:`support.http_server`: ``ok``, ``500``, ``503``, ``404``, ``429:N``, ``slow:S``, ``drop``,
    ``reset``, ``truncate``, ``truncate_nolen``, ``html``, ``html_as_jpeg``); an action ending in
    ``*`` repeats forever; when the list is used up, requests succeed. ``delay`` slows every request.
    The log holds (time, uuid, path, action) per request.
    """

    def __init__(self, files: dict[str, bytes], faults: dict[str, list[str]] | None = None, delay: float = 0.0):
        router = (Router()
                  .add(r"/iiif/(?P<uid>[0-9a-fA-F-]+)/full/!(\d+),(\d+)/0/default\.jpg", self._image, key="uid")
                  .add(r"/.*", lambda req: Reply(404, *self.error_page(404))))
        super().__init__(router, faults, delay=delay)
        self.files = files

    def _image(self, req: Request) -> Reply:
        body = self.files.get(req.match.group("uid"))
        if body is None:
            return Reply(404, *self.error_page(404))
        return Reply(200, body, "image/jpeg")

    @property
    def base_url(self) -> str:
        return self.base + "/iiif"

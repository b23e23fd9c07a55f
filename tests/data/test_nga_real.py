"""Extra checks on the real NGA files in ../shared/data (skipped when they are absent): the column
headers kept in tests/fixtures/nga still match the export, and the importer and the downloader handle
the 106 real sample images as they handle the generated ones."""
from __future__ import annotations


import nga_fixtures as fx

from artextract.data.download import download_nga
from artextract.data.images import load_image
from artextract.data.nga import ingest_nga


def test_real_nga_headers_sample_import_and_download(tmp_path):
    sample = fx.real_sample()                     # skips without ../shared/data
    assert fx.object_columns() == fx.real_object_columns()
    assert fx.published_image_columns(openaccess=False) == fx.real_published_image_columns()
    assert len(sample) == 106

    expected = fx.build_opendata(tmp_path / "opendata", sample)
    cat, _ = ingest_nga(tmp_path / "opendata", sample.dir)
    assert set(cat.ids) == set(expected) and cat.missing_images() == []
    df = cat.df.set_index("id")
    for oid, e in expected.items():
        assert df.at[oid, "uuid"] == e["uuid"] and df.at[oid, "iiifurl"] == e["iiifurl"]

    empty, _ = ingest_nga(tmp_path / "opendata", catalog_path=tmp_path / "nga.parquet")
    uid = dict(zip(empty.df["id"], empty.df["uuid"]))
    ids = empty.ids
    faults = {uid[ids[0]]: ["500"], uid[ids[1]]: ["truncate"], uid[ids[2]]: ["html_as_jpeg"], uid[ids[3]]: ["404"]}
    originals = sample.bytes_by_id()
    with fx.FaultServer(sample.images(), faults) as srv:
        s = download_nga(empty, empty.image_root, base_url=srv.base_url, workers=4, rate=0, retries=2,
                         backoff=0.05, timeout=2.0, progress=False)
    assert len(s.downloaded) == 105 and [f["id"] for f in s.failed] == [ids[3]]
    for oid in s.downloaded:
        path = empty.image_root / f"{oid}.jpg"
        assert path.read_bytes() == originals[oid]
        load_image(path)

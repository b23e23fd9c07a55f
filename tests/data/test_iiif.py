"""IIIF Presentation importer: the project's own v2/v3 fixtures (tests/data/iiif_fixtures), the real
manifests and collections of ../shared/data/iiif_examples (skipped without it), and the command line."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from iiif_server import IIIFServer

from artextract.cli import main
from artextract.data.catalog import Catalog, CatalogError
from artextract.data.iiif import column_name, ingest_iiif, language_text, strip_html

FIX = Path(__file__).resolve().parent / "iiif_fixtures"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "iiif_examples"
FAKE = "http://127.0.0.1:9/"   # the host the fixtures name; tests map it to a live local server
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/iiif_examples is not present")


def rows_by_id(cat: Catalog) -> dict:
    return {r["id"]: r for r in cat.df.to_dict("records")}


def test_text_helpers():
    assert column_name("Physical Description") == "physical_description"
    assert column_name("  Date (created) ") == "date_created"
    assert strip_html("<p>Oil on canvas,<br/>45.5 &times; 41 cm</p>") == "Oil on canvas, 45.5 × 41 cm"
    assert strip_html("<a href='x'>link</a> text") == "link text"
    v3 = {"fr": ["Nature morte"], "en": ["Still life"], "none": ["NM-1"]}
    assert language_text(v3, "fr") == "Nature morte"
    assert language_text(v3, "de") == "NM-1"          # then none
    assert language_text({"fr": ["a"], "en": ["b"]}, "de") == "b"   # then en
    assert language_text({"fr": ["a"], "nl": ["b"]}, "de") == "a"   # then the first
    v2 = [{"@value": "Titel", "@language": "de"}, {"@value": "Title", "@language": "en"}]
    assert language_text(v2, "en") == "Title" and language_text(v2, "de") == "Titel"
    assert language_text([{"@value": "x", "@language": "de"}, "plain"], "en") == "plain"  # no @language = none
    assert language_text({"en-GB": ["colour"]}, "en") == "colour"


def test_v2_manifest_from_file():
    cat, rep = ingest_iiif([str(FIX / "v2-manifest.json")])
    assert len(cat) == 1 and not rep.failures
    r = cat.df.iloc[0].to_dict()
    assert r["id"] == r["manifest_id"] == "http://127.0.0.1:9/iiif/v2/vermeer/manifest.json"
    assert r["title"] == "The Milkmaid"                        # the manifest label, in English
    assert r["metadata_title"] == "The Milkmaid (catalogue title)"
    assert r["artist"] == "Johannes Vermeer" and r["date"] == "c. 1660"
    assert r["physical_description"] == "Oil on canvas, 45.5 × 41 cm"
    assert r["subject"] == "Genre painting; Kitchen"          # a repeated label keeps both values
    assert r["object_type"] == "painting"
    assert r["attribution"] == "Provided by the Example Museum"
    assert r["license"] == "https://creativecommons.org/publicdomain/zero/1.0/"
    assert r["nav_date"] == "1660-01-01T00:00:00Z"
    # the empty first canvas is skipped; the logo and thumbnail are not the painting
    assert r["canvas_id"] == "http://127.0.0.1:9/iiif/v2/vermeer/canvas/c1"
    assert r["image_service"] == "http://127.0.0.1:9/iiif/image/vermeer"
    assert r["image_service_version"] == 2 and r["image_service_profile"] == "level2"
    assert r["image_url"] == "http://127.0.0.1:9/iiif/image/vermeer/full/full/0/default.jpg"
    assert r["iiif_version"] == 2 and r["path"].endswith(".jpg")
    nl, _ = ingest_iiif([str(FIX / "v2-manifest.json")], lang="nl")
    assert nl.df["title"][0] == "Het melkmeisje" and nl.df["objecttype"][0] == "schilderij"
    # one row per canvas, each keeping its manifest id
    allc, _ = ingest_iiif([str(FIX / "v2-manifest.json")], all_canvases=True)
    assert allc.df["canvas_id"].str.rsplit("/", n=1).str[1].tolist() == ["c1", "c2"]
    assert allc.df["id"].tolist() == allc.df["canvas_id"].tolist()
    assert set(allc.df["manifest_id"]) == {r["manifest_id"]} and allc.df["canvas_label"].tolist() == ["recto", "verso"]


def test_v3_manifests_choice_direct_and_failures():
    srcs = [str(FIX / n) for n in ("v3-manifest-choice.json", "v3-manifest-direct.json", "v3-manifest-no-image.json",
                                   "broken-manifest.json", "not-iiif.json", "does-not-exist.json")]
    cat, rep = ingest_iiif(srcs)
    rows = rows_by_id(cat)
    assert len(rows) == 2 and rep.rows == 2
    nw = rows["http://127.0.0.1:9/iiif/v3/rembrandt/manifest.json"]
    assert nw["title"] == "The Night Watch" and nw["artist"] == "Rembrandt van Rijn"   # value in "none"
    assert nw["medium"] == "oil on canvas" and nw["school"] == "Dutch" and nw["date"] == "1642"
    assert nw["rights"] == "http://creativecommons.org/publicdomain/mark/1.0/"
    assert nw["required_statement"] == "Attribution: Example Museum, Amsterdam"
    assert nw["canvas_id"].endswith("/canvas/p1")                 # the empty first canvas is skipped
    assert nw["image_service"] == "http://127.0.0.1:9/iiif/image3/nightwatch"   # the Choice's first item
    assert nw["image_service_version"] == 3 and nw["image_width"] == 4000
    still = rows["http://127.0.0.1:9/iiif/v3/direct/manifest.json"]
    assert still["title"] == "Nature morte"                       # no English label: the first language
    assert still["date"] == "XVIIe siècle; 17th century"          # two pairs labelled Date
    assert still["image_service"] is None and still["image_url"] == "http://127.0.0.1:9/files/still-life.png"
    assert still["path"].endswith(".png")
    failed = {Path(f["source"]).name if "/" in f["source"] and not f["source"].startswith("http") else f["source"]:
              f["reason"] for f in rep.failures}
    assert len(rep.failures) == 4, rep.failures
    assert "painting annotation with an image" in failed["http://127.0.0.1:9/iiif/v3/noimage/manifest.json"]
    assert "malformed JSON" in failed["broken-manifest.json"]
    assert "not a IIIF manifest or collection" in failed["not-iiif.json"]
    assert "no such file" in failed["does-not-exist.json"]
    assert "4 failure(s)" in rep.summary()


def test_tasks_and_period(tmp_path):
    cat, rep = ingest_iiif([str(FIX / "v2-manifest.json"), str(FIX / "v3-manifest-choice.json"),
                            str(FIX / "v3-manifest-direct.json")], tasks=["artist"], ordered=["date"])
    assert cat.tasks["artist"].classes == ["Johannes Vermeer", "Rembrandt van Rijn"]
    assert cat.tasks["date"].ordered and not cat.tasks["artist"].ordered
    from artextract.data.periods import add_period_task
    c2, msgs = add_period_task(cat, "date", "nga")
    per = dict(zip(c2.df["title"], c2.df["period"]))
    # "c. 1660" is 1655-1665; "XVIIe siècle; 17th century" reads as the 17th century (1601-1700)
    assert per == {"The Milkmaid": "1651 to 1700", "The Night Watch": "1601 to 1650",
                   "Nature morte": "1601 to 1650"}
    assert c2.tasks["period"].ordered


@pytest.mark.slow
def test_http_collection_nested_cycle_faults_and_report(tmp_path):
    docs = {"/iiif/collection/top.json": FIX / "collection-top.json",
            "/iiif/collection/dutch.json": FIX / "collection-dutch.json",
            "/iiif/v3/rembrandt/manifest.json": FIX / "v3-manifest-choice.json",
            "/iiif/v2/vermeer/manifest.json": FIX / "v2-manifest.json",
            "/iiif/broken/manifest.json": FIX / "broken-manifest.json"}
    faults = {"/iiif/collection/dutch.json": ["429:1"], "/iiif/v2/vermeer/manifest.json": ["500", "drop"],
              "/iiif/v3/rembrandt/manifest.json": ["truncate"]}
    with IIIFServer(docs, faults=faults) as srv:
        out = tmp_path / "museum.parquet"
        rc = main(["ingest", "iiif", FAKE + "iiif/collection/top.json", "--out", str(out), "--rewrite",
                   f"{FAKE}={srv.base}/", "--tasks", "artist", "--period-from", "date", "--period-bins", "50"])
        assert rc == 1                                  # some sources failed; the catalogue holds the rest
        assert srv.count("/iiif/v3/rembrandt/manifest.json") == 2      # read once (+1 retry), not per listing
        assert srv.count("/iiif/collection/top.json") == 1             # the cycle is not followed again
        assert srv.count("/iiif/collection/dutch.json") == 2
        t = [h.time for h in srv.log if h.path == "/iiif/collection/dutch.json"]
        assert t[1] - t[0] >= 0.95                                      # Retry-After honoured
    cat = Catalog.load(out)
    assert sorted(cat.df["title"]) == ["The Milkmaid", "The Night Watch"]   # not the collection's entry labels
    assert cat.tasks["artist"].classes == ["Johannes Vermeer", "Rembrandt van Rijn"]
    assert dict(zip(cat.df["title"], cat.df["period"])) == {"The Milkmaid": "1650 to 1699",
                                                             "The Night Watch": "1600 to 1649"}
    assert cat.tasks["period"].ordered and cat.extra["periods"]["period"]["bins"] == "width:50"
    assert dict(zip(cat.df["title"], cat.df["period_width"])) == {"The Milkmaid": 10, "The Night Watch": 0}
    rep = json.loads((tmp_path / "museum.ingest_report.json").read_text())
    reasons = {f["source"]: f["reason"] for f in rep["failures"]}
    assert set(reasons) == {FAKE + "iiif/v3/missing/manifest.json", FAKE + "iiif/other/thing.json",
                            FAKE + "iiif/broken/manifest.json"}
    assert "HTTP 404" in reasons[FAKE + "iiif/v3/missing/manifest.json"]
    assert "unknown type 'Range'" in reasons[FAKE + "iiif/other/thing.json"]
    assert "malformed JSON" in reasons[FAKE + "iiif/broken/manifest.json"]
    assert rep["counts"]["manifests"] == 2 and rep["counts"]["collections"] == 2 and rep["skipped_repeats"] >= 2


def test_depth_limit_and_nothing_readable(tmp_path):
    docs = {"/iiif/collection/top.json": FIX / "collection-top.json",
            "/iiif/collection/dutch.json": FIX / "collection-dutch.json",
            "/iiif/v3/rembrandt/manifest.json": FIX / "v3-manifest-choice.json",
            "/iiif/v2/vermeer/manifest.json": FIX / "v2-manifest.json"}
    with IIIFServer(docs) as srv:
        cat, rep = ingest_iiif([FAKE + "iiif/collection/top.json"], rewrite={FAKE: srv.base + "/"}, max_depth=1)
    assert cat.df["title"].tolist() == ["The Night Watch"]            # the Dutch collection is too deep
    assert any("nested deeper than 1" in f["reason"] for f in rep.failures)
    with pytest.raises(CatalogError, match="no manifest with an image"):
        ingest_iiif([str(FIX / "not-iiif.json")])
    assert main(["ingest", "iiif", str(FIX / "not-iiif.json"), "--out", str(tmp_path / "x.parquet")]) == 2
    with pytest.raises(CatalogError, match="no manifest has that field"):
        ingest_iiif([str(FIX / "v2-manifest.json")], tasks=["nope"])


# ---------------------------------------------------------------------- the shared real examples


@needs_shared
def test_every_shared_example_ingests():
    """Each real file gives the title, fields and image URLs its JSON holds, and the real nested
    collections resolve over HTTP (one test, so that a clone without the shared data skips once)."""
    def one(name, **kw):
        cat, rep = ingest_iiif([str(SHARED / name)], **kw)
        assert len(cat) >= 1, rep.summary()
        return cat.df.iloc[0].to_dict(), cat, rep

    r, _, _ = one("mirador-v2-fg165hz3589.json")
    assert r["title"] == r["metadata_title"] == "Arrival, Processing and Departure Procedures/General Information"
    assert r["available_online"] == "https://purl.stanford.edu/fg165hz3589"        # the <a> tag stripped
    assert r["relation"].count("; ") == 1 and r["relation"].endswith("Antarctica, 1972-2003")
    assert r["attribution"].startswith("Copyright (c) The Board of Trustees")
    assert r["image_service"] == "https://stacks.stanford.edu/image/iiif/fg165hz3589%2Ffg165hz3589_1"
    assert (r["image_service_version"], r["image_service_profile"]) == (2, "level2")
    assert "SULAIR_rosette" not in r["image_service"]                               # not the logo

    r, _, _ = one("mirador-v3-001.json")
    assert r["title"] == "Bodleian Library: Human Freaks 2 (33)"
    assert r["subject"].split("; ")[:2] == ["Curiosities and wonders", "Dwarfs"] and r["subject"].count("; ") == 7
    assert r["contributor"].count("; ") == 1
    assert r["required_statement"] == "Terms of Use: None"
    assert r["image_service"] == "https://iiif.bodleian.ox.ac.uk/iiif/image/9cca8fdd-4a61-4429-8ac1-f648764b4d6d"
    assert (r["image_service_version"], r["image_service_profile"]) == (2, "level1") and r["iiif_version"] == 3

    r, _, _ = one("mirador-v2-canvasService.json")
    assert r["title"].startswith("Feuerwerksbuch")
    assert r["metadata_title"].startswith("Feuerwerksbuch") and r["language"] == "German"
    assert r["license"] == "http://creativecommons.org/licenses/by-nc-sa/4.0/deed.de"
    assert r["image_service"] == "https://api.digitale-sammlungen.de/iiif/image/v2/bsb00122140_00001"
    r_de, _, _ = one("mirador-v2-canvasService.json", lang="de")
    assert r_de["sprache"] == "Deutsch" and "language" not in r_de

    r, cat, _ = one("manifesto-nga-highlights.json")
    assert r["title"] == "National Gallery of Art Collection Highlights" and r["canvas_label"] == "Self-Portrait"
    assert r["iiif_version"] == 2 and r["image_service_profile"] == "level2"   # https context URIs
    assert r["image_service"].startswith("https://media.nga.gov/iiif/")
    _, allc, _ = one("manifesto-nga-highlights.json", all_canvases=True)
    assert len(allc) == 26 and allc.df["manifest_id"].nunique() == 1
    assert allc.df.set_index("canvas_label").loc["Flower Beds in Holland", "date"] == "1883"   # canvas metadata

    r, _, _ = one("cookbook-0005-image-service.json")
    assert (r["image_service_version"], r["image_service_profile"]) == (3, "level1")
    assert r["image_service"].endswith("918ecd18c2592080851777620de9bcb5-gottingen")
    r, _, _ = one("cookbook-0001-mvm-image.json")
    assert r["image_service"] is None and r["title"] == "Single Image Example"
    assert r["image_url"] == "https://iiif.io/api/presentation/2.1/example/fixtures/resources/page1-full.png"
    r, _, _ = one("cookbook-0006-text-language.json")
    assert r["title"] == "Whistler's Mother" and r["creator"] == "Whistler, James Abbott McNeill"
    r_fr, _, _ = one("cookbook-0006-text-language.json", lang="fr")
    assert r_fr["title"] == "La Mère de Whistler" and r_fr["auteur"] == "Whistler, James Abbott McNeill"
    assert r_fr["sujet"].startswith("McNeill Anna Matilda, mère")
    r, _, _ = one("cookbook-0033-choice.json")
    assert r["image_service"].endswith("-dee-natural")                          # the Choice's default
    # the v3 collection, its manifests read from the local copies
    prefix = "https://iiif.io/api/cookbook/recipe/0032-collection/"
    cat, rep = ingest_iiif([str(SHARED / "cookbook-0032-collection" / "collection.json")],
                           rewrite={prefix: str(SHARED / "cookbook-0032-collection") + "/"}, tasks=["artist"])
    assert not rep.failures and sorted(cat.df["title"]) == ["Northeaster", "The Gulf Stream"]
    assert sorted(cat.df["date"]) == ["1895", "1899"] and len(cat.tasks["artist"].classes) == 1
    assert cat.df["image_service"].str.contains("Winslow_Homer").all()
    _check_shared_nested_collections_over_http()


def _check_shared_nested_collections_over_http():
    docs = {"/nested-middle.json": SHARED / "manifesto-nested-middle.json",
            "/nested-bottom.json": SHARED / "manifesto-nested-bottom.json",
            "/gulf.json": SHARED / "cookbook-0032-collection" / "manifest-01.json"}
    with IIIFServer(docs) as srv:
        cat, rep = ingest_iiif([str(SHARED / "manifesto-nested-top.json"), srv.base + "/gulf.json"],
                               rewrite={"http://localhost:3001/": srv.base + "/",
                                        "http://digital.library.villanova.edu/": srv.base + "/villanova/"},
                               retries=0)
    assert cat.df["title"].tolist() == ["The Gulf Stream"]
    assert rep.collections == 3
    failed = [f["source"] for f in rep.failures]
    assert "http://localhost:3001/wunder.json" in failed
    assert sum("villanova.edu/Item/" in f for f in failed) == 8 and len(failed) == 9
    assert all("HTTP 404" in f["reason"] for f in rep.failures)


# ---------------------------------------------------------------------- the command's options
def _dated_manifests(folder: Path, n: int = 12) -> list[str]:
    """``n`` v3 manifests (files) by two artists, dated 1600, 1630, ...: the direct-image fixture relabelled."""
    base = json.loads((FIX / "v3-manifest-direct.json").read_text())
    files = []
    for i in range(n):
        m = json.loads(json.dumps(base).replace("/iiif/v3/direct/", f"/iiif/gen/m{i}/"))
        m["label"] = {"en": [f"work {i}"]}
        m["metadata"] = [{"label": {"en": ["Artist"]}, "value": {"none": ["Painter A" if i % 2 else "Painter B"]}},
                         {"label": {"en": ["Date"]}, "value": {"en": [f"c. {1600 + 30 * i}"]}}]
        files.append(folder / f"m{i}.json")
        files[-1].write_text(json.dumps(m))
    return [str(f) for f in files]


def test_cli_lang_and_all_canvases(tmp_path):
    out = tmp_path / "m.parquet"
    assert main(["ingest", "iiif", str(FIX / "v2-manifest.json"), "--out", str(out)]) == 0
    cat = Catalog.load(out)
    assert cat.df["title"].tolist() == ["The Milkmaid"] and len(cat) == 1
    assert main(["ingest", "iiif", str(FIX / "v2-manifest.json"), "--out", str(out), "--lang", "nl",
                 "--all-canvases"]) == 0
    cat = Catalog.load(out)
    assert cat.df["title"].tolist() == ["Het melkmeisje"] * 2 and cat.df["objecttype"][0] == "schilderij"
    assert cat.df["canvas_label"].tolist() == ["recto", "verso"] and cat.df["id"].is_unique


@pytest.mark.parametrize("fraction,per_artist", [(None, 1), ("0.5", 3)])
def test_cli_val_fraction_and_period_name(tmp_path, fraction, per_artist):
    """`--val-fraction`: that share of each artist (the first task) in val (6 each: 20% -> 1, 50% -> 3);
    `--period-name`: the period task's name; `--images`, `--ordered` and `--report` where they say."""
    out = tmp_path / "m.parquet"
    argv = ["ingest", "iiif", *_dated_manifests(tmp_path), "--out", str(out), "--tasks", "artist",
            "--period-from", "date", "--period-bins", "100", "--period-name", "century",
            "--images", str(tmp_path / "pictures"), "--ordered", "artist", "--report", str(tmp_path / "rep.json")]
    assert main(argv + (["--val-fraction", fraction] if fraction else [])) == 0
    cat = Catalog.load(out)
    assert cat.image_root == (tmp_path / "pictures").resolve() and cat.tasks["artist"].ordered
    assert json.loads((tmp_path / "rep.json").read_text())["counts"]["manifests"] == 12
    assert not (tmp_path / "m.ingest_report.json").exists()
    assert cat.df.groupby("artist")["split"].apply(lambda s: (s == "val").sum()).tolist() == [per_artist] * 2
    assert "period" not in cat.tasks and cat.tasks["century"].ordered
    assert cat.df.set_index("title").loc[["work 0", "work 4", "work 11"], "century"].tolist() == [
        "1600 to 1699", "1700 to 1799", "1900 to 1999"]


def test_cli_max_depth(tmp_path):
    docs = {"/iiif/collection/top.json": FIX / "collection-top.json",
            "/iiif/collection/dutch.json": FIX / "collection-dutch.json",
            "/iiif/v3/rembrandt/manifest.json": FIX / "v3-manifest-choice.json",
            "/iiif/v2/vermeer/manifest.json": FIX / "v2-manifest.json"}
    out = tmp_path / "c.parquet"
    with IIIFServer(docs) as srv:
        argv = ["ingest", "iiif", FAKE + "iiif/collection/top.json", "--out", str(out), "--rewrite", f"{FAKE}={srv.base}/"]
        assert main(argv) == 1                                   # the fixtures link a few broken sources
        assert sorted(Catalog.load(out).df["title"]) == ["The Milkmaid", "The Night Watch"]
        assert main(argv + ["--max-depth", "1"]) == 1
        assert Catalog.load(out).df["title"].tolist() == ["The Night Watch"]
        rep = json.loads((tmp_path / "c.ingest_report.json").read_text())
        assert any("nested deeper than 1" in f["reason"] for f in rep["failures"])
        assert srv.count("/iiif/v2/vermeer/manifest.json") == 1  # only by the first run
        assert main(argv + ["--max-depth", "-1"]) == 2


# ---------------------------------------------------------------------- remote documents stay remote
def test_a_remote_collection_cannot_make_the_importer_read_local_files(tmp_path):
    """A collection served over HTTP that lists local paths: none is opened, and the report says the same
    for a file that exists and one that does not (it does not tell which local paths exist)."""
    local_manifest = str(FIX / "v2-manifest.json")
    refs = ["/etc/passwd", local_manifest, "file://" + local_manifest, str(tmp_path / "nope.json"),
            "v2-manifest.json", FAKE + "iiif/v3/direct/manifest.json"]
    top = {"@context": "http://iiif.io/api/presentation/3/context.json", "id": FAKE + "iiif/collection/evil.json",
           "type": "Collection", "label": {"en": ["evil"]},
           "items": [{"id": r, "type": "Manifest"} for r in refs] + [
               {"id": str(FIX / "collection-top.json"), "type": "Collection"}]}
    docs = {"/iiif/collection/evil.json": json.dumps(top).encode(),
            "/iiif/v3/direct/manifest.json": FIX / "v3-manifest-direct.json"}
    with IIIFServer(docs) as srv:
        out = tmp_path / "c.parquet"
        assert main(["ingest", "iiif", FAKE + "iiif/collection/evil.json", "--out", str(out),
                     "--rewrite", f"{FAKE}={srv.base}/"]) == 1
    cat = Catalog.load(out)
    assert cat.df["title"].tolist() == ["Nature morte"]           # the remote manifest only
    rep = json.loads((tmp_path / "c.ingest_report.json").read_text())
    reasons = {f["source"]: f["reason"] for f in rep["failures"]}
    assert set(reasons) == set(refs[:-1]) | {str(FIX / "collection-top.json")}
    assert len(set(reasons.values())) == 1                          # one answer, whether the file exists or not
    assert "may only refer to http(s) URLs" in reasons["/etc/passwd"]
    assert rep["documents_read"] == 2 and rep["manifests"] == 1


def test_a_url_rewritten_to_a_folder_stays_in_that_folder(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "m.json").write_bytes((FIX / "v3-manifest-direct.json").read_bytes())
    (tmp_path / "secret.json").write_bytes((FIX / "v2-manifest.json").read_bytes())
    refs = ["https://museum.example/m.json", "https://museum.example/../secret.json",
            "https://museum.example/%2e%2e/secret.json"]
    cat, rep = ingest_iiif(refs, rewrite={"https://museum.example/": str(mirror) + "/"})
    assert cat.df["title"].tolist() == ["Nature morte"]
    assert [f["source"] for f in rep.failures] == refs[1:]
    assert all("would leave the folder" in f["reason"] for f in rep.failures)


def test_odd_json_is_a_failure_or_a_row_never_a_traceback(tmp_path):
    base = json.loads((FIX / "v3-manifest-direct.json").read_text())

    def variant(name, change, raw=None):
        m = json.loads(json.dumps(base).replace("/iiif/v3/direct/", f"/iiif/{name}/"))
        change(m)
        p = tmp_path / f"{name}.json"
        p.write_text(raw(m) if raw else json.dumps(m))
        return str(p)

    body = lambda m: m["items"][0]["items"][0]["items"][0]["body"]  # noqa: E731
    srcs = [
        variant("huge", lambda m: body(m).update(width=10 ** 30, height=-5)),     # not an Int64: no size
        variant("nan", lambda m: None, raw=lambda m: json.dumps(m).replace('"width": 640', '"width": NaN', 1)),
        variant("inf", lambda m: None, raw=lambda m: json.dumps(m).replace('"width": 640', '"width": Infinity', 1)),
        variant("surrogate", lambda m: m.update(label={"en": ["\ud800 lone"]})),
        variant("svcctx", lambda m: body(m).update(service=[{"@context": "http://iiif.io/api/image/x", "@id": "s"}])),
        variant("deep", lambda m: None, raw=lambda m: "[" * 100_000 + "]" * 100_000),
    ]
    coll = tmp_path / "coll.json"
    coll.write_text(json.dumps({"type": "Collection", "id": "c", "items": [{"type": "Manifest"}, ""]}))
    cat, rep = ingest_iiif(srcs + [str(coll)])
    rows = {Path(r["source"]).stem: r for r in cat.df.to_dict("records")}
    assert sorted(rows) == ["huge", "surrogate", "svcctx"]
    assert pd.isna(rows["huge"]["image_width"]) and pd.isna(rows["huge"]["image_height"])
    assert rows["surrogate"]["title"] == "\ufffd lone"
    assert rows["svcctx"]["image_service"] is None
    reasons = {Path(f["source"]).stem: f["reason"] for f in rep.failures}
    assert "NaN is not a JSON value" in reasons["nan"] and "Infinity is not a JSON value" in reasons["inf"]
    assert "nested too deeply" in reasons["deep"]
    assert [f["reason"] for f in rep.failures if f["source"] == "c"] == [
        "a collection entry (manifest) has neither an id nor canvases or members",
        "a collection entry (no type) has neither an id nor canvases or members"]
    cat.save(tmp_path / "c.parquet")                                # and the catalogue saves
    rep.write(tmp_path / "r.json")


def test_fuzzer_findings_are_rows_or_failures(tmp_path):
    """Found by tests/data/test_fuzz_importers.py: an @language that is not a string (a list raised
    TypeError, a number AttributeError), canvases of one manifest where only some images have a format
    (pandas made the missing ones NaN: AttributeError), a URL whose host IDNA cannot encode (UnicodeError
    from httpx)."""
    v2 = json.loads((FIX / "v2-manifest.json").read_text())
    v2["label"] = [{"@value": "Het melkmeisje", "@language": [None]}, {"@value": "The Milkmaid", "@language": 5}]
    (tmp_path / "lang.json").write_text(json.dumps(v2))
    cat, rep = ingest_iiif([str(tmp_path / "lang.json")])
    assert cat.df["title"].tolist() == ["Het melkmeisje; The Milkmaid"] and not rep.failures

    v2 = json.loads((FIX / "v2-manifest.json").read_text())
    images = [c["images"][0]["resource"] for c in v2["sequences"][0]["canvases"] if c.get("images")]
    images[-1].pop("format", None)
    images[0]["format"] = "image/png"
    (tmp_path / "formats.json").write_text(json.dumps(v2))
    cat, _ = ingest_iiif([str(tmp_path / "formats.json")], all_canvases=True)
    assert [p.rsplit(".", 1)[1] for p in cat.df["path"]] == ["png", "jpg"]

    top = {"type": "Collection", "id": "c", "items": [{"id": "http://127..0.1:9/m.json", "type": "Manifest"},
                                                       {"id": "http://" + "x" * 70 + ".example/m.json", "type": "Manifest"}]}
    (tmp_path / "c.json").write_text(json.dumps(top))
    with pytest.raises(CatalogError, match="not a valid URL"):
        ingest_iiif([str(tmp_path / "c.json")], retries=0, timeout=1)

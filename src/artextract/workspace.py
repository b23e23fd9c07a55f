"""Where every artefact lives, and whether it is built: ArtExtract's path rules in one module.

One painting's way from ingest to report, as files::

    CATALOG.parquet                    the catalogue (``ingest``)
    CATALOG.cache-location             the cache folder ``prepare --cache DIR`` chose (else CATALOG.cache)
    <cache>/s<SIZE>/                   prepared images, a slot store (``prepare``)
    <cache>/features/<store>/          maps/, pooled/, stats/ slot stores + engine.json (feature extraction)
    <cache>/web-thumbs/                the explorer's thumbnails
    RUN/config.json                    a trained run: its config (written first) ...
    RUN/model.safetensors              ... the best weights, last.safetensors, state.pt (``--resume``)
    RUN/eval-<SPLIT>/                  an evaluation: metrics.json, confusion_*.png, per_class_*.csv, and
                                       fingerprint.json (the catalogue and weights it was made from)
    INDEX/                             index.faiss, ids.json, mean.npy, then meta.json (written last)

Each artefact answers :func:`status`: ``missing``, ``partial`` (a killed job's leftovers, which the
next run of the command that builds it resumes or rebuilds), ``complete``, or ``stale`` (made from
another catalogue or other weights than the ones now asked for: reported and rebuilt, never shown as
current). ``artextract status`` lists them.

Importable without torch.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

# ---------------------------------------------------------------------- names
CACHE_SUFFIX = ".cache"                 # CATALOG.cache: the default cache folder
LOCATION_SUFFIX = ".cache-location"     # CATALOG.cache-location: the folder `prepare --cache` chose
FEATURES_DIR = "features"
ENGINE_RECORD = "engine.json"
THUMBS_DIR = "web-thumbs"

RUN_CONFIG = "config.json"              # written first: its presence makes a folder a run
RUN_MODEL = "model.safetensors"         # best weights so far
RUN_LAST = "last.safetensors"           # weights after the last finished epoch
RUN_STATE = "state.pt"                  # optimiser, schedule, epoch, history: what --resume needs
RUN_SPLIT = "split.json"                # the held-out rows, when the run held some out
METRICS = "metrics.json"
FINGERPRINT = "fingerprint.json"

INDEX_FILE, IDS_FILE, META_FILE, MEAN_FILE = "index.faiss", "ids.json", "meta.json", "mean.npy"

MISSING, PARTIAL, COMPLETE, STALE = "missing", "partial", "complete", "stale"


# ---------------------------------------------------------------------- path rules
def default_cache_path(catalog_path: str | os.PathLike) -> Path:
    """``CATALOG.cache``: the cache folder when none was chosen."""
    return Path(catalog_path).with_suffix(CACHE_SUFFIX)


def cache_location_file(catalog_path: str | os.PathLike) -> Path:
    """``CATALOG.cache-location``: where ``prepare --cache`` records its folder, beside the catalogue."""
    return Path(catalog_path).with_suffix(LOCATION_SUFFIX)


def prepared_dir(cache_dir: str | os.PathLike, size: int) -> Path:
    return Path(cache_dir) / f"s{int(size)}"


def features_dir(cache_dir: str | os.PathLike, store: str | None = None) -> Path:
    d = Path(cache_dir) / FEATURES_DIR
    return d / store if store else d


def thumbs_dir(cache_dir: str | os.PathLike) -> Path:
    return Path(cache_dir) / THUMBS_DIR


def engine_cache_dir() -> Path:
    """Where the inference engine keeps converted models: ``$ARTEXTRACT_ENGINE_CACHE``, else
    ``$XDG_CACHE_HOME/artextract/engines`` (``~/.cache/artextract/engines``)."""
    env = os.environ.get("ARTEXTRACT_ENGINE_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "artextract" / "engines"


def eval_dir(run_dir: str | os.PathLike, split: str) -> Path:
    """``RUN/eval-SPLIT``: where ``evaluate`` writes by default, and where ``report`` looks."""
    return Path(run_dir) / f"eval-{split}"


def run_file(run_dir: str | os.PathLike, name: str) -> Path:
    return Path(run_dir) / name


# ---------------------------------------------------------------------- fingerprints
def file_fingerprint(path: str | os.PathLike) -> str | None:
    """A SHA-256 prefix of a file's bytes (None when it does not exist)."""
    p = Path(path)
    if not p.is_file():
        return None
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def evaluation_fingerprint(run_dir: str | os.PathLike, catalog_path: str | os.PathLike | None, split: str) -> dict:
    """What an evaluation is made from: the catalogue's bytes, the run's best weights and the split."""
    return {"catalog": str(Path(catalog_path).resolve()) if catalog_path else None,
            "catalog_sha256": file_fingerprint(catalog_path) if catalog_path else None,
            "model_sha256": file_fingerprint(run_file(run_dir, RUN_MODEL)), "split": split}


def write_evaluation_fingerprint(out_dir: str | os.PathLike, run_dir, catalog_path, split: str) -> None:
    from .utils import atomic_write_text
    atomic_write_text(Path(out_dir) / FINGERPRINT,
                      json.dumps(evaluation_fingerprint(run_dir, catalog_path, split), indent=2))


# ---------------------------------------------------------------------- status
@dataclass
class Artefact:
    """One artefact and its state; ``build`` is the command that (re)builds it."""

    kind: str
    path: str
    status: str
    detail: str = ""
    build: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def evaluation_status(run_dir: str | os.PathLike, split: str, catalog_path: str | os.PathLike | None) -> Artefact:
    """``RUN/eval-SPLIT``: complete when its metrics were made from this catalogue and the run's current
    weights, stale when from others (or of unknown origin), partial when the metrics file is missing."""
    d = eval_dir(run_dir, split)
    build = f"artextract evaluate --run {run_dir} --catalog {catalog_path or 'CATALOG'} --split {split}"
    if not d.is_dir():
        return Artefact("evaluation", str(d), MISSING, build=build)
    if not (d / METRICS).is_file():
        return Artefact("evaluation", str(d), PARTIAL, "no metrics.json", build)
    try:
        made = json.loads((d / FINGERPRINT).read_text())
    except (OSError, ValueError):
        return Artefact("evaluation", str(d), STALE, "made from an unknown catalogue and weights", build)
    now = evaluation_fingerprint(run_dir, catalog_path, split)
    if made.get("model_sha256") != now["model_sha256"]:
        return Artefact("evaluation", str(d), STALE, "the run's weights changed since", build)
    if catalog_path and made.get("catalog_sha256") != now["catalog_sha256"]:
        return Artefact("evaluation", str(d), STALE, f"made from another catalogue ({made.get('catalog')})", build)
    return Artefact("evaluation", str(d), COMPLETE, f"{split} split", build)


def run_status(run_dir: str | os.PathLike) -> Artefact:
    d = Path(run_dir)
    build = f"artextract train --catalog CATALOG --out {d}"
    if not (d / RUN_CONFIG).is_file():
        return Artefact("run", str(d), MISSING, build=build)
    try:
        config = json.loads((d / RUN_CONFIG).read_text())
    except (OSError, ValueError):
        return Artefact("run", str(d), PARTIAL, "config.json unreadable", build)
    build = f"artextract train --catalog {config.get('catalog', 'CATALOG')} --out {d} --resume"
    if not (d / RUN_MODEL).is_file():
        return Artefact("run", str(d), PARTIAL, "no weights yet (killed before its first epoch ended)", build)
    done = "history" in config  # written when training ends
    what = f"backbone {config.get('backbone', {}).get('name', '?')}, tasks {', '.join(config.get('tasks', {}))}"
    return Artefact("run", str(d), COMPLETE if done else PARTIAL,
                    what if done else f"{what}; training did not finish (--resume continues it)", build)


def index_artefact(index_dir: str | os.PathLike) -> Artefact:
    from .similarity.index import index_status
    d = Path(index_dir)
    build = f"artextract index --catalog CATALOG --out {d}"
    exists, complete, reason = index_status(d)
    if not exists:
        return Artefact("index", str(d), MISSING, build=build)
    if not complete:
        return Artefact("index", str(d), PARTIAL, reason, build + " --rebuild")
    meta = json.loads((d / META_FILE).read_text())
    cats = meta.get("catalogs") or ["CATALOG"]
    build = f"artextract index --catalog {cats[0]} --out {d}"
    return Artefact("index", str(d), COMPLETE, f"{meta.get('count', '?')} paintings, {meta.get('index_type', '?')}, "
                    f"{meta.get('dim', '?')}-d", build)


def _store_counts(store_dir: Path, ids: list[str]) -> tuple[int, int] | None:
    """(finished, of) for the ids in a slot store folder, read without numpy's memmap of the data."""
    try:
        info = json.loads((store_dir / "index.json").read_text())
        status = (store_dir / "status.u8").read_bytes()
    except (OSError, ValueError):
        return None
    slot = {k: i for i, k in enumerate(info.get("ids", []))}
    done = sum(1 for k in ids if k in slot and slot[k] < len(status) and status[slot[k]] == 1)
    return done, len(ids)


def catalog_artefacts(catalog_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> list[Artefact]:
    """The catalogue, its prepared-image caches and its feature stores."""
    from .data.catalog import Catalog, CatalogError
    p = Path(catalog_path)
    out = []
    try:
        cat = Catalog.load(p, cache_dir=cache_dir)
    except (CatalogError, FileNotFoundError, OSError) as exc:
        return [Artefact("catalogue", str(p), MISSING if not p.exists() else PARTIAL, str(exc),
                         "artextract ingest ...")]
    out.append(Artefact("catalogue", str(p), COMPLETE, f"{len(cat):,} paintings, tasks {', '.join(cat.tasks)}"))
    from .data.cache import default_cache_dir
    root = default_cache_dir(cat)
    ids = cat.ids
    sized = sorted(root.glob("s[0-9]*"), key=lambda d: d.name) if root.is_dir() else []
    if not sized:
        out.append(Artefact("prepared images", str(root), MISSING,
                            build=f"artextract prepare --catalog {p}"))
    for d in sized:
        counts = _store_counts(d, ids)
        if counts is None:
            continue
        done, n = counts
        failures = len(json.loads((d / "failures.json").read_text())) if (d / "failures.json").is_file() else 0
        state = COMPLETE if done + failures >= n else (PARTIAL if done else MISSING)
        out.append(Artefact("prepared images", str(d), state, f"{done:,} of {n:,} prepared, {failures:,} failed",
                            f"artextract prepare --catalog {p} --size {d.name[1:]}"))
    for d in sorted(features_dir(root).glob("*")) if features_dir(root).is_dir() else []:
        counts = _store_counts(d / "pooled", ids)
        if counts is None:
            continue
        done, n = counts
        eng = {}
        if (d / ENGINE_RECORD).is_file():
            try:
                eng = json.loads((d / ENGINE_RECORD).read_text())
            except ValueError:
                pass
        how = f" ({eng.get('engine')} {eng.get('precision')})" if eng else ""
        out.append(Artefact("feature store", str(d), COMPLETE if done >= n else (PARTIAL if done else MISSING),
                            f"{done:,} of {n:,} paintings{how}", "built by train, outliers, index or duplicates"))
    return out


def status(catalog: str | os.PathLike | None = None, run: str | os.PathLike | None = None,
           index: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> list[Artefact]:
    """Every artefact reachable from a catalogue, a run or an index, and its state.

    A run names its catalogue (``config.json``) and an index its own (``meta.json``), so either finds
    the catalogue's caches and stores too.

    Returns
    -------
    list of Artefact
    """
    out: list[Artefact] = []
    if run:
        out.append(run_status(run))
        if catalog is None and (Path(run) / RUN_CONFIG).is_file():
            try:
                catalog = json.loads((Path(run) / RUN_CONFIG).read_text()).get("catalog")
            except ValueError:
                pass
    if index:
        out.append(index_artefact(index))
        if catalog is None and (Path(index) / META_FILE).is_file():
            try:
                catalog = (json.loads((Path(index) / META_FILE).read_text()).get("catalogs") or [None])[0]
            except ValueError:
                pass
    if catalog:
        out = catalog_artefacts(catalog, cache_dir) + out
    if run and (Path(run) / RUN_CONFIG).is_file():
        for d in sorted(Path(run).glob("eval-*")):
            out.append(evaluation_status(run, d.name[len("eval-"):], catalog))
    return out

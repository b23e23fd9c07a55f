"""Where every artefact lives, and whether it is built: ArtExtract's path rules in one module.

One painting's way from ingest to report, as files::

    CATALOG.parquet                    the catalogue (``ingest``)
    CATALOG.cache-location             the cache folder ``prepare --cache DIR`` chose (else CATALOG.cache)
    <cache>/s<SIZE>/                   prepared images, a slot store (``prepare``)
    <cache>/features/<store>/          maps/, pooled/, stats/ slot stores + engine.json (feature extraction)
    <cache>/web-thumbs/                thumbnails: <kind>/<size>/<hash[:2]>/<hash>.jpg (``serve``)
    RUN/config.json                    a trained run: its config (written first) ...
    RUN/model.safetensors              ... the best weights, last.safetensors, state.pt (``--resume``)
    RUN/eval-<SPLIT>/                  an evaluation: metrics.json, confusion_*.png, per_class_*.csv, and
                                       fingerprint.json (the catalogue and weights it was made from)
    INDEX/                             index.faiss, ids.json, mean.npy, then meta.json (written last)
    CATALOG's folder/<name>.reviews.sqlite   the review database (``serve``, ``review``)

A workspace (``--workspace DIR`` on any command, or ``$ARTEXTRACT_WORKSPACE``) gathers what would
otherwise sit beside each catalogue and in the home folder: ``WORKSPACE/caches/<name>-<hash>/`` is each
catalogue's default cache, ``WORKSPACE/reviews/`` its review database, ``WORKSPACE/engines/`` the
converted models. Runs, indexes and tables stay where ``--out`` puts them.

Each artefact has a state: ``missing``, ``partial`` (a killed job's leftovers, which the next run of
the command that builds it resumes or rebuilds), ``complete``, or ``stale`` (made from another
catalogue or other weights than the ones now asked for: reported and rebuilt, never shown as
current). This module answers it for a run and an evaluation; :mod:`artextract.artefacts` has one
object per artefact that answers its status, builds it (``ensure``) and opens it (``load``), and
:func:`artextract.status.status` asks those objects for every artefact of a catalogue, a run or an
index, which ``artextract status`` lists.

A leaf module: it imports no other part of ArtExtract at module level, so every package can take its
path rules from here. Importable without torch.
"""
from __future__ import annotations

import contextlib
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
REVIEWS_SUFFIX = ".reviews.sqlite"      # CATALOG's folder/<name>.reviews.sqlite: the review database
WORKSPACE_ENV = "ARTEXTRACT_WORKSPACE"  # the workspace folder when --workspace is not given
CACHES_DIR, REVIEWS_DIR, ENGINES_DIR, REVIEW_DB_SUFFIX = "caches", "reviews", "engines", ".sqlite"

RUN_CONFIG = "config.json"              # written first: its presence makes a folder a run
RUN_MODEL = "model.safetensors"         # best weights so far
RUN_LAST = "last.safetensors"           # weights after the last finished epoch
RUN_STATE = "state.pt"                  # optimiser, schedule, epoch, history: what --resume needs
RUN_SPLIT = "split.json"                # the held-out rows, when the run held some out
METRICS = "metrics.json"
FINGERPRINT = "fingerprint.json"

INDEX_FILE, IDS_FILE, META_FILE, MEAN_FILE = "index.faiss", "ids.json", "meta.json", "mean.npy"
MAP_LAYOUT = "map_layout"               # the explorer's map layout, kept beside the index or the run

MISSING, PARTIAL, COMPLETE, STALE = "missing", "partial", "complete", "stale"

# how a command finds a catalogue's cache folder, in words: the help of `--cache` and of TrainConfig.cache
CACHE_HELP = ("prepared-image cache folder (the prepared images and the feature stores), e.g. "
              "--cache /scratch/wikiart.cache; default: the folder `artextract prepare --cache` recorded for "
              "the catalogue, else CATALOG with suffix .cache")

# every artefact: (name, where, what builds it, when it is complete); docs/design.md's table is made from it
ARTEFACTS = (
    ("catalogue", "CATALOG.parquet", "`ingest`", "it loads and validates"),
    ("cache location", f"CATALOG{LOCATION_SUFFIX}", "`prepare --cache DIR`",
     f"absent: the cache is CATALOG{CACHE_SUFFIX} (in a workspace, WORKSPACE/{CACHES_DIR}/<name>-<hash>/)"),
    ("prepared images", "CACHE/s<SIZE>/", "`prepare`, or any command that needs them",
     "every painting prepared or failed"),
    ("feature store", f"CACHE/{FEATURES_DIR}/<backbone>-<size>-<view>[-bf16]/",
     "train, outliers, duplicates, index", f"every prepared painting's pooled vector done; {ENGINE_RECORD} "
     "names its engine"),
    ("thumbnails", f"CACHE/{THUMBS_DIR}/", "`serve`", "made on demand"),
    ("review store", f"CATALOG's folder/<name>{REVIEWS_SUFFIX} (in a workspace, "
     f"WORKSPACE/{REVIEWS_DIR}/<name>-<hash>{REVIEW_DB_SUFFIX})", "`serve`, `review`, `users`",
     "SQLite: each decision is committed as it is made"),
    ("run", f"RUN/{RUN_CONFIG}, {RUN_MODEL}, {RUN_LAST}, {RUN_STATE}, {RUN_SPLIT}", "`train`",
     f"{RUN_MODEL} there and the config's history written"),
    ("evaluation", f"RUN/eval-<SPLIT>/{METRICS}, {FINGERPRINT}", "`evaluate`, `report`",
     "its fingerprint matches the catalogue and the run's weights (else stale)"),
    ("index", f"INDEX/{INDEX_FILE}, {IDS_FILE}, {MEAN_FILE}, {META_FILE}", "`index`",
     f"{META_FILE} (written last) agrees with the other files"),
    ("converted models", f"$ARTEXTRACT_ENGINE_CACHE, else WORKSPACE/{ENGINES_DIR}/ in a workspace, else "
     "~/.cache/artextract/engines/", "the OpenVINO engine",
     "keyed by backbone, input size and weights hash"),
)


def layout_table() -> str:
    """The artefacts as a Markdown table (docs/design.md holds it; a test keeps the two equal)."""
    rows = ["| artefact | where | built by | complete when |", "|---|---|---|---|"]
    rows += [f"| {a} | `{w}` | {b} | {c} |" for a, w, b, c in ARTEFACTS]
    return "\n".join(rows)


# ---------------------------------------------------------------------- the workspace folder
_root: Path | None = None


def set_root(path: str | os.PathLike | None) -> None:
    """Make ``path`` the workspace of this process (``--workspace DIR``; None: ``$ARTEXTRACT_WORKSPACE`` or none).

    In a workspace, every catalogue's default cache folder, its review database and the converted models
    live under one folder instead of beside each catalogue and in the home folder; explicit ``--cache``,
    ``--db`` and a cache recorded by ``prepare --cache`` still win."""
    global _root
    _root = Path(path).expanduser().resolve() if path else None


@contextlib.contextmanager
def using(path: str | os.PathLike | None):
    """``set_root(path)`` for the duration of a block, then the previous workspace again (None: keep the
    current one, so that a command run from inside another inherits its workspace)."""
    global _root
    before = _root
    if path:
        set_root(path)
    try:
        yield root()
    finally:
        _root = before


def root() -> Path | None:
    """The workspace folder, or None when artefacts live beside their catalogue."""
    if _root is not None:
        return _root
    env = os.environ.get(WORKSPACE_ENV)
    return Path(env).expanduser().resolve() if env else None


def catalog_key(catalog_path: str | os.PathLike) -> str:
    """``<name>-<hash of the absolute path>``: a catalogue's folder name in a workspace (two catalogues
    called ``catalog.parquet`` in different folders get different ones)."""
    p = Path(catalog_path).expanduser().resolve()
    return f"{p.stem}-{hashlib.sha1(str(p).encode()).hexdigest()[:8]}"


# ---------------------------------------------------------------------- path rules
def default_cache_path(catalog_path: str | os.PathLike) -> Path:
    """The cache folder when none was chosen: ``WORKSPACE/caches/<name>-<hash>/`` in a workspace, else
    ``CATALOG.cache`` beside the catalogue."""
    ws = root()
    if ws is not None:
        return ws / CACHES_DIR / catalog_key(catalog_path)
    return Path(catalog_path).with_suffix(CACHE_SUFFIX)


def review_db_path(catalog_path: str | os.PathLike) -> Path:
    """The review database when ``--db`` is not given: ``WORKSPACE/reviews/<name>-<hash>.sqlite`` in a
    workspace, else ``<name>.reviews.sqlite`` beside the catalogue."""
    ws = root()
    if ws is not None:
        return ws / REVIEWS_DIR / f"{catalog_key(catalog_path)}{REVIEW_DB_SUFFIX}"
    p = Path(catalog_path)
    return p.with_name(p.stem + REVIEWS_SUFFIX)


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


def thumb_file(thumbs: str | os.PathLike, kind: str, size: int, digest: str) -> Path:
    """One kept thumbnail: ``THUMBS/<kind>/<size>/<digest[:2]>/<digest>.jpg`` (``kind``: thumb or display)."""
    return Path(thumbs) / kind / str(int(size)) / digest[:2] / f"{digest}.jpg"


def engine_cache_dir() -> Path:
    """Where the inference engine keeps converted models: ``$ARTEXTRACT_ENGINE_CACHE``, else
    ``WORKSPACE/engines`` in a workspace, else ``$XDG_CACHE_HOME/artextract/engines``
    (``~/.cache/artextract/engines``)."""
    env = os.environ.get("ARTEXTRACT_ENGINE_CACHE")
    if env:
        return Path(env)
    ws = root()
    if ws is not None:
        return ws / ENGINES_DIR
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "artextract" / "engines"


def eval_dir(run_dir: str | os.PathLike, split: str) -> Path:
    """``RUN/eval-SPLIT``: where ``evaluate`` writes by default, and where ``report`` looks."""
    return Path(run_dir) / f"eval-{split}"


def eval_splits(run_dir: str | os.PathLike) -> list[str]:
    """The splits a run has an evaluation folder for (``RUN/eval-SPLIT``), sorted."""
    return sorted(d.name[len("eval-"):] for d in Path(run_dir).glob("eval-*") if d.is_dir())


def run_file(run_dir: str | os.PathLike, name: str) -> Path:
    return Path(run_dir) / name


def map_layout_file(*, index_dir: str | os.PathLike | None = None, run_dir: str | os.PathLike | None = None,
                    catalog_path: str | os.PathLike | None = None) -> Path:
    """The explorer's cached map layout: ``INDEX/map_layout.npz`` when laid out from an index, else
    ``RUN/map_layout-<catalogue stem>-<hash of its path>.npz`` (a run can embed several catalogues)."""
    if index_dir is not None:
        return Path(index_dir) / f"{MAP_LAYOUT}.npz"
    stem = Path(str(catalog_path)).stem
    tag = hashlib.sha1(str(Path(str(catalog_path)).resolve()).encode()).hexdigest()[:8]
    return Path(run_dir) / f"{MAP_LAYOUT}-{stem}-{tag}.npz"


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

"""The demo pipeline (``artextract demo``): every step of the tool on the synthetic corpus, then a report.

Each step is an ordinary ``artextract`` command line, run by the ``step`` callable that
:func:`run_demo` is given (the ``demo`` command runs it through ``artextract.cli.main``, in this
process); re-running reuses what is done.
"""
from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from typing import Callable

from . import workspace
from .defaults import DEFAULT_BACKBONE
from .job import Job, resolve

logger = logging.getLogger(__name__)

DEMO_SIZE = 128     # side of the demo's prepared images
DEMO_N = 300        # synthetic paintings
DEMO_EPOCHS = 30


def next_steps(cat: str, run: Path, index: Path | None, outliers: list[str]) -> list[str]:
    """The commands that explore the demo and do the same on real collections.

    Parameters
    ----------
    cat : str
        The demo catalogue.
    run : Path
        The demo's training run.
    index : Path or None
        The demo's similarity index, if built.
    outliers : list of str
        The demo's outlier CSVs.

    Returns
    -------
    list of str
        Shell lines (comments start with ``#``).
    """
    serve = (f"artextract serve --catalog {cat} --run {run}"
             + (f" --index {index}" if index is not None else "") + "".join(f" --outliers {f}" for f in outliers))
    return [
        "# explore the demo in your browser",
        serve,
        "",
        "# the same on real WikiArt (ArtGAN 'WikiArt Dataset' label files + images)",
        "artextract ingest wikiart --labels 'WikiArt Dataset' --images wikiart --out wikiart.parquet",
        "artextract train --catalog wikiart.parquet --tasks artist,genre,style --out runs/wikiart",
        "artextract outliers --catalog wikiart.parquet --task style --run runs/wikiart --out style_issues.csv",
        "artextract index --catalog wikiart.parquet --run runs/wikiart --out wikiart.index",
        "artextract report --run runs/wikiart --outliers style_issues.csv --index wikiart.index --out report/",
        "",
        "# the National Gallery of Art open data (objects.csv, published_images.csv) and its IIIF images",
        "artextract ingest nga --opendata opendata/data --out nga.parquet",
        "artextract download nga --catalog nga.parquet",
        "artextract train --catalog nga.parquet --tasks timeframe --out runs/nga",
        "",
        "# your own images, one folder per class",
        "artextract ingest folder --images my_paintings --task style --out mine.parquet",
    ]


Step = Callable[[str, list[str]], None]


def run_demo(out: str | Path, step: Step, *, n: int = DEMO_N, epochs: int = DEMO_EPOCHS,
             backbone: str = DEFAULT_BACKBONE, fresh: bool = False, cache: str | Path | None = None,
             job: Job | None = None) -> tuple[Path, list[str]]:
    """Generate the synthetic corpus, prepare, train, evaluate, find outliers, index, evaluate
    retrieval, and write ``OUT/report.html``.

    Parameters
    ----------
    out : str or Path
        The demo folder (created; reused when it exists).
    step : callable
        ``step(name, argv)`` runs the ``artextract`` command line ``argv`` (the step called ``name``)
        and raises when it fails.
    n : int
        Number of synthetic paintings.
    epochs : int
        Training epochs.
    backbone : str
        Backbone of the classifier.
    fresh : bool
        Delete ``out`` first.
    cache : str or Path, optional
        The prepared-image cache folder (``prepare --cache``: recorded, and used by every step); default:
        the one recorded for the demo catalogue, else ``OUT/data/catalog.cache``. ``fresh`` does not
        delete it.
    job : Job, optional
        The job (default: the current one): its steps show progress bars when it does and stderr is a
        terminal.

    Returns
    -------
    report : Path
        The report page.
    next_steps : list of str
        The commands that explore the demo and do the same on real collections (see :func:`next_steps`).
    """
    out = Path(out)
    if out.exists() and fresh:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    data, run, index = out / "data", out / "run", out / "index"
    cat = str(data / "catalog.parquet")
    progress = resolve(job).progress and sys.stderr.isatty()
    no_progress = [] if progress else ["--no-progress"]
    with_cache = ["--cache", str(cache)] if cache else []
    if not Path(cat).exists():
        step("generate the synthetic corpus", ["demo-data", "--out", str(data), "--n", str(n)])
    step("prepare the image cache", ["prepare", "--catalog", cat, "--size", str(DEMO_SIZE), *with_cache,
                                      *no_progress])
    # a finished run resumes instantly; an interrupted one continues where it stopped
    step("train the multi-task CRNN", ["train", "--catalog", cat, "--out", str(run), "--cache-size", str(DEMO_SIZE),
                                       "--epochs", str(epochs), "--backbone", backbone, *with_cache,
                                       *(["--resume"] if (run / workspace.RUN_STATE).exists() else []),
                                       *no_progress])
    step("evaluate", ["evaluate", "--run", str(run), "--catalog", cat, *with_cache])
    outliers = []
    for task in ("style", "genre"):
        f = out / f"outliers_{task}.csv"
        step(f"find labels that do not fit ({task})",
             ["outliers", "--catalog", cat, "--task", task, "--run", str(run), "--out", str(f), *with_cache,
              *no_progress])
        outliers.append(str(f))
    from .artefacts import Index

    status = Index(index).status()  # a folder left half-built by a killed `index` is rebuilt, not trusted
    if status.status != workspace.COMPLETE:
        if status.status != workspace.MISSING:
            logger.warning("the index %s is incomplete (%s); rebuilding it", index, status.detail)
        step("index for similarity search", ["index", "--catalog", cat, "--run", str(run), "--out", str(index),
                                             *(["--rebuild"] if status.status != workspace.MISSING else []),
                                             *with_cache, *no_progress])
    step("retrieval quality by style", ["evaluate-retrieval", "--index", str(index), "--catalog", cat,
                                        "--relevance", "style", "-k", "10"])
    from .data.catalog import Catalog
    from .report.build import build_report

    nxt = next_steps(cat, run, index if index.exists() else None, outliers)
    logger.info("\n== report")
    page = build_report(out, catalog=Catalog.load(cat, cache_dir=cache), run_dir=run, outliers_csv=outliers,
                        index_dir=index if index.exists() else None, title="ArtExtract demo (synthetic corpus)",
                        next_steps=nxt)
    return page, nxt

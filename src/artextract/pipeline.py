"""Sub-commands: report, demo."""
from __future__ import annotations

import importlib.util
import shutil
import sys
import time
from pathlib import Path

from ..cli import UserError, add_command


def _cmd_report(args) -> int:
    from ..data.catalog import Catalog
    from .build import build_report

    if args.catalog:
        cat = Catalog.load(args.catalog)
    elif args.run:
        import json
        cfg = json.loads((Path(args.run) / "config.json").read_text())
        cat = Catalog.load(cfg["catalog"])
    else:
        raise UserError("give --run or --catalog")
    path = build_report(args.out, catalog=cat, run_dir=args.run, outliers_csv=args.outliers or None,
                        index_dir=args.index, split=args.split, color_task=args.color_by, title=args.title)
    print(f"report written to {path}")
    return 0


def _step(name: str, argv: list[str]) -> None:
    from ..cli import main
    print(f"\n== {name}: artextract {' '.join(argv)}", flush=True)
    t0 = time.time()
    rc = main(argv)
    if rc != 0:
        raise UserError(f"demo step '{name}' failed (exit {rc})")
    print(f"   ({time.time() - t0:.1f}s)", flush=True)


def _cmd_demo(args) -> int:
    out = Path(args.out)
    if out.exists() and args.fresh:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data, run, index = out / "data", out / "run", out / "index"
    cat = str(data / "catalog.parquet")
    progress = [] if sys.stderr.isatty() else ["--no-progress"]
    if not Path(cat).exists():
        _step("generate the synthetic corpus", ["demo-data", "--out", str(data), "--n", str(args.n)])
    _step("prepare the image cache", ["prepare", "--catalog", cat, "--size", "128"])
    # a finished run resumes instantly; an interrupted one continues where it stopped
    _step("train the multi-task CRNN", ["train", "--catalog", cat, "--out", str(run), "--cache-size", "128",
                                        "--epochs", str(args.epochs), "--backbone", args.backbone,
                                        *(["--resume"] if (run / "state.pt").exists() else []), *progress])
    _step("evaluate", ["evaluate", "--run", str(run), "--catalog", cat])
    outliers = []
    if importlib.util.find_spec("artextract.outliers.cli"):
        for task in ("style", "genre"):
            f = out / f"outliers_{task}.csv"
            _step(f"find labels that do not fit ({task})",
                  ["outliers", "--catalog", cat, "--task", task, "--run", str(run), "--out", str(f)])
            outliers.append(str(f))
    if importlib.util.find_spec("artextract.similarity.cli"):
        if not (index / "index.faiss").exists() and not index.exists():
            _step("index for similarity search", ["index", "--catalog", cat, "--run", str(run), "--out", str(index)])
        _step("retrieval quality by style", ["evaluate-retrieval", "--index", str(index), "--catalog", cat,
                                             "--relevance", "style", "-k", "10"])
    from ..data.catalog import Catalog
    from .build import build_report

    serve = (f"artextract serve --catalog {cat} --run {run}"
             + (f" --index {index}" if index.exists() else "") + "".join(f" --outliers {f}" for f in outliers))
    nxt = [
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
    ]
    print("\n== report", flush=True)
    path = build_report(out, catalog=Catalog.load(cat), run_dir=run, outliers_csv=outliers,
                        index_dir=index if index.exists() else None, title="ArtExtract demo (synthetic corpus)",
                        next_steps=nxt)
    print(f"\nDone in {time.time() - t0:.0f}s. Report: {path}\n")
    print("\n".join(nxt))
    return 0


def register(sub) -> None:
    p = add_command(sub, "report", "an HTML report for a run: metrics, confusion matrices, map, outliers, similar",
                    "artextract report --run runs/wikiart --outliers style_issues.csv --index wikiart.index --out report/")
    p.add_argument("--run", default=None)
    p.add_argument("--catalog", default=None, help="default: the catalogue the run was trained on")
    p.add_argument("--outliers", action="append", default=[], help="outliers CSV (repeatable)")
    p.add_argument("--index", default=None)
    p.add_argument("--split", default="val")
    p.add_argument("--color-by", default=None, help="task that colours the map (default style)")
    p.add_argument("--title", default=None)
    p.add_argument("--out", required=True, help="folder for report.html")
    p.set_defaults(func=_cmd_report)

    p = add_command(sub, "demo", "run the whole pipeline on the synthetic demo corpus and write a report",
                    "artextract demo --out demo-output",
                    description="Generate the synthetic corpus, prepare, train, evaluate, find outliers, index, "
                    "evaluate retrieval, and write OUT/report.html. Re-running reuses what is done.")
    p.add_argument("--out", default="demo-output")
    p.add_argument("--n", type=int, default=300, help="number of synthetic paintings")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--backbone", default="mobilenet_v2")
    p.add_argument("--fresh", action="store_true", help="delete OUT first")
    p.set_defaults(func=_cmd_demo)

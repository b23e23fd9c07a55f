"""Label-issue detection benchmarked on injected noise, on the shared WikiArt sample.

Flips a seeded 5 %, 10 % and 20 % of the style labels (and, separately, of the genre labels) to a
uniformly drawn other class, runs every method of ``artextract outliers`` side by side, and prints
AUROC and average precision of each method's score for "this label was flipped", and precision and
recall of each method's flagged set.

Only the checked task's labels are flipped; the painting's other fields (artist, genre or style)
stay as catalogued, and by default the out-of-fold classifier reads them as evidence beside the
image (``artextract outliers --context auto``). With ``--context both`` (default) the image-only
variant (``--context none``) is shown beside it.

    .venv/bin/python benchmarks/bench_outliers.py
    .venv/bin/python benchmarks/bench_outliers.py --features mobilenet_v2 --rates 0.1 --tasks style

The catalogue, prepared images and features are built once under ``benchmarks/out/outliers/``
(git-ignored; nothing from the shared data is copied there but decoded, resized pixels and
features). A last line per task and rate gives a reference for how far the features themselves
carry: the *oracle*, the same out-of-fold linear probe trained on the clean labels (it is no
method, since it needs the true labels; the ensemble can beat it by combining several views). Exits 0 with a message
when the shared data is absent.

``--ordered`` prints another table instead: WikiArt style as an **ordered** task, its classes in the
chronological order of each movement's start year (:data:`STYLE_START_YEARS`), with 10 % of the
labels moved near (one class away on that order) or far (three or more classes away). It compares
the ordered score of ``artextract outliers`` (the expected class distance of the given label under
the out-of-fold probabilities), cleanlab's unordered score and the ensembles, and says how far the
ordered score puts near and far flips:

    .venv/bin/python benchmarks/bench_outliers.py --ordered --markdown benchmarks/results/outliers_ordered.md
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

NAMES = {"zscore": "z-score > 3 (original study)", "mahalanobis": "Mahalanobis to class centres",
         "knn": "k-NN label disagreement", "cleanlab": "confident learning (cleanlab, out-of-fold), image + other fields",
         "novelty": "novelty (label-free)", "ensemble": "**ensemble (default)**",
         "cleanlab_img": "confident learning, image only (`--context none`)",
         "ensemble_img": "ensemble, image only (`--context none`)",
         "oracle": "(oracle: probe trained on clean labels)"}


#: Start year of each WikiArt (ArtGAN) style, for its chronological order. The years are the
#: conventional dates for the beginning of each movement as given in the English Wikipedia article
#: on the movement (e.g. Fauvism 1905: the Salon d'Automne; Analytic Cubism 1909; Pop Art in the
#: mid-1950s); Ukiyo-e is dated from Hishikawa Moronobu's prints of the 1670s and naive art from
#: Henri Rousseau's first showing at the Salon des Indépendants (1886). Only the order matters here;
#: equal years are ordered by name.
STYLE_START_YEARS = {
    "Early_Renaissance": 1400, "Northern_Renaissance": 1430, "High_Renaissance": 1490,
    "Mannerism_Late_Renaissance": 1520, "Baroque": 1600, "Ukiyo_e": 1670, "Rococo": 1730, "Romanticism": 1800,
    "Realism": 1848, "Impressionism": 1872, "Naive_Art_Primitivism": 1886, "Pointillism": 1886,
    "Post_Impressionism": 1886, "Symbolism": 1886, "Art_Nouveau_Modern": 1890, "Expressionism": 1905,
    "Fauvism": 1905, "Cubism": 1907, "Analytical_Cubism": 1909, "Synthetic_Cubism": 1912,
    "Abstract_Expressionism": 1943, "Action_painting": 1947, "Color_Field_Painting": 1948, "Pop_Art": 1955,
    "Minimalism": 1960, "New_Realism": 1960, "Contemporary_Realism": 1970,
}


def chronological(classes: list[str]) -> list[str]:
    missing = [c for c in classes if c not in STYLE_START_YEARS]
    if missing:
        raise SystemExit(f"no start year for style(s) {missing}")
    return sorted(classes, key=lambda c: (STYLE_START_YEARS[c], c))


def flip_ordered(y: np.ndarray, rate: float, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Move ``rate`` of the labelled entries of ``y`` (positions on the order, -1 = none) one class
    away (``near``) or three or more classes away (``far``)."""
    lab = np.flatnonzero(y >= 0)
    K = int(y.max()) + 1
    pick = rng.choice(lab, size=int(round(rate * len(lab))), replace=False)
    yn = y.copy()
    for i in pick:
        d = np.abs(np.arange(K) - y[i])
        yn[i] = rng.choice(np.flatnonzero(d == 1) if kind == "near" else np.flatnonzero(d >= 3))
    err = np.zeros(len(y), bool)
    err[pick] = True
    return yn, err


def ordered_main(args, cat, work: Path) -> int:
    """The ordered-style table (see the module docstring)."""
    from artextract.data.catalog import Catalog, TaskSpec
    from artextract.job import Job
    from artextract.outliers import methods as M
    from artextract.outliers.detect import LABEL_METHODS, backbone_features, rank_label_issues

    seeds = [int(s) for s in (args.ordered_seeds or "").split(",") if s]
    present = sorted(set(cat.df["style"].dropna()))
    order = chronological(present)
    tasks = dict(cat.tasks)
    tasks["style"] = TaskSpec("style", order, ordered=True)
    base = Catalog(cat.df, tasks, cat.image_root, cat.source, dict(cat.extra))
    base.path = cat.path   # the feature cache lives beside the catalogue
    fspec = args.features.split(",")[0]
    t0 = time.time()
    feats = backbone_features(base, fspec, job=Job(progress=False, log=lambda m: print(m, file=sys.stderr)))
    print(f"features {feats.source}: {len(feats.ids)} paintings ({time.time() - t0:.0f}s)", file=sys.stderr)
    y = base.label_indices("style")
    row_of = {k: i for i, k in enumerate(base.ids)}
    unordered_w = {k: v for k, v in M.DEFAULT_WEIGHTS.items() if k != "ordered"}
    rows, dist = [], []
    for kind in ("far", "near"):
        for seed in seeds:
            rng = np.random.default_rng([seed, 7, 0 if kind == "far" else 1])
            yn, err = flip_ordered(y, args.ordered_rate, kind, rng)
            df = base.df.copy()
            df["style"] = [order[v] if v >= 0 else None for v in yn]
            noisy = Catalog(df, tasks, base.image_root, base.source, dict(base.extra))
            t1 = time.time()
            res = rank_label_issues(noisy, "style", feats, seed=seed,
                                    job=Job(log=lambda m: print(m, file=sys.stderr)))
            e = err[[row_of[k] for k in res["id"]]]
            true = y[[row_of[k] for k in res["id"]]]
            none = np.zeros(len(e), bool)
            ens_unordered = M.ensemble({m: res[f"score_{m}"].to_numpy() for m in LABEL_METHODS}, unordered_w)
            for m, score in (("ordered", res["score_ordered"]), ("far_mass", res["far_mass"]),
                             ("cleanlab", res["score_cleanlab"]), ("ensemble_unordered", ens_unordered),
                             ("ensemble_ordered", res["score"])):
                rows.append({"kind": kind, "seed": seed, "method": m,
                             **metrics(np.asarray(score, np.float64), none, e)})
            # how far the ordered score says the flipped labels are, and whether its range holds the truth
            centre = np.array([order.index(s.split(" ± ")[0]) for s in res["suggested_range"]])
            radius = np.array([int(s.split(" ± ")[1].split()[0]) if " ± " in s else 0 for s in res["suggested_range"]])
            dist.append({"kind": kind, "seed": seed,
                         "flipped": float(res["class_distance"][e].mean()),
                         "clean": float(res["class_distance"][~e].mean()),
                         "moved": float(np.abs(yn[[row_of[k] for k in res["id"]]] - true)[e].mean()),
                         "covered": float((np.abs(centre - true) <= radius)[e].mean())})
            print(f"ordered style, {kind} noise, seed {seed}: ordered AUROC {rows[-5]['auroc']:.3f}, cleanlab "
                  f"{rows[-3]['auroc']:.3f} ({time.time() - t1:.0f}s)", file=sys.stderr)
    table = render_ordered(rows, dist, order, fspec, seeds, args.ordered_rate)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    return 0


def render_ordered(rows: list[dict], dist: list[dict], order: list[str], fspec: str, seeds: list[int],
                   rate: float) -> str:
    names = {"ordered": "**ordered score** (chance the label is wrong + expected class distance, capped at 3)",
             "far_mass": "probability mass 2+ classes away",
             "cleanlab": "confident learning (cleanlab), unordered",
             "ensemble_unordered": "ensemble without the ordered score",
             "ensemble_ordered": "ensemble with the ordered score (default for ordered tasks)"}
    years = ", ".join(f"{c} {STYLE_START_YEARS[c]}" for c in order)
    out = [f"WikiArt sample, style as an ordered task ({len(order)} classes by start year: {years}). "
           f"{rate:.0%} of the style labels moved one class (near) or three or more classes (far) along "
           f"that order. Features `{fspec}`; the other fields (genre, artist) as context, as `artextract "
           f"outliers` does by default. Each cell: AUROC / AP for \"this label was moved\", mean over noise "
           f"seeds {', '.join(map(str, seeds))}.\n",
           "| method | far noise | near noise |", "|---|---|---|"]
    for m in names:
        cells = []
        for kind in ("far", "near"):
            hit = [r for r in rows if r["kind"] == kind and r["method"] == m]
            cells.append(f"{np.mean([h['auroc'] for h in hit]):.3f} / {np.mean([h['ap'] for h in hit]):.2f}")
        out.append(f"| {names[m]} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("| ordered score says | far noise | near noise |")
    out.append("|---|---|---|")
    for key, label in (("moved", "classes the labels were actually moved (mean)"),
                       ("flipped", "expected class distance of the moved labels (mean)"),
                       ("clean", "expected class distance of the untouched labels (mean)"),
                       ("covered", "moved labels whose true class lies in the suggested range")):
        cells = []
        for kind in ("far", "near"):
            v = np.mean([d[key] for d in dist if d["kind"] == kind])
            cells.append(f"{v:.0%}" if key == "covered" else f"{v:.2f}")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def flip_labels(y: np.ndarray, rate: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Flip ``rate`` of the labelled entries of ``y`` (-1 = none) to another present class."""
    lab = np.flatnonzero(y >= 0)
    present = np.unique(y[lab])
    pick = rng.choice(lab, size=int(round(rate * len(lab))), replace=False)
    yn = y.copy()
    for i in pick:
        others = present[present != y[i]]
        yn[i] = rng.choice(others)
    err = np.zeros(len(y), bool)
    err[pick] = True
    return yn, err


def metrics(score: np.ndarray, flag: np.ndarray, err: np.ndarray) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score

    s = np.asarray(score, np.float64)
    s = np.where(np.isfinite(s), s, np.nanmin(s[np.isfinite(s)]) - 1 if np.isfinite(s).any() else 0)
    tp = int((flag & err).sum())
    return {"auroc": roc_auc_score(err, s), "ap": average_precision_score(err, s),
            "precision": tp / max(1, int(flag.sum())), "recall": tp / max(1, int(err.sum())),
            "n_flagged": int(flag.sum())}


def build_catalog(work: Path):
    from artextract.data.catalog import Catalog
    from artextract.data.wikiart import ingest_wikiart

    path = work / "wikiart.parquet"
    if path.exists():
        return Catalog.load(path)
    cat, report = ingest_wikiart(SHARED / "wikiart_labels", SHARED / "wikiart_sample")
    print(report.summary(), file=sys.stderr)
    cat.save(path)
    return cat


def oracle_scores(X: np.ndarray, y_true: np.ndarray, y_noisy: np.ndarray, seed: int) -> np.ndarray:
    from artextract.outliers import methods as M

    P = M.out_of_fold_probs(X, y_true, seed=seed)
    return 1.0 - P[np.arange(len(y_noisy)), y_noisy]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / "out" / "outliers"))
    ap.add_argument("--features", default="mobilenet_v2,mobilenet_v2+efficientnet_lite0+efficientnet_lite2",
                    help="comma-separated feature configurations (backbones joined by +)")
    ap.add_argument("--tasks", default="style,genre")
    ap.add_argument("--rates", default="0.05,0.1,0.2")
    ap.add_argument("--seeds", default="0,1,2",
                    help="noise seeds; the table shows the mean over them (the ensemble was tuned on 101, 102)")
    ap.add_argument("--no-oracle", action="store_true")
    ap.add_argument("--context", choices=("auto", "none", "both"), default="both",
                    help="the other fields as evidence (the default of `artextract outliers`), the image alone, "
                    "or both side by side (default)")
    ap.add_argument("--markdown", default=None, help="also write the table to this file")
    ap.add_argument("--ordered", action="store_true",
                    help="the ordered-style table instead: style in chronological order, near and far noise "
                    "(features: the first of --features)")
    ap.add_argument("--ordered-rate", type=float, default=0.1, help="noise rate of the ordered table (default 0.1)")
    ap.add_argument("--ordered-seeds", default="3,4,5",
                    help="noise seeds of the ordered table (the ordered score's cap was chosen on 0, 1)")
    args = ap.parse_args(argv)
    if not (SHARED / "wikiart_sample").is_dir() or not (SHARED / "wikiart_labels").is_dir():
        print(f"skipped: the shared WikiArt sample is not at {SHARED}")
        return 0

    from artextract.data.catalog import Catalog
    from artextract.job import Job
    from artextract.outliers.detect import METHODS, backbone_features, rank_label_issues

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cat = build_catalog(work)
    if args.ordered:
        return ordered_main(args, cat, work)
    tasks = [t for t in args.tasks.split(",") if t]
    rates = [float(r) for r in args.rates.split(",") if r]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    rows = []
    for fspec in [f for f in args.features.split(",") if f]:
        t0 = time.time()
        feats = backbone_features(cat, fspec, job=Job(progress=False, log=lambda m: print(m, file=sys.stderr)))
        print(f"features {feats.source}: {len(feats.ids)} paintings, {feats.X.shape[1]} dims "
              f"({time.time() - t0:.0f}s)", file=sys.stderr)
        pos = {k: i for i, k in enumerate(feats.ids)}
        for ti, task in enumerate(tasks):
            y = cat.label_indices(task)
            for rate, seed in [(r, s) for r in rates for s in seeds]:
                rng = np.random.default_rng([seed, ti, int(round(rate * 1000))])
                yn, err = flip_labels(y, rate, rng)
                df = cat.df.copy()
                classes = cat.tasks[task].classes
                df[task] = [classes[v] if v >= 0 else None for v in yn]
                noisy = Catalog(df, cat.tasks, cat.image_root, cat.source, dict(cat.extra))
                t1 = time.time()
                ctx = None if args.context == "none" else "auto"
                res = rank_label_issues(noisy, task, feats, seed=seed, context=ctx,
                                        job=Job(log=lambda m: print(m, file=sys.stderr)))
                dt = time.time() - t1
                row_of = {k: i for i, k in enumerate(cat.ids)}
                e = err[[row_of[k] for k in res["id"]]]
                for m in METHODS:
                    rows.append({"features": fspec, "task": task, "rate": rate, "method": m,
                                 **metrics(res[f"score_{m}"].to_numpy(), res[f"flag_{m}"].to_numpy(bool), e)})
                if args.context == "both":
                    img = rank_label_issues(noisy, task, feats, seed=seed, context=None,
                                            job=Job(log=lambda m: print(m, file=sys.stderr)))
                    img = img.set_index("id").loc[res["id"]]
                    rows.append({"features": fspec, "task": task, "rate": rate, "method": "cleanlab_img",
                                 **metrics(img["score_cleanlab"].to_numpy(), img["flag_cleanlab"].to_numpy(bool), e)})
                    rows.append({"features": fspec, "task": task, "rate": rate, "method": "ensemble_img",
                                 **metrics(img["score"].to_numpy(), img["flagged"].to_numpy(bool), e)})
                rows.append({"features": fspec, "task": task, "rate": rate, "method": "ensemble",
                             **metrics(res["score"].to_numpy(), res["flagged"].to_numpy(bool), e), "seconds": dt})
                if not args.no_oracle:
                    ids_ = res["id"].tolist()
                    X = feats.X[[pos[k] for k in ids_]]
                    if feats.style is not None:  # the same image evidence as confident learning reads
                        X = np.hstack([X, feats.style[[pos[k] for k in ids_]]])
                    present, yt = np.unique(y[[row_of[k] for k in ids_]], return_inverse=True)
                    lookup = {c: i for i, c in enumerate(present)}
                    ynn = np.array([lookup[v] for v in yn[[row_of[k] for k in ids_]]])
                    s = oracle_scores(X, yt, ynn, seed)
                    rows.append({"features": fspec, "task": task, "rate": rate, "method": "oracle",
                                 **metrics(s, np.zeros(len(s), bool), e)})
                ens = rows[-2] if not args.no_oracle else rows[-1]
                print(f"{fspec} {task} {rate:.0%} seed {seed}: ensemble AUROC {ens['auroc']:.3f} AP {ens['ap']:.3f} "
                      f"({dt:.0f}s)", file=sys.stderr)
    table = render(rows, tasks, rates, seeds)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    return 0


def render(rows: list[dict], tasks: list[str], rates: list[float], seeds: list[int]) -> str:
    """One markdown table per feature configuration: methods as rows, task x rate as columns
    (AUROC / AP / precision / recall of the flagged set, each the mean over the noise seeds)."""
    out = []
    order = ["zscore", "mahalanobis", "knn", "cleanlab_img", "cleanlab", "novelty", "ensemble_img", "ensemble", "oracle"]
    for fspec in dict.fromkeys(r["features"] for r in rows):
        sub = [r for r in rows if r["features"] == fspec]
        out.append(f"Features: `{fspec}` (pooled, L2-normalised{', concatenated' if '+' in fspec else ''}; "
                   "confident learning and the oracle also read the backbones' style statistics). "
                   "Each cell: AUROC / AP / precision / recall of the flagged set, mean over noise seeds "
                   f"{', '.join(map(str, seeds))}.\n")
        cols = [(t, r) for t in tasks for r in rates]
        out.append("| method | " + " | ".join(f"{t} {r:.0%}" for t, r in cols) + " |")
        out.append("|---|" + "---|" * len(cols))
        for m in order:
            cells = []
            for t, r in cols:
                hit = [x for x in sub if x["task"] == t and x["rate"] == r and x["method"] == m]
                if not hit:
                    cells.append("")
                    continue
                x = {key: float(np.mean([h[key] for h in hit])) for key in ("auroc", "ap", "precision", "recall")}
                cells.append(f"{x['auroc']:.3f} / {x['ap']:.2f}" if m == "oracle" else
                             f"{x['auroc']:.3f} / {x['ap']:.2f} / {x['precision']:.2f} / {x['recall']:.2f}")
            if any(cells):
                out.append(f"| {NAMES[m]} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())

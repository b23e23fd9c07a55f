"""Classifier benchmark on the real WikiArt sample: four recipes side by side, in one run.

  (a) the original study's recipe: one joint CRNN trained only on paintings with all three labels
  (b) three separate single-task CRNNs
  (c) a linear probe (logistic regression) on pooled backbone features, one per task
  (d) ArtExtract: one masked multi-task CRNN trained on every painting with any label
  (c+) beside them: the probe of (c) on the pooled features plus the backbone's style statistics,
       the inputs of the CRNN's linear path, so that their gain is not mistaken for the CRNN's

(a) keeps the original architecture (the recurrent path only, no weight averaging, no style
statistics, no refit); (b) and (d) use the default recipe (a linear path on the standardised global
feature and style statistics trained beside the recurrent one, logits averaged; EMA of the weights;
refit on every training row after early stopping), so (b) vs (d) isolates multi-task training.

The sample (1,403 images, all ArtGAN-train) is split once, seeded and stratified by style, into a
training part and a held-out test part (--test-fraction). Every recipe sees the same training
paintings (each recipe's early stopping holds out its own validation share of them) and is scored
on the same test paintings. Backbone features are computed once and shared; their time is shown
separately. With --splits N the table is repeated over N seeded splits (split k: seed + k, for the
split and for training), then the mean and spread, and (d) minus each other recipe per split with
its standard error: the recipes share each split's test paintings, so the paired difference is the
fair comparison.

    .venv/bin/python benchmarks/bench_classifier.py            # about 6 minutes on 2 idle cores
    .venv/bin/python benchmarks/bench_classifier.py --finetune # adds (e): (d) + end-to-end fine-tuning
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "src"))

from artextract.data.catalog import Catalog  # noqa: E402
from artextract.data.tabular import stratified_split  # noqa: E402
from artextract.data.wikiart import ingest_wikiart  # noqa: E402
from artextract.job import Job  # noqa: E402
from artextract.models.features import extract_features  # noqa: E402
from artextract.training.inference import Run  # noqa: E402
from artextract.training.metrics import task_metrics  # noqa: E402
from artextract.training.train import TrainConfig, train  # noqa: E402

TASKS = ["artist", "genre", "style"]
PAPER = {"joint, all-three-label rows": {"artist": 0.787, "genre": 0.557, "style": 0.362},
         "three separate models": {"artist": 0.681, "genre": 0.609, "style": 0.403}}


def quiet(*a, **k):
    pass


def build_catalog(work: Path, test_fraction: float, seed: int) -> Catalog:
    """The sample as a catalogue whose ``split`` column is this seed's train/test split (one file, so
    that every split shares the prepared images and features)."""
    path = work / "wikiart_sample.parquet"
    if not path.exists():
        cat, _ = ingest_wikiart(SHARED / "wikiart_labels", SHARED / "wikiart_sample")
        cat.save(path)
    cat = Catalog.load(path)
    split = stratified_split(cat.df["style"], test_fraction, seed)
    new = np.where(split == "val", "test", "train")
    if not (cat.df["split"].to_numpy() == new).all():
        cat.df["split"] = new
        cat.save(path)
    return cat


def test_targets(cat: Catalog, ids: list[str], task: str) -> np.ndarray:
    pos = {k: i for i, k in enumerate(cat.df["id"])}
    return cat.label_indices(task)[[pos[k] for k in ids]]


def score_run(run_dir: Path, cat: Catalog, test_ids: list[str], tasks: list[str]) -> dict:
    run = Run.load(run_dir)
    sub = cat.subset(cat.df["id"].isin(set(test_ids)))
    sub.path = cat.path
    ids, probs = run.predict_catalog(sub, job=Job(progress=False, log=quiet))
    return {t: task_metrics(probs[t], test_targets(cat, ids, t)) for t in tasks}


def crnn(cat: Catalog, out: Path, tasks: list[str], args, **kw) -> tuple[dict, float]:
    if out.exists():
        shutil.rmtree(out)
    t0 = time.time()
    cfg = TrainConfig(catalog=str(cat.path), out=str(out), tasks=tasks, backbone=args.backbone, seed=args.seed,
                      epochs=args.epochs, progress=False, **kw)
    train(cfg, job=Job(log=quiet))
    return score_run(out, cat, cat.df.loc[cat.df["split"] == "test", "id"].tolist(), tasks), time.time() - t0


def linear_probe(cat: Catalog, args, style_stats: bool = False) -> tuple[dict, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    t0 = time.time()
    fs = extract_features(cat, args.backbone, job=Job(progress=False, log=quiet))
    train_ids = cat.df.loc[cat.df["split"] == "train", "id"].tolist()
    test_ids = cat.df.loc[cat.df["split"] == "test", "id"].tolist()
    Xtr, Xte = fs.get_pooled(train_ids), fs.get_pooled(test_ids)
    if style_stats:
        Xtr, Xte = np.hstack([Xtr, fs.get_stats(train_ids)]), np.hstack([Xte, fs.get_stats(test_ids)])
    scaler = StandardScaler().fit(Xtr)
    Xtr, Xte = scaler.transform(Xtr), scaler.transform(Xte)
    res = {}
    rng = np.random.default_rng(args.seed)
    for t in TASKS:
        y = test_targets(cat, train_ids, t)
        m = y >= 0
        # choose C on a held-out 15% of the training rows, as the CRNN recipes do
        idx = np.flatnonzero(m)
        val = rng.random(len(idx)) < 0.15
        best_c, best_f1 = 0.1, -1
        for c in (0.003, 0.01, 0.03, 0.1, 0.3):
            clf = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
            clf.fit(Xtr[idx[~val]], y[idx[~val]])
            p = np.zeros((val.sum(), cat.task(t).num_classes))
            p[:, clf.classes_] = clf.predict_proba(Xtr[idx[val]])
            f1 = task_metrics(p, y[idx[val]])["macro_f1"]
            if f1 > best_f1:
                best_c, best_f1 = c, f1
        clf = LogisticRegression(C=best_c, max_iter=3000, class_weight="balanced").fit(Xtr[m], y[m])
        p = np.zeros((len(test_ids), cat.task(t).num_classes))
        p[:, clf.classes_] = clf.predict_proba(Xte)
        res[t] = task_metrics(p, test_targets(cat, test_ids, t))
    return res, time.time() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / "out" / "classifier"))
    ap.add_argument("--backbone", default="mobilenet_v2")
    ap.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    ap.add_argument("--test-fraction", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=0,
                    help="first split seed; split k uses seed + k for the split and for training")
    ap.add_argument("--splits", type=int, default=1,
                    help="repeat the table over this many seeded train/test splits and print mean and spread")
    ap.add_argument("--finetune", action="store_true", help="also run (e): (d) plus end-to-end fine-tuning")
    ap.add_argument("--finetune-epochs", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    args.first_seed = args.seed
    if not SHARED.is_dir():
        print(f"skipped: {SHARED} not found (the shared WikiArt sample is only in the team's workspace)")
        return 0
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    tables = []
    for k in range(args.splits):
        tables.append(one_split(work, args, args.seed + k, t_all))
    if args.splits > 1:
        print_mean(tables, args, time.time() - t_all)
    if args.json:
        Path(args.json).write_text(json.dumps([{k: {"metrics": v[0], "seconds": v[1]} for k, v in rows.items()}
                                               for rows in tables], indent=2))
    return 0


def print_mean(tables: list[dict], args, total: float) -> None:
    print(f"\nmean over {len(tables)} splits (seeds {args.seed}..{args.seed + len(tables) - 1}); "
          f"macro-F1 shown as mean ± standard deviation")
    head = f"{'recipe':<56}" + "".join(f"{t + ' acc':>11}{t + ' F1':>14}" for t in TASKS) + f"{'time':>8}"
    print(head)
    print("-" * len(head))
    for name in tables[0]:
        acc = {t: np.mean([r[name][0][t]["accuracy"] for r in tables]) for t in TASKS}
        f1 = {t: [r[name][0][t]["macro_f1"] for r in tables] for t in TASKS}
        dt = np.mean([r[name][1] for r in tables])
        print(f"{name:<56}" + "".join(f"{acc[t]:>11.3f}{np.mean(f1[t]):>8.3f} ± {np.std(f1[t]):.3f}" for t in TASKS)
              + f"{dt:>7.0f}s")
    # the test paintings are the same for every recipe within a split, so compare (d) pairwise
    ours = next(n for n in tables[0] if n.startswith("(d)"))
    print(f"\n(d) minus each other recipe, macro-F1: mean ± standard error of the per-split differences "
          f"(n = {len(tables)}); '*' where the mean is more than two standard errors from 0")
    for name in tables[0]:
        if name == ours:
            continue
        cells = []
        for t in TASKS:
            d = np.array([r[ours][0][t]["macro_f1"] - r[name][0][t]["macro_f1"] for r in tables])
            se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
            cells.append(f"{t} {d.mean():+.3f} ± {se:.3f}{'*' if abs(d.mean()) > 2 * se else ' '}")
        print(f"  vs {name:<56}" + "   ".join(cells))
    print(f"total wall time {total:.0f}s")


def one_split(work: Path, args, split_seed: int, t_all: float) -> dict:
    args = argparse.Namespace(**{**vars(args), "seed": split_seed})  # each split also trains with its own seed
    cat = build_catalog(work, args.test_fraction, split_seed)
    if split_seed != args.first_seed:
        print(f"\n=== split seed {split_seed} (also the training seed) ===")
    test = cat.df[cat.df["split"] == "test"]
    print(f"WikiArt sample: {len(cat)} paintings, {int((cat.df['split'] == 'train').sum())} train / {len(test)} test; "
          f"test labels: " + ", ".join(f"{t} {int(test[t].notna().sum())}" for t in TASKS))
    t0 = time.time()
    for view in ("center", "flip"):
        extract_features(cat, args.backbone, view=view, job=Job(progress=False, log=quiet))
    t_feat = time.time() - t0
    print(f"backbone {args.backbone}: features (2 views) for the catalogue in {t_feat:.0f}s, shared by all recipes\n")

    rows: dict[str, tuple[dict, float]] = {}
    rows["(a) original recipe: joint, all-three-label rows only"] = crnn(
        cat, work / "a_joint_all3", TASKS, args, require_all_labels=True, class_weighting="none", label_smoothing=0.0,
        linear_path=False, style_stats=False, ema=0.0, refit=False)
    sep, sep_t = {}, 0.0
    for t in TASKS:
        r, dt = crnn(cat, work / f"b_single_{t}", [t], args)
        sep[t], sep_t = r[t], sep_t + dt
    rows["(b) three separate single-task CRNNs"] = (sep, sep_t)
    rows["(c) linear probe on pooled features"] = linear_probe(cat, args)
    rows["(c+) linear probe, pooled features + style statistics"] = linear_probe(cat, args, style_stats=True)
    rows["(d) ArtExtract: masked multi-task CRNN"] = crnn(cat, work / "d_multitask", TASKS, args)
    if args.finetune:
        rows["(e) (d) + end-to-end fine-tuning"] = crnn(cat, work / "e_finetune", TASKS, args, finetune=True,
                                                        finetune_epochs=args.finetune_epochs)

    head = f"{'recipe':<56}" + "".join(f"{t + ' acc':>11}{t + ' F1':>10}" for t in TASKS) + f"{'time':>8}"
    print(head)
    print("-" * len(head))
    for name, (res, dt) in rows.items():
        print(f"{name:<56}" + "".join(f"{res[t]['accuracy']:>11.3f}{res[t]['macro_f1']:>10.3f}" for t in TASKS)
              + f"{dt:>7.0f}s")
    for name, acc in PAPER.items():
        print(f"{'original study (ResNet-50+LSTM, full WikiArt): ' + name:<56}"
              + "".join(f"{acc[t]:>11.3f}{'':>10}" for t in TASKS) + f"{'':>8}")
    n_test = {t: int(test[t].notna().sum()) for t in TASKS}
    print(f"\ntest paintings per task: {n_test}; total wall time {time.time() - t_all:.0f}s "
          f"(features {t_feat:.0f}s)")
    return rows


if __name__ == "__main__":
    raise SystemExit(main())

"""Classification metrics per task (numpy in, dicts out) and their pictures."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def task_metrics(probs: np.ndarray, y: np.ndarray, ordered: bool = False) -> dict:
    """Top-1, top-5, macro-F1, balanced accuracy and n over rows with a label (y >= 0).
    Macro-F1 and balanced accuracy average over the classes present in ``y``."""
    m = y >= 0
    probs, y = probs[m], y[m]
    n = int(len(y))
    if n == 0:
        return {"accuracy": None, "top5": None, "macro_f1": None, "balanced_accuracy": None, "n": 0}
    pred = probs.argmax(1)
    k = min(5, probs.shape[1])
    top5 = np.argsort(-probs, axis=1)[:, :k]
    labels = np.unique(y)
    with warnings.catch_warnings():  # predictions of classes absent from y are expected, not news
        warnings.simplefilter("ignore", UserWarning)
        bal = float(balanced_accuracy_score(y, pred)) if len(labels) > 1 else float((pred == y).mean())
    out = {
        "accuracy": float((pred == y).mean()),
        "top5": float((top5 == y[:, None]).any(1).mean()),
        "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "balanced_accuracy": bal,
        "n": n,
    }
    if ordered:
        err = np.abs(pred - y)
        out["mae_classes"] = float(err.mean())
        out["within_one"] = float((err <= 1).mean())
    return out


def per_class_table(probs: np.ndarray, y: np.ndarray, classes: list[str]) -> list[dict]:
    m = y >= 0
    pred = probs[m].argmax(1)
    p, r, f, s = precision_recall_fscore_support(y[m], pred, labels=range(len(classes)), zero_division=0)
    return [{"class": c, "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, c in enumerate(classes)]


def write_per_class_csv(path: str | Path, table: list[dict]) -> Path:
    """Write :func:`per_class_table`'s rows as a CSV for people: class names (user text) go through
    :func:`artextract.utils.csv_safe_value`, so a spreadsheet shows a label such as ``=cmd`` as text.

    Parameters
    ----------
    path : str or Path
    table : list of dict

    Returns
    -------
    Path
    """
    import csv

    from ..utils import csv_safe_value
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, ["class", "precision", "recall", "f1", "support"])
        w.writeheader()
        w.writerows({**row, "class": csv_safe_value(row["class"])} for row in table)
    return Path(path)


def plot_confusion(probs: np.ndarray, y: np.ndarray, classes: list[str], title: str, path: str | Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = y >= 0
    present = sorted(set(np.unique(y[m])) | set(np.unique(probs[m].argmax(1))))
    cm = confusion_matrix(y[m], probs[m].argmax(1), labels=present)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    names = [classes[i].replace("_", " ") for i in present]
    size = max(4.0, 0.45 * len(present) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if len(present) <= 25:
        for i in range(len(present)):
            for j in range(len(present)):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

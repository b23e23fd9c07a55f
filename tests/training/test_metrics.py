"""task_metrics and per_class_table against values worked out by hand (no model, no sklearn in the
expected values)."""
from __future__ import annotations

import numpy as np
import pytest

from artextract.training.metrics import per_class_table, plot_confusion, task_metrics

C = 7   # classes 0..6; y holds 0, 1, 2 and 4 only: 3, 5 and 6 are absent


def _probs(orders: list[list[int]]) -> np.ndarray:
    """One row per ranking (best class first): probabilities 7/28, 6/28, ... 1/28 in that order."""
    p = np.zeros((len(orders), C))
    for i, order in enumerate(orders):
        assert sorted(order) == list(range(C))
        for rank, c in enumerate(order):
            p[i, c] = (C - rank) / 28
    return p


# row  y   predicted  where y ranks
#  0   0   0          1st
#  1   1   5 (absent) 7th: outside the top 5
#  2   2   2          1st
#  3   2   3 (absent) 2nd
#  4  -1   6          (no label: ignored)
#  5   4   4          1st
#  6   1   1          1st
Y = np.array([0, 1, 2, 2, -1, 4, 1])
P = _probs([
    [0, 1, 2, 3, 4, 5, 6],
    [5, 0, 2, 3, 4, 6, 1],
    [2, 0, 1, 3, 4, 5, 6],
    [3, 2, 0, 1, 4, 5, 6],
    [6, 0, 1, 2, 3, 4, 5],
    [4, 0, 1, 2, 3, 5, 6],
    [1, 0, 2, 3, 4, 5, 6],
])


def test_hand_computed_values():
    m = task_metrics(P, Y)
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)          # rows 0, 2, 5, 6
    assert m["top5"] == pytest.approx(5 / 6)              # only row 1 has its class outside the top 5
    # F1 per class present in y: 0 -> 1; 1 -> P 1/1, R 1/2, F1 2/3; 2 -> P 1/1, R 1/2, F1 2/3; 4 -> 1.
    # The absent classes 3 and 5 (predicted, never true) and 6 do not enter the average.
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3 + 1) / 4)
    # balanced accuracy: mean recall over the classes present, (1 + 1/2 + 1/2 + 1) / 4
    assert m["balanced_accuracy"] == pytest.approx(0.75)
    assert "mae_classes" not in m and "within_one" not in m


def test_ordered_task_adds_mae_and_within_one():
    m = task_metrics(P, Y, ordered=True)
    # |pred - y| over the labelled rows: 0, 4, 0, 1, 0, 0
    assert m["mae_classes"] == pytest.approx(5 / 6)
    assert m["within_one"] == pytest.approx(5 / 6)
    assert m["accuracy"] == pytest.approx(4 / 6)


def test_unlabelled_rows_change_nothing():
    keep = Y >= 0
    assert task_metrics(P[keep], Y[keep], ordered=True) == task_metrics(P, Y, ordered=True)
    # the unlabelled row predicts class 6: counting it would add a class and change macro-F1
    y_all = Y.copy()
    y_all[4] = 6
    assert task_metrics(P, y_all)["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3 + 1 + 1) / 5)


def test_perfect_and_all_wrong():
    y = np.array([0, 1, 2, 3, 4, 5, 6, 6])
    right = _probs([[c, *[k for k in range(C) if k != c]] for c in y])
    m = task_metrics(right, y, ordered=True)
    assert m == {"accuracy": 1.0, "top5": 1.0, "macro_f1": 1.0, "balanced_accuracy": 1.0, "n": 8,
                 "mae_classes": 0.0, "within_one": 1.0}
    # every row predicts the class 3 above its own (mod 7) and ranks its own last
    wrong = _probs([[(c + 3) % C, *[k for k in range(C) if k not in (c, (c + 3) % C)], c] for c in y])
    m = task_metrics(wrong, y, ordered=True)
    assert m["accuracy"] == 0.0 and m["top5"] == 0.0 and m["macro_f1"] == 0.0 and m["balanced_accuracy"] == 0.0
    err = np.abs((y + 3) % C - y)                            # 3 or 4
    assert m["mae_classes"] == pytest.approx(err.mean()) and m["within_one"] == 0.0


def test_within_one_counts_errors_of_one_class_only():
    # errors of 0, 1, 2 and 3 classes: within one is 2 of 4, the mean error 6/4
    y = np.array([2, 2, 2, 2])
    p = _probs([[2, 0, 1, 3, 4, 5, 6], [3, 0, 1, 2, 4, 5, 6], [4, 0, 1, 2, 3, 5, 6], [5, 0, 1, 2, 3, 4, 6]])
    m = task_metrics(p, y, ordered=True)
    assert m["within_one"] == 0.5 and m["mae_classes"] == 1.5


def test_top5_with_fewer_than_five_classes_is_every_class():
    p = np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    m = task_metrics(p, np.array([0, 2]))
    assert m["top5"] == 1.0 and m["accuracy"] == 0.0


def test_top5_counts_the_fifth_but_not_the_sixth():
    y = np.array([0, 0])
    p = _probs([[1, 2, 3, 4, 0, 5, 6], [1, 2, 3, 4, 5, 0, 6]])
    assert task_metrics(p, y)["top5"] == 0.5


def test_single_class_present_and_no_labels():
    p = _probs([[0, 1, 2, 3, 4, 5, 6], [1, 0, 2, 3, 4, 5, 6], [0, 1, 2, 3, 4, 5, 6]])
    m = task_metrics(p, np.array([0, 0, 0]))
    assert m["accuracy"] == pytest.approx(2 / 3) and m["balanced_accuracy"] == pytest.approx(2 / 3)
    # one class: P 1, R 2/3, F1 0.8
    assert m["macro_f1"] == pytest.approx(0.8)
    none = task_metrics(p, np.array([-1, -1, -1]), ordered=True)
    assert none == {"accuracy": None, "top5": None, "macro_f1": None, "balanced_accuracy": None, "n": 0}


def test_macro_f1_is_not_micro_f1_on_imbalanced_classes():
    # 8 rows of class 0 all right, 2 rows of class 1 both predicted 0
    y = np.array([0] * 8 + [1] * 2)
    p = np.tile([0.9, 0.1], (10, 1))
    m = task_metrics(p, y)
    assert m["accuracy"] == pytest.approx(0.8)
    # class 0: P 8/10, R 1, F1 8/9; class 1: F1 0
    assert m["macro_f1"] == pytest.approx((8 / 9) / 2)
    assert m["balanced_accuracy"] == pytest.approx(0.5)


def test_per_class_table_hand_values():
    import warnings

    classes = [f"c{i}" for i in range(C)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")        # classes never predicted or never true: no warning
        rows = per_class_table(P, Y, classes)
    assert [r["class"] for r in rows] == classes
    by = {r["class"]: r for r in rows}
    assert by["c0"] == {"class": "c0", "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert by["c1"]["precision"] == 1.0 and by["c1"]["recall"] == 0.5 and by["c1"]["support"] == 2
    assert by["c1"]["f1"] == pytest.approx(2 / 3)
    assert by["c2"]["support"] == 2 and by["c2"]["recall"] == 0.5
    # predicted once, never true: precision 0, support 0 (no division warning, no NaN)
    assert by["c3"] == {"class": "c3", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert by["c5"]["support"] == 0 and by["c5"]["precision"] == 0.0
    assert by["c6"] == {"class": "c6", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}   # row 4 has no label
    assert sum(r["support"] for r in rows) == 6


def test_confusion_plot_is_written(tmp_path):
    path = plot_confusion(P, Y, [f"class_{i}" for i in range(C)], "style", tmp_path / "sub" / "cm.png")
    assert path == tmp_path / "sub" / "cm.png"
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 300 and im.height > 300

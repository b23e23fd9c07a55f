"""Label-issue, outlier and near-duplicate detection.

- :mod:`.methods`: the scores as small functions over numpy arrays;
- :func:`rank_label_issues` (:mod:`.detect`): one table per task, every method side by side;
- :func:`find_duplicates` (:mod:`.duplicates`): the same painting twice, within and across splits;
- :func:`write_report` (:mod:`.report`): an HTML page of the flagged paintings with evidence.
"""
from .detect import COLUMNS, METHODS, Features, UncheckableTask, backbone_features, rank_label_issues, run_features
from .duplicates import find_duplicates
from .report import write_report

__all__ = ["COLUMNS", "METHODS", "Features", "UncheckableTask", "backbone_features", "rank_label_issues",
           "run_features", "find_duplicates", "write_report"]

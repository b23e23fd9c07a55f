"""Generic importer: any CSV with an image path column and categorical label columns."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .catalog import Catalog, CatalogError, TaskSpec


def stratified_split(labels: pd.Series, val_fraction: float, seed: int) -> np.ndarray:
    """A seeded split, stratified on ``labels`` (missing labels form their own stratum).
    Classes with a single member stay in train."""
    rng = np.random.default_rng(seed)
    split = np.array(["train"] * len(labels), dtype=object)
    strata = labels.fillna("\0missing").to_numpy()
    for value in sorted(set(strata)):
        idx = np.flatnonzero(strata == value)
        if len(idx) < 2:
            continue
        k = int(round(len(idx) * val_fraction))
        k = min(max(k, 1), len(idx) - 1)
        split[rng.choice(idx, size=k, replace=False)] = "val"
    return split


def ingest_csv(csv_path: str | Path, images: str | Path, *, id_col: str | None, path_col: str,
               tasks: list[str], split_col: str | None = None, ordered: list[str] | None = None,
               seed: int = 0, val_fraction: float = 0.2) -> tuple[Catalog, list[str]]:
    msgs: list[str] = []
    bad_lines: list[str] = []
    df = pd.read_csv(csv_path, dtype=str, keep_default_na=False, na_values=[""],
                     on_bad_lines=lambda line: bad_lines.append(",".join(line)[:80]) or None, engine="python")
    if bad_lines:
        msgs.append(f"skipped {len(bad_lines)} malformed row(s), e.g. {bad_lines[:2]}")
    for col in [path_col, *tasks] + ([id_col] if id_col else []) + ([split_col] if split_col else []):
        if col not in df.columns:
            raise CatalogError(f"{csv_path} has no column {col!r}; columns: {', '.join(df.columns)}")
    ordered = ordered or []
    out = pd.DataFrame({"id": df[id_col or path_col].astype(str), "path": df[path_col]})
    blank = out["path"].isna()
    if blank.any():
        msgs.append(f"skipped {int(blank.sum())} row(s) without an image path")
    keep = ~blank & ~out["id"].duplicated()
    if out["id"][~blank].duplicated().any():
        msgs.append(f"skipped {int(out['id'][~blank].duplicated().sum())} row(s) with a duplicated id")
    root = Path(images)
    exists = np.array([isinstance(p, str) and (root / p).is_file() for p in out["path"]])
    if (keep & ~exists).any():
        miss = out.loc[keep & ~exists, "path"].head(3).tolist()
        msgs.append(f"left out {int((keep & ~exists).sum())} row(s) whose image is not on disk, e.g. {miss}")
    keep &= exists
    specs = {}
    for t in tasks:
        out[t] = df[t].where(df[t].notna(), None)
        classes = sorted(out.loc[keep, t].dropna().unique())
        specs[t] = TaskSpec(t, classes, ordered=t in ordered)
    for col in df.columns:
        if col not in (path_col, id_col, split_col, *tasks):
            out[col] = df[col]
    out = out.loc[keep].reset_index(drop=True)
    if split_col:
        out["split"] = df.loc[keep, split_col].str.lower().str.strip().values
        bad = ~out["split"].isin(["train", "val", "test"])
        if bad.any():
            raise CatalogError(f"split column {split_col!r} has values other than train/val/test: "
                               f"{out.loc[bad, 'split'].fillna('<missing>').unique()[:3].tolist()}")
    else:
        out["split"] = stratified_split(out[tasks[0]] if tasks else pd.Series([None] * len(out)),
                                        val_fraction, seed)
        msgs.append(f"no split column: made a seeded split ({val_fraction:.0%} val"
                    + (f", stratified on {tasks[0]})" if tasks else ")"))
    return Catalog(out, specs, root.resolve(), source=f"csv:{Path(csv_path).name}"), msgs

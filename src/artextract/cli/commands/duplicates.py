"""``artextract duplicates``: the same painting present twice, within a split and across splits (leaks)
(:mod:`artextract.outliers.duplicates`)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from ...utils import csv_safe_frame
from ..base import add_command
from ..options import add_backbone_options, add_cache_option, add_json_option, add_progress_option, pretrained

logger = logging.getLogger(__name__)

SUMMARY_TOP = 5   # pairs shown in the summary


def _cmd_duplicates(args) -> int:
    from ...artefacts import FeatureStore, PreparedImages
    from ...data.catalog import Catalog
    from ...outliers.duplicates import find_duplicates, summarize_duplicates

    cat = Catalog.load(args.catalog, cache_dir=args.cache)
    backbone = None if args.backbone == "none" else args.backbone
    feats = None
    if backbone:
        from ...outliers.detect import backbone_features, parse_backbones

        for name in parse_backbones(backbone):
            FeatureStore(cat, name, pretrained=pretrained(args), weights=args.weights).ensure()
        feats = backbone_features(cat, backbone, pretrained=pretrained(args), weights=args.weights,
                                  style_stats=False)
    PreparedImages(cat, args.cache_size).ensure()  # the images the hashes are taken from
    df = find_duplicates(cat, backbone=None, features=feats.X if feats else None,
                         feature_ids=feats.ids if feats else None, phash_max=args.phash_max,
                         dhash_max=args.dhash_max, cosine_min=args.cosine_min, cache_size=args.cache_size)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        csv_safe_frame(df).to_csv(args.out, index=False)
        logger.info(f"wrote {args.out} ({len(df)} pairs)")
    if args.json:
        print(json.dumps(_duplicates_summary(df, args.out), indent=2))
    else:
        print(summarize_duplicates(df))
    return 0


def _duplicates_summary(df, out) -> dict:
    """The JSON summary of the pairs (what ``summarize_duplicates`` prints)."""
    import pandas as pd

    def num(v):
        return None if v is None or pd.isna(v) else float(v)  # no embedding (None or NaN) -> null

    return {
        "out": str(out) if out else None, "pairs": len(df),
        "relations": {str(k): int(v) for k, v in df["relation"].value_counts().items()} if len(df) else {},
        "top": [{"id_a": r["id_a"], "id_b": r["id_b"], "relation": r["relation"],
                 "phash_distance": int(r["phash_distance"]), "dhash_distance": int(r["dhash_distance"]),
                 "cosine": num(r["cosine"]), "found_by": r["found_by"]} for _, r in df.head(SUMMARY_TOP).iterrows()],
    }


def register(sub) -> None:
    """Add ``duplicates`` to ``sub``, the ``artextract`` sub-commands."""
    from ...outliers.duplicates import COSINE_MIN, DHASH_MAX, PHASH_MAX

    d = add_command(
        sub, "duplicates", "find the same painting present twice, within a split and across splits (leaks)",
        "artextract duplicates --catalog wikiart.parquet --out duplicates.csv",
        description="Find near-duplicate pairs with perceptual hashes (pHash, dHash) of the prepared images and "
        "cosine similarity of backbone embeddings. Pairs in different splits are train/validation leaks.")
    d.add_argument("--catalog", required=True, help="catalogue file (.parquet)")
    d.add_argument("--out", default=None, help="CSV of pairs to write")
    add_backbone_options(d, allow_none=True)
    d.add_argument("--cache-size", type=int, default=256,
                   help="side of the prepared images the hashes are taken from (default 256)")
    add_cache_option(d)
    d.add_argument("--phash-max", type=int, default=PHASH_MAX,
                   help=f"pHash Hamming distance (of 64 bits) that, with --dhash-max, means the same picture "
                   f"(default {PHASH_MAX})")
    d.add_argument("--dhash-max", type=int, default=DHASH_MAX, help=f"the same for dHash (default {DHASH_MAX})")
    d.add_argument("--cosine-min", type=float, default=COSINE_MIN,
                   help=f"embedding cosine that alone means the same picture (default {COSINE_MIN})")
    add_progress_option(d)
    add_json_option(d, "the summary (the pairs are the CSV)")
    d.set_defaults(func=_cmd_duplicates)

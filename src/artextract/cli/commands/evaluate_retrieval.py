"""``artextract evaluate-retrieval``: precision@k, recall@k and mAP@k of a similarity index, a neighbour
being relevant when it has the query's label (:mod:`artextract.similarity.evaluate`)."""
from __future__ import annotations

import json

from ..base import add_command
from ..options import add_json_option, add_neighbours_option


def _cmd_evaluate_retrieval(args) -> int:
    from ...artefacts import Index
    from ...data.catalog import Catalog
    from ...similarity.evaluate import evaluate_index, format_evaluation

    index = Index(args.index).load()
    if args.nprobe or args.ef_search:
        index.set_search_params(nprobe=args.nprobe, ef_search=args.ef_search)
    cat = Catalog.load(args.catalog)
    res = evaluate_index(index, cat, args.relevance, k=args.k)
    print(json.dumps(res, indent=2) if args.json else format_evaluation(res))
    return 0


def register(sub) -> None:
    """Add ``evaluate-retrieval`` to ``sub``, the ``artextract`` sub-commands."""
    p = add_command(
        sub, "evaluate-retrieval", "precision@k, recall@k and mAP@k of an index, relevance = same label",
        "artextract evaluate-retrieval --index wikiart.index --catalog wikiart.parquet --relevance style -k 10",
        description="Every painting labelled for the task queries the index for its k nearest labelled "
        "paintings; a neighbour is relevant when it has the same label. Prints P@k, R@k, mAP@k and P@k "
        "per class.")
    p.add_argument("--index", required=True, help="index folder (from `artextract index`)")
    p.add_argument("--catalog", required=True, help="catalogue with the labels of the relevance task")
    p.add_argument("--relevance", required=True, help="label task: style, artist, genre, timeframe, ...")
    add_neighbours_option(p)
    add_json_option(p, "the scores")
    p.add_argument("--nprobe", type=int, default=None, help="IVF: cells probed")
    p.add_argument("--ef-search", type=int, default=None, help="HNSW: search breadth")
    p.set_defaults(func=_cmd_evaluate_retrieval)

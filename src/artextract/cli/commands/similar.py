"""``artextract similar``: the paintings most similar to an image, an indexed painting or a text
(:func:`artextract.similarity.api.find_similar`), or the neighbours of every indexed painting
(:func:`artextract.similarity.neighbours.every_neighbour`)."""
from __future__ import annotations

import csv
import json
import logging
import sys

from ..base import UserError, add_command
from ...utils import csv_safe_value
from ..options import add_json_option, add_neighbours_option, add_progress_option

logger = logging.getLogger(__name__)

MODES = ("image", "face", "pose")


def _labels(index, catalog_arg) -> dict[str, dict]:
    """id -> {task: label} from the catalogue (--catalog, else the one the index was built from)."""
    from ...data.catalog import Catalog, CatalogError

    src = catalog_arg or (index.catalogs[0] if index.catalogs else None)
    if not src:
        return {}
    try:
        cat = Catalog.load(src)
    except CatalogError:
        return {}
    tasks = [t for t in ("style", "artist", "genre") if t in cat.tasks]
    df = cat.df.set_index("id")[tasks]
    return {k: {t: v for t, v in row.items() if isinstance(v, str)} for k, row in df.iterrows()}


def _print_result(res: dict, labels: dict) -> None:
    q = res["query"]
    qd = q.get("id") or q.get("image")
    extra = ""
    if res["mode"] == "face":
        extra = f"  ({len(q.get('faces', []))} face(s) in the query)"
    print(f"text search for {q['text']!r}" if "text" in q else f"{res['mode']} search for {qd}{extra}")
    cov = res.get("coverage")
    if cov:
        print("indexed paintings: " + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in cov.items()))
    if res["message"]:
        print(res["message"])
    if not res["results"]:
        return
    print(f"{'rank':>4}  {'score':>6}  {'id':<60} labels")
    for r in res["results"]:
        lab = ", ".join(labels.get(r["id"], {}).values())
        flag = "  (same person?)" if r.get("same_person") else ""
        print(f"{r['rank']:>4}  {r['score']:>6.3f}  {r['id']:<60} {lab}{flag}")


def _write_all(rows, args) -> None:
    """``similar --all``: the rows as one JSON document, or as CSV on stdout or into ``--out``."""
    if args.json:
        grouped: dict[str, list] = {}
        for q, r, n, s in rows:
            grouped.setdefault(q, []).append({"id": n, "score": round(s, 6), "rank": r})
        json.dump([{"query_id": q, "results": v} for q, v in grouped.items()], sys.stdout)
        print()
        return
    f = open(args.out, "w", newline="") if args.out else sys.stdout
    try:
        w = csv.writer(f)
        w.writerow(["query_id", "rank", "neighbor_id", "score"])
        n = 0
        for q, r, nb, s in rows:
            w.writerow([csv_safe_value(q), r, csv_safe_value(nb), f"{s:.6f}"])
            n += 1
    finally:
        if args.out:
            f.close()
    if args.out:
        logger.info(f"wrote {n:,} rows to {args.out}")


def _cmd_similar(args) -> int:
    from ...artefacts import Index
    from ...similarity.api import draw_result, find_similar

    index = Index(args.index).load()
    if args.nprobe or args.ef_search:
        index.set_search_params(nprobe=args.nprobe, ef_search=args.ef_search)
    if args.json and args.out:
        raise UserError("give --json or --out FILE.csv, not both")
    catalog_arg = args.catalog
    sources = sum((args.image is not None, args.id is not None, args.text is not None, bool(args.all)))
    if sources != 1:
        raise UserError("give one of IMAGE, --id ID, --text TEXT or --all")
    if args.text is not None:
        if args.mode != "image":
            raise UserError(f"--text ranks whole paintings by a description; it cannot be used with --mode {args.mode}")
        if args.draw:
            raise UserError("--draw needs a query image or --id; a text query has no image to draw")
        from ...similarity.api import text_search_unavailable

        why = text_search_unavailable(index)  # before any work, in words
        if why is not None:
            raise UserError(why)
    if args.all:
        from ...similarity.neighbours import every_neighbour

        _write_all(every_neighbour(index, args.k, args.mode, catalog_arg), args)
        return 0
    res = find_similar(index, image=args.image, id=args.id, text=args.text, k=args.k, mode=args.mode,
                       catalog=catalog_arg)
    if args.draw:
        files = draw_result(res, index, args.draw, query_image=args.image)
        logger.info(f"drew {len(files)} image(s) into {args.draw}")
    if args.json:
        print(json.dumps(res, indent=2))
    elif args.out:
        qid = res["query"].get("id") or res["query"].get("image") or res["query"].get("text")
        with open(args.out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["query_id", "rank", "neighbor_id", "score"])
            for r in res["results"]:
                w.writerow([csv_safe_value(qid), r["rank"], csv_safe_value(r["id"]), f"{r['score']:.6f}"])
        logger.info(f"wrote {len(res['results'])} rows to {args.out}" + (f"; {res['message']}" if res["message"] else ""))
    else:
        _print_result(res, _labels(index, catalog_arg))
    return 0


def register(sub) -> None:
    """Add ``similar`` to ``sub``, the ``artextract`` sub-commands."""
    from ...similarity.api import MAX_TEXT_CHARS

    p = add_command(
        sub, "similar", "find the paintings most similar to an image, an indexed painting or a text",
        "artextract similar --index wikiart.index --id 'Baroque/rembrandt_self-portrait-as-a-young-man.jpg' -k 5 --mode face\n"
        "  artextract similar --index clip.index --text 'a ship in a storm at night' -k 10",
        description="The k nearest paintings with their scores (cosine similarity), never the query painting "
        "itself. --mode face compares detected faces (YuNet + SFace), --mode pose compares body poses "
        "(mediapipe, 33 keypoints); their descriptors are computed on first use and kept in the index. "
        "--text ranks the paintings by a description, in an index built with an open_clip backbone "
        "(one with a text tower, e.g. --backbone open_clip:ViT-B-32).")
    p.add_argument("--index", required=True, help="index folder (from `artextract index`)")
    p.add_argument("image", nargs="?", default=None, help="query image file")
    p.add_argument("--id", default=None, help="query by the id of an indexed painting")
    p.add_argument("--text", default=None, metavar="TEXT",
                   help="query by a description, e.g. --text 'a ship in a storm at night' (an index built with "
                        f"an open_clip backbone; at most {MAX_TEXT_CHARS} characters)")
    p.add_argument("--all", action="store_true",
                   help="neighbours of every indexed painting as CSV query_id,rank,neighbor_id,score")
    add_neighbours_option(p)
    p.add_argument("--mode", choices=MODES, default="image",
                   help="what is compared: the whole image (default), detected faces, or body poses")
    add_json_option(p, "the neighbours (with --all: of every painting)")
    p.add_argument("--out", default=None, help="write the result as CSV to this file")
    p.add_argument("--draw", default=None, metavar="DIR",
                   help="write the query and the results with face boxes / skeletons drawn on into DIR")
    p.add_argument("--catalog", default=None,
                   help="catalogue for labels and image paths (default: the one the index was built from)")
    p.add_argument("--nprobe", type=int, default=None, help="IVF: cells probed (more = better recall, slower)")
    p.add_argument("--ef-search", type=int, default=None, help="HNSW: search breadth (more = better recall)")
    add_progress_option(p)
    p.set_defaults(func=_cmd_similar)

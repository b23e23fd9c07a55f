"""Sub-commands for similarity search: index, similar, evaluate-retrieval."""
from __future__ import annotations

import csv
import json
import logging
import sys
import time
from pathlib import Path

from ..cli_base import UserError, add_command
from ..cli_options import (DEFAULT_BACKBONE, add_backbone_options, add_cache_option, add_json_option,
                           add_progress_option, pretrained)

logger = logging.getLogger(__name__)

DEFAULT_K = 10
MODES = ("image", "face", "pose")


# ---------------------------------------------------------------------- index
def _cmd_index(args) -> int:
    from ..data.catalog import Catalog
    from .embed import BackboneEmbedder, RunEmbedder
    from .index import index_catalog

    cat = Catalog.load(args.catalog, cache_dir=args.cache)
    if args.run:
        if not Path(args.run).is_dir():
            raise UserError(f"run {args.run} does not exist (train one with `artextract train`)")
        embedder = RunEmbedder(args.run)
        try:
            embedder.run  # load now: a bad run should fail before any work
        except RuntimeError as exc:
            raise UserError(str(exc)) from None
    else:
        # open_clip: the text tower's vectors live in the uncentred space, so text search needs it uncentred
        center = not args.no_center and not str(args.backbone).startswith("open_clip:")
        embedder = BackboneEmbedder(args.backbone, pretrained=pretrained(args), weights=args.weights,
                                    image_size=args.image_size, center=center)
    from .. import distributed

    rank, world = distributed.init()  # under torchrun every rank embeds its share; rank 0 builds the index
    t0 = time.time()
    index, summary = index_catalog(cat, embedder, args.out, index_type=args.index_type, rebuild=args.rebuild,
                                   progress=not args.no_progress, nlist=args.nlist, nprobe=args.nprobe,
                                   hnsw_m=args.hnsw_m, ef_search=args.ef_search, pq_m=args.pq_m,
                                   rank=rank, world=world)
    distributed.shutdown(world)
    if index is None:  # a rank other than 0: its share is in the feature store
        return 0
    verb = "built" if summary["created"] else "updated"
    logger.info(f"{verb} {args.out}: {summary['added']:,} painting(s) added, {summary['already']:,} already indexed, "
                f"{len(summary['skipped']):,} skipped ({time.time() - t0:.1f}s)")
    logger.info(index.describe())
    if len(summary["skipped"]):
        logger.warning(summary["skipped"].summary())
    if args.faces:
        from .face import face_index
        fi = face_index(index, progress=not args.no_progress)
        logger.info(f"faces: {fi.with_face:,} of {len(index):,} paintings have at least one detected face")
    if args.poses:
        from .pose import pose_index
        pi = pose_index(index, progress=not args.no_progress)
        logger.info(f"poses: {pi.with_body:,} of {len(index):,} paintings have a detected body")
    return 0


# ---------------------------------------------------------------------- similar
def _labels(index, catalog_arg) -> dict[str, dict]:
    """id -> {task: label} from the catalogue (--catalog, else the one the index was built from)."""
    from ..data.catalog import Catalog, CatalogError

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


def _rows_all(index, args, catalog_arg):
    """(query_id, rank, neighbor_id, score) rows for every indexed painting, and a note on the left-out."""
    left_out: list[str] = []
    if args.mode == "image":
        from tqdm.auto import tqdm

        # batches of queries, so a 10M-painting index streams its rows in bounded memory
        with tqdm(total=len(index), desc="similar --all", unit="painting", file=sys.stderr,
                  disable=args.no_progress) as bar:
            for qp, scores, pos in index.search_all(args.k):
                for q, srow, prow in zip(qp, scores, pos):
                    for r, (s, p) in enumerate(((s, p) for s, p in zip(srow, prow) if p >= 0), 1):
                        yield index.ids[q], r, index.ids[p], float(s)
                bar.update(len(qp))
    elif args.mode == "face":
        from .face import face_index
        fi = face_index(index, catalog_arg, progress=not args.no_progress)
        for k_ in index.ids:
            faces = fi.faces_of(k_)
            if not faces:
                left_out.append(k_)
                continue
            for r in fi.search(faces, args.k, exclude=k_):
                yield k_, r["rank"], r["id"], r["score"]
    else:
        from .pose import pose_index
        pi = pose_index(index, catalog_arg, progress=not args.no_progress)
        for k_ in index.ids:
            kp, size = pi.keypoints_of(k_)
            if kp is None:
                left_out.append(k_)
                continue
            for r in pi.search(kp, size, args.k, exclude=k_):
                yield k_, r["rank"], r["id"], r["score"]
    if left_out:
        what = "face" if args.mode == "face" else "body"
        logger.warning(f"{len(left_out):,} of {len(index):,} paintings have no detected {what} and have no rows"
             f" (e.g. {', '.join(left_out[:3])})")


def _cmd_similar(args) -> int:
    from .api import draw_result, find_similar
    from .index import EmbeddingIndex

    index = EmbeddingIndex.load(args.index)
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
        from .api import text_search_unavailable

        why = text_search_unavailable(index)  # before any work, in words
        if why is not None:
            raise UserError(why)
    if args.all:
        rows = _rows_all(index, args, catalog_arg)
        if args.json:
            grouped: dict[str, list] = {}
            for q, r, n, s in rows:
                grouped.setdefault(q, []).append({"id": n, "score": round(s, 6), "rank": r})
            json.dump([{"query_id": q, "results": v} for q, v in grouped.items()], sys.stdout)
            print()
            return 0
        f = open(args.out, "w", newline="") if args.out else sys.stdout
        try:
            w = csv.writer(f)
            w.writerow(["query_id", "rank", "neighbor_id", "score"])
            n = 0
            for q, r, nb, s in rows:
                w.writerow([q, r, nb, f"{s:.6f}"])
                n += 1
        finally:
            if args.out:
                f.close()
        if args.out:
            logger.info(f"wrote {n:,} rows to {args.out}")
        return 0
    res = find_similar(index, image=args.image, id=args.id, text=args.text, k=args.k, mode=args.mode,
                       catalog=catalog_arg, progress=not args.no_progress)
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
                w.writerow([qid, r["rank"], r["id"], f"{r['score']:.6f}"])
        logger.info(f"wrote {len(res['results'])} rows to {args.out}" + (f"; {res['message']}" if res["message"] else ""))
    else:
        _print_result(res, _labels(index, catalog_arg))
    return 0


# ---------------------------------------------------------------------- evaluate-retrieval
def _cmd_evaluate(args) -> int:
    from ..data.catalog import Catalog
    from .evaluate import evaluate_index, format_evaluation
    from .index import EmbeddingIndex

    index = EmbeddingIndex.load(args.index)
    if args.nprobe or args.ef_search:
        index.set_search_params(nprobe=args.nprobe, ef_search=args.ef_search)
    cat = Catalog.load(args.catalog)
    res = evaluate_index(index, cat, args.relevance, k=args.k)
    print(json.dumps(res, indent=2) if args.json else format_evaluation(res))
    return 0


def register(sub) -> None:
    """Add ``index``, ``similar`` and ``evaluate-retrieval``.

    Parameters
    ----------
    sub : argparse subparsers action

    Returns
    -------
    None
    """
    from .api import MAX_TEXT_CHARS
    from .index import HNSW_EF_SEARCH, HNSW_M, INDEX_TYPES, IVF_MIN_NPROBE, PQ_MAX_CODE_BYTES

    p = add_command(
        sub, "index", "embed a catalogue's paintings into a similarity index (FAISS)",
        "artextract index --catalog wikiart.parquet --backbone mobilenet_v2 --out wikiart.index",
        description="Embed every painting of a catalogue (an ImageNet backbone's pooled features, or a trained "
        "run's multi-task embedding) as an L2-normalised vector and store them with their ids in a FAISS index "
        "directory. Run it again on a grown catalogue to add only the new paintings.")
    src = p.add_mutually_exclusive_group()
    add_backbone_options(p, backbone_group=src,
                         backbone_help=f"backbone whose pooled features are the embedding (default {DEFAULT_BACKBONE})")
    src.add_argument("--run", default=None, help="trained run directory whose embedding to use instead")
    p.add_argument("--catalog", required=True, help="catalogue whose paintings are indexed")
    p.add_argument("--out", required=True, help="index directory (created, or updated if it exists)")
    p.add_argument("--index-type", choices=INDEX_TYPES, default="flat",
                   help="flat: exact (default); ivf / hnsw: approximate, for large collections; "
                        "ivfpq: compressed (at most 64 bytes per painting), for 10M+ paintings")
    p.add_argument("--image-size", type=int, default=None, help="backbone input size (default: its own)")
    p.add_argument("--no-center", action="store_true",
                   help="do not centre backbone features on the collection mean before normalising (open_clip "
                        "backbones are never centred, so that --text search ranks in the CLIP space)")
    p.add_argument("--nlist", type=int, default=None, help="IVF cells (default about sqrt(N))")
    p.add_argument("--nprobe", type=int, default=None,
                   help=f"IVF cells probed per query (default nlist/8, at least {IVF_MIN_NPROBE})")
    p.add_argument("--hnsw-m", type=int, default=HNSW_M, help=f"HNSW links per node (default {HNSW_M})")
    p.add_argument("--pq-m", type=int, default=None,
                   help=f"ivfpq: code bytes per painting (default: dimension/4, at most {PQ_MAX_CODE_BYTES})")
    p.add_argument("--ef-search", type=int, default=None,
                   help="HNSW search breadth (default by size: {} up to 30k vectors, {} up to 300k, then {})".format(
                       *HNSW_EF_SEARCH))
    p.add_argument("--rebuild", action="store_true", help="replace an existing index instead of adding to it")
    p.add_argument("--faces", action="store_true", help="also detect faces now (otherwise on first face search)")
    p.add_argument("--poses", action="store_true", help="also find body poses now (otherwise on first pose search)")
    add_cache_option(p)
    add_progress_option(p)
    p.set_defaults(func=_cmd_index)

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
    p.add_argument("-k", type=int, default=DEFAULT_K, help=f"neighbours per query (default {DEFAULT_K})")
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

    p = add_command(
        sub, "evaluate-retrieval", "precision@k, recall@k and mAP@k of an index, relevance = same label",
        "artextract evaluate-retrieval --index wikiart.index --catalog wikiart.parquet --relevance style -k 10",
        description="Every painting labelled for the task queries the index for its k nearest labelled "
        "paintings; a neighbour is relevant when it has the same label. Prints P@k, R@k, mAP@k and P@k "
        "per class.")
    p.add_argument("--index", required=True, help="index folder (from `artextract index`)")
    p.add_argument("--catalog", required=True, help="catalogue with the labels of the relevance task")
    p.add_argument("--relevance", required=True, help="label task: style, artist, genre, timeframe, ...")
    p.add_argument("-k", type=int, default=DEFAULT_K, help=f"neighbours per query (default {DEFAULT_K})")
    add_json_option(p, "the scores")
    p.add_argument("--nprobe", type=int, default=None, help="IVF: cells probed")
    p.add_argument("--ef-search", type=int, default=None, help="HNSW: search breadth")
    p.set_defaults(func=_cmd_evaluate)

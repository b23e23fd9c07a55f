"""``artextract index``: embed a catalogue's paintings into a similarity index
(:mod:`artextract.similarity.index`)."""
from __future__ import annotations

import logging
import time

from ..base import add_command
from ..options import DEFAULT_BACKBONE, add_backbone_options, add_cache_option, add_progress_option, pretrained

logger = logging.getLogger(__name__)


def _embedder(args):
    """The embedder ``--run`` or ``--backbone`` asks for; a bad run fails here, before any work."""
    from ...artefacts import Run
    from ...similarity.embed import BackboneEmbedder, RunEmbedder

    if args.run:
        return RunEmbedder(args.run, run=Run(args.run).load())  # loaded now: a bad run fails before any work
    # open_clip: the text tower's vectors live in the uncentred space, so text search needs it uncentred
    center = not args.no_center and not str(args.backbone).startswith("open_clip:")
    return BackboneEmbedder(args.backbone, pretrained=pretrained(args), weights=args.weights,
                            image_size=args.image_size, center=center)


def _cmd_index(args) -> int:
    from ...artefacts import Index
    from ...data.catalog import Catalog
    from ...job import distributed_job

    cat = Catalog.load(args.catalog, cache_dir=args.cache)
    embedder = _embedder(args)
    t0 = time.time()
    built = Index(args.out, cat, embedder, index_type=args.index_type, rebuild=args.rebuild, nlist=args.nlist,
                  nprobe=args.nprobe, hnsw_m=args.hnsw_m, ef_search=args.ef_search, pq_m=args.pq_m)
    # under torchrun every rank embeds its share; rank 0 builds the index
    with distributed_job() as job:
        index = built.ensure(job)
    if not job.is_main:  # its share is in the feature store
        return 0
    summary = built.summary
    verb = "built" if summary["created"] else "updated"
    logger.info(f"{verb} {args.out}: {summary['added']:,} painting(s) added, {summary['already']:,} already indexed, "
                f"{len(summary['skipped']):,} skipped ({time.time() - t0:.1f}s)")
    logger.info(index.describe())
    if len(summary["skipped"]):
        logger.warning(summary["skipped"].summary())
    if args.faces:
        from ...similarity.face import face_index
        fi = face_index(index)
        logger.info(f"faces: {fi.with_face:,} of {len(index):,} paintings have at least one detected face")
    if args.poses:
        from ...similarity.pose import pose_index
        pi = pose_index(index)
        logger.info(f"poses: {pi.with_body:,} of {len(index):,} paintings have a detected body")
    return 0


def register(sub) -> None:
    """Add ``index`` to ``sub``, the ``artextract`` sub-commands."""
    from ...similarity.index import HNSW_EF_SEARCH, HNSW_M, INDEX_TYPES, IVF_MIN_NPROBE, PQ_MAX_CODE_BYTES

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

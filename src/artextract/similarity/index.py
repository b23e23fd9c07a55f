"""A FAISS index of L2-normalised painting embeddings, stored with the painting ids.

Inner product on unit vectors is cosine similarity; every index type searches by inner product:

=======  =======================================================  ==============================
type     FAISS                                                    for
=======  =======================================================  ==============================
flat     ``IndexFlatIP``: exact                                   up to a few 100k paintings
ivf      ``IndexIVFFlat`` (IP): k-means cells, ``nprobe`` probed  large collections, fast build
hnsw     ``IndexHNSWFlat`` (IP): graph search, ``ef_search``      large collections, fastest query
ivfpq    ``OPQ`` + ``IndexIVFPQ`` (IP): compressed codes,         10M+ paintings in little memory
         at most 64 bytes per vector (``pq_m`` code bytes +
         8 id + 8 direct-map), ``nprobe`` cells probed
=======  =======================================================  ==============================

The defaults of ``nprobe`` and ``ef_search`` keep recall@10 against exact search at 0.95 or more
(``benchmarks/bench_similarity.py`` measures it up to 1M vectors).

An index directory holds::

    index.faiss   the FAISS index (vectors are recovered from it; IVF keeps a direct map)
    ids.json      {"ids": [...], "paths": [...]}: painting id and absolute image path per vector
    meta.json     index type and parameters, how the embeddings were made, catalogue(s), count
    mean.npy      centring vector of a backbone embedding (when used)
    faces/ poses/ face and pose descriptors, computed lazily (see face.py, pose.py)

:meth:`EmbeddingIndex.save` writes ``index.faiss``, ``ids.json`` and ``mean.npy`` first and ``meta.json``
last, each atomically: ``meta.json`` with the count that the others must match marks a finished save.
:func:`index_status` checks that (a folder left by a killed ``artextract index`` is incomplete).

Building or updating an index folder holds its lock (:mod:`artextract.data.lock`); under
``torchrun`` every rank computes its share of the backbone features first and rank 0 builds the index.

Adding paintings to a saved index (:meth:`EmbeddingIndex.add`, ``artextract index`` on an existing
``--out``) embeds and appends only the ones it does not hold yet.
"""
from __future__ import annotations

import logging
import datetime as _dt
import json
import math
import os
import threading
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import numpy as np

from ..errors import ArtExtractError
from ..job import Job, resolve
from ..utils import atomic_path, atomic_write_text, quiet_faiss
from .embed import Embedder, PrecomputedEmbedder, embedder_from_meta, l2_normalize

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
INDEX_TYPES = ("flat", "ivf", "hnsw", "ivfpq")
from ..workspace import IDS_FILE, INDEX_FILE, MEAN_FILE, META_FILE  # noqa: E402,F401  (the path rules)
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = (128, 256, 512)  # up to 30k, up to 300k, more vectors (see default_ef_search)
IVF_MIN_NPROBE = 32
IVF_TRAIN_POINTS_PER_CELL = 64   # k-means on at most 64 vectors per cell, 10 iterations: fast enough at 1M
IVF_TRAIN_ITERATIONS = 10
PQ_MAX_CODE_BYTES = 48           # PQ code bytes per vector: with the 8-byte id and direct-map entry, 64 bytes
PQ_MIN_TRAIN = 1_000             # product quantisers (256 centroids per sub-space) need this many vectors
PQ_TRAIN_MAX = 65_536            # k-means and PQ train on at most this many of the vectors
OPQ_TRAIN_MAX = 32_768           # the OPQ rotation on at most this many, for OPQ_ITERATIONS rounds
OPQ_ITERATIONS = 8


class SimilarityError(ArtExtractError, ValueError):
    """A similarity request does not fit the index (unknown id, wrong index, bad option)."""


def default_nlist(n: int) -> int:
    """About sqrt(n) cells, with at least 39 training vectors per cell (FAISS's own minimum)."""
    return int(max(1, min(round(math.sqrt(max(n, 1))), n // 39)))


def default_ef_search(n: int) -> int:
    """HNSW search breadth that keeps recall@10 >= 0.95 on embedding-like data as the graph grows
    (measured by benchmarks/bench_similarity.py: efSearch 256 gives 0.99 at 100k but 0.91 at 1M)."""
    return HNSW_EF_SEARCH[0] if n <= 30_000 else HNSW_EF_SEARCH[1] if n <= 300_000 else HNSW_EF_SEARCH[2]


def default_pq_m(d: int) -> int:
    """PQ sub-quantisers (one code byte each): the dimension split into parts of at least 4 dims, at most
    :data:`PQ_MAX_CODE_BYTES`, a multiple of 4 (what FAISS's optimised PQ kernels like)."""
    return int(max(4, min(PQ_MAX_CODE_BYTES, (d // 4) // 4 * 4)))


def default_nprobe(nlist: int) -> int:
    """Cells probed per query: an eighth of them, at least 32 (or all when fewer)."""
    return int(min(nlist, max(IVF_MIN_NPROBE, round(nlist / 8))))


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _faiss():
    quiet_faiss()
    import faiss

    return faiss


class EmbeddingIndex:
    """Unit vectors of paintings in a FAISS index, with their ids, image paths and provenance."""

    def __init__(self, dim: int, index_type: str = "flat", *, embedder: Embedder | None = None,
                 nlist: int | None = None, nprobe: int | None = None, hnsw_m: int = HNSW_M,
                 ef_construction: int = HNSW_EF_CONSTRUCTION, ef_search: int | None = None,
                 pq_m: int | None = None):
        if index_type not in INDEX_TYPES:
            raise SimilarityError(f"index type must be one of {', '.join(INDEX_TYPES)}, not {index_type!r}")
        self.dim = int(dim)
        self.index_type = index_type
        self.embedder: Embedder = embedder or PrecomputedEmbedder()
        self.params = {"nlist": nlist, "nprobe": nprobe, "hnsw_m": int(hnsw_m),
                       "ef_construction": int(ef_construction), "ef_search": ef_search, "pq_m": pq_m}
        self.ids: list[str] = []
        self.paths: list[str | None] = []
        self._pos: dict[str, int] = {}
        self.index = None  # the FAISS index; IVF is created when it first sees vectors to train on
        self.catalogs: list[str] = []
        self.created = _now()
        self.updated = self.created
        self.path: Path | None = None
        self._lock = threading.RLock()
        self._aux: dict = {}  # face/pose stores and models, opened lazily by face.py / pose.py
        if index_type not in ("ivf", "ivfpq"):
            self._create(None)

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, ids: Sequence[str], vectors: np.ndarray, *, index_type: str = "flat",
              paths: Sequence[str | os.PathLike | None] | None = None, embedder: Embedder | None = None,
              catalog: str | os.PathLike | None = None, **params) -> "EmbeddingIndex":
        vectors = np.asarray(vectors, np.float32)
        if vectors.ndim != 2 or len(vectors) != len(ids):
            raise SimilarityError(f"need one vector per id; got {len(ids)} ids and an array of shape {vectors.shape}")
        if not len(ids):
            raise SimilarityError("no painting could be embedded; nothing to index")
        idx = cls(vectors.shape[1], index_type, embedder=embedder, **params)
        idx.add(ids, vectors, paths=paths, catalog=catalog)
        return idx

    def _create(self, train: np.ndarray | None) -> None:
        faiss = _faiss()
        d, p = self.dim, self.params
        if self.index_type == "flat":
            self.index = faiss.IndexFlatIP(d)
        elif self.index_type == "hnsw":
            self.index = faiss.IndexHNSWFlat(d, p["hnsw_m"], faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = p["ef_construction"]
        elif self.index_type == "ivfpq":
            self.index = self._create_ivfpq(train)
        else:
            n = len(train)
            p["nlist"] = int(p["nlist"] or default_nlist(n))
            if p["nlist"] > n:
                raise SimilarityError(f"IVF with {p['nlist']} cells needs at least that many vectors; got {n}")
            p["nprobe"] = int(p["nprobe"] or default_nprobe(p["nlist"]))
            p["trained_on"] = int(n)
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, p["nlist"], faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = 1234
            index.cp.max_points_per_centroid = IVF_TRAIN_POINTS_PER_CELL
            index.cp.niter = IVF_TRAIN_ITERATIONS
            index.train(train)
            index.make_direct_map()  # lets vectors be recovered by position
            self.index = index
            self._keep = quantizer  # the IVF index does not own a Python-made quantizer
        self.set_search_params()

    def _create_ivfpq(self, train: np.ndarray):
        """OPQ rotation + IVF cells + PQ codes, trained on (a sample of) ``train``."""
        faiss = _faiss()
        d, p, n = self.dim, self.params, len(train)
        if n < PQ_MIN_TRAIN:
            raise SimilarityError(f"an ivfpq index needs at least {PQ_MIN_TRAIN:,} vectors to train its product "
                                  f"quantiser; got {n:,} (use --index-type flat or hnsw for a small collection)")
        m = int(p.get("pq_m") or default_pq_m(d))
        if m > PQ_MAX_CODE_BYTES:
            raise SimilarityError(f"pq_m {m} would take more than 64 bytes per vector; use at most {PQ_MAX_CODE_BYTES}")
        d_out = m * max(1, d // m)  # OPQ rotates into a dimension the m sub-spaces divide
        p["pq_m"], p["opq_dim"] = m, d_out
        p["nlist"] = int(p["nlist"] or default_nlist(n))
        p["nprobe"] = int(p["nprobe"] or default_nprobe(p["nlist"]))
        p["trained_on"] = int(n)
        # "np": no polysemous training (FAISS's default for PQ in a factory string): it only reorders the codes
        # for Hamming filtering, which search never turns on (polysemous_ht 0), and takes most of the build time
        index = faiss.index_factory(d, f"OPQ{m}_{d_out},IVF{p['nlist']},PQ{m}np", faiss.METRIC_INNER_PRODUCT)
        opq = faiss.downcast_VectorTransform(index.chain.at(0))
        opq.niter, opq.max_train_points = OPQ_ITERATIONS, OPQ_TRAIN_MAX
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.seed = 1234
        ivf.cp.max_points_per_centroid = IVF_TRAIN_POINTS_PER_CELL
        ivf.cp.niter = IVF_TRAIN_ITERATIONS
        rng = np.random.default_rng(1234)
        sample = train if n <= PQ_TRAIN_MAX else train[np.sort(rng.choice(n, PQ_TRAIN_MAX, replace=False))]
        index.train(np.ascontiguousarray(sample))
        ivf.make_direct_map()  # lets vectors be recovered (decoded) by position
        return index

    def _ivf(self):
        """The IVF part of an ivf or ivfpq index (inside the OPQ transform for ivfpq)."""
        return _faiss().extract_index_ivf(self.index) if self.index_type == "ivfpq" else self.index

    def bytes_per_vector(self) -> float:
        """Memory of the FAISS index per stored vector (codes, ids, direct map), as serialised."""
        faiss = _faiss()
        if self.index is None or not len(self):
            return 0.0
        if self.index_type == "ivfpq":
            ivf = self._ivf()
            return float(ivf.code_size + 8 + 8)  # PQ code, inverted-list id, direct-map entry
        return float(len(faiss.serialize_index(self.index))) / len(self)

    def effective_params(self) -> dict:
        """The search parameters in force (``ef_search`` None in ``params`` means "by size")."""
        p = dict(self.params)
        if self.index_type == "hnsw" and p["ef_search"] is None:
            p["ef_search"] = default_ef_search(len(self))
        return p

    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Change the speed/recall trade-off of approximate search (kept when saved). Without an
        explicit ``ef_search``, HNSW's grows with the collection (:func:`default_ef_search`)."""
        if nprobe is not None:
            self.params["nprobe"] = int(nprobe)
        if ef_search is not None:
            self.params["ef_search"] = int(ef_search)
        if self.index is None:
            return
        if self.index_type in ("ivf", "ivfpq"):
            self._ivf().nprobe = int(min(self.params["nprobe"], self.params["nlist"]))
        elif self.index_type == "hnsw":
            self.index.hnsw.efSearch = int(self.effective_params()["ef_search"])

    # ------------------------------------------------------------------ contents
    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._pos

    def position(self, item_id: str) -> int:
        try:
            return self._pos[item_id]
        except KeyError:
            raise SimilarityError(self._missing_message(item_id)) from None

    def _missing_message(self, item_id: str) -> str:
        where = f" built from {self.catalogs[0]}" if self.catalogs else ""
        example = f"; ids look like {self.ids[0]!r}" if self.ids else ""
        return (f"painting {item_id!r} is not in the index{where} ({len(self):,} paintings{example}); "
                "add it with `artextract index --catalog CATALOG --out INDEX`")

    def image_path(self, item_id: str) -> str | None:
        return self.paths[self.position(item_id)]

    def vectors(self, positions: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """The stored unit vectors (all, or at ``positions``)."""
        if self.index is None or not len(self):
            return np.zeros((0, self.dim), np.float32)
        if positions is None:
            return self.index.reconstruct_n(0, len(self))
        pos = np.asarray(positions, dtype=np.int64)
        return self.index.reconstruct_batch(pos) if len(pos) else np.zeros((0, self.dim), np.float32)

    def vector(self, item_id: str) -> np.ndarray:
        return self.vectors([self.position(item_id)])[0]

    # ------------------------------------------------------------------ adding
    def add(self, ids: Sequence[str], vectors: np.ndarray, *, paths: Sequence | None = None,
            catalog: str | os.PathLike | None = None) -> int:
        """Append paintings not in the index yet (others are left as they are); returns how many
        were added. Vectors are L2-normalised here if they are not already."""
        vectors = np.asarray(vectors, np.float32)
        if len(ids) and (vectors.ndim != 2 or vectors.shape[1] != self.dim):
            raise SimilarityError(f"this index holds {self.dim}-d vectors; got shape {vectors.shape}. Were the new "
                                  "paintings embedded with another model? Rebuild the index with --rebuild")
        paths = list(paths) if paths is not None else [None] * len(ids)
        keep, seen = [], set()
        for j, k in enumerate(ids):
            k = str(k)
            if k not in self._pos and k not in seen:
                keep.append(j)
                seen.add(k)
        if catalog is not None:
            c = str(Path(catalog).resolve())
            if c not in self.catalogs:
                self.catalogs.append(c)
        if not keep:
            return 0
        vecs = l2_normalize(vectors[keep])
        with self._lock:
            if self.index is None:
                self._create(vecs)
            self.index.add(vecs)
            for j in keep:
                k = str(ids[j])
                self._pos[k] = len(self.ids)
                self.ids.append(k)
                p = paths[j]
                self.paths.append(str(Path(p).resolve()) if p is not None else None)
            self.updated = _now()
            self.set_search_params()  # HNSW's default breadth follows the size
        return len(keep)

    # ------------------------------------------------------------------ searching
    def search_vectors(self, vectors: np.ndarray, k: int = 10, *, exclude: Sequence[int] | np.ndarray | None = None,
                       subset: Sequence[int] | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, positions) per query vector, best first; -1 / -inf pads short rows.

        ``exclude``: one position per query to leave out (the query painting itself; -1 for none).
        ``subset``: search only among these positions (e.g. the paintings that have a label)."""
        q = l2_normalize(vectors)
        n = len(q)
        k = int(k)
        if k < 1:
            raise SimilarityError("k must be at least 1")
        if not len(self) or self.index is None:
            return np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64)
        extra = 1 if exclude is not None else 0
        kk = min(k + extra, len(self))
        params = None
        if subset is not None:
            faiss = _faiss()
            sel = faiss.IDSelectorBatch(np.asarray(subset, dtype=np.int64))
            if self.index_type == "ivf":
                params = faiss.SearchParametersIVF(sel=sel, nprobe=self.index.nprobe)
            elif self.index_type == "ivfpq":
                params = faiss.SearchParametersPreTransform(
                    index_params=faiss.SearchParametersIVF(sel=sel, nprobe=self._ivf().nprobe))
                self._keep_inner = params.index_params
            elif self.index_type == "hnsw":
                params = faiss.SearchParametersHNSW(sel=sel, efSearch=self.index.hnsw.efSearch)
            else:
                params = faiss.SearchParameters(sel=sel)
            self._keep_sel = sel
        with self._lock:
            scores, pos = self.index.search(q, kk, params=params) if params is not None else self.index.search(q, kk)
        pos = pos.astype(np.int64)
        scores = scores.astype(np.float32)
        if exclude is not None:
            ex = np.asarray(exclude, dtype=np.int64).reshape(-1, 1)
            drop = pos == ex
            # rows that did not contain the query: drop the last instead, to keep k
            no_self = ~drop.any(1)
            drop[no_self, -1] = True
            keep = ~drop
            pos = pos[keep].reshape(n, kk - 1)
            scores = scores[keep].reshape(n, kk - 1)
        if pos.shape[1] < k:
            pad = k - pos.shape[1]
            pos = np.pad(pos, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        scores[pos < 0] = -np.inf
        return scores, pos

    def _results(self, scores: np.ndarray, pos: np.ndarray) -> list[dict]:
        return [{"id": self.ids[p], "score": float(s), "rank": r}
                for r, (s, p) in enumerate(((s, p) for s, p in zip(scores, pos) if p >= 0), 1)]

    def search(self, vector: np.ndarray, k: int = 10) -> list[dict]:
        """Neighbours of one query vector: ``[{"id", "score", "rank"}]``."""
        s, p = self.search_vectors(np.asarray(vector, np.float32).reshape(1, -1), k)
        return self._results(s[0], p[0])

    def search_id(self, item_id: str, k: int = 10) -> list[dict]:
        """Neighbours of an indexed painting; it never returns itself."""
        i = self.position(item_id)
        s, p = self.search_vectors(self.vectors([i]), k, exclude=[i])
        return self._results(s[0], p[0])

    def search_all(self, k: int = 10, batch: int = 2048, subset: Sequence[int] | None = None
                   ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(query positions, scores, neighbour positions) for every indexed painting (or ``subset``),
        each excluding itself, in batches."""
        positions = np.arange(len(self)) if subset is None else np.asarray(subset, np.int64)
        for s in range(0, len(positions), batch):
            qp = positions[s:s + batch]
            scores, pos = self.search_vectors(self.vectors(qp), k, exclude=qp,
                                              subset=None if subset is None else positions)
            yield qp, scores, pos

    def embed_images(self, images: Sequence) -> np.ndarray:
        """Embed new images (PIL images, paths or bytes) with the model the index was built from."""
        try:
            return self.embedder.embed_images(list(images))
        except RuntimeError as exc:
            if "cannot embed" in str(exc) or "needs artextract" in str(exc):
                raise SimilarityError(str(exc)) from None
            raise

    # ------------------------------------------------------------------ persistence
    @property
    def meta(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "index_type": self.index_type,
            "dim": self.dim,
            "count": len(self),
            "params": dict(self.params),
            "embedding": self.embedder.to_meta(),
            "catalogs": list(self.catalogs),
            "created": self.created,
            "updated": self.updated,
            "faiss_version": _faiss().__version__,
        }

    def describe(self) -> str:
        p = self.effective_params()
        extra = (f", nlist {p['nlist']}, nprobe {p['nprobe']}" if self.index_type == "ivf"
                 else f", OPQ{p['pq_m']}_{p['opq_dim']}, nlist {p['nlist']}, PQ{p['pq_m']}, nprobe {p['nprobe']}, "
                      f"{self.bytes_per_vector():.0f} bytes/vector" if self.index_type == "ivfpq"
                 else f", M {p['hnsw_m']}, efSearch {p['ef_search']}" if self.index_type == "hnsw" else "")
        return f"{self.index_type} index of {len(self):,} paintings, {self.dim}-d{extra}; {self.embedder.describe()}"

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the index to ``directory`` (created if needed). Each file is replaced atomically;
        ``meta.json`` goes last and records the count that :meth:`load` checks."""
        faiss = _faiss()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        if d.is_file():
            raise SimilarityError(f"{d} is a file; an index is a directory")
        with self._lock:
            if self.index is None:
                raise SimilarityError("the index is empty; nothing to save")
            with atomic_path(d / INDEX_FILE) as tmp:
                faiss.write_index(self.index, str(tmp))
            _write_json(d / IDS_FILE, {"ids": self.ids, "paths": self.paths})
            mean = getattr(self.embedder, "mean", None)
            if mean is not None:
                with atomic_path(d / MEAN_FILE, suffix=".tmp.npy") as tmp:
                    np.save(tmp, np.asarray(mean, np.float32))
            _write_json(d / META_FILE, self.meta, indent=2)
        self.path = d
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "EmbeddingIndex":
        faiss = _faiss()
        d = Path(directory)
        if not d.exists():
            raise SimilarityError(f"index {d} does not exist; build one with `artextract index --catalog CATALOG --out {d}`")
        if not (d / META_FILE).is_file() or not (d / INDEX_FILE).is_file():
            raise SimilarityError(f"{d} is not a similarity index (no {META_FILE} / {INDEX_FILE}); "
                                  "build one with `artextract index`")
        meta = json.loads((d / META_FILE).read_text())
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise SimilarityError(f"{d} was written by a newer artextract (format {meta['format_version']})")
        ids = json.loads((d / IDS_FILE).read_text())
        mean = np.load(d / MEAN_FILE) if (d / MEAN_FILE).is_file() else None
        embedder = embedder_from_meta(meta["embedding"], mean)
        p = meta.get("params", {})
        idx = cls(meta["dim"], meta["index_type"], embedder=embedder, nlist=p.get("nlist"), nprobe=p.get("nprobe"),
                  hnsw_m=p.get("hnsw_m", HNSW_M), ef_construction=p.get("ef_construction", HNSW_EF_CONSTRUCTION),
                  ef_search=p.get("ef_search"))
        idx.params.update(p)
        idx.index = faiss.read_index(str(d / INDEX_FILE))
        idx.ids = [str(k) for k in ids["ids"]]
        idx.paths = list(ids.get("paths") or [None] * len(idx.ids))
        idx._pos = {k: i for i, k in enumerate(idx.ids)}
        idx.catalogs = list(meta.get("catalogs", []))
        idx.created, idx.updated = meta.get("created", ""), meta.get("updated", "")
        if not (idx.index.ntotal == len(idx.ids) == meta.get("count", len(idx.ids)) == len(idx.paths)):
            raise SimilarityError(
                f"index {d} is inconsistent ({idx.index.ntotal} vectors, {len(idx.ids)} ids, meta says "
                f"{meta.get('count')}): a save was interrupted. Rebuild it with `artextract index ... --rebuild`")
        idx.set_search_params()
        idx.path = d
        return idx


class IndexStatus(NamedTuple):
    """What :func:`index_status` found in an index folder."""

    exists: bool     # the folder exists
    complete: bool   # a finished save: EmbeddingIndex.load will read it
    reason: str      # what is missing or wrong ("" when complete)


def index_status(directory: str | os.PathLike) -> IndexStatus:
    """Whether ``directory`` holds a whole index, as :meth:`EmbeddingIndex.save` leaves it when it finishes.

    ``meta.json`` is written last, with the count of paintings; the folder is complete when it, the
    FAISS index and ``ids.json`` are there and readable and hold that many paintings (and ``mean.npy``
    when the embedding is centred). A build or update killed part way fails one of these. Cheap: the
    FAISS index is memory-mapped, not read.

    Parameters
    ----------
    directory : str or PathLike
        The index folder.

    Returns
    -------
    IndexStatus
        ``(exists, complete, reason)``.
    """
    d = Path(directory)
    if not d.exists():
        return IndexStatus(False, False, "it does not exist")
    if not d.is_dir():
        return IndexStatus(True, False, "it is a file, not an index folder")

    def bad(reason: str) -> IndexStatus:
        return IndexStatus(True, False, reason)

    if not (d / META_FILE).is_file():
        return bad(f"it has no {META_FILE} (written last: the build did not finish)")
    try:
        meta = json.loads((d / META_FILE).read_text())
        count = int(meta["count"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return bad(f"its {META_FILE} cannot be read ({exc})")
    if not (d / INDEX_FILE).is_file():
        return bad(f"it has no {INDEX_FILE}")
    if not (d / IDS_FILE).is_file():
        return bad(f"it has no {IDS_FILE}")
    try:
        ids = json.loads((d / IDS_FILE).read_text())
        n_ids, n_paths = len(ids["ids"]), len(ids.get("paths") or ids["ids"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return bad(f"its {IDS_FILE} cannot be read ({exc})")
    faiss = _faiss()
    try:
        ntotal = int(faiss.read_index(str(d / INDEX_FILE), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY).ntotal)
    except Exception as exc:  # FAISS raises RuntimeError for a truncated or foreign file
        return bad(f"its {INDEX_FILE} cannot be read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
    if not ntotal == n_ids == n_paths == count:
        return bad(f"its files disagree ({ntotal} vectors, {n_ids} ids, {META_FILE} says {count}): "
                   "a save was interrupted")
    if (meta.get("embedding") or {}).get("center") and not (d / MEAN_FILE).is_file():
        return bad(f"it has no {MEAN_FILE} (its embedding is centred)")
    return IndexStatus(True, True, "")


def is_complete(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a whole index (see :func:`index_status`)."""
    return index_status(directory).complete


def _write_json(path: Path, obj, indent: int | None = None) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent))


# ---------------------------------------------------------------------- catalogue -> index
def index_catalog(catalog, embedder: Embedder, out: str | os.PathLike | None = None, *,
                  index_type: str = "flat", rebuild: bool = False, job: Job | None = None,
                  **params) -> tuple[EmbeddingIndex | None, dict | None]:
    """Build an index of ``catalog`` at ``out``, or add the catalogue's new paintings to the index
    already there, holding the index folder's lock.

    Parameters
    ----------
    catalog : Catalog
        The paintings to index.
    embedder : Embedder
        How paintings become vectors (a backbone or a trained run).
    out : path, optional
        The index folder (kept in memory only when None).
    index_type : {"flat", "ivf", "hnsw", "ivfpq"}
        The FAISS index kind.
    job : Job, optional
        The job (default: the current one). Under torchrun every rank computes its share of the backbone
        features, then rank 0 builds the index; the other ranks return ``(None, None)``.

    Returns
    -------
    tuple
        The index and a summary ``{"added", "already", "skipped", "created"}``.
    """
    from ..data.lock import job_lock

    job = resolve(job)
    out_p = Path(out) if out is not None else None
    if job.world > 1:
        embedder.prepare_features(catalog, job=job)
        if not job.is_main:
            job.barrier()
            return None, None
    solo = job.replace(world=1)  # rank 0 builds the index alone while the other ranks wait
    try:
        if out_p is None:
            return _index_catalog(catalog, embedder, None, index_type, rebuild, solo, params)
        with job_lock(out_p, "index", 0):
            return _index_catalog(catalog, embedder, out_p, index_type, rebuild, solo, params)
    finally:
        job.barrier()


def _index_catalog(catalog, embedder: Embedder, out_p: Path | None, index_type: str, rebuild: bool,
                   job: Job, params: dict) -> tuple[EmbeddingIndex, dict]:
    from ..data.images import SkipReport

    existing = None
    if out_p is not None and (out_p / META_FILE).exists() and not rebuild:
        existing = EmbeddingIndex.load(out_p)
        if not embedder.same_as(existing.meta["embedding"]):
            raise SimilarityError(
                f"{out_p} holds embeddings made with {existing.embedder.describe()}, not {embedder.describe()}; "
                "pass --rebuild to replace it, or another --out")
        if existing.index_type != index_type:
            raise SimilarityError(f"{out_p} is a {existing.index_type} index, not {index_type}; pass --rebuild "
                                  "to replace it")
        embedder = existing.embedder  # keeps the fitted centring
    ids = catalog.ids
    todo = ids if existing is None else [k for k in ids if k not in existing]
    paths = dict(zip(ids, (str(p) for p in catalog.image_paths())))
    summary = {"added": 0, "already": len(ids) - len(todo), "skipped": SkipReport("index"),
               "created": existing is None}
    if existing is not None and not todo:
        existing.add([], np.zeros((0, existing.dim), np.float32), catalog=catalog.path)
        return existing, summary
    if existing is not None:
        job.say(f"embedding {len(todo):,} painting(s) not yet in {out_p} ({summary['already']:,} already indexed)")
    got, vecs, skipped = embedder.embed_catalog(catalog, todo if existing is not None else None, job=job)
    summary["skipped"] = skipped
    if existing is None:
        index = EmbeddingIndex.build(got, vecs, index_type=index_type, paths=[paths[k] for k in got],
                                     embedder=embedder, catalog=catalog.path, **params)
    else:
        index = existing
        trained = index.params.get("trained_on") or len(index)
        if index.index_type in ("ivf", "ivfpq") and len(index) + len(got) > 4 * trained:
            job.say(f"note: the IVF cells were trained on {trained:,} paintings and the index now holds "
                    f"{len(index) + len(got):,}; `--rebuild` would re-train them for the larger collection")
        index.add(got, vecs, paths=[paths[k] for k in got], catalog=catalog.path)
    summary["added"] = len(got)
    if out_p is not None:
        index.save(out_p)
    return index, summary

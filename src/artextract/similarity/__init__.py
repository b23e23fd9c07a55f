"""Similar paintings: an embedding index (FAISS), face and pose search, retrieval evaluation.

- :mod:`.index`: :class:`EmbeddingIndex` (flat / IVF / HNSW, save/load, incremental add)
- :mod:`.embed`: backbone and trained-run embedders
- :mod:`.face`, :mod:`.pose`: YuNet + SFace faces, mediapipe body poses, drawing helpers
- :mod:`.evaluate`: precision@k, recall@k, mAP@k
- :mod:`.api`: :func:`find_similar`, the facade used by the CLI and the web app
"""
from .api import find_similar
from .index import EmbeddingIndex, SimilarityError

__all__ = ["EmbeddingIndex", "SimilarityError", "find_similar"]

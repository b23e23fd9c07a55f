"""The compressed ivfpq index at 1M vectors: recall@10 against exact search, single-query p50/p99, bytes
per vector (bench_similarity's hard synthetic generator, 128-d).

    python benchmarks/bench_ivfpq.py
"""
import sys, time, numpy as np, resource, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_similarity import synthetic, recall_at_10, latency_ms
from artextract.similarity.index import EmbeddingIndex
n=1_000_000; d=128
x=synthetic(n,d,seed=n); q=synthetic(300,d,seed=10_000_019+n)
ids=[str(i) for i in range(n)]
import faiss
fl=faiss.IndexFlatIP(d); fl.add(x); _,truth=fl.search(q,10); del fl
t=time.time(); idx=EmbeddingIndex.build(ids,x,index_type="ivfpq"); bt=time.time()-t
for npb in (idx.params["nprobe"], 256):
    idx.set_search_params(nprobe=npb)
    r=recall_at_10(idx.search_vectors(q,10)[1],truth); p50,p99=latency_ms(idx,q[:200])
    print(f"ivfpq 1M x {d}: {idx.describe()}; build {bt:.0f}s; nprobe {npb}: recall@10 {r:.3f}, p50 {p50:.2f} ms, p99 {p99:.2f} ms", flush=True)
idx.save("/tmp/artextract-ivfpq-1m"); sz=os.path.getsize("/tmp/artextract-ivfpq-1m/index.faiss")
print(f"index.faiss {sz/2**20:.0f} MiB = {sz/n:.1f} bytes/vector; maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024:.0f} MB; load {os.getloadavg()[0]:.1f}")

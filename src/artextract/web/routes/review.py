"""The review API: the outlier table, the queue, decisions and their history, and the export."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from ...data.catalog import absolute_image_root
from ...utils import csv_safe_frame
from ..deps import decide, get_explorer, queue_view
from ..explorer import Explorer, FeatureUnavailable
from ..review import decisions_frame, export_reviews
from ..templating import current_user

router = APIRouter(prefix="/api", tags=["review"])


class ReviewIn(BaseModel):
    id: str = Field(description="painting id")
    task: str = Field(description="label task, e.g. style")
    action: Literal["accept", "relabel", "keep", "undo"] = Field(
        description="accept the suggested label, relabel with `label`, keep the given label, or undo the decision")
    label: str | None = Field(None, description="the new label (relabel only)")


class ReviewOut(BaseModel):
    id: str
    task: str
    action: str
    label: str | None = None
    given_label: str | None = None
    suggested_label: str | None = None
    decided_at: str | None = None
    seq: int | None = None
    reviewer: str | None = None


def _outliers(ex: Explorer):
    if ex.outliers is None:
        raise FeatureUnavailable(ex.status()["outliers"]["message"])
    return ex.outliers


@router.get("/outliers", summary="Rows of the outlier table")
def api_outliers(flagged: bool = Query(True, description="only flagged rows (the review queue)"),
                 task: str | None = None, id: str | None = None, limit: int = Query(1000, ge=1, le=100000),
                 ex: Explorer = Depends(get_explorer)):
    table = _outliers(ex)
    if id is not None:
        rows = table.for_id(id)
        rows = [r for r in rows if r["flagged"]] if flagged else rows
    else:
        rows = table.queue if flagged else [table._row(r) for r in table.df.to_dict("records")]
    if task:
        rows = [r for r in rows if r["task"] == task]
    return {"total": len(rows), "rows": rows[:limit], "table": table.summary()}


@router.get("/review/queue", summary="The review queue with each item's decision")
def api_queue(request: Request, task: str | None = None,
              show: Literal["all", "open", "second"] = Query(
                  "all", description="all; open: only items nobody has decided; second: items another "
                  "reviewer decided (a second opinion)"),
              undecided: bool = Query(False, description="the same as show=open"),
              ex: Explorer = Depends(get_explorer)):
    _outliers(ex)
    queue, visible, todo, by = queue_view(ex, task, "open" if undecided else show, current_user(request))
    decided = ex.reviews.current_map()
    todo_set = set(todo)
    items = []
    for pos in visible:
        r = queue[pos]
        key = (r["id"], r["task"])
        items.append({"pos": pos, **r, "decision": decided.get(key), "reviewers": sorted(by.get(key, {})),
                      "to_do": pos in todo_set})
    return {"total": len(items), "items": items}


@router.get("/reviews", summary="Current review decisions", response_model=list[ReviewOut])
def api_reviews(id: str | None = None, task: str | None = None, ex: Explorer = Depends(get_explorer)):
    return ex.reviews.current(id, task)


@router.get("/reviews/history", summary="Every decision ever recorded, newest first")
def api_history(id: str | None = None, task: str | None = None, limit: int = Query(1000, ge=1, le=100000),
                ex: Explorer = Depends(get_explorer)):
    return ex.reviews.history(id, task, limit)


@router.post("/reviews", summary="Record a review decision", response_model=ReviewOut | None)
def api_review(body: ReviewIn, request: Request, ex: Explorer = Depends(get_explorer)):
    return decide(ex, body.id, body.task, body.action, body.label, "api", current_user(request))


@router.get("/reviews/export", summary="Download the corrected labels: a catalogue (.parquet) or the decisions (.csv)")
def api_export(format: Literal["catalog", "csv"] = "csv", ex: Explorer = Depends(get_explorer)):
    stem = Path(str(ex.catalog.path)).stem
    if format == "csv":
        csv = csv_safe_frame(decisions_frame(ex.reviews.current_by_reviewer())).to_csv(index=False)
        return Response(csv, media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{stem}.reviews.csv"'})
    tmpdir = tempfile.mkdtemp(prefix="artextract-export-")
    out = Path(tmpdir) / f"{stem}.reviewed.parquet"
    try:
        export_reviews(ex.catalog, ex.reviews, out, "catalog")
        absolute_image_root(out)
    except Exception:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    return FileResponse(out, media_type="application/vnd.apache.parquet", filename=out.name,
                        background=BackgroundTask(shutil.rmtree, tmpdir, True))

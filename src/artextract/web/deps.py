"""What the explorer's routers share: the explorer of the running app, query helpers, and the logic that pages and API routes both use (gallery listing, predictions,
similarity searches, recording a decision)."""
from __future__ import annotations

import logging
import math
from urllib.parse import urlencode

from fastapi import HTTPException, Request, UploadFile
from PIL import Image

from ..data.catalog import SPLITS
from ..data.images import ImageLoadError
from .db import ACTIONS, ReviewStoreError
from .explorer import SIMILARITY_MODES, Explorer, FeatureUnavailable
from .images import ImageNotFound
from .templating import templates
from .uploads import DecodeBudget, DecodeBusy, decode_reduced

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- formatting
def query_string(request: Request, **changes) -> str:
    """The current query string with some parameters replaced (None removes)."""
    items = [(k, v) for k, v in request.query_params.multi_items() if k not in changes]
    for k, v in changes.items():
        if v is None:
            continue
        if isinstance(v, (list, tuple)):
            items.extend((k, x) for x in v)
        else:
            items.append((k, v))
    return "?" + urlencode(items) if items else "?"


def parse_labels(values: list[str], tasks) -> dict[str, str]:
    out = {}
    for v in values or []:
        if not v or ":" not in v:
            continue
        t, lbl = v.split(":", 1)
        if t in tasks and lbl:
            out[t] = lbl
    return out


# ---------------------------------------------------------------------- templates
# the templates, their helpers and render() live in .templating (a leaf module); the similarity
# modes are the explorer's, so they are added here, where the explorer is imported
templates.env.globals.update(modes=SIMILARITY_MODES)


def get_explorer(request: Request) -> Explorer:
    """The explorer of the app serving ``request`` (a FastAPI dependency)."""
    return request.app.state.explorer


QUEUE_VIEWS = {"all": "all flagged labels", "open": "only items nobody has decided",
               "second": "second opinion: items another reviewer decided"}


def queue_view(ex: Explorer, task: str | None, show: str, me: str | None) -> tuple[list, list[int], list[int], dict]:
    """The review queue of one task (or all) as one view of it.

    Returns ``(queue, visible, todo, by_reviewer)``: the task's queue rows (positions into it stay
    the same in every view), the positions the view shows, the positions still to do, and
    ``(id, task) -> {reviewer: decision}``. ``show`` is ``all`` (every row; to do: nobody decided),
    ``open`` (only rows nobody decided) or ``second`` (rows another reviewer decided; to do: the
    ones ``me`` has not).
    """
    if show not in QUEUE_VIEWS:
        raise HTTPException(400, f"show must be one of {', '.join(QUEUE_VIEWS)}")
    queue = [r for r in ex.outliers.queue if not task or r["task"] == task]
    by = ex.reviews.reviewers_map()
    me = me or ""
    keys = [(r["id"], r["task"]) for r in queue]
    if show == "second":
        visible = [i for i, k in enumerate(keys) if any(who != me for who in by.get(k, {}))]
        todo = [i for i in visible if me not in by.get(keys[i], {})]
    else:
        nobody = [i for i, k in enumerate(keys) if k not in by]
        visible = nobody if show == "open" else list(range(len(queue)))
        todo = nobody
    return queue, visible, todo, by


# ---------------------------------------------------------------------- uploads
def read_upload(file: UploadFile, limit: int) -> bytes:
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"upload too large: the limit is {limit / (1024 * 1024):.3g} MB")
    if not data:
        raise HTTPException(400, "the upload is empty (0 bytes)")
    return data


def decode_budget(request: Request) -> DecodeBudget:
    """The decode budget of the app serving ``request`` (a FastAPI dependency)."""
    return request.app.state.decode_budget


def decode_upload(data: bytes, max_pixels: int, budget: DecodeBudget | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """The uploaded image decoded reduced (at most 1024 pixels on its longer side) within the decode
    budget, and the original's width and height; a 4xx or 503 when it cannot be."""
    try:
        return decode_reduced(data, max_pixels, budget)
    except ImageLoadError as exc:
        reason = exc.reason
        status = 413 if ("too large" in reason or "bomb" in reason) else 400
        raise HTTPException(status, f"not a usable image: {reason}") from None
    except DecodeBusy as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None


# ---------------------------------------------------------------------- shared logic
def require_painting(ex: Explorer, item_id: str) -> None:
    if not ex.has(item_id):
        raise HTTPException(404, f"no painting with id {item_id!r} in the catalogue")


def gallery_page(ex: Explorer, q, split, label, flagged, page_no, per_page, ids_subset=None) -> dict:
    """One page of the gallery listing (the filters, the total and the page's painting summaries)."""
    labels = parse_labels(label, ex.tasks)
    if split and split not in SPLITS:
        raise HTTPException(400, f"split must be one of {', '.join(SPLITS)}")
    ids = ex.filter(q=q, split=split or None, labels=labels, flagged=flagged)
    if ids_subset is not None:
        keep = set(ids_subset)
        ids = [i for i in ids if i in keep]
    total = len(ids)
    pages = max(1, math.ceil(total / per_page))
    page_no = min(max(1, page_no), pages)
    chunk = ids[(page_no - 1) * per_page: page_no * per_page]
    by_id: dict[str, dict] = {}
    for d in ex.reviews.current():
        by_id.setdefault(d["id"], {})[d["task"]] = d
    items = [ex.summary(i, by_id.get(i, {})) for i in chunk]
    return {"total": total, "page": page_no, "pages": pages, "per_page": per_page, "items": items,
            "filters": {"q": q or "", "split": split or "", "labels": labels, "flagged": flagged}}


def predictions(ex: Explorer, item_id: str) -> tuple[dict | None, str | None]:
    """The model's top-3 per task for a painting, or the message that says why there are none."""
    if ex.run is None:
        return None, None
    try:
        return ex.predict_id(item_id), None
    except ImageNotFound as exc:
        return None, str(exc)
    except Exception as exc:  # the page still renders; the message says what failed
        log.exception("prediction failed for %s", item_id)
        return None, f"prediction failed: {type(exc).__name__}: {exc}"


def similar_panel_result(ex: Explorer, item_id: str | None = None, image: Image.Image | None = None,
                         mode: str = "image", k: int = 12) -> dict:
    """One similarity search for a page: failures become the panel's message."""
    try:
        return ex.similar(item_id=item_id, image=image, mode=mode, k=k)
    except FeatureUnavailable:
        raise
    except Exception as exc:
        if type(exc).__name__ not in ("SimilarityError", "ImageLoadError"):
            log.exception("similarity (%s) failed", mode)
        return {"mode": mode, "results": [], "message": f"search failed: {exc}"}


def similar_api_result(ex: Explorer, **kw) -> dict:
    """One similarity search for the API: a bad query is a 400."""
    try:
        return ex.similar(**kw)
    except FeatureUnavailable:
        raise
    except Exception as exc:
        if type(exc).__name__ in ("SimilarityError", "ImageLoadError", "KeyError", "ValueError"):
            raise HTTPException(400, f"similarity search failed: {exc}") from None
        raise


def _queue_row(ex: Explorer, item_id: str, task: str) -> dict | None:
    if ex.outliers is None:
        return None
    for r in ex.outliers.for_id(item_id):
        if r["task"] == task:
            return r
    return None


def _decision_labels(ex: Explorer, task: str, action: str, label: str | None, row: dict | None, item_id: str):
    """Resolve the given and suggested labels of a decision (from the queue row, else the catalogue)."""
    spec = ex.tasks.get(task)
    if spec is None:
        raise HTTPException(400, f"unknown task {task!r}; this catalogue has {', '.join(ex.tasks)}")
    given = row["given_label"] if row else ex.row(item_id).get(task)
    given = given if isinstance(given, str) else None
    suggested = row["suggested_label"] if row else None
    if action == "accept" and not suggested:
        raise HTTPException(400, f"{item_id}/{task} has no suggested label to accept")
    if action == "relabel":
        if not label:
            raise HTTPException(400, "relabel needs a label")
        if label not in spec.classes:
            raise HTTPException(400, f"{label!r} is not a class of {task}")
    return given, suggested


def decide(ex: Explorer, item_id: str, task: str, action: str, label: str | None, source: str,
           reviewer: str | None = None) -> dict | None:
    """Validate and record one review decision; returns the reviewer's new decision (None after undo)."""
    require_painting(ex, item_id)
    if action not in ACTIONS + ("undo",):
        raise HTTPException(400, f"unknown action {action!r}")
    row = _queue_row(ex, item_id, task)
    given, suggested = _decision_labels(ex, task, action, label, row, item_id)
    try:
        return ex.reviews.record(item_id, task, action, label, given_label=given,
                                 suggested_label=suggested, source=source, reviewer=reviewer)
    except ReviewStoreError as exc:
        raise HTTPException(400, str(exc)) from None

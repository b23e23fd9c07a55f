"""The server-rendered pages: gallery, painting, upload, similarity panels, review queue, API docs,
and the image routes they show."""
from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ...data.catalog import SPLITS
from ..auth import check_csrf
from ..deps import (QUEUE_VIEWS, decide, queue_view, decode_upload, gallery_page, get_explorer, predictions, query_string,
                    read_upload, require_painting, similar_panel_result)
from ..explorer import MAX_TEXT_QUERY, SIMILARITY_MODES, Explorer
from ..images import data_url
from ..review import evidence_view
from ..templating import current_user, pid_url, render, templates

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def gallery(request: Request, q: str | None = None, split: str | None = None,
            label: list[str] = Query(default=[]), flagged: bool = False, page: int = 1,
            per_page: int = Query(default=0, ge=0, le=200), sel: str | None = None,
            ex: Explorer = Depends(get_explorer)):
    subset = _selection(ex, sel)
    data = gallery_page(ex, q, split, label, flagged, page, per_page or ex.config.per_page, subset)
    return render(request, "gallery.html", nav="gallery", data=data, splits=SPLITS, sel=sel if subset is not None
                  else None, qs=lambda **kw: query_string(request, **kw),
                  text_search=ex.text_search_message() is None, max_text=MAX_TEXT_QUERY)


@router.get("/search", response_class=HTMLResponse)
def text_search(request: Request, text: str = Query("", max_length=MAX_TEXT_QUERY),
                k: int = Query(24, ge=1, le=100), ex: Explorer = Depends(get_explorer)):
    """The paintings a text describes best (an index whose embedder has a text tower)."""
    why = ex.text_search_message()
    if why is not None:
        return render(request, "search.html", 503 if ex.index is None else 400, nav="gallery", why=why,
                      text=text, r=None, max_text=MAX_TEXT_QUERY)
    r = None
    if text.strip():
        try:
            r = ex.search_text(text.strip(), k)
        except ValueError as exc:
            r = {"mode": "image", "results": [], "message": str(exc)}
    return render(request, "search.html", nav="gallery", why=None, text=text, r=r, max_text=MAX_TEXT_QUERY)


def _selection(ex: Explorer, sel: str | None) -> list[str] | None:
    if not sel:
        return None
    ids = ex.selections.get(sel)
    if ids is None:
        raise HTTPException(404, "this map selection has expired; select the paintings on the map again")
    return ids


@router.get("/map", response_class=HTMLResponse)
def map_page(request: Request, layout: str = "embedding", color: str | None = None,
             ex: Explorer = Depends(get_explorer)):
    message = None
    if ex.index is None and ex.run is None:
        message = ("The map needs an embedding: start the server with --index INDEX_DIR (or --run RUN_DIR). "
                   "Build an index with `artextract index`.")
    fields = ex.map.fields()
    if color not in fields:
        color = next((t for t in ("style", "genre") if t in fields), fields[0] if fields else None)
    return render(request, "map.html", nav="map", message=message, fields=fields, layout=layout, color=color,
                  has_queue=ex.outliers is not None)


@router.get("/painting/{item_id:path}", response_class=HTMLResponse)
def painting(request: Request, item_id: str, sim: str = "image", ex: Explorer = Depends(get_explorer)):
    require_painting(ex, item_id)
    sim = sim if sim in SIMILARITY_MODES else "image"
    preds, pred_error = predictions(ex, item_id)
    similar = None
    if ex.index is not None:
        similar = {sim: similar_panel_result(ex, item_id=item_id, mode=sim)}
    flags = ex.outliers.for_id(item_id) if ex.outliers is not None else []
    decisions = {d["task"]: d for d in ex.reviews.current(item_id)}
    flag_views = [evidence_view(f["extra"], ex.row_of) for f in flags]
    prev_id, next_id = ex.neighbours(item_id)
    queue_pos = {}
    if ex.outliers is not None:
        for i, r in enumerate(ex.outliers.queue):
            if r["id"] == item_id:
                queue_pos[r["task"]] = i
    return render(request, "painting.html", nav="gallery", p=ex.summary(item_id), meta=ex.metadata(item_id),
                  preds=preds, pred_error=pred_error, similar=similar, flags=flags, flag_views=flag_views,
                  decisions=decisions, prev_id=prev_id, next_id=next_id, queue_pos=queue_pos, sim_mode=sim,
                  sim_href=lambda m: f"{pid_url(item_id)}?sim={m}#similar",
                  history=ex.reviews.history(item_id, limit=20))


@router.get("/upload", response_class=HTMLResponse)
def upload_form(request: Request):
    return render(request, "upload.html", nav="upload", result=None)


@router.post("/upload", response_class=HTMLResponse)
def upload(request: Request, file: UploadFile = File(...), csrf_token: str = Form(""),
           ex: Explorer = Depends(get_explorer)):
    check_csrf(request, csrf_token)
    cfg = ex.config
    try:
        data = read_upload(file, cfg.max_upload_bytes)
        img, (width, height) = decode_upload(data, cfg.max_upload_pixels, request.app.state.decode_budget)
    except HTTPException as exc:
        return render(request, "upload.html", exc.status_code, nav="upload", result=None, error=exc.detail,
                      filename=file.filename)
    result: dict[str, Any] = {"filename": file.filename, "width": width, "height": height,
                              "preview": data_url(img), "bytes": len(data)}
    del data
    if ex.run is not None:
        try:
            result["preds"] = ex.predict_image(img)
        except Exception as exc:
            log.exception("prediction failed for an upload")
            result["pred_error"] = f"prediction failed: {type(exc).__name__}: {exc}"
    sim_href = None
    if ex.index is not None:
        result["token"] = token = ex.keep_upload(img)
        result["similar"] = {"image": similar_panel_result(ex, image=img, mode="image")}
        sim_href = lambda m: f"/similar-panel?upload={token}&mode={m}"  # noqa: E731
    return render(request, "upload.html", nav="upload", result=result, sim_href=sim_href)


@router.get("/similar-panel", response_class=HTMLResponse)
def similar_panel(request: Request, mode: str = "image", id: str | None = None, upload: str | None = None,
                  k: int = Query(12, ge=1, le=100), ex: Explorer = Depends(get_explorer)):
    """The results of one similarity tab, as an HTML fragment (loaded when the tab opens)."""
    if mode not in SIMILARITY_MODES:
        raise HTTPException(400, f"mode must be one of {', '.join(SIMILARITY_MODES)}")
    if ex.index is None:
        r = {"mode": mode, "results": [], "message": ex.status()["index"]["message"]}
    elif id is not None:
        require_painting(ex, id)
        r = similar_panel_result(ex, item_id=id, mode=mode, k=k)
    elif upload is not None:
        img = ex.uploads.get(upload)
        if img is None:
            r = {"mode": mode, "results": [], "message": "this upload has expired; upload the image again"}
        else:
            r = similar_panel_result(ex, image=img, mode=mode, k=k)
    else:
        raise HTTPException(400, "give id or upload")
    return templates.TemplateResponse(request, "similar_panel.html", {"request": request, "r": r})


@router.get("/review", response_class=HTMLResponse)
def review(request: Request, task: str | None = None, pos: int | None = None, after: int | None = None,
           show: str = "all", sel: str | None = None, ex: Explorer = Depends(get_explorer)):
    if ex.outliers is None:
        return render(request, "review.html", nav="review", item=None, queue=[], unavailable=True)
    me = current_user(request)
    queue, visible, todo, by = queue_view(ex, task, show, me)
    subset = _selection(ex, sel)
    if subset is not None:
        keep = set(subset)
        visible = [i for i in visible if queue[i]["id"] in keep]
        todo = [i for i in todo if queue[i]["id"] in keep]
    if pos is None:
        if after is not None:
            pos = next((i for i in todo if i > after), todo[0] if todo else None)
        else:
            pos = todo[0] if todo else None
    if pos is not None and not (0 <= pos < len(queue)):
        pos = todo[0] if todo else None
    decided = ex.reviews.current_map()
    item = dict(queue[pos]) if pos is not None else None
    ctx: dict[str, Any] = {}
    if item is not None:
        key = (item["id"], item["task"])
        item["painting"] = ex.summary(item["id"])
        item["decision"] = by.get(key, {}).get(me or "")
        item["others"] = [d for who, d in by.get(key, {}).items() if who != (me or "")]
        item["evidence_rows"] = evidence_view(item["extra"], ex.row_of)
        ctx["classes"] = ex.tasks[item["task"]].classes
        ctx["item_preds"], ctx["pred_error"] = predictions(ex, item["id"])
        ctx["prev_pos"] = next((i for i in reversed(visible) if i < pos), None)
        ctx["next_pos"] = next((i for i in visible if i > pos), None)
    rows = [(i, queue[i]) for i in visible]
    todo_set = set(todo)
    done = sum(1 for i in visible if i not in todo_set)
    return render(request, "review.html", nav="review", item=item, pos=pos, rows=rows, task=task or "",
                  show=show, sel=sel if subset is not None else "", views=QUEUE_VIEWS, decided=decided, by_reviewer=by, done=done, total=len(visible),
                  queue_total=len(queue), review_tasks=ex.outliers.tasks, counts=ex.reviews.counts(),
                  unavailable=False, **ctx)


@router.post("/review/decide")
def review_decide(request: Request, id: str = Form(...), task: str = Form(...), action: str = Form(...),
                  label: str | None = Form(None), pos: int | None = Form(None),
                  queue_task: str | None = Form(None), back: str | None = Form(None),
                  show: str | None = Form(None), sel: str | None = Form(None), csrf_token: str = Form(""),
                  ex: Explorer = Depends(get_explorer)):
    check_csrf(request, csrf_token)
    decide(ex, id, task, action, label or None, "web", current_user(request))
    if back == "painting":
        return RedirectResponse(pid_url(id) + "#review", status_code=303)
    params = {}
    if queue_task:
        params["task"] = queue_task
    if show and show != "all":
        params["show"] = show
    if sel:
        params["sel"] = sel
    if action == "undo" and pos is not None:
        params["pos"] = pos
    elif pos is not None:
        params["after"] = pos
    return RedirectResponse("/review" + ("?" + urlencode(params) if params else ""), status_code=303)


@router.get("/docs", response_class=HTMLResponse)
def docs(request: Request):
    spec = request.app.openapi()
    ops = []
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            ops.append({"path": path, "method": method.upper(), **op})
    return render(request, "docs.html", nav="docs", spec=spec, ops=ops,
                  schemas=spec.get("components", {}).get("schemas", {}), json=json)


# ---------------------------------------------------------------------- images
@router.get("/thumb/{item_id:path}")
def thumb(item_id: str, size: int = Query(256, ge=16, le=1024), ex: Explorer = Depends(get_explorer)):
    data = ex.images.thumbnail(item_id, size)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/image/{item_id:path}")
def image(item_id: str, ex: Explorer = Depends(get_explorer)):
    data = ex.images.display(item_id)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

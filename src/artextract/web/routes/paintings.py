"""The paintings and model API: status, listing and detail, predictions and similarity searches."""
from __future__ import annotations

from typing import Any, Literal

import gzip
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ... import __version__
from ..deps import (decode_budget, decode_upload, gallery_page, get_explorer, predictions, read_upload,
                    require_painting, similar_api_result)
from ..templating import image_url, pid_url, thumb_url
from ..uploads import DecodeBudget
from ..explorer import MAX_TEXT_QUERY, Explorer, FeatureUnavailable
from ..map import LAYOUTS, PARTS, MapUnavailable

router = APIRouter(prefix="/api")


class Prediction(BaseModel):
    label: str
    prob: float


@router.get("/health", tags=["status"], summary="Server status, what is loaded and the upload limits")
def api_health(ex: Explorer = Depends(get_explorer)):
    cfg = ex.config
    limits = {"max_upload_bytes": cfg.max_upload_bytes, "max_upload_pixels": cfg.max_upload_pixels,
              "decode_budget_pixels": cfg.decode_budget_pixels}
    return {"status": "ok", "version": __version__, **ex.status(), "limits": limits}


@router.get("/paintings", tags=["paintings"], summary="List paintings (filter, search, paginate)")
def api_paintings(q: str | None = Query(None, description="search in id and title"),
                  split: str | None = Query(None, description="train, val or test"),
                  label: list[str] = Query(default=[], description="TASK:LABEL, repeatable"),
                  flagged: bool = Query(False, description="only paintings flagged by the outlier table"),
                  page: int = Query(1, ge=1), per_page: int = Query(48, ge=1, le=500),
                  ex: Explorer = Depends(get_explorer)):
    data = gallery_page(ex, q, split, label, flagged, page, per_page)
    for it in data["items"]:
        it["url"] = pid_url(it["id"])
        it["thumb_url"] = thumb_url(it["id"])
    return data


@router.get("/paintings/{item_id:path}", tags=["paintings"],
            summary="One painting: labels, metadata, predictions, outlier rows and review decisions")
def api_painting(item_id: str, predictions_: bool = Query(True, alias="predictions",
                                                          description="include the model's top-3"),
                 ex: Explorer = Depends(get_explorer)):
    require_painting(ex, item_id)
    out = ex.summary(item_id)
    out["metadata"] = ex.metadata(item_id)
    out["path"] = ex.row(item_id)["path"]
    out["image_url"] = image_url(item_id)
    out["thumb_url"] = thumb_url(item_id)
    if predictions_:
        preds, err = predictions(ex, item_id)
        out["predictions"] = preds
        out["predictions_message"] = err or (None if ex.run is not None else ex.status()["run"]["message"])
    out["outliers"] = ex.outliers.for_id(item_id) if ex.outliers is not None else []
    out["reviews"] = ex.reviews.current(item_id)
    return out


@router.post("/predict", tags=["model"], summary="Predict the labels of an uploaded image",
             responses={400: {"description": "not an image"}, 413: {"description": "too large"},
                        503: {"description": "no model run loaded"}})
def api_predict(file: UploadFile = File(..., description="an image file"),
                top_k: int = Query(3, ge=1, le=50),
                similar: bool = Query(False, description="also search the index (mode=image)"),
                k: int = Query(12, ge=1, le=100), ex: Explorer = Depends(get_explorer),
                budget: DecodeBudget = Depends(decode_budget)):
    data = read_upload(file, ex.config.max_upload_bytes)
    img, (width, height) = decode_upload(data, ex.config.max_upload_pixels, budget)
    del data
    out: dict[str, Any] = {"filename": file.filename, "width": width, "height": height,
                           "predictions": ex.predict_image(img, top_k)}
    if similar:
        out["similar"] = similar_api_result(ex, image=img, mode="image", k=k)
    return out


@router.get("/similar", tags=["model"], summary="Paintings similar to a catalogue painting")
def api_similar(id: str = Query(..., description="painting id"),
                mode: Literal["image", "face", "pose"] = "image", k: int = Query(12, ge=1, le=100),
                ex: Explorer = Depends(get_explorer)):
    require_painting(ex, id)
    return similar_api_result(ex, item_id=id, mode=mode, k=k)


@router.post("/similar", tags=["model"], summary="Paintings similar to an uploaded image")
def api_similar_upload(file: UploadFile = File(...), mode: Literal["image", "face", "pose"] = Query("image"),
                       k: int = Query(12, ge=1, le=100), ex: Explorer = Depends(get_explorer),
                       budget: DecodeBudget = Depends(decode_budget)):
    data = read_upload(file, ex.config.max_upload_bytes)
    img, _ = decode_upload(data, ex.config.max_upload_pixels, budget)
    del data
    if ex.index is None:
        raise FeatureUnavailable(ex.status()["index"]["message"])
    return similar_api_result(ex, image=img, mode=mode, k=k)


@router.get("/search", tags=["model"], summary="Paintings ranked by a text (an index with a text tower)",
            responses={200: {"description": "as GET /api/similar, with query {\"text\": ...}"},
                       400: {"description": "the index's embedder has no text tower (the detail says which "
                                            "would), or the text is blank"},
                       422: {"description": f"no text, or longer than {MAX_TEXT_QUERY} characters"},
                       503: {"description": "no similarity index loaded"}})
def api_search(text: str = Query(..., min_length=1, max_length=MAX_TEXT_QUERY,
                                 description="a description, e.g. a ship in a storm at night"),
               k: int = Query(12, ge=1, le=100), ex: Explorer = Depends(get_explorer)):
    try:
        return ex.search_text(text, k)
    except FeatureUnavailable:
        raise
    except ValueError as exc:  # no text tower, or a blank text: said in words
        raise HTTPException(400, str(exc)) from None


@router.get("/map", tags=["paintings"], summary="The collection map: every painting a point (columnar JSON)",
            responses={200: {"description": "n, ids, titles, dates, flagged (positions), x and y (integers in "
                             "[0, 99999]), x_axis, color {field, values, counts, codes (-1 other, -2 no value)}"}})
async def api_map(request: Request, layout: str = Query("embedding", description="embedding or timeline"),
                  color: str | None = Query(None, description="a task or catalogue column to colour by"),
                  parts: str = Query(",".join(PARTS), description="comma-separated: points, xy, color"),
                  ex: Explorer = Depends(get_explorer)):
    if layout not in LAYOUTS:
        raise HTTPException(400, f"layout must be one of {', '.join(LAYOUTS)}")
    want = [p.strip() for p in parts.split(",") if p.strip()]
    try:
        data = await run_in_threadpool(ex.map.payload, layout, color or None, want)
    except MapUnavailable as exc:
        raise FeatureUnavailable(str(exc)) from None
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    headers = {"Cache-Control": "private, max-age=300", "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", "") and len(data) > 4096:
        key = ("gz", layout, color, tuple(want))
        gz = ex.map._cache.get(key)
        if gz is None:
            gz = ex.map._cache[key] = gzip.compress(data, 1)
        return Response(gz, media_type="application/json", headers={**headers, "Content-Encoding": "gzip"})
    return Response(data, media_type="application/json", headers=headers)


class SelectionIn(BaseModel):
    ids: list[str] = Field(description="catalogue ids (e.g. chosen on the map)", max_length=1_000_000)


@router.post("/selections", tags=["paintings"], summary="Keep a set of paintings for the gallery or the queue "
             "(?sel=TOKEN)")
def api_selection(body: SelectionIn, ex: Explorer = Depends(get_explorer)):
    token = ex.keep_selection(body.ids)
    n = len(ex.selections.get(token) or [])
    return {"token": token, "count": n, "gallery_url": f"/?sel={token}", "review_url": f"/review?sel={token}"}


@router.get("/explain/{item_id:path}", tags=["model"], response_class=Response,
            summary="Where the model looked: a PNG of the painting with a heat map of what drove one label's score",
            responses={200: {"content": {"image/png": {}}, "description": "the overlay; X-Explain-Method says "
                             "which map it shows (attention or gradcam), X-Explain-Label and X-Explain-Prob the "
                             "label explained"}, 503: {"description": "no model run loaded"}})
def api_explain(item_id: str, task: str = Query(..., description="a task of the run, e.g. style"),
                label: str | None = Query(None, description="the class to explain (default: the top one)"),
                method: Literal["auto", "attention", "gradcam"] = Query(
                    "auto", description="auto shows whichever map is more concentrated"),
                ex: Explorer = Depends(get_explorer)):
    from ...training.explain import ExplainError

    require_painting(ex, item_id)
    try:
        png, info = ex.explain_png(item_id, task, label, method)
    except ExplainError as exc:
        raise HTTPException(400, str(exc)) from None
    return Response(png, media_type="image/png", headers={
        "Cache-Control": "private, max-age=3600", "X-Explain-Method": info["method"],
        "X-Explain-Label": quote(info["label"]), "X-Explain-Prob": f"{info['prob']:.4f}",
        "X-Explain-Grid": "x".join(map(str, info["grid"]))})

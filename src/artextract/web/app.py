"""The FastAPI app: server-rendered pages (Jinja2) and a JSON API under ``/api``.

Everything is served from this process (templates, CSS, JS, images): no CDN, works offline. The
API is described by ``/openapi.json`` and the offline ``/docs`` page rendered from it.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from PIL import Image
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..data.catalog import SPLITS
from ..data.images import ImageLoadError, load_image
from .db import ACTIONS, ReviewStoreError
from .explorer import SIMILARITY_MODES, Explorer, FeatureUnavailable, WebConfig
from .images import ImageNotFound, data_url
from .review import decisions_frame, evidence_view, export_reviews

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
UPLOAD_PATHS = ("/upload", "/api/predict", "/api/similar")


# ---------------------------------------------------------------------- API models
class Prediction(BaseModel):
    label: str
    prob: float


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


# ---------------------------------------------------------------------- middleware
class UploadLimitMiddleware:
    """Refuses request bodies above the upload limit with 413 before they are parsed.

    With a Content-Length header the check is immediate; a chunked body is read up to the limit
    and refused as soon as it passes it.
    """

    def __init__(self, app, max_bytes: int, paths=UPLOAD_PATHS):
        self.app = app
        # a multipart envelope adds a few hundred bytes around the file
        self.max_body = max_bytes + 64 * 1024
        self.max_bytes = max_bytes
        self.paths = paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        cl = headers.get(b"content-length")
        if cl is not None:
            try:
                n = int(cl)
            except ValueError:
                return await _plain(send, 400, "invalid Content-Length")
            if n > self.max_body:
                return await self._too_large(scope, send)
            return await self.app(scope, receive, send)
        # chunked: buffer up to the limit, then replay
        chunks, total = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body = msg.get("body", b"")
            total += len(body)
            if total > self.max_body:
                return await self._too_large(scope, send)
            chunks.append(body)
            if not msg.get("more_body"):
                break
        data = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _too_large(self, scope, send):
        mb = self.max_bytes / (1024 * 1024)
        msg = f"upload too large: the limit is {mb:g} MB (start the server with --max-upload-mb to change it)"
        await _plain(send, 413, msg, json_body=scope["path"].startswith("/api"))


async def _plain(send, status: int, message: str, json_body: bool = True):
    if json_body:
        body, ctype = json.dumps({"detail": message}).encode(), b"application/json"
    else:
        body = (f"<!doctype html><title>{status}</title><p>{message}</p>"
                "<p><a href='/upload'>Back to upload</a></p>").encode()
        ctype = b"text/html; charset=utf-8"
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class SameOriginMiddleware:
    """Refuses state-changing requests sent by another site's page (cross-site form posts), and
    adds the security headers: a Content-Security-Policy that allows only this server's own assets."""

    CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
           "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            origin = headers.get(b"origin")
            if origin is not None:
                host = headers.get(b"host", b"").decode("latin-1")
                o = origin.decode("latin-1")
                if o == "null" or urlsplit(o).netloc != host:
                    return await _plain(send, 403, f"cross-origin request from {o} refused")

        async def send_with_headers(msg):
            if msg["type"] == "http.response.start":
                h = list(msg.get("headers") or [])
                h.append((b"x-content-type-options", b"nosniff"))
                h.append((b"referrer-policy", b"same-origin"))
                if not scope["path"].startswith("/api"):
                    h.append((b"content-security-policy", self.CSP.encode()))
                    h.append((b"x-frame-options", b"DENY"))
                msg = {**msg, "headers": h}
            await send(msg)

        return await self.app(scope, receive, send_with_headers)


# ---------------------------------------------------------------------- helpers
def _pid_url(item_id: str) -> str:
    return "/painting/" + quote(item_id, safe="/")


def _thumb_url(item_id: str, size: int = 256) -> str:
    return f"/thumb/{quote(item_id, safe='/')}?size={size}"


def _image_url(item_id: str) -> str:
    return "/image/" + quote(item_id, safe="/")


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        if float(v).is_integer() and abs(v) < 1e12:
            return str(int(v))
        return f"{v:.3f}"
    return str(v).replace("|", " · ")


def _pct(p) -> str:
    try:
        return f"{float(p) * 100:.1f}%"
    except (TypeError, ValueError):
        return "—"


def _labelize(s) -> str:
    return str(s).replace("_", " ") if s is not None else "—"


def _query(request: Request, **changes) -> str:
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


def _parse_labels(values: list[str], tasks) -> dict[str, str]:
    out = {}
    for v in values or []:
        if not v or ":" not in v:
            continue
        t, lbl = v.split(":", 1)
        if t in tasks and lbl:
            out[t] = lbl
    return out


def _read_upload(file: UploadFile, limit: int) -> bytes:
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"upload too large: the limit is {limit / (1024 * 1024):g} MB")
    if not data:
        raise HTTPException(400, "the upload is empty (0 bytes)")
    return data


def _decode_upload(data: bytes, max_pixels: int) -> Image.Image:
    try:
        return load_image(data, max_pixels=max_pixels)
    except ImageLoadError as exc:
        reason = exc.reason
        status = 413 if ("too large" in reason or "bomb" in reason) else 400
        raise HTTPException(status, f"not a usable image: {reason}") from None


def _absolute_root(path: Path) -> None:
    """Store the image root of a catalogue file as an absolute path (for downloads that will be
    moved away from the server's folders)."""
    import pyarrow.parquet as pq

    from ..data.catalog import META_KEY

    table = pq.read_table(path)
    meta = dict(table.schema.metadata or {})
    info = json.loads(meta[META_KEY])
    root = Path(info["image_root"])
    if not root.is_absolute():
        info["image_root"] = str((path.parent / root).resolve())
    meta[META_KEY] = json.dumps(info).encode()
    pq.write_table(table.replace_schema_metadata(meta), path)


# ---------------------------------------------------------------------- the app
def create_app(config: WebConfig | None = None, *, explorer: Explorer | None = None) -> FastAPI:
    if explorer is None:
        if config is None:
            raise ValueError("create_app needs a WebConfig or an Explorer")
        explorer = Explorer(config)
    ex = explorer
    cfg = ex.config

    app = FastAPI(
        title="ArtExtract explorer",
        version=__version__,
        description="Browse a painting catalogue, see the model's predictions and similar paintings, "
                    "and review flagged labels. All JSON endpoints live under /api.",
        docs_url=None, redoc_url=None,  # the stock pages load their assets from a CDN; /docs is ours
        openapi_tags=[{"name": "status"}, {"name": "paintings"}, {"name": "model"}, {"name": "review"}],
    )
    app.state.explorer = ex
    app.add_middleware(UploadLimitMiddleware, max_bytes=cfg.max_upload_bytes)
    app.add_middleware(SameOriginMiddleware)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.globals.update(pid_url=_pid_url, thumb_url=_thumb_url, image_url=_image_url, version=__version__,
                       modes=SIMILARITY_MODES, quote=quote)
    env.filters.update(fmt=_fmt, pct=_pct, labelize=_labelize)

    def render(request: Request, name: str, status: int = 200, **ctx) -> HTMLResponse:
        ctx.setdefault("nav", "")
        base = {"request": request, "ex": ex, "tasks": ex.tasks,
                "review_left": _review_left() if ex.outliers is not None else None}
        return templates.TemplateResponse(request, name, {**base, **ctx}, status_code=status)

    def _review_left() -> int:
        decided = ex.reviews.current_map()
        return sum(1 for r in ex.outliers.queue if (r["id"], r["task"]) not in decided)

    # ------------------------------------------------------------------ errors
    def _wants_json(request: Request) -> bool:
        p = request.url.path
        return p.startswith("/api") or p.startswith("/thumb/") or p.startswith("/image/") or p == "/openapi.json"

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if _wants_json(request):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        titles = {404: "Not found", 400: "Bad request", 413: "Too large", 503: "Not available", 403: "Refused"}
        return render(request, "error.html", exc.status_code, title=titles.get(exc.status_code, "Error"),
                    message=exc.detail)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        msg = "; ".join(f"{'.'.join(str(x) for x in e.get('loc', []))}: {e.get('msg')}" for e in errors)
        if _wants_json(request):
            return JSONResponse({"detail": msg or "invalid request", "errors": json.loads(json.dumps(
                errors, default=str))}, status_code=422)
        return render(request, "error.html", 422, title="Invalid request", message=msg)

    @app.exception_handler(FeatureUnavailable)
    async def unavailable(request: Request, exc: FeatureUnavailable):
        if _wants_json(request):
            return JSONResponse({"detail": str(exc)}, status_code=503)
        return render(request, "error.html", 503, title="Not available", message=str(exc))

    @app.exception_handler(ImageNotFound)
    async def not_found(request: Request, exc: ImageNotFound):
        if _wants_json(request):
            return JSONResponse({"detail": str(exc)}, status_code=404)
        return render(request, "error.html", 404, title="Not found", message=str(exc))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        msg = f"unexpected error: {type(exc).__name__}: {exc}"
        if _wants_json(request):
            return JSONResponse({"detail": msg}, status_code=500)
        return render(request, "error.html", 500, title="Something went wrong", message=msg)

    def _get(item_id: str) -> None:
        if not ex.has(item_id):
            raise HTTPException(404, f"no painting with id {item_id!r} in the catalogue")

    # ------------------------------------------------------------------ shared logic
    def _gallery(q, split, label, flagged, page_no, per_page):
        labels = _parse_labels(label, ex.tasks)
        if split and split not in SPLITS:
            raise HTTPException(400, f"split must be one of {', '.join(SPLITS)}")
        ids = ex.filter(q=q, split=split or None, labels=labels, flagged=flagged)
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

    def _predictions(item_id: str) -> tuple[dict | None, str | None]:
        if ex.run is None:
            return None, None
        try:
            return ex.predict_id(item_id), None
        except ImageNotFound as exc:
            return None, str(exc)
        except Exception as exc:  # the page still renders; the message says what failed
            log.exception("prediction failed for %s", item_id)
            return None, f"prediction failed: {type(exc).__name__}: {exc}"

    def _similar_one(item_id: str | None = None, image: Image.Image | None = None, mode: str = "image",
                     k: int = 12) -> dict:
        """One similarity search for a page: failures become the panel's message."""
        try:
            return ex.similar(item_id=item_id, image=image, mode=mode, k=k)
        except FeatureUnavailable:
            raise
        except Exception as exc:
            if type(exc).__name__ not in ("SimilarityError", "ImageLoadError"):
                log.exception("similarity (%s) failed", mode)
            return {"mode": mode, "results": [], "message": f"search failed: {exc}"}

    def _api_similar(**kw) -> dict:
        try:
            return ex.similar(**kw)
        except FeatureUnavailable:
            raise
        except Exception as exc:
            if type(exc).__name__ in ("SimilarityError", "ImageLoadError", "KeyError", "ValueError"):
                raise HTTPException(400, f"similarity search failed: {exc}") from None
            raise

    def _decision_labels(task: str, action: str, label: str | None, row: dict | None, item_id: str):
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

    def _queue_row(item_id: str, task: str) -> dict | None:
        if ex.outliers is None:
            return None
        for r in ex.outliers.for_id(item_id):
            if r["task"] == task:
                return r
        return None

    def _decide(item_id: str, task: str, action: str, label: str | None, source: str) -> dict | None:
        _get(item_id)
        if action not in ACTIONS + ("undo",):
            raise HTTPException(400, f"unknown action {action!r}")
        row = _queue_row(item_id, task)
        given, suggested = _decision_labels(task, action, label, row, item_id)
        try:
            return ex.reviews.record(item_id, task, action, label, given_label=given,
                                     suggested_label=suggested, source=source)
        except ReviewStoreError as exc:
            raise HTTPException(400, str(exc)) from None

    # ------------------------------------------------------------------ pages
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def gallery(request: Request, q: str | None = None, split: str | None = None,
                label: list[str] = Query(default=[]), flagged: bool = False, page: int = 1,
                per_page: int = Query(default=0, ge=0, le=200)):
        data = _gallery(q, split, label, flagged, page, per_page or cfg.per_page)
        return render(request, "gallery.html", nav="gallery", data=data, splits=SPLITS,
                     qs=lambda **kw: _query(request, **kw))


    @app.get("/painting/{item_id:path}", response_class=HTMLResponse, include_in_schema=False)
    def painting(request: Request, item_id: str, sim: str = "image"):
        _get(item_id)
        sim = sim if sim in SIMILARITY_MODES else "image"
        preds, pred_error = _predictions(item_id)
        similar = None
        if ex.index is not None:
            similar = {sim: _similar_one(item_id=item_id, mode=sim)}
        flags = ex.outliers.for_id(item_id) if ex.outliers is not None else []
        decisions = {d["task"]: d for d in ex.reviews.current(item_id)}
        known = ex.row_of
        flag_views = [evidence_view(f["extra"], known) for f in flags]
        prev_id, next_id = ex.neighbours(item_id)
        queue_pos = {}
        if ex.outliers is not None:
            for i, r in enumerate(ex.outliers.queue):
                if r["id"] == item_id:
                    queue_pos[r["task"]] = i
        return render(request, "painting.html", nav="gallery", p=ex.summary(item_id), meta=ex.metadata(item_id),
                    preds=preds, pred_error=pred_error, similar=similar, flags=flags, flag_views=flag_views,
                    decisions=decisions, prev_id=prev_id, next_id=next_id, queue_pos=queue_pos, sim_mode=sim,
                    sim_href=lambda m: f"{_pid_url(item_id)}?sim={m}#similar",
                    history=ex.reviews.history(item_id, limit=20))

    @app.get("/upload", response_class=HTMLResponse, include_in_schema=False)
    def upload_form(request: Request):
        return render(request, "upload.html", nav="upload", result=None)

    @app.post("/upload", response_class=HTMLResponse, include_in_schema=False)
    def upload(request: Request, file: UploadFile = File(...)):
        try:
            data = _read_upload(file, cfg.max_upload_bytes)
            img = _decode_upload(data, cfg.max_upload_pixels)
        except HTTPException as exc:
            return render(request, "upload.html", exc.status_code, nav="upload", result=None, error=exc.detail,
                        filename=file.filename)
        result: dict[str, Any] = {"filename": file.filename, "width": img.width, "height": img.height,
                                  "preview": data_url(img), "bytes": len(data)}
        if ex.run is not None:
            try:
                result["preds"] = ex.predict_image(img)
            except Exception as exc:
                log.exception("prediction failed for an upload")
                result["pred_error"] = f"prediction failed: {type(exc).__name__}: {exc}"
        sim_href = None
        if ex.index is not None:
            result["token"] = token = ex.keep_upload(img)
            result["similar"] = {"image": _similar_one(image=img, mode="image")}
            sim_href = lambda m: f"/similar-panel?upload={token}&mode={m}"  # noqa: E731
        return render(request, "upload.html", nav="upload", result=result, sim_href=sim_href)

    @app.get("/similar-panel", response_class=HTMLResponse, include_in_schema=False)
    def similar_panel(request: Request, mode: str = "image", id: str | None = None, upload: str | None = None,
                      k: int = Query(12, ge=1, le=100)):
        """The results of one similarity tab, as an HTML fragment (loaded when the tab opens)."""
        if mode not in SIMILARITY_MODES:
            raise HTTPException(400, f"mode must be one of {', '.join(SIMILARITY_MODES)}")
        if ex.index is None:
            r = {"mode": mode, "results": [], "message": ex.status()["index"]["message"]}
        elif id is not None:
            _get(id)
            r = _similar_one(item_id=id, mode=mode, k=k)
        elif upload is not None:
            img = ex.uploads.get(upload)
            if img is None:
                r = {"mode": mode, "results": [], "message": "this upload has expired; upload the image again"}
            else:
                r = _similar_one(image=img, mode=mode, k=k)
        else:
            raise HTTPException(400, "give id or upload")
        return templates.TemplateResponse(request, "similar_panel.html", {"request": request, "r": r})

    @app.get("/review", response_class=HTMLResponse, include_in_schema=False)
    def review(request: Request, task: str | None = None, pos: int | None = None, after: int | None = None):
        if ex.outliers is None:
            return render(request, "review.html", nav="review", item=None, queue=[], unavailable=True)
        queue = [r for r in ex.outliers.queue if not task or r["task"] == task]
        decided = ex.reviews.current_map()
        undecided = [i for i, r in enumerate(queue) if (r["id"], r["task"]) not in decided]
        if pos is None:
            if after is not None:
                pos = next((i for i in undecided if i > after), undecided[0] if undecided else None)
            else:
                pos = undecided[0] if undecided else None
        if pos is not None and not (0 <= pos < len(queue)):
            pos = undecided[0] if undecided else None
        item = dict(queue[pos]) if pos is not None else None
        ctx: dict[str, Any] = {}
        if item is not None:
            item["painting"] = ex.summary(item["id"])
            item["decision"] = decided.get((item["id"], item["task"]))
            item["evidence_rows"] = evidence_view(item["extra"], ex.row_of)
            ctx["classes"] = ex.tasks[item["task"]].classes
            ctx["item_preds"], ctx["pred_error"] = _predictions(item["id"])
        done = len(queue) - len(undecided)
        return render(request, "review.html", nav="review", item=item, pos=pos, queue=queue, task=task or "",
                    decided=decided, done=done, total=len(queue), review_tasks=ex.outliers.tasks,
                    counts=ex.reviews.counts(), unavailable=False, **ctx)

    @app.post("/review/decide", include_in_schema=False)
    def review_decide(request: Request, id: str = Form(...), task: str = Form(...), action: str = Form(...),
                      label: str | None = Form(None), pos: int | None = Form(None),
                      queue_task: str | None = Form(None), back: str | None = Form(None)):
        _decide(id, task, action, label or None, "web")
        if back == "painting":
            return RedirectResponse(_pid_url(id) + "#review", status_code=303)
        params = {}
        if queue_task:
            params["task"] = queue_task
        if action == "undo" and pos is not None:
            params["pos"] = pos
        elif pos is not None:
            params["after"] = pos
        return RedirectResponse("/review" + ("?" + urlencode(params) if params else ""), status_code=303)

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs(request: Request):
        spec = app.openapi()
        ops = []
        for path, methods in spec.get("paths", {}).items():
            for method, op in methods.items():
                ops.append({"path": path, "method": method.upper(), **op})
        return render(request, "docs.html", nav="docs", spec=spec, ops=ops,
                    schemas=spec.get("components", {}).get("schemas", {}), json=json)

    # ------------------------------------------------------------------ images
    @app.get("/thumb/{item_id:path}", include_in_schema=False)
    def thumb(item_id: str, size: int = Query(256, ge=16, le=1024)):
        data = ex.images.thumbnail(item_id, size)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=3600"})

    @app.get("/image/{item_id:path}", include_in_schema=False)
    def image(item_id: str):
        data = ex.images.display(item_id)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=3600"})

    # ------------------------------------------------------------------ API
    @app.get("/api/health", tags=["status"], summary="Server status and what is loaded")
    def api_health():
        return {"status": "ok", "version": __version__, **ex.status()}

    @app.get("/api/paintings", tags=["paintings"], summary="List paintings (filter, search, paginate)")
    def api_paintings(q: str | None = Query(None, description="search in id and title"),
                      split: str | None = Query(None, description="train, val or test"),
                      label: list[str] = Query(default=[], description="TASK:LABEL, repeatable"),
                      flagged: bool = Query(False, description="only paintings flagged by the outlier table"),
                      page: int = Query(1, ge=1), per_page: int = Query(48, ge=1, le=500)):
        data = _gallery(q, split, label, flagged, page, per_page)
        for it in data["items"]:
            it["url"] = _pid_url(it["id"])
            it["thumb_url"] = _thumb_url(it["id"])
        return data

    @app.get("/api/paintings/{item_id:path}", tags=["paintings"],
             summary="One painting: labels, metadata, predictions, outlier rows and review decisions")
    def api_painting(item_id: str, predictions: bool = Query(True, description="include the model's top-3")):
        _get(item_id)
        out = ex.summary(item_id)
        out["metadata"] = ex.metadata(item_id)
        out["path"] = ex.row(item_id)["path"]
        out["image_url"] = _image_url(item_id)
        out["thumb_url"] = _thumb_url(item_id)
        if predictions:
            preds, err = _predictions(item_id)
            out["predictions"] = preds
            out["predictions_message"] = err or (None if ex.run is not None else ex.status()["run"]["message"])
        out["outliers"] = ex.outliers.for_id(item_id) if ex.outliers is not None else []
        out["reviews"] = ex.reviews.current(item_id)
        return out

    @app.post("/api/predict", tags=["model"], summary="Predict the labels of an uploaded image",
              responses={400: {"description": "not an image"}, 413: {"description": "too large"},
                         503: {"description": "no model run loaded"}})
    def api_predict(file: UploadFile = File(..., description="an image file"),
                    top_k: int = Query(3, ge=1, le=50), similar: bool = Query(False, description="also search "
                                                                               "the index (mode=image)"),
                    k: int = Query(12, ge=1, le=100)):
        data = _read_upload(file, cfg.max_upload_bytes)
        img = _decode_upload(data, cfg.max_upload_pixels)
        out: dict[str, Any] = {"filename": file.filename, "width": img.width, "height": img.height,
                               "predictions": ex.predict_image(img, top_k)}
        if similar:
            out["similar"] = _api_similar(image=img, mode="image", k=k)
        return out

    @app.get("/api/similar", tags=["model"], summary="Paintings similar to a catalogue painting")
    def api_similar(id: str = Query(..., description="painting id"),
                    mode: Literal["image", "face", "pose"] = "image", k: int = Query(12, ge=1, le=100)):
        _get(id)
        return _api_similar(item_id=id, mode=mode, k=k)

    @app.post("/api/similar", tags=["model"], summary="Paintings similar to an uploaded image")
    def api_similar_upload(file: UploadFile = File(...), mode: Literal["image", "face", "pose"] = Query("image"),
                           k: int = Query(12, ge=1, le=100)):
        data = _read_upload(file, cfg.max_upload_bytes)
        img = _decode_upload(data, cfg.max_upload_pixels)
        if ex.index is None:
            raise FeatureUnavailable(ex.status()["index"]["message"])
        return _api_similar(image=img, mode=mode, k=k)

    @app.get("/api/outliers", tags=["review"], summary="Rows of the outlier table")
    def api_outliers(flagged: bool = Query(True, description="only flagged rows (the review queue)"),
                     task: str | None = None, id: str | None = None, limit: int = Query(1000, ge=1, le=100000)):
        if ex.outliers is None:
            raise FeatureUnavailable(ex.status()["outliers"]["message"])
        if id is not None:
            rows = ex.outliers.for_id(id)
            rows = [r for r in rows if r["flagged"]] if flagged else rows
        else:
            rows = ex.outliers.queue if flagged else [ex.outliers._row(r) for r in ex.outliers.df.to_dict("records")]
        if task:
            rows = [r for r in rows if r["task"] == task]
        return {"total": len(rows), "rows": rows[:limit], "table": ex.outliers.summary()}

    @app.get("/api/review/queue", tags=["review"], summary="The review queue with each item's decision")
    def api_queue(task: str | None = None, undecided: bool = False):
        if ex.outliers is None:
            raise FeatureUnavailable(ex.status()["outliers"]["message"])
        decided = ex.reviews.current_map()
        items = []
        for pos, r in enumerate(x for x in ex.outliers.queue if not task or x["task"] == task):
            d = decided.get((r["id"], r["task"]))
            if undecided and d is not None:
                continue
            items.append({"pos": pos, **r, "decision": d})
        return {"total": len(items), "items": items}

    @app.get("/api/reviews", tags=["review"], summary="Current review decisions", response_model=list[ReviewOut])
    def api_reviews(id: str | None = None, task: str | None = None):
        return ex.reviews.current(id, task)

    @app.get("/api/reviews/history", tags=["review"], summary="Every decision ever recorded, newest first")
    def api_history(id: str | None = None, task: str | None = None, limit: int = Query(1000, ge=1, le=100000)):
        return ex.reviews.history(id, task, limit)

    @app.post("/api/reviews", tags=["review"], summary="Record a review decision",
              response_model=ReviewOut | None)
    def api_review(body: ReviewIn):
        return _decide(body.id, body.task, body.action, body.label, "api")

    @app.get("/api/reviews/export", tags=["review"],
             summary="Download the corrected labels: a catalogue (.parquet) or the decisions (.csv)")
    def api_export(format: Literal["catalog", "csv"] = "csv"):
        stem = Path(str(ex.catalog.path)).stem
        if format == "csv":
            csv = decisions_frame(ex.reviews.current()).to_csv(index=False)
            return Response(csv, media_type="text/csv",
                            headers={"Content-Disposition": f'attachment; filename="{stem}.reviews.csv"'})
        tmpdir = tempfile.mkdtemp(prefix="artextract-export-")
        out = Path(tmpdir) / f"{stem}.reviewed.parquet"
        try:
            export_reviews(ex.catalog, ex.reviews, out, "catalog")
            _absolute_root(out)
        except Exception:
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise
        return FileResponse(out, media_type="application/vnd.apache.parquet", filename=out.name,
                            background=BackgroundTask(shutil.rmtree, tmpdir, True))

    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory artextract.web.app:app_from_env``: the configuration is the
    JSON in ``ARTEXTRACT_WEB_CONFIG`` (the fields of :class:`WebConfig`)."""
    raw = os.environ.get("ARTEXTRACT_WEB_CONFIG")
    if not raw:
        raise RuntimeError("set ARTEXTRACT_WEB_CONFIG to a JSON object with at least {\"catalog\": PATH}")
    return create_app(WebConfig(**json.loads(raw)))

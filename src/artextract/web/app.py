"""The FastAPI app: server-rendered pages (Jinja2) and a JSON API under ``/api``.

Everything is served from this process (templates, CSS, JS, images): no CDN, works offline. The
API is described by ``/openapi.json`` and the offline ``/docs`` page rendered from it. The routes
live in :mod:`artextract.web.routes` (pages, paintings API, review API); each reads the explorer
from ``app.state.explorer``.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Iterable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..extras import ExtraMissing
from . import deps  # noqa: F401 (adds the explorer's globals to the templates)
from .templating import HERE, render
from .explorer import Explorer, FeatureUnavailable, WebConfig
from .images import ImageNotFound
from .uploads import DecodeBudget, use_large_blocks
from .auth import AuthMiddleware, LoginThrottle
from .auth import router as auth_router
from .middleware import DEFAULT_MAX_BODY, LOOPBACK_NAMES, BodyLimitMiddleware, HostMiddleware, SameOriginMiddleware
from .routes import pages, paintings, review

log = logging.getLogger(__name__)

#: a 422 reply lists at most this many validation errors, each input shown up to this many characters
MAX_ERRORS, MAX_ECHO = 20, 200


def _wants_json(request: Request) -> bool:
    p = request.url.path
    return p.startswith("/api") or p.startswith("/thumb/") or p.startswith("/image/") or p == "/openapi.json"


def _add_error_handlers(app: FastAPI) -> None:
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
        shown = [_trim_error(e) for e in errors[:MAX_ERRORS]]
        msg = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in shown)
        if len(errors) > MAX_ERRORS:
            msg += f"; and {len(errors) - MAX_ERRORS} more"
        if _wants_json(request):
            body = {"detail": msg or "invalid request", "errors": shown}
            if len(errors) > MAX_ERRORS:
                body["errors_left_out"] = len(errors) - MAX_ERRORS
            return JSONResponse(body, status_code=422)
        return render(request, "error.html", 422, title="Invalid request", message=msg)

    @app.exception_handler(FeatureUnavailable)
    async def unavailable(request: Request, exc: FeatureUnavailable):
        if _wants_json(request):
            return JSONResponse({"detail": str(exc)}, status_code=503)
        return render(request, "error.html", 503, title="Not available", message=str(exc))

    @app.exception_handler(ExtraMissing)
    async def extra_missing(request: Request, exc: ExtraMissing):  # e.g. face search without [faces]
        if _wants_json(request):
            return JSONResponse({"detail": str(exc), "extra": exc.extra}, status_code=503)
        return render(request, "error.html", 503, title="Not installed", message=str(exc))

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


def _clip(text: str, n: int = MAX_ECHO) -> str:
    return text if len(text) <= n else f"{text[:n]}… ({len(text):,} characters)"


def _trim_error(e: dict) -> dict:
    """One validation error as a 422 reply shows it: the type, where, why, and the input only
    when it is short (a long input is cut; the reply never echoes a large body back)."""
    out = {"type": str(e.get("type", "")), "loc": [x if isinstance(x, int) else _clip(str(x), 80)
                                                   for x in list(e.get("loc", ()))[:10]],
           "msg": _clip(str(e.get("msg", "")), 300)}
    if "input" in e:
        v = e["input"]
        if isinstance(v, str):
            out["input"] = _clip(v)
        else:
            try:
                text = json.dumps(v, default=str)
                plain = json.loads(text)  # an uploaded file, a date ...: as text
            except (TypeError, ValueError):
                text = plain = repr(v)
            out["input"] = plain if len(text) <= MAX_ECHO else _clip(text)
    if e.get("ctx"):
        out["ctx"] = {str(k): _clip(str(v), 120) for k, v in list(e["ctx"].items())[:5]}
    return out


def _selection_limit(explorer: Explorer) -> int:
    """The body limit of ``/api/selections``: room for every id of the catalogue, JSON-escaped."""
    ids = explorer.df["id"].astype(str).tolist()
    return DEFAULT_MAX_BODY + len(json.dumps({"ids": ids}))


def create_app(config: WebConfig | None = None, *, explorer: Explorer | None = None,
               allowed_hosts: Iterable[str] | None = None, ip_port: int | None = None) -> FastAPI:
    """The explorer's web app.

    Parameters
    ----------
    config : WebConfig, optional
        What to serve; an :class:`Explorer` is built from it.
    explorer : Explorer, optional
        An explorer already built (takes the place of ``config``).
    allowed_hosts : iterable of str, optional
        The ``Host`` header values answered, as ``name`` (any port) or ``name:port``; any other is
        refused with 400. Default: ``localhost``, ``127.0.0.1`` and ``[::1]``, on any port.
        ``artextract serve`` passes the names of its bind address and port and its ``--allowed-host``
        values (see :func:`artextract.web.middleware.hosts_for_bind`).
    ip_port : int, optional
        Also answer a Host that is any IP address on this port (a server on every interface).

    Returns
    -------
    fastapi.FastAPI
        The app, with the explorer in ``app.state.explorer``.
    """
    if explorer is None:
        if config is None:
            raise ValueError("create_app needs a WebConfig or an Explorer")
        explorer = Explorer(config)
    app = FastAPI(
        title="ArtExtract explorer",
        version=__version__,
        description="Browse a painting catalogue, see the model's predictions and similar paintings, "
                    "and review flagged labels. All JSON endpoints live under /api.",
        docs_url=None, redoc_url=None,  # the stock pages load their assets from a CDN; /docs is ours
        openapi_tags=[{"name": "status"}, {"name": "paintings"}, {"name": "model"}, {"name": "review"}],
    )
    app.state.explorer = explorer
    app.state.login_throttle = LoginThrottle(base=explorer.config.login_delay)
    app.state.decode_budget = DecodeBudget(explorer.config.decode_budget_pixels)
    use_large_blocks()
    # outermost last: the Host check, the same-origin check, then who is asking, then the body limits
    app.add_middleware(BodyLimitMiddleware, max_upload=explorer.config.max_upload_bytes,
                       limits={"/api/selections": _selection_limit(explorer)})
    app.add_middleware(AuthMiddleware, store=explorer.reviews, enabled=explorer.config.auth)
    app.add_middleware(SameOriginMiddleware)
    app.add_middleware(HostMiddleware, allowed=list(LOOPBACK_NAMES if allowed_hosts is None else allowed_hosts),
                       ip_port=ip_port)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _add_error_handlers(app)
    app.include_router(auth_router)
    for module in (pages, paintings, review):
        app.include_router(module.router)
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory artextract.web.app:app_from_env``: the configuration is the
    JSON in ``ARTEXTRACT_WEB_CONFIG`` (the fields of :class:`WebConfig`, and ``allowed_hosts``: the
    Host names answered, default localhost, 127.0.0.1 and [::1])."""
    raw = os.environ.get("ARTEXTRACT_WEB_CONFIG")
    if not raw:
        raise RuntimeError("set ARTEXTRACT_WEB_CONFIG to a JSON object with at least {\"catalog\": PATH}")
    fields = json.loads(raw)
    hosts = fields.pop("allowed_hosts", None)
    return create_app(WebConfig(**fields), allowed_hosts=hosts)

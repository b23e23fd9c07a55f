"""The explorer's page templates: the Jinja environment (:func:`artextract.render.environment`, shared with
the written report and outlier page), its URL helpers, and :func:`render`.

A leaf module: it imports nothing of the web package (the explorer of a request is read from
``request.app.state``), so the routers, the shared helpers (:mod:`.deps`) and the sign-in pages
(:mod:`.auth`) can all render pages without importing each other. :mod:`.deps` adds the
explorer-specific globals (the similarity modes). Needs the ``web`` extra (fastapi).
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from ..render import environment

HERE = Path(__file__).parent


# ---------------------------------------------------------------------- URLs
def pid_url(item_id: str) -> str:
    return "/painting/" + quote(item_id, safe="/")


def thumb_url(item_id: str, size: int = 256) -> str:
    return f"/thumb/{quote(item_id, safe='/')}?size={size}"


def image_url(item_id: str) -> str:
    return "/image/" + quote(item_id, safe="/")


# ---------------------------------------------------------------------- templates
templates = Jinja2Templates(env=environment(HERE / "templates"))
templates.env.globals.update(pid_url=pid_url, thumb_url=thumb_url, image_url=image_url, quote=quote)


def current_user(request: Request) -> str | None:
    """The signed-in reviewer of ``request`` (None when sign-in is off)."""
    return getattr(request.state, "user", None)


def review_left(ex) -> int:
    """How many flagged labels of the explorer ``ex``'s review queue nobody has decided yet."""
    decided = ex.reviews.current_map()
    return sum(1 for r in ex.outliers.queue if (r["id"], r["task"]) not in decided)


def render(request: Request, name: str, status: int = 200, **ctx) -> HTMLResponse:
    """Render a page template with what every page shows (the explorer, its tasks, the queue badge,
    the signed-in reviewer and the CSRF token of the session)."""
    ex = request.app.state.explorer
    ctx.setdefault("nav", "")
    base = {"request": request, "ex": ex, "tasks": ex.tasks,
            "review_left": review_left(ex) if ex.outliers is not None else None,
            "user": current_user(request), "csrf_token": getattr(request.state, "csrf", None) or "",
            "auth_on": bool(getattr(request.state, "auth_on", False))}
    return templates.TemplateResponse(request, name, {**base, **ctx}, status_code=status)

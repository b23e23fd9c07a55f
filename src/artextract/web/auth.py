"""Sign-in for the explorer: reviewer accounts, sessions, API tokens and CSRF tokens.

Once the review database holds a user (``artextract users add``), every page and API route needs a
signed-in session (an HttpOnly, SameSite=Strict cookie) or ``Authorization: Bearer TOKEN``; only
``/login``, ``/static/`` and ``/api/health`` are open. A form posted from a session carries the
session's CSRF token (``csrf_token`` field); a JSON call from a session carries it in the
``X-CSRF-Token`` header. Failed sign-ins are answered more and more slowly.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import threading
import time
from urllib.parse import quote, urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from .db import ReviewStore

log = logging.getLogger(__name__)

SESSION_COOKIE = "artextract_session"
LOGIN_COOKIE = "artextract_login"
PUBLIC_PATHS = ("/login", "/api/health", "/favicon.ico")
PUBLIC_PREFIXES = ("/static/",)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

_hasher = PasswordHasher()
_DUMMY = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (argon2-cffi's default parameters)."""
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches the ``stored`` hash; with no hash, the same work against a dummy."""
    try:
        return _hasher.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def wants_json(path: str) -> bool:
    """Routes that answer JSON or images (401 there; pages redirect to /login instead)."""
    return path.startswith(("/api", "/thumb/", "/image/")) or path in ("/openapi.json", "/similar-panel")


class LoginThrottle:
    """Failed sign-ins per user name and per client address: each one doubles the wait before the
    next answer (``base`` seconds after the first, at most ``cap``); a success resets the name."""

    def __init__(self, base: float = 0.5, cap: float = 8.0, window: float = 900.0):
        self.base, self.cap, self.window = base, cap, window
        self._fails: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> int:
        times = [t for t in self._fails.get(key, []) if now - t < self.window]
        self._fails[key] = times
        return len(times)

    def delay(self, *keys: str) -> float:
        now = time.monotonic()
        with self._lock:
            n = max((self._recent(k, now) for k in keys), default=0)
        return 0.0 if n == 0 else min(self.cap, self.base * 2 ** (n - 1))

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for k in keys:
                self._fails.setdefault(k, []).append(now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._fails.pop(key, None)


async def _send_json(send, status: int, body: dict, headers: list | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


class AuthMiddleware:
    """Resolves who is asking (session cookie or bearer token) and refuses anonymous requests once
    users exist. Sets ``request.state.user``, ``.csrf``, ``.auth_via`` and ``.auth_on``."""

    def __init__(self, app, store: ReviewStore, enabled: bool = True):
        self.app, self.store, self.enabled = app, store, enabled

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = scope.setdefault("state", {})
        on = self.enabled and self.store.has_users()
        state["auth_on"] = on
        if not on:
            return await self.app(scope, receive, send)
        path = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        user = csrf = via = None
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            user = self.store.user_for_token(auth[7:].strip())
            via = "token" if user else None
            if user is None and not _public(path):
                return await _send_json(send, 401, {"detail": "invalid API token"},
                                        [(b"www-authenticate", b'Bearer error="invalid_token"')])
        else:
            sid = _cookie(headers.get("cookie", ""), SESSION_COOKIE)
            sess = self.store.session(sid) if sid else None
            if sess is not None:
                user, csrf, via = sess["name"], sess["csrf"], "session"
        state.update(user=user, csrf=csrf, auth_via=via)
        if user is None and not _public(path):
            if wants_json(path):
                return await _send_json(send, 401, {"detail": "sign in first: open /login, or send "
                                                              "Authorization: Bearer TOKEN (artextract users token)"},
                                        [(b"www-authenticate", b"Bearer")])
            target = path + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
            loc = "/login?next=" + quote(target, safe="")
            await send({"type": "http.response.start", "status": 303,
                        "headers": [(b"location", loc.encode()), (b"content-length", b"0")]})
            return await send({"type": "http.response.body", "body": b""})
        if (via == "session" and scope["method"] not in SAFE_METHODS and path.startswith("/api")
                and not hmac.compare_digest(headers.get("x-csrf-token", ""), csrf or "")):
            return await _send_json(send, 403, {"detail": "missing or wrong X-CSRF-Token header for this session"})
        return await self.app(scope, receive, send)


def _public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        k, _, v = part.strip().partition("=")
        if k == name and v:
            return v
    return None


def check_csrf(request: Request, token: str | None) -> None:
    """Refuse a form post from a signed-in session that lacks the session's CSRF token."""
    if getattr(request.state, "auth_via", None) != "session":
        return
    expected = getattr(request.state, "csrf", None) or ""
    if not token or not hmac.compare_digest(token, expected):
        raise HTTPException(403, "this form is missing its CSRF token (reload the page and try again)")


def _safe_next(target: str | None) -> str:
    if not target or not target.startswith("/") or target.startswith("//") or urlsplit(target).netloc:
        return "/"
    return target


# ---------------------------------------------------------------------- routes
router = APIRouter(include_in_schema=False)


def _login_page(request: Request, status: int = 200, error: str | None = None, next_url: str = "/",
                name: str = "") -> HTMLResponse:
    from .deps import render

    token = secrets.token_urlsafe(24)
    resp = render(request, "login.html", status, nav="login", error=error, next_url=next_url, login_name=name,
                  login_csrf=token)
    resp.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", path="/login",
                    secure=request.url.scheme == "https")
    return resp


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None):
    if not request.state.auth_on:
        return RedirectResponse("/", status_code=303)
    return _login_page(request, next_url=_safe_next(next))


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, name: str = Form(""), password: str = Form(""), next: str = Form("/"),
                csrf_token: str = Form("")):
    ex = request.app.state.explorer
    if not request.state.auth_on:
        return RedirectResponse("/", status_code=303)
    expected = request.cookies.get(LOGIN_COOKIE) or ""
    if not expected or not hmac.compare_digest(csrf_token, expected):
        raise HTTPException(403, "the sign-in form is missing its CSRF token (reload the page and try again)")
    throttle: LoginThrottle = request.app.state.login_throttle
    client = request.client.host if request.client else "?"
    keys = ("name:" + name.lower(), "ip:" + client)
    wait = throttle.delay(*keys)
    if wait:
        await asyncio.sleep(wait)
    ok = await run_in_threadpool(ex.reviews.check_password, name, password)
    if not ok:
        throttle.failed(*keys)
        log.warning("failed sign-in for %r from %s", name, client)
        return _login_page(request, 401, "Wrong name or password.", _safe_next(next), name)
    throttle.succeeded(keys[0])
    sid, _ = ex.reviews.new_session(name)
    resp = RedirectResponse(_safe_next(next), status_code=303)
    resp.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="strict", path="/",
                    secure=request.url.scheme == "https", max_age=12 * 3600)
    resp.delete_cookie(LOGIN_COOKIE, path="/login")
    return resp


@router.post("/logout")
def logout(request: Request, csrf_token: str = Form("")):
    check_csrf(request, csrf_token)
    sid = request.cookies.get(SESSION_COOKIE)
    if sid:
        request.app.state.explorer.reviews.end_session(sid)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp

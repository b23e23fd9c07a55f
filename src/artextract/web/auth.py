"""Sign-in for the explorer: reviewer accounts, sessions, API tokens and CSRF tokens.

Once the review database holds a user (``artextract users add``), every page and API route needs a
signed-in session (an HttpOnly, SameSite=Strict cookie) or ``Authorization: Bearer TOKEN``; only
``/login``, ``/static/`` and ``/api/health`` are open. A form posted from a session carries the
session's CSRF token (``csrf_token`` field); a JSON call from a session carries it in the
``X-CSRF-Token`` header. Failed sign-ins slow down the next attempts on that account from that
address (:class:`LoginThrottle`).
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from ..errors import ArtExtractError
from . import security  # noqa: F401  (argon2 loaded and its dummy hash made with the app, not at the first sign-in)
from .db import ReviewStore
from .templating import render

log = logging.getLogger(__name__)

SESSION_COOKIE = "artextract_session"
LOGIN_COOKIE = "artextract_login"
PUBLIC_PATHS = ("/login", "/api/health", "/favicon.ico")
PUBLIC_PREFIXES = ("/static/",)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

def wants_json(path: str) -> bool:
    """Routes that answer JSON or images (401 there; pages redirect to /login instead)."""
    return path.startswith(("/api", "/thumb/", "/image/")) or path in ("/openapi.json", "/similar-panel")


class LoginRefused(ArtExtractError):
    """An attempt whose turn is too far away; ``retry_after`` is when one would be accepted (seconds)."""

    def __init__(self, retry_after: float):
        super().__init__(f"too many sign-in attempts; try again in {math.ceil(retry_after)} s")
        self.retry_after = retry_after


@dataclass
class _Guesses:
    failures: int = 0  # attempts booked and not (yet) succeeded
    next_at: float = 0.0  # the earliest time the next attempt's password may be checked
    last: float = 0.0  # when the latest attempt's turn was


class LoginThrottle:
    """Slows password guessing, per account and client address.

    Each failed sign-in on an account from an address doubles the wait before that address's next
    attempt on that account is checked: ``base`` seconds after the first failure, at most ``cap``
    (default 16 x ``base``). An attempt books its turn before it waits, under a lock, so guesses sent
    in parallel queue one behind the other as if they had been sent one after another; an attempt
    whose turn is more than ``cap`` seconds away is refused at once (:class:`LoginRefused`) rather
    than held open. A success clears the pair; failures are forgotten ``window`` seconds after the
    last one.

    The key is the pair (account, address): guesses from other addresses never slow a reviewer's
    sign-in, nor do guesses at other accounts from the reviewer's own address, and nobody can lock a
    reviewer out. At most ``max_pairs`` pairs are kept (the least recently tried go first).
    """

    def __init__(self, base: float = 0.5, cap: float | None = None, window: float = 900.0,
                 max_pairs: int = 100_000, clock=time.monotonic):
        self.base = base
        self.cap = 16 * base if cap is None else cap
        self.window, self.max_pairs, self.clock = window, max_pairs, clock
        self._pairs: OrderedDict[tuple[str, str], _Guesses] = OrderedDict()
        self._lock = threading.Lock()

    def wait_after(self, failures: int) -> float:
        """Seconds between the check of the ``failures``-th failed attempt and that of the next one."""
        return 0.0 if failures <= 0 else min(self.cap, self.base * 2 ** (failures - 1))

    def book(self, account: str, address: str) -> tuple[tuple[str, str], float]:
        """Book an attempt to sign in to ``account`` from ``address``; it counts as failed until
        :meth:`succeeded` says otherwise.

        Returns
        -------
        (key, float)
            The pair's key (for :meth:`failed` and :meth:`succeeded`), and the seconds to wait before
            the password is checked.

        Raises
        ------
        LoginRefused
            The attempt's turn is more than ``cap`` seconds away.
        """
        key = (account.strip().lower()[:200], address)
        now = self.clock()
        with self._lock:
            g = self._pairs.get(key)
            if g is not None and now >= g.next_at and now - g.last > self.window:
                g = None
            if g is None:
                g = self._pairs[key] = _Guesses()
                while len(self._pairs) > self.max_pairs:
                    self._pairs.popitem(last=False)
            self._pairs.move_to_end(key)
            start = max(now, g.next_at)
            if start - now > self.cap:
                raise LoginRefused(start - now - self.cap)
            g.failures += 1
            g.next_at = start + self.wait_after(g.failures)
            g.last = start
            return key, start - now

    def failed(self, key: tuple[str, str]) -> None:
        """The attempt's password was wrong: the next one waits from now (after its check), not from
        the time the check began."""
        now = self.clock()
        with self._lock:
            g = self._pairs.get(key)
            if g is not None:
                g.next_at = max(g.next_at, now + self.wait_after(g.failures))
                g.last = max(g.last, now)

    def succeeded(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._pairs.pop(key, None)


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
            return await _send_json(send, 403, {"detail": "missing or wrong X-CSRF-Token header for this sign-in"})
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
    try:
        key, wait = throttle.book(name, client)
    except LoginRefused as exc:
        log.warning("sign-in for %r from %s refused: too many attempts", name[:64], client)
        resp = _login_page(request, 429, f"Too many sign-in attempts: try again in {math.ceil(exc.retry_after)} "
                           "seconds.", _safe_next(next), name)
        resp.headers["Retry-After"] = str(math.ceil(exc.retry_after))
        return resp
    if wait:
        await asyncio.sleep(wait)
    ok = await run_in_threadpool(ex.reviews.check_password, name, password)
    if not ok:
        throttle.failed(key)
        log.warning("failed sign-in for %r from %s", name[:64], client)
        return _login_page(request, 401, "Wrong name or password.", _safe_next(next), name)
    throttle.succeeded(key)
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

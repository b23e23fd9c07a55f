"""ASGI middleware of the explorer: the Host check, the request body limits, and the same-origin
check with the security headers."""
from __future__ import annotations

import ipaddress
import json
import logging
import socket
from urllib.parse import urlsplit

from fastapi import HTTPException

log = logging.getLogger(__name__)

UPLOAD_PATHS = ("/upload", "/api/predict", "/api/similar")
#: the body limit of every route that takes no upload: JSON calls and form posts
DEFAULT_MAX_BODY = 1024 * 1024
#: what a multipart envelope adds around an uploaded file
ENVELOPE = 64 * 1024


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


def split_host(value: str) -> tuple[str, int | None] | None:
    """``"Name:8000"`` -> ``("name", 8000)``, ``"[::1]"`` -> ``("[::1]", None)``; None when ``value``
    is not a host name or address with an optional port."""
    v = value.strip().lower()
    if not v or any(c in v for c in "/?#@ \t\\"):
        return None
    if v.startswith("["):
        end = v.find("]")
        if end < 0:
            return None
        host, rest = v[:end + 1], v[end + 1:]
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return None
    else:
        host, sep, port = v.partition(":")
        rest = sep + port
    if rest and (not rest.startswith(":") or not rest[1:].isdigit() or not 0 < int(rest[1:]) < 65536):
        return None
    host = host.rstrip(".") if not host.startswith("[") else host
    return (host, int(rest[1:]) if rest else None) if host else None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def hosts_for_bind(host: str, port: int) -> tuple[list[str], bool]:
    """The ``Host`` values a server listening on ``host:port`` answers, and whether it also answers
    any IP address on that port (it listens on every interface: an IP address in the Host header
    cannot come from DNS rebinding, which needs a name).

    Loopback (``127.0.0.1``, ``::1``, ``localhost``): the bind address and ``localhost``,
    ``127.0.0.1`` and ``[::1]``. Every interface (``0.0.0.0``, ``::``): those, this machine's name,
    and IP addresses. Any other address or name: itself. Always with the port.
    """
    h = host.strip().strip("[]").lower()
    wildcard = h in ("", "0.0.0.0", "::")
    names: list[str] = []
    try:
        ip = ipaddress.ip_address(h)
        names.append(f"[{h}]" if ip.version == 6 else h)
        loopback = ip.is_loopback
    except ValueError:
        if h:
            names.append(h)
        loopback = h == "localhost"
    if loopback or wildcard:
        names += LOOPBACK_NAMES
    if wildcard:
        names = [n for n in names if n not in ("0.0.0.0", "[::]")]
        machine = socket.gethostname().lower()
        if machine:
            names.append(machine)
    return list(dict.fromkeys(f"{n}:{port}" for n in names)), wildcard


class HostMiddleware:
    """Answers only requests whose ``Host`` header names this server (400 for any other, before
    anything else runs): a page on another site whose name resolves to this machine (DNS rebinding)
    cannot reach it.

    ``allowed`` holds ``name`` (any port) or ``name:port`` entries; ``ip_port``, when set, also
    accepts any IP address on that port.
    """

    def __init__(self, app, allowed, ip_port: int | None = None):
        self.app = app
        self.allowed = set()
        for entry in allowed:
            parsed = split_host(entry)
            if parsed is None:
                raise ValueError(f"not a host name, or host:port: {entry!r}")
            self.allowed.add(parsed)
        self.ip_port = ip_port

    def accepts(self, value: str, scheme: str = "http") -> bool:
        parsed = split_host(value)
        if parsed is None:
            return False
        host, port = parsed
        if port is None:
            port = 443 if scheme in ("https", "wss") else 80
        if (host, port) in self.allowed or (host, None) in self.allowed:
            return True
        return self.ip_port is not None and port == self.ip_port and _is_ip(host)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        if self.accepts(host, scope.get("scheme", "http")):
            return await self.app(scope, receive, send)
        shown = host if len(host) <= 80 else host[:80] + "…"
        log.warning("refused a request for Host %r (not a name this server answers to)", shown)
        if scope["type"] != "http":
            return await send({"type": "websocket.close", "code": 1008})
        return await _plain(send, 400, f"this server does not answer to the host name {shown!r}; start it with "
                            "--allowed-host NAME to add one")


class BodyTooLarge(HTTPException):
    """A request body passed its route's limit while it was being read (413)."""

    def __init__(self, limit: int, upload: bool):
        super().__init__(413, too_large_message(limit, upload))


def too_large_message(limit: int, upload: bool) -> str:
    if upload:
        return (f"upload too large: the limit is {limit / (1024 * 1024):.3g} MB "
                "(start the server with --max-upload-mb to change it)")
    return f"request body too large: the limit of this route is {_size(limit)}"


def _size(n: int) -> str:
    return f"{n / (1024 * 1024):.3g} MB" if n >= 1024 * 1024 else f"{n / 1024:.3g} kB"


class BodyLimitMiddleware:
    """Refuses request bodies above their route's limit with 413, before they reach memory.

    Upload routes (``paths``) accept ``max_upload`` bytes of file (plus the multipart envelope); a
    route named in ``limits`` (path -> bytes) its own limit; every other route ``default`` bytes.
    A Content-Length above the limit is refused at once, without reading the body; a body sent
    without one (chunked) is counted while it streams in, and refused as soon as it passes the limit.
    """

    def __init__(self, app, max_upload: int, default: int = DEFAULT_MAX_BODY, limits: dict | None = None,
                 paths=UPLOAD_PATHS):
        self.app = app
        self.max_upload, self.default, self.paths = max_upload, default, paths
        self.limits = dict(limits or {})

    def limit_of(self, path: str) -> tuple[int, bool]:
        """``(bytes, is_upload)`` of the route at ``path``."""
        if path in self.paths:
            return self.max_upload + ENVELOPE, True
        return self.limits.get(path, self.default), False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        limit, upload = self.limit_of(path)
        shown = self.max_upload if upload else limit
        cl = dict(scope.get("headers") or []).get(b"content-length")
        if cl is not None:
            try:
                n = int(cl)
            except ValueError:
                return await _plain(send, 400, "invalid Content-Length")
            if n < 0:
                return await _plain(send, 400, "invalid Content-Length")
            if n > limit:
                return await self._too_large(path, send, shown, upload)
        total = 0
        started = False

        async def counted():
            nonlocal total
            msg = await receive()
            if msg["type"] == "http.request":
                total += len(msg.get("body", b""))
                if total > limit:
                    raise BodyTooLarge(shown, upload)
            return msg

        async def watch(msg):
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            return await self.app(scope, counted, watch)
        except BodyTooLarge:
            if started:
                raise
            return await self._too_large(path, send, shown, upload)

    async def _too_large(self, path, send, limit: int, upload: bool):
        log.info("refused a request body over the limit of %s (%d bytes)", path, limit)
        await _plain(send, 413, too_large_message(limit, upload), json_body=not (upload and path == "/upload"))


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

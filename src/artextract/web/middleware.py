"""ASGI middleware of the explorer: the upload size limit, and the same-origin check with the
security headers."""
from __future__ import annotations

import json
from urllib.parse import urlsplit

UPLOAD_PATHS = ("/upload", "/api/predict", "/api/similar")


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
        msg = f"upload too large: the limit is {mb:.3g} MB (start the server with --max-upload-mb to change it)"
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

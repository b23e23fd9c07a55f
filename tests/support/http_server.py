"""One HTTP server for tests: 127.0.0.1, an ephemeral port, threaded, bounded, fault-injecting.

What it answers comes from a :class:`Router` (path patterns -> handlers); the faults, the request
log and the limits are the server's, the same for every use (``tests/data/iiif_server.py``, the
NGA ``FaultServer`` in ``tests/data/nga_fixtures.py``, one-off pages in tests)::

    router = Router().add(r"/page", lambda req: Reply(200, b"<html>", "text/html"))
    with LocalServer(router, faults={"/page": ["503", "429:2"]}) as srv:
        urlopen(srv.base + "/page")

- A route is a regular expression matched against the whole path (the query string left out); the
  first route that matches answers; a path no route matches gets ``404 not found``. A handler takes
  a :class:`Request` (path, query, match, headers, server) and returns a :class:`Reply`.
- ``faults``: fault key -> actions consumed one per request; an action ending in ``*`` repeats
  forever; when the list is used up, requests succeed. The key is the path, or the named group of
  the route's match given as its ``key``. The dict is read at each request: tests may change or
  replace it while the server runs. Actions:

  ``ok``; ``500``, ``503``, ``404`` (an error page, :meth:`LocalServer.error_page`); ``429:N``
  (Retry-After N); ``slow:S`` (sleep S seconds, then the reply); ``drop`` (close without a
  response); ``reset`` (TCP reset); ``truncate`` (the declared length, half the body, close; a
  reply that is not a 200 is sent whole); ``truncate_nolen`` (no length, half the body, close);
  ``html`` (200 text/html instead of the reply); ``html_as_jpeg`` (an HTML body labelled
  image/jpeg).
- ``delay`` slows every request by that many seconds.
- ``log`` holds a :class:`Hit` (time, key, path, action) per request; ``served[path]`` the bytes of
  the last complete 200 response; ``max_inflight`` the most requests handled at once.
- Bounded: past ``max_requests`` requests every request is dropped, so a runaway client fails its
  test instead of hanging it.
"""
from __future__ import annotations

import http.server
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    path: str                    # without the query string
    query: str
    match: re.Match | None       # the route's match (None for a path no route matches)
    headers: dict[str, str]
    server: "LocalServer"


Handler = Callable[[Request], Reply]


class Hit(NamedTuple):
    time: float      # time.monotonic()
    key: str         # the fault key (the path, or the route's key group)
    path: str
    action: str


def not_found(req: Request) -> Reply:
    return Reply(404, b"not found", "text/plain")


class Router:
    """Path patterns (regular expressions, matched whole) -> handlers; the first match answers."""

    def __init__(self):
        self.routes: list[tuple[re.Pattern, Handler, str | None]] = []

    def add(self, pattern: str, handler: Handler, key: str | None = None) -> "Router":
        """Route paths matching ``pattern`` to ``handler``; ``key`` names the group that is the fault key."""
        self.routes.append((re.compile(pattern), handler, key))
        return self

    def route(self, pattern: str, key: str | None = None):
        """Decorator form of :meth:`add`."""
        def deco(fn: Handler) -> Handler:
            self.add(pattern, fn, key)
            return fn
        return deco

    def resolve(self, path: str) -> tuple[Handler, re.Match | None, str]:
        for rx, handler, key in self.routes:
            m = rx.fullmatch(path)
            if m:
                return handler, m, (m.group(key) if key else path)
        return not_found, None, path


HTML_PAGE = b"<!DOCTYPE html><html><body>Please enable cookies</body></html>"
HTML_AS_JPEG = b"<!DOCTYPE html><html><body>Maintenance</body></html>"


class LocalServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 (ephemeral port) answering from ``router``; a context manager."""

    def __init__(self, router: Router, faults: dict[str, list[str]] | None = None, delay: float = 0.0,
                 max_requests: int = 2000):
        self.router = router
        self.faults = {k: list(v) for k, v in (faults or {}).items()}
        self.delay = delay
        self.max_requests = max_requests
        self.log: list[Hit] = []
        self.served: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.inflight = 0
        self.max_inflight = 0
        self.httpd = None
        self.thread = None

    # ------------------------------------------------------------------ what tests read
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def count(self, key: str) -> int:
        return sum(1 for h in self.log if h.key == key)

    def times(self, key: str) -> list[float]:
        return [h.time for h in self.log if h.key == key]

    def error_page(self, code: int) -> tuple[bytes, str]:
        """Body and content type of an injected error (``500``, ``503``, ``404``)."""
        return f"<html>error {code}</html>".encode(), "text/html"

    # ------------------------------------------------------------------ serving
    def _next_action(self, key: str) -> str:
        with self.lock:
            queue = self.faults.get(key)
            if not queue:
                return "ok"
            act = queue[0]
            if act.endswith("*"):
                return act[:-1]
            queue.pop(0)
            return act

    def _serve(self, h: http.server.BaseHTTPRequestHandler) -> None:
        path, _, query = h.path.partition("?")
        handler, match, key = self.router.resolve(path)
        act = self._next_action(key)
        with self.lock:
            self.log.append(Hit(time.monotonic(), key, path, act))
            if len(self.log) > self.max_requests:
                act = "drop"
        if self.delay:
            time.sleep(self.delay)

        if act == "drop":
            h.close_connection = True
            return
        if act == "reset":
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.close_connection = True
            return
        if act in ("500", "503", "404"):
            return _send(h, Reply(int(act), *self.error_page(int(act))))
        if act.startswith("429:"):
            return _send(h, Reply(429, b"slow down", "text/plain", {"Retry-After": act.split(":", 1)[1]}))
        if act == "html":
            return _send(h, Reply(200, HTML_PAGE, "text/html; charset=utf-8"))
        if act == "html_as_jpeg":
            return _send(h, Reply(200, HTML_AS_JPEG, "image/jpeg"))
        if act.startswith("slow:"):
            time.sleep(float(act.split(":", 1)[1]))
        elif act not in ("ok", "truncate", "truncate_nolen"):
            raise AssertionError(f"unknown fault {act}")

        reply = handler(Request(path, query, match, dict(h.headers.items()), self))
        if act in ("truncate", "truncate_nolen") and reply.status == 200:
            h.send_response(200)
            h.send_header("Content-Type", reply.content_type)
            if act == "truncate":
                h.send_header("Content-Length", str(len(reply.body)))
            else:
                h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(reply.body[: len(reply.body) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        if reply.status == 200:
            with self.lock:
                self.served[path] = reply.body
        _send(h, reply)

    def __enter__(self) -> "LocalServer":
        server = self

        class RequestHandler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                with server.lock:
                    server.inflight += 1
                    server.max_inflight = max(server.max_inflight, server.inflight)
                try:
                    server._serve(self)
                finally:
                    with server.lock:
                        server.inflight -= 1

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # clients that time out and go away are expected

        self.httpd = Server(("127.0.0.1", 0), RequestHandler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _send(h: http.server.BaseHTTPRequestHandler, reply: Reply) -> None:
    h.send_response(reply.status)
    h.send_header("Content-Type", reply.content_type)
    h.send_header("Content-Length", str(len(reply.body)))
    for k, v in reply.headers.items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(reply.body)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (a refused connection)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port

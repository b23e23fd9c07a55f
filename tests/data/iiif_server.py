"""A IIIF server on 127.0.0.1 for tests: Presentation documents, Image API services and faults.

- ``documents``: URL path -> JSON file (or bytes) served as ``application/json``.
- ``services``: URL path of an image service -> :class:`Service` (size, Image API version, limits,
  level). ``{service}/info.json`` is generated from it, and ``{service}/full/{size}/0/default.jpg``
  renders a JPEG of the requested size, refusing (400) what a real server of that version and level
  refuses: ``full`` on a version 3 server, upscaling, sizes beyond
  ``maxWidth``/``maxHeight``/``maxArea``, unlisted sizes on a level 0 server.
- ``files``: URL path -> bytes (direct image URLs).
- ``faults``: URL path -> actions consumed one per request (``500``, ``503``, ``404``, ``429:N``
  with Retry-After N, ``drop`` closes without a response, ``truncate`` sends half the body with the
  full Content-Length, and the others of ``support.http_server``); an action ending in ``*``
  repeats forever.

The server is :class:`support.http_server.LocalServer` (the faults, the log, the limits); every
request is logged as a ``Hit`` (time, key = path, path, action); ``served[path]`` holds the bytes of
the last complete response.
"""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from support.http_server import LocalServer, Reply, Request, Router, not_found


@dataclass
class Service:
    width: int
    height: int
    version: int = 3
    level: int = 2
    max_width: int | None = None
    max_height: int | None = None
    max_area: int | None = None
    sizes: list[tuple[int, int]] | None = None
    seed: int = 0

    def info(self, base: str) -> dict:
        if self.version >= 3:
            d = {"@context": "http://iiif.io/api/image/3/context.json", "id": base, "type": "ImageService3",
                 "protocol": "http://iiif.io/api/image", "profile": f"level{self.level}",
                 "width": self.width, "height": self.height}
        else:
            d = {"@context": "http://iiif.io/api/image/2/context.json", "@id": base,
                 "protocol": "http://iiif.io/api/image",
                 "profile": [f"http://iiif.io/api/image/2/level{self.level}.json"],
                 "width": self.width, "height": self.height}
        for k, v in (("maxWidth", self.max_width), ("maxHeight", self.max_height), ("maxArea", self.max_area)):
            if v:
                d[k] = v
        if self.sizes:
            d["sizes"] = [{"width": w, "height": h} for w, h in self.sizes]
        return d

    def resolve(self, param: str) -> tuple[int, int] | str:
        """The (w, h) a request's size parameter gives, or the reason a real server refuses it."""
        W, H = self.width, self.height
        if param == "full":
            if self.version >= 3:
                return "'full' is not a v3 size"
            w, h = W, H
        elif param == "max":
            w, h = W, H
            mw = self.max_width or W
            mh = self.max_height or self.max_width or H
            s = min(1.0, mw / W, mh / H, (self.max_area / (W * H)) ** 0.5 if self.max_area else 1.0)
            w, h = max(1, int(W * s)), max(1, int(H * s))
        elif self.level == 0:
            m = re.fullmatch(r"(\d+),(\d+)", param)
            if not m or (int(m.group(1)), int(m.group(2))) not in (self.sizes or []):
                return f"level 0: size {param} is not one of the listed sizes"
            return int(m.group(1)), int(m.group(2))
        elif m := re.fullmatch(r"!(\d+),(\d+)", param):
            bw, bh = int(m.group(1)), int(m.group(2))
            if self.level < 2:
                return "!w,h needs level 2"
            s = min(bw / W, bh / H)
            w, h = max(1, round(W * s)), max(1, round(H * s))
        elif m := re.fullmatch(r"(\d+),", param):
            w = int(m.group(1))
            h = max(1, round(H * w / W))
        elif m := re.fullmatch(r"(\d+),(\d+)", param):
            w, h = int(m.group(1)), int(m.group(2))
        else:
            return f"unsupported size {param}"
        if w > W or h > H:
            return f"{w}x{h} would upscale a {W}x{H} image"
        mw = self.max_width
        mh = self.max_height or self.max_width
        if (mw and w > mw) or (mh and h > mh) or (self.max_area and w * h > self.max_area):
            return f"{w}x{h} is over the service's limits"
        return w, h

    def render(self, w: int, h: int) -> bytes:
        rng = np.random.default_rng(self.seed)
        yy, xx = np.mgrid[0:h, 0:w]
        c = rng.uniform(0, 255, 3)
        arr = np.stack([(c[0] + 255 * xx / max(1, w)) % 256, (c[1] + 255 * yy / max(1, h)) % 256,
                        np.full((h, w), c[2])], -1).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=85)
        return buf.getvalue()


class IIIFServer(LocalServer):
    def __init__(self, documents: dict[str, Path | bytes] | None = None, services: dict[str, Service] | None = None,
                 files: dict[str, bytes] | None = None, faults: dict[str, list[str]] | None = None):
        super().__init__(Router().add(r"/.*", self._answer), faults)
        self.documents = dict(documents or {})
        self.services = dict(services or {})
        self.files = dict(files or {})

    def error_page(self, code: int) -> tuple[bytes, str]:
        return f"error {code}".encode(), "text/plain"

    def _answer(self, req: Request) -> Reply:
        path = req.path
        if path in self.documents:
            d = self.documents[path]
            return Reply(200, d if isinstance(d, bytes) else Path(d).read_bytes(), "application/json")
        if path in self.files:
            return Reply(200, self.files[path], "image/png" if path.endswith(".png") else "image/jpeg")
        for base, svc in self.services.items():
            if path == base + "/info.json":
                return Reply(200, json.dumps(svc.info(self.base + base)).encode(), "application/json")
            m = re.fullmatch(re.escape(base) + r"/full/([^/]+)/0/default\.jpg", path)
            if m:
                size = svc.resolve(m.group(1))
                if isinstance(size, str):
                    return Reply(400, size.encode(), "text/plain")
                return Reply(200, svc.render(*size), "image/jpeg")
        return not_found(req)

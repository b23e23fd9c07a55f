"""Fault-tolerant IIIF image downloader, for any catalogue with IIIF image services or image URLs.

One downloader serves ``artextract download nga`` and ``artextract download iiif``:

- :func:`download_nga`: every NGA catalogue row with an ``iiifurl`` (an Image API 2 service) is fetched
  as ``{iiifurl}/full/!{size},{size}/0/default.jpg`` (the whole image fitted in a ``size`` x ``size``
  box; the NGA serves at most 4096 px, so larger sizes are capped) and stored as the row's ``path``.
- :func:`download_iiif`: every row of an IIIF catalogue (``artextract ingest iiif``) with an
  ``image_service`` is fetched from that service, after reading its ``info.json`` once: the request
  honours the service's ``maxWidth``, ``maxHeight`` and ``maxArea`` and, for a level 0 service, picks
  one of its listed ``sizes``; an image that already fits is asked for whole (``max`` on an Image
  API 3 server, ``full`` on a version 2 one). A row without a service is fetched from its direct
  ``image_url``. When ``info.json`` cannot be read, the plain ``!size,size`` request is tried and the
  fallback is reported.

What every download gets:

- Bounded concurrency (a thread pool sharing one HTTP connection pool) and a polite, global rate limit.
- Retries with exponential backoff and jitter on timeouts, connection errors and resets, truncated
  bodies, 408/5xx, and 429; ``Retry-After`` (seconds or an HTTP date) pauses every worker.
  Other 4xx (404, 403 ...) are permanent and not retried.
- Resumable and safe to kill at any moment: each file is verified (decoded with
  :func:`artextract.data.images.load_image`) in memory, written to a hidden temporary name and renamed
  into place, so a file with the final name is always complete. Existing files are verified and kept;
  broken ones are downloaded again. Leftover temporary files from a killed run are removed.
- Fails fast without network: if the very first request cannot connect (DNS failure, connection
  refused), nothing else is tried. If the connection is lost mid-run (many consecutive connection
  failures, no response in between), the run stops instead of retrying every file.
- A JSON report (downloaded, already present, failed with reasons); exit status 0 all present,
  1 some failed, 2 stopped (see the command-line help).
"""
from __future__ import annotations

import dataclasses
import email.utils
import errno
import json
import logging
import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import timezone
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from .catalog import Catalog, CatalogError
from .images import ImageLoadError, load_image
from ..utils import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

NGA_IIIF_PREFIX = "https://api.nga.gov/iiif"
_PREFIX_RE = re.compile(r"^https?://api\.nga\.gov/iiif(?=/|$)", re.IGNORECASE)
REPORT_NAME = "download_report.json"
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524}
NGA_MAX_SIZE = 4096   # the NGA's image server does not serve larger images


def iiif_image_url(iiifurl: str, size: int, base_url: str | None = None) -> str:
    """The IIIF Image API URL of the whole image fitted in a ``size`` box; ``base_url`` replaces the
    ``https://api.nga.gov/iiif`` prefix.

    Parameters
    ----------
    iiifurl : str
        The image's IIIF base URL (the catalogue's ``iiifurl``).
    size : int
        Side of the box in pixels.
    base_url : str, optional

    Returns
    -------
    str
    """
    base = iiifurl.strip().rstrip("/")
    if base_url:
        base = _PREFIX_RE.sub(base_url.rstrip("/"), base)
    return f"{base}/full/!{int(size)},{int(size)}/0/default.jpg"


def _level(profile) -> int | None:
    """The compliance level (0, 1, 2) named by a profile (a string, or v2's list of them and objects)."""
    for p in (profile if isinstance(profile, list) else [profile]):
        if isinstance(p, str):
            m = re.search(r"level([012])", p)
            if m:
                return int(m.group(1))
    return None


def iiif_size_parameter(size: int, version: int | None = 2, info: dict | None = None,
                        cap: int | None = None, profile: str | None = None) -> str:
    """The ``size`` segment of an Image API request for the whole image fitted in a ``size`` box.

    Parameters
    ----------
    size : side of the box in pixels.
    version : Image API version of the service (2 or 3; 1 is treated as 2).
    info : the service's ``info.json`` (``width``, ``height``, ``maxWidth``, ``maxHeight``,
        ``maxArea``, ``sizes``, ``profile``); without it the request is ``!size,size``.
    cap : the largest side the server serves (the NGA: 4096).
    profile : the service's profile from the manifest, when ``info`` has none.

    Returns
    -------
    ``"!w,h"`` (best fit in a box), ``"w,"`` (a level 1 service), ``"w,h"`` (one of a level 0
    service's listed sizes), or ``"max"``/``"full"`` (v3/v2) when the whole image already fits.
    """
    box = int(size)
    if cap:
        box = min(box, int(cap))
    if not info:
        return f"!{box},{box}"
    full = "max" if (version or 2) >= 3 else "full"
    W, H = info.get("width"), info.get("height")
    level = _level(info.get("profile"))
    if level is None:
        level = _level(profile)
    sizes = [(int(s["width"]), int(s["height"])) for s in info.get("sizes") or []
             if isinstance(s, dict) and isinstance(s.get("width"), (int, float)) and isinstance(s.get("height"), (int, float))]
    mw, mh, ma = info.get("maxWidth"), info.get("maxHeight"), info.get("maxArea")
    if mw and not mh:
        mh = mw

    def allowed(w, h):
        return (not mw or w <= mw) and (not mh or h <= mh) and (not ma or w * h <= ma)

    if level == 0 and sizes:
        fit = [wh for wh in sizes if wh[0] <= box and wh[1] <= box and allowed(*wh)]
        w, h = max(fit, key=lambda wh: wh[0] * wh[1]) if fit else min(sizes, key=lambda wh: wh[0] * wh[1])
        if W and H and (w, h) == (W, H):
            return full
        return f"{w},{h}"
    if not (isinstance(W, (int, float)) and isinstance(H, (int, float)) and W > 0 and H > 0):
        return f"!{box},{box}"
    scale = min(box / W, box / H, 1.0)
    limited = False
    for lim in ([mw / W] if mw else []) + ([mh / H] if mh else []) + ([(ma / (W * H)) ** 0.5] if ma else []):
        if lim < scale:
            scale, limited = lim, True
    if scale >= 1.0:
        return full
    tw, th = max(1, int(W * scale)), max(1, int(H * scale))
    if level == 1 or level == 0:
        return f"{tw},"
    return f"!{tw},{th}" if limited else f"!{box},{box}"


@dataclass
class ImageTarget:
    """One image to fetch: from an IIIF Image API ``service`` (base URL) or a direct ``url``."""

    id: str
    dest: Path
    url: str | None = None
    service: str | None = None
    version: int | None = None
    profile: str | None = None
    read_info: bool = True          # read the service's info.json for its limits
    cap: int | None = None          # the server's largest side

    def image_url(self, size: int, info: dict | None = None) -> str:
        if not self.service:
            return self.url or ""
        param = iiif_size_parameter(size, self.version, info, cap=self.cap, profile=self.profile)
        return f"{self.service.rstrip('/')}/full/{param}/0/default.jpg"

    @property
    def info_url(self) -> str:
        return f"{(self.service or '').rstrip('/')}/info.json"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent/invalid.

    Parameters
    ----------
    value : str or None
        The header's value.
    now : float, optional
        The current time (``time.time()``), for HTTP dates.

    Returns
    -------
    float or None
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


@dataclass
class DownloadOptions:
    size: int = 512
    base_url: str | None = None      # replaces https://api.nga.gov/iiif (mirrors, tests)
    rewrite: dict | None = None      # {url prefix: replacement} for every URL (mirrors, tests)
    workers: int = 4                 # concurrent requests
    rate: float = 5.0                # requests per second across all workers (0: no limit)
    retries: int = 5                 # attempts after the first one
    backoff: float = 1.0             # first retry delay (seconds); doubles each time, with jitter
    max_backoff: float = 60.0
    max_retry_after: float = 300.0   # longest Retry-After honoured as given
    timeout: float = 30.0            # connect/read timeout per request
    max_bytes: int = 64 * 1024 * 1024
    max_consecutive_connect_errors: int = 8   # mid-run "network lost" detector
    progress: bool = True
    verify_existing: bool = True


@dataclass
class DownloadSummary:
    out_dir: str
    total: int = 0                    # rows with an IIIF URL
    downloaded: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    replaced_invalid: list[str] = field(default_factory=list)  # existing files that did not decode
    failed: list[dict] = field(default_factory=list)           # {"id", "url", "reason", "attempts"}
    info_fallback: list[dict] = field(default_factory=list)    # {"service", "reason"}: info.json unread
    no_url: list[str] = field(default_factory=list)
    not_attempted: int = 0            # left when the run was aborted or interrupted
    aborted: str | None = None
    retries: int = 0                  # total retried requests
    elapsed_s: float = 0.0
    report_path: str | None = None
    options: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.aborted and not self.not_attempted

    def to_json(self) -> dict:
        d = asdict(self)
        d["counts"] = {
            "total": self.total, "downloaded": len(self.downloaded), "already_present": len(self.already_present),
            "replaced_invalid": len(self.replaced_invalid), "failed": len(self.failed),
            "no_url": len(self.no_url), "not_attempted": self.not_attempted,
            "info_fallback": len(self.info_fallback),
        }
        return d

    def write(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.report_path = str(path)
        return atomic_write_text(path, json.dumps(self.to_json(), indent=2), suffix=".part")

    def summary(self, limit: int = 10) -> str:
        lines = [
            f"downloaded {len(self.downloaded):,}, already present {len(self.already_present):,}, "
            f"failed {len(self.failed):,} (of {self.total:,} paintings with an image URL) "
            f"in {self.elapsed_s:.1f}s, {self.retries:,} retried request(s)"
        ]
        if self.replaced_invalid:
            lines.append(f"{len(self.replaced_invalid):,} existing file(s) did not decode and were fetched again")
        if self.no_url:
            lines.append(f"{len(self.no_url):,} row(s) have no image URL and were skipped")
        if self.info_fallback:
            lines.append(f"{len(self.info_fallback):,} image service(s) gave no usable info.json; their images were "
                         f"requested as !SIZE,SIZE (e.g. {self.info_fallback[0]['service']}: "
                         f"{self.info_fallback[0]['reason']})")
        if self.not_attempted:
            lines.append(f"{self.not_attempted:,} not attempted (run again to resume)")
        if self.failed:
            lines.append("failed:")
            for f in self.failed[:limit]:
                lines.append(f"  {f['id']}: {f['reason']}")
            if len(self.failed) > limit:
                lines.append(f"  ... and {len(self.failed) - limit:,} more (see the report)")
        if self.aborted:
            lines.append(f"stopped: {self.aborted}")
        if self.report_path:
            lines.append(f"report: {self.report_path}")
        return "\n".join(lines)


class _RateLimiter:
    """Spaces request starts ``1/rate`` apart across threads; ``pause`` holds everyone back."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate and rate > 0 else 0.0
        self.next = 0.0
        self.pause_until = 0.0
        self.lock = threading.Lock()

    def wait(self, stop: threading.Event) -> None:
        while True:
            with self.lock:
                now = time.monotonic()
                if self.pause_until > now:
                    delay, reserved = self.pause_until - now, False
                else:
                    start = max(now, self.next)
                    self.next = start + self.interval
                    delay, reserved = start - now, True
            if delay > 0 and stop.wait(delay):
                return
            if reserved:
                return

    def pause(self, seconds: float) -> None:
        with self.lock:
            self.pause_until = max(self.pause_until, time.monotonic() + seconds)


class _Attempt(Exception):
    """One failed attempt: ``reason`` for the user, ``retry`` whether trying again may help,
    ``connect`` whether the host could not be reached at all, ``wait`` a server-given delay."""

    def __init__(self, reason: str, retry: bool, connect: bool = False, wait: float | None = None,
                 detail: str | None = None):
        super().__init__(reason)
        self.reason, self.retry, self.connect, self.wait = reason, retry, connect, wait
        self.detail = detail or reason


def _describe(exc: Exception) -> str:
    msg = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {msg}"


class _Downloader:
    def __init__(self, out_dir: Path, opts: DownloadOptions, summary: DownloadSummary):
        self.out_dir = out_dir
        self.opts = opts
        self.summary = summary
        self.stop = threading.Event()
        self.abort_reason: str | None = None
        self.limiter = _RateLimiter(opts.rate)
        self.lock = threading.Lock()
        self.consecutive_connect = 0
        self.client = httpx.Client(
            timeout=httpx.Timeout(opts.timeout, connect=min(opts.timeout, 15.0)),
            limits=httpx.Limits(max_connections=max(1, opts.workers), max_keepalive_connections=max(1, opts.workers)),
            follow_redirects=True,
            headers={"User-Agent": "artextract (IIIF image downloader)", "Accept": "image/jpeg,image/*"},
        )
        self.info_cache: dict[str, tuple[dict | None, str | None]] = {}
        self.info_locks: dict[str, threading.Lock] = {}

    def close(self) -> None:
        self.client.close()

    def _abort(self, reason: str) -> None:
        with self.lock:
            if self.abort_reason is None:
                self.abort_reason = reason
        self.stop.set()

    # ------------------------------------------------------------------ one request
    def _fetch(self, url: str, expect: str = "image") -> bytes:
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            what = f"{scheme}:// URLs are" if scheme else f"{url[:80]!r} is not a URL and"
            raise _Attempt(f"{what} not downloaded: only http and https", retry=False)
        try:
            with self.client.stream("GET", url) as r:
                status = r.status_code
                self._network_ok()
                if r.status_code != 200:
                    wait = parse_retry_after(r.headers.get("retry-after"))
                    if wait is not None:
                        wait = min(wait, self.opts.max_retry_after)
                    reason = f"HTTP {r.status_code} {r.reason_phrase}".strip()
                    if r.status_code == 429 or (wait is not None and r.status_code == 503):
                        # the server asks everyone to slow down: hold back all workers, not just this one
                        self.limiter.pause(self.opts.backoff if wait is None else wait)
                    if wait is not None:
                        reason += f" (Retry-After {wait:g}s)"
                    raise _Attempt(reason, retry=r.status_code in RETRYABLE_STATUS, wait=wait)
                ctype = r.headers.get("content-type", "").split(";")[0].strip().lower()
                buf = bytearray()
                for chunk in r.iter_bytes():
                    buf += chunk
                    if len(buf) > self.opts.max_bytes:
                        raise _Attempt(f"response larger than {self.opts.max_bytes:,} bytes", retry=False)
                declared = r.headers.get("content-length")
                if declared and declared.isdigit() and r.headers.get("content-encoding") in (None, "identity") \
                        and int(declared) != len(buf):
                    raise _Attempt(f"truncated body ({len(buf):,} of {int(declared):,} bytes)", retry=True)
        except _Attempt:
            raise
        except (UnicodeError, ValueError) as exc:   # a host that IDNA cannot encode, a malformed URL
            raise _Attempt(f"not a valid URL ({type(exc).__name__}: {exc})", retry=False) from None
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            perm = isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL))
            raise _Attempt(f"cannot connect ({_describe(exc)})", retry=not perm, connect=not perm,
                           detail=str(exc) or type(exc).__name__) from None
        except httpx.TimeoutException as exc:
            raise _Attempt(f"timed out ({type(exc).__name__})", retry=True) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.NetworkError) as exc:
            raise _Attempt(f"connection dropped ({_describe(exc)})", retry=True) from None
        except httpx.HTTPError as exc:
            raise _Attempt(f"request failed ({_describe(exc)})", retry=True) from None
        if expect == "json":
            try:
                doc = json.loads(bytes(buf).decode("utf-8-sig"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise _Attempt(f"info.json is not valid JSON ({exc})", retry=True) from None
            if not isinstance(doc, dict):
                raise _Attempt("info.json is not a JSON object", retry=False)
            return doc
        # what the server sent is described, never quoted: its words do not belong in a report
        answer = f"HTTP {status}, {ctype or 'no content type'}, {len(buf):,} bytes"
        if ctype.startswith("text/") or ctype in ("application/json", "application/xhtml+xml"):
            raise _Attempt(f"server sent {ctype}, not an image ({answer})", retry=True)
        try:
            load_image(bytes(buf))
        except ImageLoadError as exc:
            raise _Attempt(f"not a valid image: {exc.reason} ({answer})", retry=True) from None
        return bytes(buf)

    def _network_ok(self) -> None:
        with self.lock:
            self.consecutive_connect = 0

    def _connect_failed(self, host: str, reason: str) -> None:
        with self.lock:
            self.consecutive_connect += 1
            n = self.consecutive_connect
        if n >= self.opts.max_consecutive_connect_errors:
            self._abort(f"lost the connection to {host}: {n} connection attempts in a row failed, last: {reason}")

    # ------------------------------------------------------------------ one file
    def _request(self, item_id: str, url: str, probe: bool, expect: str = "image"):
        """Fetch with retries. Returns (status, data, reason, attempts), status ``ok``, ``failed`` or
        ``cancelled``."""
        host = urlsplit(url).netloc or url
        reason = None
        attempts = 0
        for attempt in range(self.opts.retries + 1):
            if self.stop.is_set():
                return "cancelled", None, reason, attempts
            if attempt:
                with self.lock:
                    self.summary.retries += 1
            self.limiter.wait(self.stop)
            if self.stop.is_set():
                return "cancelled", None, reason, attempts
            attempts += 1
            try:
                return "ok", self._fetch(url, expect), None, attempts
            except _Attempt as a:
                reason = a.reason
                if a.connect:
                    if probe:
                        self._abort(f"cannot reach {host}: {a.detail} (no network?)")
                        return "cancelled", None, reason, attempts
                    self._connect_failed(host, a.reason)
                if not a.retry or attempt == self.opts.retries:
                    break
                delay = min(self.opts.max_backoff, self.opts.backoff * 2 ** attempt) * random.uniform(0.75, 1.25)
                if a.wait is not None:
                    delay = max(delay, a.wait)
                log.debug("%s: %s; retrying in %.2fs", item_id, a.reason, delay)
                if self.stop.wait(delay):
                    return "cancelled", None, reason, attempts
        if attempts > 1:
            reason = f"{reason} (after {attempts} attempts)"
        return "failed", None, reason, attempts

    def _info(self, target: ImageTarget, probe: bool) -> tuple[str, dict | None]:
        """The service's info.json, read once per service (``("cancelled", None)`` when stopped)."""
        key = target.service
        with self.lock:
            lock = self.info_locks.setdefault(key, threading.Lock())
        with lock:
            if key in self.info_cache:
                return "ok", self.info_cache[key][0]
            status, doc, reason, _ = self._request(target.id, _rewrite(target.info_url, self.opts.rewrite), probe,
                                                   expect="json")
            if status == "cancelled":
                return "cancelled", None
            if status == "failed":
                with self.lock:
                    self.summary.info_fallback.append({"service": key, "reason": reason})
                log.info("%s: no usable info.json (%s); requesting !%d,%d", key, reason, self.opts.size, self.opts.size)
            self.info_cache[key] = (doc, reason)
            return "ok", doc

    def url_for(self, target: ImageTarget, info: dict | None = None) -> str:
        return _rewrite(target.image_url(self.opts.size, info), self.opts.rewrite)

    def download(self, target: ImageTarget, probe: bool = False) -> tuple[str, str | None, int, str]:
        """Returns (status, reason, attempts, url) with status ``ok``, ``failed`` or ``cancelled``."""
        info = None
        if target.service and target.read_info:
            status, info = self._info(target, probe)
            if status == "cancelled":
                return "cancelled", None, 0, target.info_url
            probe = False
        url = self.url_for(target, info)
        status, data, reason, attempts = self._request(target.id, url, probe)
        if status != "ok":
            return status, reason, attempts, url
        try:
            self._write(target.dest, data)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                self._abort(f"disk full writing {target.dest}")
            return "failed", f"cannot write {target.dest}: {exc}", attempts, url
        return "ok", None, attempts, url

    @staticmethod
    def _write(dest: Path, data: bytes) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(dest, data, fsync=True, suffix=".part")  # swept by _clean_stale_parts


def _valid_existing(path: Path) -> bool | None:
    """True if ``path`` is a decodable image, False if it exists but is broken, None if absent."""
    if not path.is_file():
        return None
    try:
        load_image(path, draft_size=64)
        return True
    except ImageLoadError:
        return False


def _clean_stale_parts(dirs: set[Path]) -> int:
    n = 0
    for d in dirs:
        if not d.is_dir():
            continue
        for p in d.glob(".*.part"):
            try:
                p.unlink()
                n += 1
            except OSError:
                pass
    return n


def _rewrite(url: str, rewrite: dict | None) -> str:
    for prefix, repl in (rewrite or {}).items():
        if url.startswith(prefix):
            return repl + url[len(prefix):]
    return url


def _options(options: DownloadOptions | None, kwargs: dict) -> DownloadOptions:
    unknown = set(kwargs) - set(DownloadOptions.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown download option(s) {sorted(unknown)}")
    return dataclasses.replace(options or DownloadOptions(), **kwargs)


def nga_targets(catalog: Catalog, out_dir: Path, opts: DownloadOptions) -> tuple[list[ImageTarget], list[str]]:
    """One target per NGA row with an ``iiifurl`` (Image API 2, at most 4096 px, no info.json)."""
    if "iiifurl" not in catalog.df.columns:
        raise CatalogError("this catalogue has no iiifurl column; only NGA catalogues (artextract ingest nga) "
                           "can be downloaded with `download nga` (IIIF catalogues: `download iiif`)")
    targets, no_url = [], []
    for item_id, rel, iiif in zip(catalog.df["id"], catalog.df["path"], catalog.df["iiifurl"]):
        if not isinstance(iiif, str) or not iiif.strip():
            no_url.append(str(item_id))
            continue
        service = iiif.strip().rstrip("/")
        if opts.base_url:
            service = _PREFIX_RE.sub(opts.base_url.rstrip("/"), service)
        targets.append(ImageTarget(str(item_id), out_dir / rel, service=service, version=2, read_info=False,
                                   cap=NGA_MAX_SIZE))
    return targets, no_url


def iiif_targets(catalog: Catalog, out_dir: Path, opts: DownloadOptions,
                 read_info: bool = True) -> tuple[list[ImageTarget], list[str]]:
    """One target per IIIF catalogue row: its ``image_service`` (read through ``info.json``), else its
    direct ``image_url``."""
    df = catalog.df
    if "image_service" not in df.columns and "image_url" not in df.columns:
        raise CatalogError("this catalogue has neither an image_service nor an image_url column; IIIF catalogues "
                           "come from `artextract ingest iiif` (NGA catalogues: `download nga`)")
    n = len(df)
    col = lambda c: df[c].tolist() if c in df.columns else [None] * n  # noqa: E731
    targets, no_url = [], []
    for item_id, rel, svc, ver, prof, url in zip(df["id"], df["path"], col("image_service"),
                                                 col("image_service_version"), col("image_service_profile"),
                                                 col("image_url")):
        svc = svc.strip() if isinstance(svc, str) and svc.strip() else None
        url = url.strip() if isinstance(url, str) and url.strip() else None
        if not svc and not url:
            no_url.append(str(item_id))
            continue
        try:
            ver = int(ver) if ver is not None and ver == ver else None
        except (TypeError, ValueError):
            ver = None
        targets.append(ImageTarget(str(item_id), out_dir / rel, url=url, service=svc, version=ver or 2,
                                   profile=prof if isinstance(prof, str) else None, read_info=read_info))
    return targets, no_url


def download_nga(catalog: Catalog, out_dir: str | os.PathLike, options: DownloadOptions | None = None,
                 report_path: str | os.PathLike | None = None, **kwargs) -> DownloadSummary:
    """Download every catalogue image that has an ``iiifurl`` into ``out_dir`` (see module doc).

    Options come from ``options`` or keyword arguments (the fields of :class:`DownloadOptions`).
    The JSON report is written to ``report_path`` (default ``out_dir/download_report.json``).
    Never raises for per-file or network problems: see ``summary.failed`` and ``summary.aborted``.
    A ``KeyboardInterrupt`` stops the workers, writes the report and propagates.

    Parameters
    ----------
    catalog : Catalog
        An NGA catalogue (``iiifurl`` column).
    out_dir : str or PathLike
        Folder for ``<objectid>.jpg``.
    options : DownloadOptions, optional
    report_path : str or PathLike, optional
    **kwargs
        Fields of :class:`DownloadOptions`, when ``options`` is not given.

    Returns
    -------
    DownloadSummary
    """
    opts = _options(options, kwargs)
    out_dir = Path(out_dir)
    targets, no_url = nga_targets(catalog, out_dir, opts)
    return download_images(targets, out_dir, opts, report_path, no_url=no_url, desc="download nga")


def download_iiif(catalog: Catalog, out_dir: str | os.PathLike, options: DownloadOptions | None = None,
                  report_path: str | os.PathLike | None = None, *, read_info: bool = True,
                  **kwargs) -> DownloadSummary:
    """Download the image of every row of an IIIF catalogue (``artextract ingest iiif``) into
    ``out_dir``: from its image service (its ``info.json`` read once, its limits honoured), else from
    its direct image URL. Same options, report and guarantees as :func:`download_nga`."""
    opts = _options(options, kwargs)
    out_dir = Path(out_dir)
    targets, no_url = iiif_targets(catalog, out_dir, opts, read_info=read_info)
    return download_images(targets, out_dir, opts, report_path, no_url=no_url, desc="download iiif")


def download_images(targets: list[ImageTarget], out_dir: str | os.PathLike, options: DownloadOptions | None = None,
                    report_path: str | os.PathLike | None = None, *, no_url: list[str] | None = None,
                    desc: str = "download") -> DownloadSummary:
    """Download ``targets`` (see :class:`ImageTarget`) into their ``dest`` paths: the engine behind
    :func:`download_nga` and :func:`download_iiif`."""
    opts = options or DownloadOptions()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report_path = Path(report_path) if report_path else out_dir / REPORT_NAME
    t0 = time.monotonic()
    summary = DownloadSummary(out_dir=str(out_dir.resolve()))
    summary.options = {k: v for k, v in asdict(opts).items() if k != "progress"}
    summary.no_url = list(no_url or [])
    summary.total = len(targets)
    removed = _clean_stale_parts({t.dest.parent for t in targets} | {out_dir})
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted run", removed)

    todo = _to_download(targets, opts, summary)
    dl = _Downloader(out_dir, opts, summary)
    try:
        if todo:
            _download_all(dl, todo, opts, summary, desc)
    except KeyboardInterrupt:
        done = len(summary.downloaded) + len(summary.failed)
        summary.not_attempted = len(todo) - done
        summary.aborted = "interrupted"
        raise
    finally:
        summary.aborted = summary.aborted or dl.abort_reason
        dl.close()
        summary.elapsed_s = round(time.monotonic() - t0, 3)
        try:
            summary.write(report_path)
        except OSError as exc:
            log.warning("could not write the download report %s: %s", report_path, exc)
    return summary


def _to_download(targets: list[ImageTarget], opts: DownloadOptions, summary: DownloadSummary) -> list[ImageTarget]:
    """The targets to fetch: those without a file, or (``verify_existing``) whose file does not decode;
    the others are recorded as already present."""
    # existing files: verify in parallel (decoding releases the GIL)
    todo: list[ImageTarget] = []
    if opts.verify_existing:
        with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as ex:
            states = list(ex.map(lambda t: _valid_existing(t.dest), targets))
    else:
        states = [True if t.dest.is_file() else None for t in targets]
    for t, state in zip(targets, states):
        if state:
            summary.already_present.append(t.id)
        else:
            if state is False:
                summary.replaced_invalid.append(t.id)
            todo.append(t)
    return todo


def _download_all(dl: _Downloader, todo: list[ImageTarget], opts: DownloadOptions, summary: DownloadSummary,
                  desc: str) -> None:
    """Fetch ``todo`` (not empty) with a progress bar, recording each outcome in ``summary``: the first
    request alone (no network: stop at once, before anything else is tried), then the rest with
    ``opts.workers`` threads."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), unit="img", desc=desc, disable=not opts.progress, dynamic_ncols=True)

    def record(t: ImageTarget, result):
        status, reason, attempts, url = result
        if status == "ok":
            summary.downloaded.append(t.id)
        elif status == "failed":
            summary.failed.append({"id": t.id, "url": url, "reason": reason, "attempts": attempts})
        else:
            summary.not_attempted += 1
        bar.update(1)
        if summary.failed:
            bar.set_postfix(failed=len(summary.failed), refresh=False)

    try:
        record(todo[0], dl.download(todo[0], probe=True))
        rest = todo[1:]
        if rest and not dl.stop.is_set():
            ex = ThreadPoolExecutor(max_workers=max(1, opts.workers), thread_name_prefix="iiif-download")
            try:
                futures = {ex.submit(dl.download, t): t for t in rest}
                for fut in as_completed(futures):
                    record(futures[fut], fut.result())
            except BaseException:
                dl.stop.set()
                ex.shutdown(wait=False, cancel_futures=True)
                raise
            ex.shutdown(wait=True)
        elif rest:
            summary.not_attempted += len(rest)
    finally:
        bar.close()

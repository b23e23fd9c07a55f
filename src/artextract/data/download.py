"""Fault-tolerant IIIF image downloader for NGA catalogues.

For every catalogue row with an ``iiifurl`` it fetches ``{iiifurl}/full/!{size},{size}/0/default.jpg``
(the whole image, fitted in a ``size`` x ``size`` box) and stores it as the row's ``path`` (``<objectid>.jpg``)
under the output folder.

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
            f"failed {len(self.failed):,} (of {self.total:,} paintings with an IIIF URL) "
            f"in {self.elapsed_s:.1f}s, {self.retries:,} retried request(s)"
        ]
        if self.replaced_invalid:
            lines.append(f"{len(self.replaced_invalid):,} existing file(s) did not decode and were fetched again")
        if self.no_url:
            lines.append(f"{len(self.no_url):,} row(s) have no IIIF URL and were skipped")
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
            headers={"User-Agent": "artextract (NGA open data image downloader)", "Accept": "image/jpeg,image/*"},
        )

    def close(self) -> None:
        self.client.close()

    def _abort(self, reason: str) -> None:
        with self.lock:
            if self.abort_reason is None:
                self.abort_reason = reason
        self.stop.set()

    # ------------------------------------------------------------------ one request
    def _fetch(self, url: str) -> bytes:
        try:
            with self.client.stream("GET", url) as r:
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
        if ctype.startswith("text/") or ctype in ("application/json", "application/xhtml+xml"):
            snippet = bytes(buf[:60]).decode("utf-8", "replace").replace("\n", " ")
            raise _Attempt(f"server sent {ctype}, not an image ({snippet!r}...)", retry=True)
        try:
            load_image(bytes(buf))
        except ImageLoadError as exc:
            raise _Attempt(f"not a valid image: {exc.reason}", retry=True) from None
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
    def download(self, item_id: str, url: str, dest: Path, probe: bool = False) -> tuple[str, str | None, int]:
        """Returns (status, reason, attempts) with status ``ok``, ``failed`` or ``cancelled``."""
        host = urlsplit(url).netloc or url
        reason = None
        attempts = 0
        for attempt in range(self.opts.retries + 1):
            if self.stop.is_set():
                return "cancelled", reason, attempts
            if attempt:
                with self.lock:
                    self.summary.retries += 1
            self.limiter.wait(self.stop)
            if self.stop.is_set():
                return "cancelled", reason, attempts
            attempts += 1
            try:
                data = self._fetch(url)
            except _Attempt as a:
                reason = a.reason
                if a.connect:
                    if probe:
                        self._abort(f"cannot reach {host}: {a.detail} (no network?)")
                        return "cancelled", reason, attempts
                    self._connect_failed(host, a.reason)
                if not a.retry or attempt == self.opts.retries:
                    break
                delay = min(self.opts.max_backoff, self.opts.backoff * 2 ** attempt) * random.uniform(0.75, 1.25)
                if a.wait is not None:
                    delay = max(delay, a.wait)
                log.debug("%s: %s; retrying in %.2fs", item_id, a.reason, delay)
                if self.stop.wait(delay):
                    return "cancelled", reason, attempts
                continue
            try:
                self._write(dest, data)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    self._abort(f"disk full writing {dest}")
                return "failed", f"cannot write {dest}: {exc}", attempts
            return "ok", None, attempts
        if attempts > 1:
            reason = f"{reason} (after {attempts} attempts)"
        return "failed", reason, attempts

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
    unknown = set(kwargs) - set(DownloadOptions.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown download option(s) {sorted(unknown)}")
    opts = dataclasses.replace(options or DownloadOptions(), **kwargs)
    if "iiifurl" not in catalog.df.columns:
        raise CatalogError("this catalogue has no iiifurl column; only NGA catalogues (artextract ingest nga) "
                           "can be downloaded")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report_path = Path(report_path) if report_path else out_dir / REPORT_NAME
    t0 = time.monotonic()
    summary = DownloadSummary(out_dir=str(out_dir.resolve()))
    summary.options = {k: v for k, v in asdict(opts).items() if k != "progress"}

    items: list[tuple[str, str, Path]] = []
    for item_id, rel, iiif in zip(catalog.df["id"], catalog.df["path"], catalog.df["iiifurl"]):
        if not isinstance(iiif, str) or not iiif.strip():
            summary.no_url.append(str(item_id))
            continue
        items.append((str(item_id), iiif_image_url(iiif, opts.size, opts.base_url), out_dir / rel))
    summary.total = len(items)
    removed = _clean_stale_parts({dest.parent for _, _, dest in items} | {out_dir})
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted run", removed)

    # existing files: verify in parallel (decoding releases the GIL)
    todo: list[tuple[str, str, Path]] = []
    if opts.verify_existing:
        with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as ex:
            states = list(ex.map(lambda it: _valid_existing(it[2]), items))
    else:
        states = [True if it[2].is_file() else None for it in items]
    for it, state in zip(items, states):
        if state:
            summary.already_present.append(it[0])
        else:
            if state is False:
                summary.replaced_invalid.append(it[0])
            todo.append(it)

    dl = _Downloader(out_dir, opts, summary)
    bar = None
    try:
        if todo:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), unit="img", desc="download nga", disable=not opts.progress,
                       dynamic_ncols=True)

            def record(it, result):
                status, reason, attempts = result
                if status == "ok":
                    summary.downloaded.append(it[0])
                elif status == "failed":
                    summary.failed.append({"id": it[0], "url": it[1], "reason": reason, "attempts": attempts})
                else:
                    summary.not_attempted += 1
                bar.update(1)
                if summary.failed:
                    bar.set_postfix(failed=len(summary.failed), refresh=False)

            # the first request alone: no network -> stop at once, before anything else is tried
            record(todo[0], dl.download(*todo[0], probe=True))
            rest = todo[1:]
            if rest and not dl.stop.is_set():
                ex = ThreadPoolExecutor(max_workers=max(1, opts.workers), thread_name_prefix="nga-download")
                try:
                    futures = {ex.submit(dl.download, *it): it for it in rest}
                    for fut in as_completed(futures):
                        record(futures[fut], fut.result())
                except BaseException:
                    dl.stop.set()
                    ex.shutdown(wait=False, cancel_futures=True)
                    raise
                ex.shutdown(wait=True)
            elif rest:
                summary.not_attempted += len(rest)
    except KeyboardInterrupt:
        done = len(summary.downloaded) + len(summary.failed)
        summary.not_attempted = len(todo) - done
        summary.aborted = "interrupted"
        raise
    finally:
        if bar is not None:
            bar.close()
        summary.aborted = summary.aborted or dl.abort_reason
        dl.close()
        summary.elapsed_s = round(time.monotonic() - t0, 3)
        try:
            summary.write(report_path)
        except OSError as exc:
            log.warning("could not write the download report %s: %s", report_path, exc)
    return summary

"""Importer for IIIF Presentation manifests and collections (API 2.1 and 3.0).

``ingest_iiif(sources)`` reads manifests and collections from files or http(s) URLs and builds a
catalogue with **one row per manifest** (``all_canvases=True``: one row per canvas):

- The painting is the first canvas with a *painting* annotation whose body is an image (an empty
  first canvas is skipped). A ``Choice`` body gives its first item (the default); thumbnails, logos
  and later canvases are not the painting.
- ``title`` is the manifest's own label (a collection's label for its entry is not the title).
- Every metadata label/value pair becomes a column named by the lower-cased label with
  non-alphanumerics as ``_`` ("Physical Description" -> ``physical_description``); a label that
  repeats keeps every value, joined with "; ". A label that would take a column of the row's own
  (``title``, ``rights`` ...) is prefixed ``metadata_``. Canvas metadata of the chosen canvas is
  added the same way and wins over the manifest's for the same label.
- Language maps are resolved by ``lang``, then ``none``, then ``en``, then the first language (a v2
  value without ``@language`` counts as ``none``). HTML is stripped to text.
- The row keeps ``rights`` and ``required_statement`` (v3) or ``attribution`` and ``license`` (v2),
  ``nav_date``, ``manifest_id``, ``canvas_id``, the image service's base URL (``image_service``,
  ``image_service_version`` 1/2/3, ``image_service_profile`` such as ``level1``) and the direct image
  URL (``image_url``; what ``artextract download iiif`` fetches when there is no service).
- Collections (v2 ``collections``/``manifests``/``members``, v3 ``items``) are followed
  recursively, at most ``max_depth`` levels, each document at most once (cycles are safe).
- Malformed JSON, unknown types, manifests without an image and HTTP errors are recorded per
  source in an :class:`IngestReport`; the other sources go on.
- A reference found in a document read over http(s) must be an http(s) URL: local paths and
  ``file://`` URLs there are refused without being looked at (a remote document cannot make the
  importer read local files, nor learn which exist). A URL that ``rewrite`` maps to a local folder
  stays in that folder (``..`` is refused).

Images are named ``<slug>-<hash>.<ext>`` (from the row id) under the image root, to be filled by
``artextract download iiif``.
"""
from __future__ import annotations

import hashlib
import html
import html.parser
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pandas as pd

from ..errors import ArtExtractError
from .catalog import Catalog, CatalogError, TaskSpec
from .tabular import stratified_split

logger = logging.getLogger(__name__)

DEFAULT_MAX_DEPTH = 8
REFUSED_LOCAL = ("refused: a document read over http(s) may only refer to http(s) URLs, not to local files "
                 "(not read)")
REPORT_SUFFIX = ".ingest_report.json"
MAX_DOCUMENT_BYTES = 32 * 1024 * 1024

#: Columns every row has; a metadata label that would take one is prefixed ``metadata_``.
ROW_COLUMNS = ["id", "path", "split", "title", "manifest_id", "canvas_id", "canvas_label", "rights",
               "required_statement", "attribution", "license", "nav_date", "image_service",
               "image_service_version", "image_service_profile", "image_url", "image_format", "image_width",
               "image_height", "iiif_version", "source"]

_IMAGE_EXT = {"image/jpeg": ".jpg", "image/jpg": ".jpg", "image/png": ".png", "image/tiff": ".tif",
              "image/gif": ".gif", "image/webp": ".webp", "image/jp2": ".jp2"}


class IIIFError(ArtExtractError, ValueError):
    """A document is not a usable IIIF manifest or collection."""


# ---------------------------------------------------------------------- text


class _Text(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data):
        self.parts.append(data)

    def handle_starttag(self, tag, attrs):
        if tag in ("br", "p", "div", "li", "tr"):
            self.parts.append(" ")

    handle_endtag = handle_starttag


def strip_html(text: str) -> str:
    """Visible text of an HTML fragment (tags dropped, entities decoded, whitespace collapsed)."""
    if "<" in text or "&" in text:
        p = _Text()
        try:
            p.feed(text)
            p.close()
            text = "".join(p.parts)
        except Exception:  # malformed markup: fall back to removing anything tag-like
            text = html.unescape(re.sub(r"<[^>]*>", " ", text))
    return re.sub(r"\s+", " ", text).strip()


def column_name(label: str) -> str:
    """``"Physical Description"`` -> ``physical_description``."""
    name = re.sub(r"[^0-9a-z]+", "_", label.strip().lower()).strip("_")
    return name or "unnamed"


def _pick(langs: dict[str, list[str]], lang: str | None) -> list[str]:
    for key in ([lang] if lang else []) + ["none", "en"]:
        if key in langs and langs[key]:
            return langs[key]
    if lang:  # "en" also matches "en-GB"
        for key, vals in langs.items():
            if key.split("-")[0].lower() == lang.split("-")[0].lower() and vals:
                return vals
    for vals in langs.values():
        if vals:
            return vals
    return []


def language_values(value, lang: str | None = "en") -> list[str]:
    """The values of a v2 or v3 text property in the chosen language: ``lang``, then ``none``, then
    ``en``, then the first language. Strings are HTML-stripped; empty ones dropped."""
    langs: dict[str, list[str]] = {}

    def add(key, v):
        if v is None:
            return
        if not isinstance(v, str):
            v = str(v)
        langs.setdefault(key if isinstance(key, str) and key else "none", []).append(v)

    if value is None:
        return []
    if isinstance(value, dict) and ("@value" in value or "value" in value and "@language" in value):
        add(value.get("@language"), value.get("@value", value.get("value")))
    elif isinstance(value, dict):  # v3 language map
        for key, vals in value.items():
            for v in vals if isinstance(vals, list) else [vals]:
                add(key, v)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                add(item.get("@language"), item.get("@value"))
            else:
                add(None, item)
    else:
        add(None, value)
    out = [strip_html(v) for v in _pick(langs, lang)]
    return [v for v in out if v]


def language_text(value, lang: str | None = "en") -> str | None:
    vals = language_values(value, lang)
    return "; ".join(vals) if vals else None


# ---------------------------------------------------------------------- structure


def _types(obj) -> set[str]:
    if not isinstance(obj, dict):
        return set()
    t = obj.get("type", obj.get("@type"))
    ts = t if isinstance(t, list) else [t]
    out = set()
    for x in ts:
        if isinstance(x, str):
            out.add(x.split(":")[-1].lower())
    return out


def _id(obj) -> str | None:
    if isinstance(obj, str):
        return obj
    if isinstance(obj, dict):
        v = obj.get("id", obj.get("@id"))
        return v if isinstance(v, str) else None
    return None


def presentation_version(doc: dict) -> int:
    """3 or 2, from ``@context`` (else from the keys: v3 has ``id``/``type``, v2 ``@id``/``@type``)."""
    ctx = doc.get("@context")
    ctxs = ctx if isinstance(ctx, list) else [ctx]
    for c in ctxs:
        if isinstance(c, str) and "/presentation/3" in c:
            return 3
    for c in ctxs:
        if isinstance(c, str) and "/presentation/2" in c:
            return 2
    return 3 if ("type" in doc and "@type" not in doc) else 2


def _as_list(v) -> list:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _image_service(body: dict) -> dict | None:
    """The first IIIF Image API service of an image resource: base URL, version, profile."""
    for s in _as_list(body.get("service")):
        if not isinstance(s, dict):
            continue
        t = s.get("type", s.get("@type")) or ""
        t = t if isinstance(t, str) else ""
        ctx = " ".join(c for c in _as_list(s.get("@context")) if isinstance(c, str))
        prof = [p for p in _as_list(s.get("profile")) if isinstance(p, str)]
        prof_s = prof[0] if prof else None
        version = None
        m = re.match(r"ImageService(\d)", t)
        if m:
            version = int(m.group(1))
        elif re.search(r"iiif\.io/api/image/\d", ctx):
            version = int(re.search(r"iiif\.io/api/image/(\d)", ctx).group(1))
        elif prof_s and re.search(r"iiif\.io/api/image/\d", prof_s):
            version = int(re.search(r"iiif\.io/api/image/(\d)", prof_s).group(1))
        elif prof_s and re.fullmatch(r"level[012]", prof_s):
            version = 3 if "id" in s else 2
        if version is None:
            continue  # another kind of service (search, physical dimensions, auth ...)
        sid = _id(s)
        if not sid:
            continue
        base = re.sub(r"/info\.json$", "", sid.strip()).rstrip("/")
        level = None
        if prof_s:
            lm = re.search(r"level([012])", prof_s)
            level = f"level{lm.group(1)}" if lm else prof_s
        return {"image_service": base, "image_service_version": version, "image_service_profile": level}
    return None


def _image_body(body) -> dict | None:
    """An image resource from an annotation body (v2 ``resource`` or v3 ``body``): a Choice gives its
    default (v2 ``default``, else the first item); a SpecificResource its source."""
    for b in _as_list(body):
        if not isinstance(b, dict):
            continue
        t = _types(b)
        if "choice" in t:
            options = ([b["default"]] if isinstance(b.get("default"), dict) else []) + \
                _as_list(b.get("items", b.get("item")))
            for opt in options:
                img = _image_body(opt)
                if img is not None:
                    return img
            continue
        if "specificresource" in t:
            img = _image_body(b.get("source", b.get("full")))
            if img is not None:
                return img
            continue
        fmt = b.get("format") if isinstance(b.get("format"), str) else ""
        if "image" in t or fmt.startswith("image/") or (not t and _image_service(b)):
            return b
    return None


def _is_painting(anno: dict) -> bool:
    mot = [m.split(":")[-1].lower() for m in _as_list(anno.get("motivation")) if isinstance(m, str)]
    return not mot or "painting" in mot


def canvas_image(canvas: dict) -> dict | None:
    """The image painted on a canvas (v2 ``images``, v3 ``items`` annotation pages), or None."""
    annos = []
    for a in _as_list(canvas.get("images")):  # v2
        if isinstance(a, dict):
            annos.append((a, a.get("resource")))
    for page in _as_list(canvas.get("items")):  # v3
        if isinstance(page, dict):
            for a in _as_list(page.get("items")):
                if isinstance(a, dict):
                    annos.append((a, a.get("body")))
    for anno, body in annos:
        if _is_painting(anno):
            img = _image_body(body)
            if img is not None:
                return img
    return None


def manifest_canvases(doc: dict) -> list[dict]:
    if presentation_version(doc) == 3 or "items" in doc:
        items = [c for c in _as_list(doc.get("items")) if isinstance(c, dict)]
        if items:
            return items
    out = []
    for seq in _as_list(doc.get("sequences")):
        if isinstance(seq, dict):
            out += [c for c in _as_list(seq.get("canvases")) if isinstance(c, dict)]
    return out


def _dimension(v) -> int | None:
    """A width or height: a whole number of pixels that fits the catalogue's Int64, else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or not 0 < v < 2 ** 62:
        return None
    return int(v)


def _metadata(pairs, lang: str | None) -> dict[str, str]:
    cols: dict[str, list[str]] = {}
    for pair in _as_list(pairs):
        if not isinstance(pair, dict):
            continue
        label = language_text(pair.get("label"), lang)
        if not label:
            continue
        vals = language_values(pair.get("value"), lang)
        if not vals:
            continue
        name = column_name(label)
        if name in ROW_COLUMNS:
            name = f"metadata_{name}"
        cols.setdefault(name, []).extend(vals)
    return {k: "; ".join(v) for k, v in cols.items()}


def _text_or_list(v, lang) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return strip_html(v) or None
    return language_text(v, lang)


def manifest_rows(doc: dict, lang: str | None = "en", all_canvases: bool = False,
                  source: str | None = None) -> list[dict]:
    """Catalogue rows (without ``path``/``split``) of one manifest; raises :class:`IIIFError` when it
    has no canvas with an image."""
    version = presentation_version(doc)
    mid = _id(doc) or source
    base = {
        "title": language_text(doc.get("label"), lang),
        "manifest_id": mid,
        "nav_date": doc.get("navDate") if isinstance(doc.get("navDate"), str) else None,
        "iiif_version": version,
        "source": source,
    }
    if version == 3:
        base["rights"] = doc.get("rights") if isinstance(doc.get("rights"), str) else None
        rs = doc.get("requiredStatement")
        if isinstance(rs, dict):
            lab, val = language_text(rs.get("label"), lang), language_text(rs.get("value"), lang)
            base["required_statement"] = f"{lab}: {val}" if lab and val else (val or lab)
    # v2 properties (some v3 documents still carry them)
    if "attribution" in doc:
        base["attribution"] = _text_or_list(doc.get("attribution"), lang)
    if "license" in doc:
        lic = [x for x in _as_list(doc.get("license")) if isinstance(x, str)]
        base["license"] = "; ".join(lic) if lic else None
    meta = _metadata(doc.get("metadata"), lang)
    canvases = manifest_canvases(doc)
    if not canvases:
        raise IIIFError("the manifest has no canvases")
    rows = []
    for c in canvases:
        img = canvas_image(c)
        if img is None:
            continue
        row = dict(base)
        row.update(meta)
        row.update(_metadata(c.get("metadata"), lang))
        row["canvas_id"] = _id(c)
        row["canvas_label"] = language_text(c.get("label"), lang)
        if c.get("navDate") and isinstance(c.get("navDate"), str):
            row["nav_date"] = c["navDate"]
        row["image_url"] = _id(img)
        row["image_format"] = img.get("format") if isinstance(img.get("format"), str) else None
        for k in ("width", "height"):
            row[f"image_{k}"] = _dimension(img.get(k, c.get(k)))
        svc = _image_service(img)
        row.update(svc or {"image_service": None, "image_service_version": None, "image_service_profile": None})
        rows.append(row)
        if not all_canvases:
            break
    if not rows:
        raise IIIFError(f"none of the manifest's {len(canvases)} canvas(es) has a painting annotation with an image")
    return rows


def collection_members(doc: dict) -> list[dict | str]:
    """A collection's entries (v2 ``collections``, ``manifests``, ``members``; v3 ``items``)."""
    out: list = []
    for key in ("collections", "manifests", "members", "items"):
        out += [m for m in _as_list(doc.get(key)) if isinstance(m, (dict, str))]
    return out


def _kind(doc: dict) -> str | None:
    t = _types(doc)
    if "manifest" in t:
        return "manifest"
    if "collection" in t:
        return "collection"
    return None


# ---------------------------------------------------------------------- fetching


_SURROGATE = re.compile("[\ud800-\udfff]")


class _NotJSON(ValueError):
    pass


def _no_constant(name: str):
    raise _NotJSON(f"{name} is not a JSON value")


def _clean_strings(doc):
    """``doc`` with lone surrogates (``"\\ud800"`` is valid JSON but not text) replaced by U+FFFD,
    walked without recursion."""
    def fix(v: str) -> str:
        try:
            v.encode("utf-8")
            return v
        except UnicodeEncodeError:
            return _SURROGATE.sub("\ufffd", v)

    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for k in list(node):
                v = node[k]
                if isinstance(k, str) and fix(k) is not k:
                    del node[k]
                    k = fix(k)
                if isinstance(v, str):
                    node[k] = fix(v)
                else:
                    node[k] = v
                    if isinstance(v, (dict, list)):
                        stack.append(v)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                if isinstance(v, str):
                    node[i] = fix(v)
                elif isinstance(v, (dict, list)):
                    stack.append(v)
    return doc


def parse_document(raw: bytes) -> dict:
    """The JSON object in ``raw``; :class:`IIIFError` for anything else (malformed or not UTF-8 JSON,
    NaN/Infinity, nesting too deep for Python, a JSON array or scalar)."""
    try:
        doc = json.loads(raw.decode("utf-8-sig"), parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, _NotJSON) as exc:
        raise IIIFError(f"malformed JSON ({exc})") from None
    except RecursionError:
        raise IIIFError("malformed JSON (nested too deeply to read)") from None
    if not isinstance(doc, dict):
        raise IIIFError(f"the JSON document is a {type(doc).__name__}, not an object")
    return _clean_strings(doc)


def _is_url(ref: str) -> bool:
    return urlsplit(ref).scheme.lower() in ("http", "https")



class Fetcher:
    """Reads JSON documents from files and http(s) URLs, with retries on transient HTTP failures.

    ``rewrite``: ``{prefix: replacement}``; a URL starting with ``prefix`` has it replaced (by another
    URL prefix, or a local folder) before it is read (mirrors, local copies, tests)."""

    def __init__(self, rewrite: dict[str, str] | None = None, *, timeout: float = 30.0, retries: int = 3,
                 backoff: float = 1.0, max_retry_after: float = 60.0):
        self.rewrite = dict(rewrite or {})
        self.timeout, self.retries, self.backoff, self.max_retry_after = timeout, retries, backoff, max_retry_after
        self._client = None
        self._dead_hosts: dict[str, str] = {}   # host -> why it could not be reached

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _map(self, ref: str) -> str:
        for prefix, repl in self.rewrite.items():
            if ref.startswith(prefix):
                rest = ref[len(prefix):]
                if not _is_url(repl) and _is_url(ref):
                    # a URL mapped to a local folder stays in that folder ("http://x/../../etc/passwd")
                    if ".." in re.split(r"[/\\]", unquote(rest)):
                        raise IIIFError(f"refused: {ref} would leave the folder {repl} it is rewritten to")
                return repl + rest
        return ref

    def load(self, ref: str) -> dict:
        """The JSON object at ``ref`` (path, ``file://`` or http(s) URL); :class:`IIIFError` with a
        clear reason otherwise."""
        target = self._map(ref)
        scheme = urlsplit(target).scheme.lower()
        if scheme in ("http", "https"):
            raw = self._get(target)
        else:
            path = Path(unquote(urlsplit(target).path) if scheme == "file" else target)
            if not path.is_file():
                raise IIIFError(f"no such file {path}")
            try:
                if path.stat().st_size > MAX_DOCUMENT_BYTES:
                    raise IIIFError(f"{path} is larger than {MAX_DOCUMENT_BYTES:,} bytes")
                raw = path.read_bytes()
            except OSError as exc:
                raise IIIFError(f"cannot read {path}: {exc}") from None
        return parse_document(raw)

    def _get(self, url: str) -> bytes:
        import random

        import httpx

        from .download import RETRYABLE_STATUS, parse_retry_after

        if self._client is None:
            self._client = httpx.Client(timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 15.0)),
                                        follow_redirects=True,
                                        headers={"User-Agent": "artextract (IIIF importer)",
                                                 "Accept": "application/ld+json, application/json;q=0.9, */*;q=0.1"})
        host = urlsplit(url).netloc
        if host in self._dead_hosts:
            raise IIIFError(f"not tried: {host} could not be reached earlier ({self._dead_hosts[host]})")
        reason = "no attempt"
        for attempt in range(self.retries + 1):
            wait = None
            try:
                try:
                    r = self._client.get(url)
                except (httpx.InvalidURL, UnicodeError, ValueError) as exc:   # a host IDNA cannot encode ...
                    raise IIIFError(f"not a valid URL ({type(exc).__name__}: {exc})") from None
                if r.status_code == 200:
                    if len(r.content) > MAX_DOCUMENT_BYTES:
                        raise IIIFError(f"response larger than {MAX_DOCUMENT_BYTES:,} bytes")
                    declared = r.headers.get("content-length")
                    if declared and declared.isdigit() and r.headers.get("content-encoding") in (None, "identity") \
                            and int(declared) != len(r.content):
                        reason, retry = f"truncated body ({len(r.content):,} of {declared} bytes)", True
                    else:
                        return r.content
                else:
                    reason = f"HTTP {r.status_code} {r.reason_phrase}".strip()
                    retry = r.status_code in RETRYABLE_STATUS
                    wait = parse_retry_after(r.headers.get("retry-after"))
            except httpx.UnsupportedProtocol as exc:
                raise IIIFError(f"cannot fetch {url}: {exc}") from None
            except httpx.ConnectError as exc:
                # the host is not there (DNS, refused): one more try, then every URL on it is skipped
                reason, retry = f"cannot connect ({exc or type(exc).__name__})", attempt == 0
                if attempt >= 1 or not retry:
                    self._dead_hosts[host] = reason
            except httpx.HTTPError as exc:
                reason, retry = f"{type(exc).__name__}: {exc or 'connection failed'}", True
            if not retry or attempt == self.retries:
                if reason.startswith("cannot connect"):
                    self._dead_hosts[host] = reason
                break
            delay = self.backoff * 2 ** attempt * random.uniform(0.75, 1.25)
            if wait is not None:
                delay = max(delay, min(wait, self.max_retry_after))
            logger.debug("%s: %s; retrying in %.2fs", url, reason, delay)
            time.sleep(delay)
        raise IIIFError(f"{reason}" + (f" (after {attempt + 1} attempts)" if attempt else ""))


# ---------------------------------------------------------------------- report


@dataclass
class IngestReport:
    """What an IIIF ingest read and what it could not (one entry per failing source)."""

    sources: list[str] = field(default_factory=list)
    documents_read: int = 0
    collections: int = 0
    manifests: int = 0
    rows: int = 0
    failures: list[dict] = field(default_factory=list)     # {"source", "reason", "via"}
    duplicates: list[str] = field(default_factory=list)    # ids seen more than once (first kept)
    skipped_repeats: int = 0                                # documents met again (cycles, shared members)
    messages: list[str] = field(default_factory=list)
    report_path: str | None = None

    def fail(self, source: str, reason: str, via: str | None = None) -> None:
        self.failures.append({"source": source, "reason": reason, "via": via})
        logger.info("%s: %s", source, reason)

    def to_json(self) -> dict:
        d = asdict(self)
        d["counts"] = {"manifests": self.manifests, "collections": self.collections, "rows": self.rows,
                       "failures": len(self.failures), "duplicates": len(self.duplicates)}
        return d

    def write(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.report_path = str(path)
        path.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False))
        return path

    def summary(self, limit: int = 10) -> str:
        lines = [f"read {self.manifests:,} manifest(s) in {self.collections:,} collection(s) from "
                 f"{len(self.sources):,} source(s): {self.rows:,} row(s); {len(self.failures):,} failure(s)"]
        if self.skipped_repeats:
            lines.append(f"{self.skipped_repeats:,} document(s) met again (cycles or shared members) were read once")
        if self.duplicates:
            lines.append(f"{len(self.duplicates):,} duplicated id(s) kept once, e.g. {self.duplicates[:2]}")
        lines += self.messages
        if self.failures:
            lines.append("failed:")
            for f in self.failures[:limit]:
                via = f" (in {f['via']})" if f.get("via") else ""
                lines.append(f"  {f['source']}{via}: {f['reason']}")
            if len(self.failures) > limit:
                lines.append(f"  ... and {len(self.failures) - limit:,} more (see the report)")
        if self.report_path:
            lines.append(f"report: {self.report_path}")
        return "\n".join(lines)


# ---------------------------------------------------------------------- walking


def _norm_ref(ref: str) -> str:
    return ref.strip().rstrip("/")


class _Walk:
    """One walk over manifests and collections: the documents met, the rows found and the report."""

    def __init__(self, fetcher: Fetcher, report: IngestReport, lang: str | None, all_canvases: bool,
                 max_depth: int):
        self.fetcher, self.report = fetcher, report
        self.lang, self.all_canvases, self.max_depth = lang, all_canvases, max_depth
        self.seen: set[str] = set()
        self.rows: list[dict] = []

    def _first_time(self, ref: str) -> bool:
        """Whether ``ref`` is met for the first time (it is marked as met); a repeat is counted."""
        key = _norm_ref(ref)
        if key in self.seen:
            self.report.skipped_repeats += 1
            return False
        self.seen.add(key)
        return True

    def visit(self, ref: str | None, doc: dict | None, depth: int, via: str | None, label: str,
              remote: bool = False) -> None:
        """Read ``ref`` (or the embedded ``doc``). ``remote``: the reference was found in a document
        read over http(s), so it must be an http(s) URL too: such a document must not make the
        importer open local files (nor learn which exist)."""
        report = self.report
        if doc is None and remote and not _is_url(ref):
            report.fail(ref, REFUSED_LOCAL, via)
            return
        if ref is not None and not self._first_time(ref):
            return
        if doc is None:
            try:
                doc = self.fetcher.load(ref)
            except IIIFError as exc:
                report.fail(label, str(exc), via)
                return
            report.documents_read += 1
            remote = _is_url(ref)
        own_id = _id(doc)
        if own_id and (ref is None or _norm_ref(own_id) != _norm_ref(ref)) and not self._first_time(own_id):
            return
        kind = _kind(doc)
        if kind == "manifest":
            self._manifest(doc, own_id, via, label)
        elif kind == "collection":
            self._collection(doc, own_id, depth, via, label, remote)
        else:
            t = doc.get("type", doc.get("@type"))
            report.fail(own_id or label, f"not a IIIF manifest or collection (type {t!r})" if t else
                        "not a IIIF manifest or collection (no type)", via)

    def _manifest(self, doc: dict, own_id: str | None, via: str | None, label: str) -> None:
        """Add the rows of a manifest (or its failure to the report)."""
        self.report.manifests += 1
        try:
            self.rows.extend(manifest_rows(doc, self.lang, self.all_canvases, source=label))
        except IIIFError as exc:
            self.report.fail(own_id or label, str(exc), via)
        except RecursionError:
            self.report.fail(own_id or label, "the manifest is nested too deeply to read", via)

    def _collection(self, doc: dict, own_id: str | None, depth: int, via: str | None, label: str,
                    remote: bool) -> None:
        """Visit the members of a collection, at most ``max_depth`` levels deep."""
        report = self.report
        report.collections += 1
        if depth >= self.max_depth:
            report.fail(own_id or label, f"collection nested deeper than {self.max_depth} levels: not followed", via)
            return
        for m in collection_members(doc):
            mref = _id(m)
            embedded = isinstance(m, dict) and (
                (_kind(m) == "manifest" and manifest_canvases(m)) or
                (_kind(m) == "collection" and collection_members(m)))
            if isinstance(m, dict) and _kind(m) is None and not mref:
                report.fail(label, "a collection entry has neither an id nor a type", via)
                continue
            if embedded:
                self.visit(mref, m, depth + 1, own_id or label, mref or label, remote)
            elif mref:
                if isinstance(m, dict) and _kind(m) is None and m.get("type", m.get("@type")):
                    report.fail(mref, f"unknown type {m.get('type', m.get('@type'))!r} in a collection", own_id or label)
                    continue
                self.visit(mref, None, depth + 1, own_id or label, mref, remote)
            else:  # an entry without an id and without content: nothing to read, but said
                report.fail(own_id or label, f"a collection entry ({_kind(m) or 'no type'}) has neither an id "
                            "nor canvases or members", via)


def collect_rows(sources: list[str], *, lang: str | None = "en", all_canvases: bool = False,
                 max_depth: int = DEFAULT_MAX_DEPTH, fetcher: Fetcher | None = None,
                 report: IngestReport | None = None) -> tuple[list[dict], IngestReport]:
    """Walk ``sources`` (manifests or collections) and return their rows and the report."""
    report = report or IngestReport()
    own = fetcher is None
    fetcher = fetcher or Fetcher()
    walk = _Walk(fetcher, report, lang, all_canvases, max_depth)
    try:
        for src in sources:
            report.sources.append(str(src))
            walk.visit(str(src), None, 0, None, str(src))
    finally:
        if own:
            fetcher.close()
    return walk.rows, report


def image_filename(row_id: str, fmt: str | None = None, url: str | None = None) -> str:
    """A stable, filesystem-safe file name for a row: ``<slug>-<hash10><ext>``."""
    tail = [p for p in urlsplit(row_id).path.split("/") if p and p.lower() not in
            ("manifest", "manifest.json", "iiif", "canvas", "info.json")]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", unquote("_".join(tail[-2:])) if tail else "item").strip("._-")
    slug = re.sub(r"\.json$", "", slug)[:60] or "item"
    fmt = fmt if isinstance(fmt, str) else None
    url = url if isinstance(url, str) else None
    ext = _IMAGE_EXT.get((fmt or "").lower())
    if ext is None and url:
        m = re.search(r"\.(jpe?g|png|tiff?|gif|webp)$", urlsplit(url).path, re.I)
        ext = "." + m.group(1).lower().replace("jpeg", "jpg") if m else None
    return f"{slug}-{hashlib.sha1(row_id.encode()).hexdigest()[:10]}{ext or '.jpg'}"


def ingest_iiif(sources: list[str], *, images: str | os.PathLike | None = None,
                catalog_path: str | os.PathLike | None = None, tasks: list[str] | None = None,
                ordered: list[str] | None = None, lang: str | None = "en", all_canvases: bool = False,
                max_depth: int = DEFAULT_MAX_DEPTH, seed: int = 0, val_fraction: float = 0.2,
                rewrite: dict[str, str] | None = None, timeout: float = 30.0, retries: int = 3,
                backoff: float = 1.0) -> tuple[Catalog, IngestReport]:
    """Build a catalogue from IIIF manifests and collections (see the module docstring).

    Parameters
    ----------
    sources : manifest or collection files or http(s) URLs.
    images : image root (default: the folder ``iiif_images`` next to ``catalog_path``).
    tasks : columns that become classification tasks (classes: their sorted values).
    ordered : the tasks among ``tasks`` whose classes are ordered (in sorted order).
    lang : preferred language of labels and values.
    all_canvases : one row per canvas with an image instead of one per manifest.
    max_depth : how deep collections are followed.
    rewrite : URL prefix replacements (see :class:`Fetcher`).

    Returns
    -------
    (Catalog, IngestReport). Raises :class:`CatalogError` when nothing could be read or a task
    column does not exist.
    """
    if not sources:
        raise CatalogError("give at least one manifest or collection (file or URL)")
    tasks, ordered = list(tasks or []), list(ordered or [])
    for t in ordered:
        if t not in tasks:
            tasks.append(t)
    fetcher = Fetcher(rewrite, timeout=timeout, retries=retries, backoff=backoff)
    rows, report = collect_rows(list(sources), lang=lang, all_canvases=all_canvases, max_depth=max_depth,
                                fetcher=fetcher)
    fetcher.close()
    uniq = _unique_rows(rows, all_canvases, report)
    if not uniq:
        raise CatalogError("no manifest with an image could be read:\n  " + "\n  ".join(
            f"{f['source']}: {f['reason']}" for f in report.failures[:10]) if report.failures else
            "no manifest with an image could be read")
    df = _frame(uniq)
    specs = _task_specs(df, tasks, ordered, report)
    df["split"] = stratified_split(df[tasks[0]] if tasks else pd.Series([None] * len(df)), val_fraction, seed)
    if images is not None:
        root = Path(images).resolve()
    else:
        base = Path(catalog_path).resolve().parent if catalog_path else Path.cwd()
        root = base / "iiif_images"
    n_service = int(df["image_service"].notna().sum())
    report.messages.append(f"{n_service:,} row(s) with an image service, {len(df) - n_service:,} with a direct "
                           "image URL only")
    extra = {"iiif": {"sources": [str(s) for s in sources], "lang": lang, "all_canvases": all_canvases}}
    return Catalog(df.reset_index(drop=True), specs, root, source="iiif", extra=extra), report


def _unique_rows(rows: list[dict], all_canvases: bool, report: IngestReport) -> list[dict]:
    """One row per id, the id set (a manifest listed by two collections is read once; canvas ids may
    repeat); the repeats go to ``report.duplicates``."""
    uniq, seen = [], set()
    for r in rows:
        rid = r["canvas_id"] if all_canvases and r.get("canvas_id") else r["manifest_id"]
        rid = rid or r.get("source")
        if rid in seen:
            report.duplicates.append(rid)
            continue
        seen.add(rid)
        r["id"] = rid
        uniq.append(r)
    report.rows = len(uniq)
    return uniq


def _frame(rows: list[dict]) -> pd.DataFrame:
    """The rows as a frame: every :data:`ROW_COLUMNS` (``split`` aside) first, then the metadata
    columns sorted, image paths named by :func:`image_filename`, numbers as Int64."""
    df = pd.DataFrame(rows)
    for c in ROW_COLUMNS:
        if c not in df.columns and c not in ("path", "split"):
            df[c] = None
    df["path"] = [image_filename(i, f, u) for i, f, u in zip(df["id"], df["image_format"], df["image_url"])]
    meta_cols = [c for c in df.columns if c not in ROW_COLUMNS]
    df = df[[c for c in ROW_COLUMNS if c != "split"] + sorted(meta_cols)]
    df = df.astype(object).where(df.notna(), None)
    for c in ("image_service_version", "image_width", "image_height", "iiif_version"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
    return df


def _task_specs(df: pd.DataFrame, tasks: list[str], ordered: list[str], report: IngestReport) -> dict[str, TaskSpec]:
    """The specs of ``tasks`` (their values as strings in ``df``, classes sorted); raises
    :class:`CatalogError` for a task no manifest has."""
    specs = {}
    for t in tasks:
        if t not in df.columns:
            cols = [c for c in df.columns if c not in ("id", "path")]
            raise CatalogError(f"--tasks {t!r}: no manifest has that field; fields found: {', '.join(cols)}")
        if t in ("id", "path"):
            raise CatalogError(f"{t!r} cannot be a task")
        vals = df[t].map(lambda v: str(v) if v is not None and not (isinstance(v, float) and v != v) else None)
        df[t] = vals.astype(object)
        specs[t] = TaskSpec(t, sorted(vals.dropna().unique()), ordered=t in ordered)
        n_missing = int(vals.isna().sum())
        report.messages.append(f"task {t}: {len(specs[t].classes)} class(es)"
                               + (", ordered" if t in ordered else "")
                               + (f"; {n_missing:,} row(s) without a value" if n_missing else ""))
    return specs

"""An ordered period task from a free-text date field.

Curators write dates as "1850-1899", "c. 1665", "17th century", "1630s", "after 1500",
"1665/1670", "mid-19th century" or an ISO date ("1856-01-01T00:00:00Z"). :func:`parse_period`
reads a year range ``(start, end)`` from any of these; :func:`period_task` turns a column of such
strings into an **ordered** task whose classes are year bins:

- ``"nga"``: the 20 timeframes of the National Gallery of Art (the same strings as its
  ``visualbrowsertimespan``: "before 1300", "1300 to 1400", ..., "1976 to 2000", "2001 to present");
- an integer ``WIDTH``: fixed bins of WIDTH years aligned on multiples of WIDTH ("1850 to 1899" for 50).

A range goes to the bin of its midpoint; the row keeps the range (``<task>_start``, ``<task>_end``)
and its width in years (``<task>_width``), so that a label-issue check can tell a wide range
("1800-1899") lying in a neighbouring bin from a precise date that does not fit. Values that cannot
be read stay unlabelled and are counted.

Conventions: the Nth century runs from (N-1)*100+1 to N*100 (the NGA's bins follow it: "1601 to
1650"); "early", "mid" and "late" take its first, middle and last third, "first/second half" and
"first ... fourth quarter" their part; "1600s" is the century 1600-1699 and "1630s" the decade
1630-1639; "c."/"circa"/"about" widen a single year by 5 years on each side; "after X" and
"before X" mean the 25 years after or before X; BC/BCE years are negative.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field

import pandas as pd

from .catalog import Catalog, CatalogError, TaskSpec
from .nga import NGA_TIMEFRAMES

logger = logging.getLogger(__name__)

CIRCA_YEARS = 5
OPEN_YEARS = 25

#: Year bounds of the NGA timeframes (inclusive; None = open).
NGA_BOUNDS: list[tuple[int | None, int | None]] = [
    (None, 1299), (1300, 1400), (1401, 1500), (1501, 1550), (1551, 1600), (1601, 1650), (1651, 1700),
    (1701, 1725), (1726, 1750), (1751, 1775), (1776, 1800), (1801, 1825), (1826, 1850), (1851, 1875),
    (1876, 1900), (1901, 1925), (1926, 1950), (1951, 1975), (1976, 2000), (2001, None),
]
assert len(NGA_BOUNDS) == len(NGA_TIMEFRAMES)

# (the "c" of "B.C." / "b. c." is an era, not circa)
_CIRCA = re.compile(r"(?<!b\.)(?<!b\. )\b(?:c|ca|circa|about|around|approx(?:imately)?)\b\.?\s*", re.I)
_NOISE = re.compile(r"\b(?:probably|possibly|perhaps|dated|made|painted|executed|begun|completed|"
                    r"reworked|retouched|finished|published|created|in|the|of|or earlier|or later)\b|[?\[\]()]", re.I)
_ERA = r"(?:\s*(?P<era>b\.?\s?c\.?(?:e\.?)?|a\.?\s?d\.?|c\.?e\.?))?"
_ORD = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
        "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14,
        "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19,
        "twentieth": 20, "twenty-first": 21}
_CENTURY = re.compile(
    r"(?P<mod>early|mid(?:dle)?|late|first\s+half|second\s+half|(?:first|second|third|fourth|last|1st|2nd|3rd|4th)\s+quarter)?"
    r"[\s-]*(?:of\s+)?(?:the\s+)?"
    r"(?P<n>\d{1,2})\s*(?:st|nd|rd|th)?\s*[-\s]?(?:century|centuries|cent\b\.?|c\b\.?)" + _ERA, re.I)
_CENTURY_WORD = re.compile(
    r"(?P<mod>early|mid(?:dle)?|late|first\s+half|second\s+half|(?:first|second|third|fourth|last|1st|2nd|3rd|4th)\s+quarter)?"
    r"[\s-]*(?:of\s+)?(?:the\s+)?(?P<w>" + "|".join(sorted(_ORD, key=len, reverse=True)) +
    r")[\s-]+century" + _ERA, re.I)
_DECADE = re.compile(r"(?P<mod>early|mid(?:dle)?|late)?[\s-]*(?P<y>\d{3,4})0'?s\b", re.I)
_RANGE = re.compile(r"(?P<a>\d{1,4})" + r"(?P<era1>\s*(?:b\.?\s?c\.?(?:e\.?)?|a\.?\s?d\.?|c\.?e\.?))?"
                    r"\s*(?:[-\u2010-\u2015\u2212/]|\bto\b|\band\b|\bor\b|\buntil\b|\bthrough\b)\s*"
                    r"(?:c\.?\s*|ca\.?\s*|circa\s*)?(?P<b>\d{1,4})" + _ERA + r"(?!\d)", re.I)
_ISO = re.compile(r"^\s*(?P<y>[+-]?\d{4})-\d{2}-\d{2}(?:[T ][\d:.]+(?:Z|[+-]\d{2}:?\d{2})?)?\s*$")
_YEAR = re.compile(r"(?<!\d)(?P<y>\d{3,4})(?!\d)" + _ERA, re.I)
_UNDATED = re.compile(r"^\s*(?:n\.?\s?d\.?|undated|unknown|not dated|no date|date unknown|-+|\?+)\s*$", re.I)


def _bc(era: str | None) -> bool:
    return bool(era) and era.strip().lower().replace(".", "").replace(" ", "").startswith("b")


def _part(start: int, end: int, mod: str | None) -> tuple[int, int]:
    """A part of the span start..end named by ``mod`` (early, mid, late, first half, third quarter ...)."""
    if not mod:
        return start, end
    mod = re.sub(r"\s+", " ", mod.lower())
    span = end - start + 1
    if mod == "early":
        return start, start + span // 3 - 1
    if mod in ("mid", "middle"):
        return start + span // 3, end - span // 3
    if mod == "late":
        return end - span // 3 + 1, end
    if mod.endswith("half"):
        half = span // 2
        return (start, start + half - 1) if mod.startswith("first") else (start + half, end)
    if mod.endswith("quarter"):
        q = {"first": 0, "second": 1, "third": 2, "fourth": 3, "last": 3, "1st": 0, "2nd": 1, "3rd": 2,
             "4th": 3}[mod.split()[0]]
        quarter = span // 4
        return start + q * quarter, start + (q + 1) * quarter - 1
    return start, end


def _century(n: int, bc: bool, mod: str | None) -> tuple[int, int]:
    if bc:  # the 1st century BC runs from 100 BC to 1 BC
        start, end = -n * 100, -(n - 1) * 100 - 1
    else:
        start, end = (n - 1) * 100 + 1, n * 100
    return _part(start, end, mod)


def parse_period(value) -> tuple[int, int] | None:
    """The year range ``(start, end)`` (inclusive, BC negative) written in ``value``; None when it
    holds no date. See the module docstring for the forms read and their conventions.

    Examples
    --------
    >>> parse_period("1850-1899"), parse_period("c. 1665"), parse_period("17th century")
    ((1850, 1899), (1660, 1670), (1601, 1700))
    >>> parse_period("1630s"), parse_period("after 1500"), parse_period("n.d.")
    ((1630, 1639), (1500, 1525), None)
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return (int(value), int(value))
    if isinstance(value, float):
        return (int(value), int(value)) if value.is_integer() else None
    text = str(value).strip()
    if not text or _UNDATED.match(text):
        return None
    m = _ISO.match(text)
    if m:
        y = int(m.group("y"))
        return (y, y)
    low = text.lower()
    span = _centuries(low)
    if span:
        return span
    circa, after, before, low = _qualifiers(low)
    span = _decade(low) or _range(low)
    if span:
        return span
    years = _years(low)
    if years is None:
        return None
    start, end = min(years), max(years)
    if start == end:
        if after and not before:
            return start, start + OPEN_YEARS
        if before and not after:
            return start - OPEN_YEARS, start
        if circa:
            return start - CIRCA_YEARS, start + CIRCA_YEARS
    return start, end


def _centuries(low: str) -> tuple[int, int] | None:
    """The span of the centuries named in ``low`` (lower-case text): "17th century", "early
    nineteenth century" ...; None when it names none."""
    cent = re.sub(r"\s+", " ", _NOISE.sub(" ", low)).strip(" ,;.")
    for rx in (_CENTURY, _CENTURY_WORD):
        spans = []
        for c in rx.finditer(cent):
            n = int(c.group("n")) if c.groupdict().get("n") else _ORD[c.group("w").lower()]
            if 1 <= n <= 21:
                spans.append(_century(n, _bc(c.group("era")), c.group("mod")))
        if spans:
            return min(s for s, _ in spans), max(e for _, e in spans)
    return None


def _qualifiers(low: str) -> tuple[bool, bool, bool, str]:
    """``(circa, after, before, rest)``: whether ``low`` says "c."/"circa", "after"/"not before" or
    "before"/"not after", and the text without these words and without noise."""
    circa = bool(_CIRCA.search(low))
    low = _CIRCA.sub(" ", low)
    plain = re.sub(r"\bnot (?:before|after)\b", " ", low)   # "not after X" is "X or before"
    after = re.search(r"\bnot before\b", low) is not None or re.search(r"\b(?:after|post|from|since)\b", plain) is not None
    before = re.search(r"\bnot after\b", low) is not None or re.search(r"\b(?:before|ante|by|until)\b", plain) is not None
    low = re.sub(r"\b(?:after|post|from|since|not before|before|ante|by|not after)\b", " ", low)
    low = _NOISE.sub(" ", low)
    low = re.sub(r"\s+", " ", low).strip(" ,;.")
    return circa, after, before, low


def _decade(low: str) -> tuple[int, int] | None:
    """The span of "1630s" (a decade), "1600s" (a century), "late 1630s" ...; None when there is none."""
    d = _DECADE.search(low)
    if not d:
        return None
    y = int(d.group("y"))
    if y % 10 == 0:
        start, end = y * 10, y * 10 + 99  # "1600s": the century
    else:
        start, end = y * 10, y * 10 + 9   # "1630s": the decade
    return _part(start, end, d.group("mod"))


def _range(low: str) -> tuple[int, int] | None:
    """The span of a range of years ("1850-1899", "1850-99", "1665/7", "500-400 BC"); None when there
    is none (or its years are too short to be years)."""
    r = _RANGE.search(low)
    if not r:
        return None
    a, b = r.group("a"), r.group("b")
    bc = _bc(r.group("era"))
    bc1 = _bc(r.group("era1")) or bc
    ya = int(a)
    if len(b) < len(a) and not bc:  # "1850-99", "1665/7"
        yb = int(a[: len(a) - len(b)] + b)
        if yb < ya:  # "1895-05": the next century
            yb += 10 ** len(b)
    else:
        yb = int(b)
    if bc1:
        ya = -ya
    if bc:
        yb = -yb
    if len(a) >= 3 or len(b) >= 3 or bc or bc1:
        return min(ya, yb), max(ya, yb)
    return None


def _years(low: str) -> list[int] | None:
    """The years written in ``low`` (BC negative), or a bare number standing alone; None when none."""
    years = [(-int(y.group("y")) if _bc(y.group("era")) else int(y.group("y"))) for y in _YEAR.finditer(low)]
    if not years:
        bare = re.fullmatch(r"(?P<y>\d{1,4})" + _ERA, low)
        if not bare:
            return None
        years = [-int(bare.group("y")) if _bc(bare.group("era")) else int(bare.group("y"))]
    return years


# ---------------------------------------------------------------------- bins


@dataclass
class Bins:
    """Ordered year bins: ``classes`` and their inclusive ``bounds`` (None = open)."""

    kind: str                                   # "nga" or "width:W"
    classes: list[str]
    bounds: list[tuple[int | None, int | None]]

    def index(self, year: float) -> int:
        """The bin holding ``year`` (rounded down to a whole year)."""
        y = math.floor(year)
        for i, (lo, hi) in enumerate(self.bounds):
            if (lo is None or y >= lo) and (hi is None or y <= hi):
                return i
        return 0 if y < (self.bounds[0][0] or 0) else len(self.bounds) - 1

    def to_json(self) -> dict:
        return {"bins": self.kind, "classes": list(self.classes), "bounds": [list(b) for b in self.bounds]}


def _year_label(y: int) -> str:
    return f"{-y} BC" if y < 0 else str(y)


def make_bins(spec: str | int, years: list[tuple[int, int]] | None = None) -> Bins:
    """``"nga"``: the NGA's 20 timeframes; an integer WIDTH (or its string): WIDTH-year bins from the
    earliest to the latest midpoint in ``years``."""
    s = str(spec).strip().lower()
    if s == "nga":
        return Bins("nga", list(NGA_TIMEFRAMES), list(NGA_BOUNDS))
    try:
        width = int(s)
    except ValueError:
        raise CatalogError(f"--period-bins must be 'nga' or a whole number of years; got {spec!r}") from None
    if width < 1:
        raise CatalogError(f"--period-bins width must be at least 1 year; got {width}")
    mids = [math.floor((a + b) / 2) for a, b in (years or [])]
    if not mids:
        return Bins(f"width:{width}", [], [])
    first, last = (min(mids) // width) * width, (max(mids) // width) * width
    bounds = [(lo, lo + width - 1) for lo in range(first, last + 1, width)]
    classes = [f"{_year_label(lo)} to {_year_label(hi)}" for lo, hi in bounds]
    return Bins(f"width:{width}", classes, bounds)


@dataclass
class PeriodResult:
    labels: pd.Series            # class name or None per row
    start: pd.Series             # Int64
    end: pd.Series               # Int64
    width: pd.Series             # Int64 (end - start, years)
    bins: Bins
    unparsed: list[str] = field(default_factory=list)   # distinct values that could not be read
    n_unparsed: int = 0
    n_blank: int = 0


def period_task(values: pd.Series, bins: str | int = "nga") -> PeriodResult:
    """Parse every value of ``values`` and bin the midpoint of its range (see module docstring)."""
    parsed = [parse_period(v) for v in values]
    b = make_bins(bins, [p for p in parsed if p is not None])
    labels, n_unparsed, n_blank, bad = [], 0, 0, {}
    for v, p in zip(values, parsed):
        if p is None:
            blank = v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())
            if blank:
                n_blank += 1
            else:
                n_unparsed += 1
                bad.setdefault(str(v), None)
            labels.append(None)
        else:
            labels.append(b.classes[b.index((p[0] + p[1]) / 2)])
    idx = values.index
    start = pd.Series([p[0] if p else None for p in parsed], index=idx, dtype="Int64")
    end = pd.Series([p[1] if p else None for p in parsed], index=idx, dtype="Int64")
    return PeriodResult(pd.Series(labels, index=idx, dtype=object), start, end, end - start, b,
                        list(bad), n_unparsed, n_blank)


def add_period_task(catalog: Catalog, field_name: str, bins: str | int = "nga", *, name: str = "period",
                    ) -> tuple[Catalog, list[str]]:
    """Add the ordered task ``name`` (and ``<name>_start``, ``<name>_end``, ``<name>_width``) to
    ``catalog`` from its column ``field_name``. Returns the new catalogue and report messages.
    The bins' year bounds are stored in ``catalog.extra["periods"][name]``."""
    df = catalog.df
    if field_name not in df.columns:
        cols = [c for c in df.columns if c not in ("id", "path", "split")]
        raise CatalogError(f"--period-from {field_name!r}: the catalogue has no such column; columns: "
                           f"{', '.join(cols[:20])}{' ...' if len(cols) > 20 else ''}")
    if name in catalog.tasks and name != field_name:
        raise CatalogError(f"the catalogue already has a task {name!r}")
    res = period_task(df[field_name], bins)
    out = df.copy()
    out[name] = res.labels.values
    out[f"{name}_start"] = res.start.values
    out[f"{name}_end"] = res.end.values
    out[f"{name}_width"] = res.width.values
    present = set(res.labels.dropna())
    classes = list(res.bins.classes)   # every bin from the first to the last: class distance = bin distance
    tasks = dict(catalog.tasks)
    tasks[name] = TaskSpec(name, classes, ordered=True)
    extra = dict(catalog.extra)
    periods = dict(extra.get("periods", {}))
    periods[name] = {"field": field_name, "bins": res.bins.kind, "classes": classes,
                     "bounds": [list(b) for b in res.bins.bounds]}
    extra["periods"] = periods
    msgs = [f"{name}: {int(res.labels.notna().sum()):,} of {len(df):,} row(s) dated from {field_name} into "
            f"{len(present)} of {len(classes)} {'NGA timeframe' if res.bins.kind == 'nga' else res.bins.kind.split(':')[1] + '-year'} "
            "bin(s) (ordered task)"]
    if res.n_unparsed:
        msgs.append(f"{name}: {res.n_unparsed:,} value(s) of {field_name} could not be read as a date and stay "
                    f"unlabelled, e.g. {res.unparsed[:3]}")
    if res.n_blank:
        msgs.append(f"{name}: {res.n_blank:,} row(s) have no {field_name}")
    cat = Catalog(out, tasks, catalog.image_root, catalog.source, extra)
    cat.path = catalog.path
    return cat, msgs


# ---------------------------------------------------------------------- command-line helpers


def add_period_arguments(parser) -> None:
    """``--period-from FIELD [--period-bins nga|WIDTH] [--period-name NAME]`` on an importer."""
    parser.add_argument("--period-from", default=None, metavar="FIELD",
                        help="make an ordered period task from this date column (free text: '1850-1899', "
                        "'c. 1665', '17th century', '1630s', 'after 1500'; a range goes to the bin of its midpoint)")
    parser.add_argument("--period-bins", default="nga", metavar="nga|WIDTH",
                        help="'nga' (default): the NGA's 20 timeframes; or a number: bins of that many years")
    parser.add_argument("--period-name", default="period", metavar="NAME",
                        help="name of the period task (default: period)")

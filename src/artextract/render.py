"""HTML from Jinja templates: one way to render every page ArtExtract writes or serves.

The explorer's pages (``web/templates/``), the run report and the outlier page (``templates/``) are
Jinja templates with autoescaping on, the same filters (:func:`fmt`, :func:`pct`, :func:`labelize`)
and one stylesheet, ``web/static/style.css``: the explorer serves it, and :func:`render_page` inlines
it (``stylesheet()`` in a template), so a written page is one self-contained file that works opened
from disk.

A leaf module (jinja2 and nothing of the web package), importable without the ``web`` extra.
"""
from __future__ import annotations

import functools
import logging
import math
import os
from pathlib import Path

import jinja2
from markupsafe import Markup

from . import __version__
from .utils import atomic_write_text

logger = logging.getLogger(__name__)

PACKAGE = Path(__file__).parent
TEMPLATES = PACKAGE / "templates"                       # the written pages and their base, page.html
STYLESHEET = PACKAGE / "web" / "static" / "style.css"   # the one stylesheet of every page


# ---------------------------------------------------------------------- filters
def fmt(v) -> str:
    """A value for a page: ``—`` for none or NaN, yes/no, integers without ``.0``, 3 decimals."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        if float(v).is_integer() and abs(v) < 1e12:
            return str(int(v))
        return f"{v:.3f}"
    return str(v).replace("|", " · ")


def pct(p) -> str:
    """A probability as a percentage with one decimal (``—`` when it is not a number)."""
    try:
        return f"{float(p) * 100:.1f}%"
    except (TypeError, ValueError):
        return "—"


def labelize(s) -> str:
    """A label as shown: underscores as spaces (``—`` for none)."""
    return str(s).replace("_", " ") if s is not None else "—"


@functools.lru_cache(maxsize=1)
def stylesheet() -> Markup:
    """The stylesheet's text, to inline in a ``<style>`` element."""
    return Markup(STYLESHEET.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------- environments
def environment(*dirs: str | os.PathLike) -> jinja2.Environment:
    """A Jinja environment with autoescaping, the shared filters and globals, that finds templates in
    ``dirs`` first, then in :data:`TEMPLATES`.

    Parameters
    ----------
    *dirs : str or PathLike
        Folders of templates (the explorer passes ``web/templates``).

    Returns
    -------
    jinja2.Environment
    """
    env = jinja2.Environment(loader=jinja2.FileSystemLoader([*map(str, dirs), str(TEMPLATES)]), autoescape=True)
    env.filters.update(fmt=fmt, pct=pct, labelize=labelize)
    env.globals.update(version=__version__, stylesheet=stylesheet)
    return env


@functools.lru_cache(maxsize=1)
def _pages() -> jinja2.Environment:
    return environment()


def render_page(name: str, **context) -> str:
    """The HTML of the template ``name`` (in :data:`TEMPLATES`), every value escaped unless marked safe.

    Parameters
    ----------
    name : str
        Template file name, e.g. ``report.html``.
    **context
        The template's variables.

    Returns
    -------
    str
    """
    return _pages().get_template(name).render(**context)


def write_page(path: str | os.PathLike, name: str, **context) -> Path:
    """Render the template ``name`` into ``path`` (UTF-8, written atomically) and return the path."""
    return atomic_write_text(Path(path), render_page(name, **context))

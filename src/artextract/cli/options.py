"""Options that several commands share, defined once so that they read the same everywhere, and the
helpers that read them."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..defaults import DEFAULT_BACKBONE
from ..workspace import CACHE_HELP
from .base import UserError

PRETRAINED_CHOICES = ("imagenet", "none")
DEFAULT_SEED = 0
VAL_FRACTION = 0.2  # default validation share of the importers that make their own split (ingest csv, folder, nga)


def add_backbone_options(parser, *, backbone_help: str | None = None, backbone_group=None,
                         allow_none: bool = False, weights: bool = True) -> None:
    """Add ``--backbone``, ``--pretrained`` and (optionally) ``--weights``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The command's parser.
    backbone_help : str, optional
        Help for ``--backbone`` when the command reads it in its own way.
    backbone_group : argparse group, optional
        Where ``--backbone`` goes (e.g. a mutually exclusive group with ``--run``); default ``parser``.
    allow_none : bool
        Mention that ``none`` turns the embedding off (the command handles it).
    weights : bool
        Also add ``--weights``.

    Returns
    -------
    None
    """
    text = backbone_help or (f"backbone, see `artextract backbones` (default {DEFAULT_BACKBONE})"
                             + ("; 'none': no embedding" if allow_none else ""))
    (backbone_group or parser).add_argument("--backbone", default=DEFAULT_BACKBONE, help=text)
    parser.add_argument("--pretrained", choices=PRETRAINED_CHOICES, default="imagenet",
                        help="backbone weights: imagenet (default) or none (a seeded random init, for tests)")
    if weights:
        parser.add_argument("--weights", default=None,
                            help="backbone weights file (.pth or .safetensors) instead of the packaged ones")


def pretrained(args: argparse.Namespace) -> bool:
    """Whether ``--pretrained`` asks for pretrained weights.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments with ``pretrained``.

    Returns
    -------
    bool
    """
    return args.pretrained != "none"


def add_progress_option(parser) -> None:
    """Add ``--no-progress`` (dest ``no_progress``): no progress bars on stderr.

    Parameters
    ----------
    parser : argparse.ArgumentParser

    Returns
    -------
    None
    """
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (on stderr)")


def add_seed_option(parser, help: str = "random seed (default 0)") -> None:
    """Add ``--seed`` (int, default :data:`DEFAULT_SEED`).

    Parameters
    ----------
    parser : argparse.ArgumentParser
    help : str
        What the seed decides for this command.

    Returns
    -------
    None
    """
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=help)


def add_json_option(parser, what: str = "the result") -> None:
    """Add ``--json``: print one JSON document on stdout instead of the table.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    what : str
        What the document holds, for the help text.

    Returns
    -------
    None
    """
    parser.add_argument("--json", action="store_true",
                        help=f"print {what} as one JSON document on stdout (messages stay on stderr)")


PREPARE_CACHE_HELP = ("cache folder, e.g. --cache /scratch/wikiart.cache (default: the folder recorded by an "
                      "earlier `prepare --cache`, else CATALOG with suffix .cache). It is recorded in "
                      "CATALOG.cache-location, so that later commands on this catalogue (train, outliers, index, "
                      "...) use it without --cache; --cache CATALOG.cache goes back to the default")


def add_cache_option(parser, help: str = CACHE_HELP) -> None:
    """Add ``--cache DIR`` (dest ``cache``): the catalogue's prepared-image cache folder.

    A command reads it with ``Catalog.load(path, cache_dir=args.cache)``; without it the catalogue's
    cache is :func:`artextract.data.cache.default_cache_dir`'s (the recorded folder, else the default).

    Parameters
    ----------
    parser : argparse.ArgumentParser
    help : str
        The help text (``prepare``'s says that it records the folder).

    Returns
    -------
    None
    """
    parser.add_argument("--cache", default=None, metavar="DIR", help=help)


ENGINE_COMMANDS = ("train", "evaluate", "predict", "outliers", "duplicates", "index", "similar",
                   "evaluate-retrieval", "serve", "report", "demo")


def add_engine_options(parser) -> None:
    """Add ``--engine``, ``--precision`` and ``--threads``: how the frozen backbone's forward passes run
    (see :mod:`artextract.models.engine`).

    Parameters
    ----------
    parser : argparse.ArgumentParser

    Returns
    -------
    None
    """
    from ..models.engine import ENGINES, PRECISIONS

    g = parser.add_argument_group("inference engine")
    g.add_argument("--engine", choices=ENGINES, default=None,
                   help="what runs the frozen backbone: auto (default: openvino on a CPU when installed, else "
                        "torch), torch or openvino, e.g. --engine torch")
    g.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="auto (default: fp32 on a CPU, fp16 on a GPU), fp32, bf16 (faster on CPUs with bf16, "
                        "lossy; its features get a store of their own) or fp16 (GPU), e.g. --precision bf16")
    g.add_argument("--threads", type=int, default=None,
                   help="CPU threads for the forward pass (default: the cores, shared among the torchrun ranks "
                        "of this machine), e.g. --threads 2")


def apply_engine_options(args: argparse.Namespace) -> None:
    """Configure the process's inference engine from ``--engine/--precision/--threads`` (when present)."""
    if not hasattr(args, "engine"):
        return
    from ..models import engine

    engine.configure(args.engine, args.precision, args.threads)


def parse_rewrites(pairs: list[str] | None) -> dict[str, str]:
    """The ``--rewrite PREFIX=REPLACEMENT`` options (``ingest iiif``, ``download iiif``) as a mapping.

    Parameters
    ----------
    pairs : list of str or None
        The option's values.

    Returns
    -------
    dict
        PREFIX -> REPLACEMENT.
    """
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise UserError(f"--rewrite needs PREFIX=REPLACEMENT; got {p!r}")
        old, new = p.split("=", 1)
        if not old:
            raise UserError(f"--rewrite needs a non-empty PREFIX; got {p!r}")
        out[old] = new
    return out


def review_store(args: argparse.Namespace, create: bool = False):
    """The review database that ``--catalog`` (and ``--db``) name, for ``users`` and ``review``.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments with ``catalog`` and ``db``.
    create : bool
        Create the database when it does not exist (else that is an error).

    Returns
    -------
    artextract.web.db.ReviewStore
    """
    from ..artefacts import ReviewStore

    if not Path(args.catalog).is_file():
        raise UserError(f"no catalogue at {args.catalog}")
    store = ReviewStore(args.catalog, args.db)
    return store.ensure() if create else store.load()


DEFAULT_K = 10   # neighbours per query of `similar` and `evaluate-retrieval`


def add_neighbours_option(parser) -> None:
    """Add ``-k`` (int, default :data:`DEFAULT_K`): neighbours per query.

    Parameters
    ----------
    parser : argparse.ArgumentParser

    Returns
    -------
    None
    """
    parser.add_argument("-k", type=int, default=DEFAULT_K, help=f"neighbours per query (default {DEFAULT_K})")

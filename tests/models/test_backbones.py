"""The backbone registry: names, sizes, feature maps, style statistics and clear errors."""
from __future__ import annotations

import pytest
import torch

from artextract.defaults import DEFAULT_BACKBONE
from artextract.models.backbones import (Backbone, WeightsUnavailable, create_backbone, default_size, default_taps,
                                         list_backbones)


def test_registry_lists_the_offline_backbones_and_the_default():
    names = {b.name: b for b in list_backbones()}
    assert {"mobilenet_v2", "efficientnet_lite0", "efficientnet_lite2", "resnet50", "tiny_cnn"} <= set(names)
    assert DEFAULT_BACKBONE in names and names[DEFAULT_BACKBONE].offline
    assert not names["resnet50"].offline
    assert all(b.description for b in names.values())
    assert default_size("efficientnet_lite2") == 260 and default_size("tiny_cnn") == 64
    assert default_size("timm:resnet18") is None and default_taps("timm:resnet18") == ()
    assert default_taps("tiny_cnn") == ("2", "5", "8")


def test_tiny_cnn_map_and_style_statistics():
    torch.manual_seed(0)
    bb = create_backbone("tiny_cnn", pretrained=False)
    assert isinstance(bb, Backbone) and bb.out_channels == 64 and bb.default_size == 64 and bb.pretrained is None
    x = torch.randn(2, 3, 64, 64)
    fmap = bb(x)
    assert fmap.shape == (2, 64, 4, 4)  # four stride-2 convolutions
    fmap2, stats = bb.forward_with_stats(x)
    assert torch.allclose(fmap, fmap2)
    # mean and std of each tap's channels: taps of 32, 32 and 64 channels -> 2 * 128
    assert stats.shape == (2, 2 * (32 + 32 + 64)) and torch.isfinite(stats).all()
    assert (stats[:, 32:64] >= 0).all()  # the first tap's spreads
    # the hooks capture only inside forward_with_stats
    assert bb._captured is None


@pytest.mark.slow
def test_mobilenet_v2_builds_without_weights():
    bb = create_backbone("mobilenet_v2", pretrained=False)
    assert bb.out_channels == 1280 and bb.default_size == 224
    with torch.no_grad():
        assert bb(torch.randn(1, 3, 96, 96)).shape == (1, 1280, 3, 3)


def test_errors_are_clear():
    with pytest.raises(ValueError, match="unknown backbone 'nope'"):
        create_backbone("nope")
    with pytest.raises(WeightsUnavailable, match="--pretrained none"):
        create_backbone("tiny_cnn", pretrained=True)


def test_weights_file_round_trip(tmp_path):
    torch.manual_seed(1)
    a = create_backbone("tiny_cnn", pretrained=False)
    path = tmp_path / "tiny.pth"
    torch.save(a.body.state_dict(), path)
    b = create_backbone("tiny_cnn", pretrained=False, weights=str(path))
    assert b.pretrained == str(path)
    x = torch.randn(1, 3, 64, 64)
    a.eval(), b.eval()
    assert torch.allclose(a(x), b(x))

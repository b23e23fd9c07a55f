"""Vision Transformer backbones (timm and open_clip) with random weights: the map, the pooled vector,
the style statistics and the preprocessing each model's own, and text in the image space."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from artextract.models.backbones import WeightsUnavailable, create_backbone
from artextract.models.vit import TokenBackbone, tap_indices


def _pass(net, n=2, seed=0):
    torch.manual_seed(seed)
    s = net.preprocess.size
    with torch.no_grad():
        return net.forward_all(torch.randn(n, 3, s, s))


def test_tap_indices_spread_over_the_depth():
    assert tap_indices(12) == [2, 5, 8]
    assert tap_indices(24) == [5, 11, 17]
    assert all(0 <= i < 4 for i in tap_indices(4))


@pytest.mark.slow
def test_dinov2_with_registers_sets_the_class_and_register_tokens_aside():
    torch.manual_seed(0)
    net = create_backbone("timm:vit_small_patch14_reg4_dinov2", pretrained=False, image_size=112).eval()
    assert isinstance(net, TokenBackbone) and net.body.num_prefix_tokens == 5   # 1 class + 4 registers
    assert net.preprocess.size == 112 and net.preprocess.interpolation == "bicubic"
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        fmap, pooled, stats = net.forward_all(x)
        tokens = net.body.forward_features(x)
        own_pool = net.body.forward_head(tokens, pre_logits=True)
    assert fmap.shape == (2, 384, 8, 8)                           # 112 / 14 patches a side
    # the map is the 64 patch tokens on their grid, row by row; no class or register token in it
    assert torch.allclose(fmap.flatten(2).transpose(1, 2), tokens[:, 5:], atol=1e-5)
    assert torch.allclose(pooled, own_pool, atol=1e-5)           # the model's own pooling (the class token)
    assert torch.allclose(pooled, tokens[:, 0], atol=1e-5)
    assert stats.shape == (2, 2 * 384 * 3)                        # mean and std of three blocks' channels
    assert net.taps == ("blocks.2", "blocks.5", "blocks.8")


@pytest.mark.slow
def test_eva_and_siglip_through_timm_use_their_own_normalisation():
    eva = create_backbone("timm:eva02_tiny_patch14_224", pretrained=False).eval()
    assert eva.preprocess.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))   # CLIP's, not ImageNet's
    fm, pv, st = _pass(eva)
    assert fm.shape == (2, 192, 16, 16) and pv.shape == (2, 192) and st.shape == (2, 6 * 192)
    siglip = create_backbone("timm:vit_base_patch16_siglip_224", pretrained=False).eval()
    assert siglip.preprocess.mean == (0.5, 0.5, 0.5) and siglip.preprocess.std == (0.5, 0.5, 0.5)
    assert siglip.body.num_prefix_tokens == 0                     # no class token: an attention-pool head
    fm, pv, st = _pass(siglip, n=1)
    assert fm.shape == (1, 768, 14, 14) and pv.shape == (1, 768)
    with torch.no_grad():
        x = torch.randn(1, 3, 224, 224)
        assert torch.allclose(siglip.forward_all(x)[1], siglip.body(x), atol=1e-4)   # the map-pool head's output


@pytest.mark.slow
def test_open_clip_vit_gives_the_projected_embedding_and_a_text_tower():
    torch.manual_seed(0)
    net = create_backbone("open_clip:ViT-B-32", pretrained=False).eval()
    assert net.text_tower
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        fmap, pooled, stats = net.forward_all(x)
        image_features = net.clip.encode_image(x)
    assert fmap.shape == (2, 768, 7, 7) and stats.shape == (2, 6 * 768)
    assert torch.allclose(pooled, image_features, atol=1e-4)     # CLIP's own embedding, 512-d
    t = net.encode_text(["a ship in a storm at night", "a portrait"])
    assert t.shape == (2, 512)
    # the same state saved and loaded (the checkpoint-file path of --weights)


@pytest.mark.slow
def test_open_clip_siglip_builds_its_image_tower():
    net = create_backbone("open_clip:ViT-B-16-SigLIP", pretrained=False).eval()
    assert net.preprocess.mean == (0.5, 0.5, 0.5)
    fm, pv, st = _pass(net, n=1)
    assert fm.shape == (1, 768, 14, 14) and pv.shape[0] == 1 and st.shape == (1, 6 * 768)


@pytest.mark.slow
def test_weights_files_and_hub_cache_folders(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(3)
    src = create_backbone("timm:vit_tiny_patch16_224", pretrained=False, image_size=64)
    f = tmp_path / "vit_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in src.body.state_dict().items()}, str(f))
    torch.manual_seed(99)
    got = create_backbone("timm:vit_tiny_patch16_224", pretrained=False, weights=str(f), image_size=64)
    for k, v in src.body.state_dict().items():
        assert torch.equal(v, got.body.state_dict()[k]), k
    assert "file" in got.pretrained
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        create_backbone("timm:vit_tiny_patch16_224", pretrained=False, weights=str(tmp_path / "missing.pth"))
    # an empty hub cache folder: the message names both ways out, and it answers at once (no retries)
    with pytest.raises(WeightsUnavailable) as e:
        create_backbone("timm:vit_tiny_patch16_224", pretrained=True, weights=str(tmp_path))
    assert "--weights" in str(e.value) and "backbones --fetch" in str(e.value)


def test_unknown_models_are_refused_in_words():
    with pytest.raises(WeightsUnavailable, match="timm has no model"):
        create_backbone("timm:no_such_model_at_all", pretrained=False)
    with pytest.raises(WeightsUnavailable, match="open_clip has no model"):
        create_backbone("open_clip:No-Such-Model", pretrained=False)


def test_a_cnn_has_no_text_tower():
    net = create_backbone("tiny_cnn", pretrained=False)
    assert not net.text_tower
    with pytest.raises(ValueError, match="no text tower"):
        net.encode_text(["a ship"])


def _hub_cache_folder(root, repo: str, files: dict) -> None:
    """A Hugging Face hub cache as a connected machine leaves it: models--ORG--NAME/{refs/main, snapshots/REV/}."""
    rev = "0123456789abcdef0123456789abcdef01234567"
    d = root / ("models--" + repo.replace("/", "--"))
    (d / "refs").mkdir(parents=True)
    (d / "refs" / "main").write_text(rev)
    snap = d / "snapshots" / rev
    snap.mkdir(parents=True)
    for name, write in files.items():
        write(snap / name)


@pytest.mark.slow
def test_a_hub_cache_folder_copied_from_a_connected_machine_loads_offline(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(5)
    ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    repo = ref.pretrained_cfg["hf_hub_id"].rstrip("/")
    state = {k: v.contiguous() for k, v in ref.state_dict().items()}
    _hub_cache_folder(tmp_path / "weights-cache", repo,
                      {"model.safetensors": lambda p: save_file(state, str(p))})
    got = create_backbone("timm:vit_tiny_patch16_224", pretrained=True, weights=str(tmp_path / "weights-cache"))
    for k, v in ref.state_dict().items():
        assert torch.equal(v, got.body.state_dict()[k]), k


def test_fetch_without_internet_says_it_needs_it(tmp_path, monkeypatch, capsys):
    from artextract.cli import main
    from artextract.models import vit

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")   # nothing listens on the discard port
    vit._REACHABLE.clear()
    try:
        assert main(["backbones", "--fetch", "timm:vit_tiny_patch16_224", "--to", str(tmp_path / "w")]) == 2
        assert "needs internet" in capsys.readouterr().err
        assert main(["backbones", "--to", str(tmp_path / "w")]) == 2
    finally:
        vit._REACHABLE.clear()

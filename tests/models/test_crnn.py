"""The multi-task CRNN head: shapes, masked loss, and defaults that are TrainConfig's."""
from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

from artextract.models.backbones import create_backbone
from artextract.models.crnn import CRNNHead, MultiTaskCRNN, masked_multitask_loss
from artextract.training.config import TrainConfig

TASKS = {"style": 5, "genre": 3}


def test_head_defaults_equal_trainconfig():
    params = inspect.signature(CRNNHead).parameters
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    shared = [n for n in params if n in defaults and n != "tasks"]  # tasks: the head's classes, not a default
    assert set(shared) == {"proj", "hidden", "layers", "pool", "dropout", "use_lstm", "linear_path", "linear_dropout"}
    assert {n: params[n].default for n in shared} == {n: defaults[n] for n in shared}
    # a head built with no arguments is the head that training builds by default
    head = CRNNHead(32, TASKS)
    assert {k: head.config[k] for k in shared} == {n: defaults[n] for n in shared}


@pytest.mark.parametrize("kw", [dict(), dict(pool="mean"), dict(use_lstm=False), dict(linear_path=False),
                                dict(layers=2, hidden=8)])
def test_shapes(kw):
    torch.manual_seed(0)
    head = CRNNHead(32, TASKS, proj=16, **kw).eval()
    fmap = torch.randn(3, 32, 4, 5)
    out = head(fmap)
    assert {t: tuple(v.shape) for t, v in out.items()} == {"style": (3, 5), "genre": (3, 3)}
    z = head.embed(fmap)
    assert z.shape == (3, head.embed_dim)
    seq = 2 * head.config["hidden"] if head.use_lstm else 16
    assert head.embed_dim == seq + 16
    paths = head(fmap, paths=True)
    assert len(paths) == (2 if head.linear_path else 1)
    if head.pool == "attention":
        _, w = head.embed(fmap, return_attention=True)
        assert w.shape == (3, 20) and torch.allclose(w.sum(1), torch.ones(3))


def test_style_statistics_widen_the_embedding_and_are_checked():
    head = CRNNHead(32, TASKS, proj=8, hidden=8, stats_dim=6).eval()
    fmap, stats = torch.randn(2, 32, 3, 3), torch.randn(2, 6)
    assert head.embed(fmap, stats).shape == (2, 2 * 8 + 8 + 8)
    with pytest.raises(ValueError, match="6 style statistics"):
        head(fmap, torch.randn(2, 5))
    with pytest.raises(ValueError, match="linear path"):
        CRNNHead(32, TASKS, linear_path=False, stats_dim=6)
    with pytest.raises(ValueError, match="pool must be"):
        CRNNHead(32, TASKS, pool="max")


def test_masked_loss_counts_only_labelled_rows():
    torch.manual_seed(0)
    logits = {"style": torch.randn(4, 5, requires_grad=True), "genre": torch.randn(4, 3, requires_grad=True)}
    targets = {"style": torch.tensor([0, -1, 4, -1]), "genre": torch.tensor([-1, -1, -1, -1])}
    loss, parts = masked_multitask_loss(logits, targets)
    expect = torch.nn.functional.cross_entropy(logits["style"][[0, 2]], torch.tensor([0, 4]))
    assert torch.allclose(loss, expect) and set(parts) == {"style"}
    loss.backward()
    assert logits["genre"].grad is None or logits["genre"].grad.abs().sum() == 0
    assert logits["style"].grad[[1, 3]].abs().sum() == 0 and logits["style"].grad[[0, 2]].abs().sum() > 0
    # no label at all: a zero loss that still backpropagates
    none = {t: torch.full((4,), -1) for t in targets}
    zero, parts = masked_multitask_loss(logits, none)
    assert float(zero.detach()) == 0.0 and not parts
    zero.backward()


def test_ordinal_term_penalises_far_classes_more():
    near = {"t": torch.tensor([[0.0, 5.0, 0.0, 0.0, 0.0]])}
    far = {"t": torch.tensor([[0.0, 0.0, 0.0, 0.0, 5.0]])}
    y = {"t": torch.tensor([0])}
    plain = [masked_multitask_loss(o, y)[0] for o in (near, far)]
    assert torch.allclose(plain[0], plain[1])  # cross-entropy alone cannot tell them apart
    emd = [masked_multitask_loss(o, y, ordinal={"t": 1.0})[0] for o in (near, far)]
    assert emd[1] > emd[0]


def test_backbone_and_head_end_to_end():
    torch.manual_seed(0)
    model = MultiTaskCRNN(create_backbone("tiny_cnn", pretrained=False), CRNNHead(64, TASKS, proj=8, hidden=8))
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert out["style"].shape == (2, 5)
    z, logits = model.embed_and_logits(x)
    assert z.shape == (2, model.head.embed_dim) and torch.allclose(logits["genre"], out["genre"], atol=1e-6)
    # with style statistics, the backbone's taps feed the head
    bb = create_backbone("tiny_cnn", pretrained=False)
    d = bb.forward_with_stats(x)[1].shape[1]
    m2 = MultiTaskCRNN(bb, CRNNHead(64, TASKS, proj=8, hidden=8, stats_dim=d)).eval()
    assert m2.embed(x).shape == (2, 2 * 8 + 8 + 8)

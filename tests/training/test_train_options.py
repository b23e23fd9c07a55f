"""Every `train` option a user is shown, run end to end through the CLI on a few demo paintings
(tiny_cnn, random init, 1 epoch), plus `artextract backbones` and `artextract report`."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from artextract.cli import main
from artextract.data.catalog import Catalog
from artextract.training.train import class_weights_for

TINY = ["--backbone", "tiny_cnn", "--pretrained", "none", "--cache-size", "64", "--image-size", "64",
        "--proj", "8", "--hidden", "8", "--batch-size", "16", "--no-progress"]


@pytest.fixture(scope="module")
def small(demo_catalog, tmp_path_factory) -> Path:
    """40 demo paintings; every 4th has no genre label and every 5th no artist label (read-only)."""
    root = tmp_path_factory.mktemp("small")
    shutil.copytree(Path(demo_catalog.path).parent, root / "demo", ignore=shutil.ignore_patterns("*.cache"))
    cat = Catalog.load(root / "demo" / "catalog.parquet")
    cat = cat.subset(np.arange(len(cat)) < 40)
    cat.df.loc[cat.df.index % 4 == 1, "genre"] = None
    cat.df.loc[cat.df.index % 5 == 2, "artist"] = None
    return cat.save(root / "demo" / "small.parquet")


def _train(catalog, out, *extra) -> dict:
    assert main(["train", "--catalog", str(catalog), "--out", str(out), *TINY, *extra]) == 0
    return json.loads((Path(out) / "config.json").read_text())


def test_class_weighting_by_hand():
    y = {"t": torch.tensor([0, 0, 0, 1, -1])}               # 3 of class 0, 1 of class 1, none of class 2
    assert class_weights_for(y, {"t": 3}, "none") is None
    # balanced: n / (C * count) = 4/9, 4/3, (absent: 0); divided by the mean over present classes (8/9)
    np.testing.assert_allclose(class_weights_for(y, {"t": 3}, "balanced")["t"].numpy(), [0.5, 1.5, 0.0], rtol=1e-6)
    s = np.sqrt([4 / 9, 4 / 3])
    np.testing.assert_allclose(class_weights_for(y, {"t": 3}, "sqrt")["t"].numpy(), [*(s / s.mean()), 0.0], rtol=1e-6)


@pytest.mark.slow
def test_head_and_loss_options(small, tmp_path):
    cat = Catalog.load(small)
    opts = ["--tasks", "style,genre,artist", "--epochs", "2", "--no-refit", "--no-lstm", "--pool", "mean",
            "--class-weighting", "balanced", "--require-all-labels"]
    a = _train(small, tmp_path / "a", *opts, "--mixup", "0.4")
    t = a["train"]
    assert (t["use_lstm"], t["pool"], t["mixup"], t["class_weighting"], t["require_all_labels"]) == (
        False, "mean", 0.4, "balanced", True)
    assert a["head"]["use_lstm"] is False and a["head"]["pool"] == "mean"
    keys = load_file(str(tmp_path / "a" / "model.safetensors")).keys()
    assert not any(k.startswith(("lstm.", "attn.")) for k in keys) and any(k.startswith("heads.style") for k in keys)
    # --require-all-labels: only the training paintings with all three labels
    split = json.loads((tmp_path / "a" / "split.json").read_text())
    df = cat.df.set_index("id")
    full = df[["style", "genre", "artist"]].notna().all(axis=1)
    assert set(split["train"]) == set(df.index[full & (df["split"] == "train")])
    assert set(split["val"]) == set(df.index[full & (df["split"] == "val")])
    # the same run without mixup trains differently; without --require-all-labels it sees more rows
    b = _train(small, tmp_path / "b", *opts)
    assert b["train"]["mixup"] == 0.0
    assert [h["loss"] for h in a["history"]] != pytest.approx([h["loss"] for h in b["history"]])
    c = _train(small, tmp_path / "c", *opts[:-1])
    n_c = len(json.loads((tmp_path / "c" / "split.json").read_text())["train"])
    assert c["train"]["require_all_labels"] is False
    assert n_c == int(((df["split"] == "train") & df[["style", "genre", "artist"]].notna().any(axis=1)).sum())
    assert n_c > len(split["train"])
    # the default head has the LSTM and attention pooling
    d = _train(small, tmp_path / "d", "--tasks", "style", "--epochs", "1", "--no-refit")
    assert d["head"]["use_lstm"] is True and d["head"]["pool"] == "attention"
    assert any(k.startswith("lstm.") for k in load_file(str(tmp_path / "d" / "model.safetensors")))


@pytest.mark.slow
def test_finetune_trains_the_backbone_end_to_end(small, tmp_path, capsys):
    from artextract.models.backbones import create_backbone
    from artextract.training.inference import Run

    out = tmp_path / "ft"
    cfg = _train(small, out, "--tasks", "style", "--epochs", "1", "--finetune", "--finetune-epochs", "1",
                 "--finetune-lr", "1e-3")
    assert cfg["train"]["finetune"] is True and cfg["train"]["finetune_epochs"] == 1
    st = torch.load(out / "state.pt", weights_only=False)
    assert st["stage"] == "finetune" and st["epoch"] == 0
    last = load_file(str(out / "last.safetensors"))
    bb = {k[len("backbone."):]: v for k, v in last.items() if k.startswith("backbone.")}
    assert bb and any(k.startswith("head.") for k in last)
    # the backbone moved away from its (seeded) random start
    torch.manual_seed(0)
    start = create_backbone("tiny_cnn", pretrained=False).state_dict()
    moved = [k for k, v in start.items() if v.dtype.is_floating_point and k in bb and not torch.allclose(v, bb[k])]
    assert moved, "fine-tuning left every backbone weight as it was"
    # the run loads and predicts, with the fine-tuned backbone if that epoch was kept
    run = Run.load(out)
    cat = Catalog.load(small)
    probs = run.predict_proba_images([cat.image_path(cat.df["path"].iloc[0])])
    assert probs["style"].shape == (1, 5) and np.isclose(probs["style"].sum(), 1, atol=1e-5)
    assert main(["predict", "--run", str(out), str(cat.image_path(cat.df["path"].iloc[0])), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["predictions"]["style"]


def test_backbones_lists_the_registry(capsys):
    from artextract.models.backbones import list_backbones

    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    names = [b.name for b in list_backbones()]
    assert [ln.split()[0] for ln in lines[:len(names)]] == names
    assert "tiny_cnn" in names and "mobilenet_v2" in names
    tiny = next(ln for ln in lines if ln.startswith("tiny_cnn "))
    assert tiny.split()[1] == "offline"
    assert lines[-2].startswith("timm:<name>") and "ViT" in lines[-2]
    assert lines[-1].startswith("open_clip:<m>[@tag]") and "text" in lines[-1]


@pytest.mark.slow
def test_report_command(tiny_run, tmp_path, capsys):
    from artextract.report.build import SECTIONS

    out = tmp_path / "rep"
    assert main(["report", "--run", str(tiny_run.run), "--out", str(out), "--title", "Tiny run report",
                 "--color-by", "genre", "--split", "val"]) == 0
    assert f"report written to {out / 'report.html'}" in capsys.readouterr().err
    html = (out / "report.html").read_text()
    assert "Tiny run report" in html
    for section in SECTIONS:
        assert f'id="{section}"' in html, section
    metrics = json.loads((tiny_run.run / "config.json").read_text())["val_metrics"]
    assert f"{metrics['style']['accuracy']:.3f}" in html
    # --catalog alone: a report of the catalogue without a run
    assert main(["report", "--catalog", str(tiny_run.catalog), "--out", str(tmp_path / "cat")]) == 0
    assert (tmp_path / "cat" / "report.html").stat().st_size > 1000
    assert main(["report", "--out", str(tmp_path / "x")]) == 2
    assert "give --run or --catalog" in capsys.readouterr().err


def _weights(run: Path, name: str = "model.safetensors") -> dict:
    return load_file(str(run / name))


@pytest.mark.slow
def test_head_architecture_options(small, tmp_path):
    """--layers, --dropout, --linear-dropout, --no-linear-path and --no-style-stats shape the saved head."""
    from artextract.training.inference import Run

    one = ["--tasks", "style", "--epochs", "1", "--no-refit"]
    base = _train(small, tmp_path / "base", *one)
    keys = _weights(tmp_path / "base").keys()
    assert base["head"]["layers"] == 1 and not any("_l1" in k for k in keys)
    assert any(k.startswith("linear_heads.") for k in keys) and any(k.startswith("stats_proj.") for k in keys)
    stats_dim = base["head"]["stats_dim"]
    assert stats_dim > 0  # tiny_cnn has style-statistics taps

    deep = _train(small, tmp_path / "deep", *one, "--layers", "2", "--dropout", "0.3", "--linear-dropout", "0.25")
    assert (deep["head"]["layers"], deep["head"]["dropout"], deep["head"]["linear_dropout"]) == (2, 0.3, 0.25)
    assert {"lstm.weight_ih_l1", "lstm.weight_ih_l1_reverse"} <= _weights(tmp_path / "deep").keys()
    head = Run.load(tmp_path / "deep").head                    # the run is rebuilt with those settings
    assert head.lstm.num_layers == 2 and head.lstm.dropout == 0.3
    assert head.dropout.p == 0.3 and head.linear_dropout.p == 0.25

    lone = _train(small, tmp_path / "lone", *one, "--no-linear-path")
    assert lone["head"]["linear_path"] is False and lone["head"]["stats_dim"] == 0
    assert not any(k.startswith(("linear_heads.", "global_norm.", "stats_proj."))
                   for k in _weights(tmp_path / "lone"))

    plain = _train(small, tmp_path / "plain", *one, "--no-style-stats")
    w = _weights(tmp_path / "plain")
    assert plain["head"]["linear_path"] is True and plain["head"]["stats_dim"] == 0
    assert not any(k.startswith("stats_proj.") for k in w)
    channels = base["head"]["in_channels"]
    assert w["linear_heads.style.weight"].shape[1] == channels
    assert _weights(tmp_path / "base")["linear_heads.style.weight"].shape[1] == channels + stats_dim


@pytest.mark.slow
def test_loss_and_optimiser_options(small, tmp_path):
    """--weight-decay shrinks the weights, --ordinal-weight adds the (positive) EMD loss of the ordered
    task, --label-smoothing changes the loss; each against the same run without it."""
    opts = ["--tasks", "style,timeframe", "--epochs", "2", "--no-refit", "--ema", "0", "--lr", "1e-2",
            "--weight-decay", "0", "--label-smoothing", "0", "--ordinal-weight", "0"]

    def run(name, *extra):
        cfg = _train(small, tmp_path / name, *opts, *extra)
        return cfg, _weights(tmp_path / name, "last.safetensors")

    def norm(w):
        return float(sum((v.float() ** 2).sum() for k, v in w.items() if "running" not in k and "num_batches" not in k))

    base, w0 = run("base")
    assert (base["train"]["weight_decay"], base["train"]["label_smoothing"], base["train"]["ordinal_weight"]) == (0, 0, 0)
    decayed, w1 = run("wd", "--weight-decay", "50")
    assert decayed["train"]["weight_decay"] == 50
    assert norm(w1) < 0.9 * norm(w0)
    ordinal, _ = run("ord", "--ordinal-weight", "5")
    assert ordinal["train"]["ordinal_weight"] == 5
    assert ordinal["history"][0]["loss"] > base["history"][0]["loss"]
    smooth, _ = run("ls", "--label-smoothing", "0.5")
    assert smooth["train"]["label_smoothing"] == 0.5
    assert smooth["history"][0]["loss"] != pytest.approx(base["history"][0]["loss"], rel=1e-4)


@pytest.mark.slow
def test_holdout_fraction_and_flip_augment(small, tmp_path):
    """Without val rows, --holdout-fraction of the training rows is held out; --no-flip-augment
    computes and reads no mirrored-image features."""
    cat = Catalog.load(small)
    cat.df["split"] = "train"
    path = cat.save(tmp_path / "all_train.parquet")      # its own feature cache: all_train.cache
    flip_stores = lambda: sorted(p.name for p in (tmp_path / "all_train.cache" / "features").glob("*-flip"))  # noqa: E731
    cfg = _train(path, tmp_path / "half", "--tasks", "style", "--epochs", "1", "--no-refit",
                 "--holdout-fraction", "0.5", "--no-flip-augment")
    split = json.loads((tmp_path / "half" / "split.json").read_text())
    assert 0.4 <= len(split["val"]) / 40 <= 0.6 and len(split["train"]) + len(split["val"]) == 40
    assert "50% of the training rows" in cfg["validation"] and cfg["train"]["flip_augment"] is False
    assert flip_stores() == []
    cfg = _train(path, tmp_path / "default", "--tasks", "style", "--epochs", "1", "--no-refit")
    split = json.loads((tmp_path / "default" / "split.json").read_text())
    assert len(split["val"]) / 40 < 0.3 and "15% of the training rows" in cfg["validation"]
    assert cfg["train"]["flip_augment"] is True and len(flip_stores()) == 1


@pytest.mark.slow
def test_stop_after_epochs_then_resume(small, tmp_path, capsys):
    out = tmp_path / "r"
    argv = ["--tasks", "style", "--epochs", "3", "--no-refit"]
    _train(small, out, *argv, "--stop-after-epochs", "1")
    assert "stopping after epoch 1 as asked; continue with --resume" in capsys.readouterr().err
    st = torch.load(out / "state.pt", weights_only=False)
    assert st["epoch"] == 0 and [h["epoch"] for h in st["history"]] == [1]
    assert "history" not in json.loads((out / "config.json").read_text())   # not finished
    cfg = _train(small, out, *argv, "--resume")
    assert "resuming after epoch 1" in capsys.readouterr().err
    assert [h["epoch"] for h in cfg["history"]] == [1, 2, 3]


@pytest.mark.slow
def test_finetune_batch_size_and_num_workers(small, tmp_path, monkeypatch):
    """--finetune-batch-size and --num-workers are the fine-tuning data loaders' batch size and workers."""
    seen = []
    real = torch.utils.data.DataLoader

    class Spy(real):
        def __init__(self, dataset, *args, **kwargs):
            seen.append((type(dataset).__name__, getattr(dataset, "train", None), kwargs.get("batch_size"),
                         kwargs.get("num_workers", 0)))
            super().__init__(dataset, *args, **kwargs)

    monkeypatch.setattr(torch.utils.data, "DataLoader", Spy)
    cfg = _train(small, tmp_path / "ft", "--tasks", "style", "--epochs", "1", "--finetune", "--finetune-epochs", "1",
                 "--finetune-batch-size", "8", "--num-workers", "0")
    assert (cfg["train"]["finetune_batch_size"], cfg["train"]["num_workers"]) == (8, 0)
    images = [s for s in seen if s[0] == "_CacheImages"]
    assert ("_CacheImages", True, 8, 0) in images                # the training loader
    assert images and all(s[3] == 0 for s in images)             # and the validation one: no worker processes


def test_no_singleton_batch_sampler_folds_a_last_batch_of_one():
    from artextract.training.data import NoSingletonBatchSampler

    for n in range(1, 70):
        for bs in (1, 2, 16, 64):
            batches = list(NoSingletonBatchSampler(range(n), bs))
            assert sorted(i for b in batches for i in b) == list(range(n))    # every painting, once
            assert len(batches) == len(NoSingletonBatchSampler(range(n), bs))
            if bs > 1 and n > 1:
                assert min(len(b) for b in batches) > 1


@pytest.mark.slow
def test_a_training_set_one_above_a_multiple_of_the_batch_trains(small, tmp_path):
    # 17 training paintings with batches of 16 (a last batch of one), then a single training painting
    cat = Catalog.load(small)
    cat.df["split"] = ["train" if i < 17 else "val" for i in range(len(cat))]
    c17 = cat.save(tmp_path / "c17.parquet")
    _train(c17, tmp_path / "r17", "--epochs", "1", "--tasks", "style")
    cat.df["split"] = ["train" if i < 1 else "val" for i in range(len(cat))]
    c1 = cat.save(tmp_path / "c1.parquet")
    _train(c1, tmp_path / "r1", "--epochs", "1", "--tasks", "style")


def test_finetune_param_groups_decay_a_transformers_blocks():
    from artextract.models.backbones import create_backbone
    from artextract.models.crnn import CRNNHead, MultiTaskCRNN
    from artextract.training.train import finetune_param_groups

    net = create_backbone("timm:vit_tiny_patch16_224", pretrained=False, image_size=64)
    model = MultiTaskCRNN(net, CRNNHead(net.out_channels, {"t": 3}, proj=8, hidden=8))
    groups = finetune_param_groups(model, 1e-4, 0.05, 0.5)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    b = net.body
    assert lr_of[id(b.blocks[11].attn.qkv.weight)] == pytest.approx(1e-4 * 0.5)
    assert lr_of[id(b.blocks[0].attn.qkv.weight)] == pytest.approx(1e-4 * 0.5 ** 12)
    assert lr_of[id(b.patch_embed.proj.weight)] == pytest.approx(1e-4 * 0.5 ** 13)
    assert lr_of[id(model.head.heads["t"].weight)] == pytest.approx(5e-4)
    assert wd_of[id(b.cls_token)] == 0.0 and wd_of[id(b.blocks[0].norm1.weight)] == 0.0
    assert wd_of[id(b.blocks[0].attn.qkv.weight)] == 0.05
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    cnn = MultiTaskCRNN(create_backbone("tiny_cnn", pretrained=False), CRNNHead(64, {"t": 3}, proj=8, hidden=8))
    assert {g["lr"] for g in finetune_param_groups(cnn, 1e-4, 0.05, 0.5)} == {1e-4, 5e-4}   # a CNN: one rate


@pytest.mark.slow
def test_a_vit_trains_and_fine_tunes_end_to_end(small, tmp_path):
    cfg = _train(small, tmp_path / "vit", "--backbone", "timm:vit_tiny_patch16_224", "--image-size", "64",
                 "--epochs", "1", "--finetune", "--finetune-epochs", "1", "--finetune-layer-decay", "0.65",
                 "--finetune-batch-size", "8", "--num-workers", "0", "--engine", "torch")
    assert cfg["train"]["finetune_layer_decay"] == 0.65
    run = json.loads((tmp_path / "vit" / "config.json").read_text())
    assert run["backbone"]["name"] == "timm:vit_tiny_patch16_224" and run["backbone"]["image_size"] == 64
    assert main(["predict", "--run", str(tmp_path / "vit"), "--json",
                 str(Path(small).parent / Catalog.load(small).df["path"].iloc[0])]) == 0


@pytest.mark.slow
def test_training_into_a_finished_run_is_refused_in_words(small, tmp_path, capsys):
    from artextract.errors import RunError

    _train(small, tmp_path / "r", "--epochs", "1", "--tasks", "style")
    capsys.readouterr()
    assert main(["train", "--catalog", str(small), "--out", str(tmp_path / "r"), *TINY, "--epochs", "1"]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert issubclass(RunError, ValueError)

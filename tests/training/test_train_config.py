"""TrainConfig as the one source of the train flags: YAML/TOML settings files, flags over files,
and the run's args.yaml."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import yaml

from artextract.cli import main
from artextract.training.config import ARGS_FILE, ConfigError, TrainConfig


@pytest.fixture()
def demo(tmp_path, demo_catalog):
    dst = tmp_path / "demo"
    shutil.copytree(Path(demo_catalog.path).parent, dst, ignore=shutil.ignore_patterns("*.cache"))
    return dst / "catalog.parquet"


def test_yaml_and_toml_read_the_same_settings(tmp_path):
    y = tmp_path / "a.yaml"
    y.write_text("catalog: c.parquet\nout: runs/a\ntasks: [style, genre]\nlr: 4e-4\nepochs: 7\n"
                 "use_lstm: false\npool: mean\nimage_size: null\n")
    t = tmp_path / "a.toml"
    t.write_text('catalog = "c.parquet"\nout = "runs/a"\ntasks = ["style", "genre"]\nlr = 4e-4\nepochs = 7\n'
                 'use_lstm = false\npool = "mean"\n')
    a, b = TrainConfig.from_file(y), TrainConfig.from_file(t)
    assert a == b
    assert a.lr == 4e-4 and isinstance(a.lr, float) and a.epochs == 7 and a.tasks == ["style", "genre"]
    assert a.use_lstm is False and a.pool == "mean" and a.image_size is None
    assert a.batch_size == TrainConfig.batch_size  # what the file leaves out keeps the default
    assert TrainConfig.from_file(y, epochs=3).epochs == 3  # overrides win


@pytest.mark.parametrize("text, match", [
    ("catalog: c\nout: o\nepoch: 3\n", "unknown setting.*epoch"),
    ("catalog: c\nout: o\nepochs: many\n", "epochs must be int"),
    ("catalog: c\nout: o\npool: max\n", "pool must be one of attention, mean"),
    ("catalog: c\nout: o\nuse_lstm: 3\n", "use_lstm must be bool"),
    ("- just\n- a list\n", "expected a mapping"),
    ("catalog: [unclosed\n", "cannot be read"),
    ("out: o\n", "has no catalog"),
])
def test_bad_settings_files_are_clear_errors(tmp_path, text, match):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_file(f)


def test_other_suffixes_and_missing_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        TrainConfig.read_file(tmp_path / "none.yaml")
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(ConfigError, match=".yaml, .yml or .toml"):
        TrainConfig.read_file(tmp_path / "a.json")


def test_to_yaml_round_trips(tmp_path):
    cfg = TrainConfig("c.parquet", "o", tasks=["style"], lr=1e-3, pretrained=False, stop_after_epochs=2)
    path = cfg.to_yaml(tmp_path / ARGS_FILE)
    assert TrainConfig.from_file(path) == cfg
    assert list(yaml.safe_load(path.read_text())) == [f.name for f in dataclasses.fields(TrainConfig)]


@pytest.mark.slow
def test_cli_config_file_flags_override_and_args_yaml(demo, tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(f'catalog = "{demo}"\nout = "{tmp_path / "unused"}"\nbackbone = "tiny_cnn"\npretrained = false\n'
                   'cache_size = 64\nimage_size = 64\nepochs = 5\nproj = 16\nhidden = 8\nprogress = false\n')
    run = tmp_path / "run"
    # flags given on the command line win over the file, even when they equal the defaults
    assert main(["train", "--config", str(cfg), "--out", str(run), "--epochs", "2", "--proj", "64"]) == 0
    saved = TrainConfig.from_file(run / ARGS_FILE)
    assert saved.out == str(run) and saved.epochs == 2 and saved.proj == 64
    assert saved.hidden == 8 and saved.backbone == "tiny_cnn" and saved.pretrained is False  # from the file
    assert saved.tasks == ["artist", "genre", "style", "timeframe"]  # resolved: every task of the catalogue
    # the run's args.yaml trains the same run again
    again = tmp_path / "again"
    assert main(["train", "--config", str(run / ARGS_FILE), "--out", str(again)]) == 0
    assert TrainConfig.from_file(again / ARGS_FILE) == dataclasses.replace(saved, out=str(again))
    # unknown keys and missing settings: a clear error, exit status 2, no traceback
    bad = tmp_path / "bad.yaml"
    bad.write_text("catalog: x\nout: y\nlearning_rate: 1\n")
    capsys.readouterr()
    assert main(["train", "--config", str(bad)]) == 2
    assert "unknown setting(s) learning_rate" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "z")]) == 2
    assert "give --catalog" in capsys.readouterr().err

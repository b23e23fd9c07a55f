"""Training settings: one dataclass, the single source of the defaults and of the ``train`` flags.

Every field has its help in ``metadata["help"]``; ``artextract train`` makes one flag per field
from them (``training/cli.py``). A run folder keeps the resolved settings as ``args.yaml``, which
``train --config`` reads back (YAML or TOML with the same keys).
"""
from __future__ import annotations

import dataclasses
import os
import sys
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..data.cache import DEFAULT_SIZE
from ..defaults import CRNN_DEFAULTS, DEFAULT_BACKBONE, POOLS
from ..errors import ArtExtractError
from ..workspace import CACHE_HELP

SELECT_BY = ("loss", "macro_f1")  # early-stopping criteria: validation log loss, or mean macro-F1
CLASS_WEIGHTING = ("none", "sqrt", "balanced")
ARGS_FILE = "args.yaml"


class ConfigError(ArtExtractError, ValueError):
    """A settings file that cannot be used (unknown keys, wrong types, unreadable)."""


def _f(default, help: str, **meta):
    """A field with its default and its help (``meta``: ``choices``, ``flag`` for the CLI)."""
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class TrainConfig:
    """Settings of one training run (see each field's ``metadata["help"]``)."""

    catalog: str = field(metadata={"help": "catalogue file (.parquet)"})
    out: str = field(metadata={"help": "run folder"})
    tasks: list[str] | None = _f(None, "comma-separated tasks (default: every task of the catalogue)")
    backbone: str = _f(DEFAULT_BACKBONE, "backbone, see `artextract backbones`")
    pretrained: bool = _f(True, "ImageNet weights for the backbone (false: a seeded random init, for tests)")
    weights: str | None = _f(None, "backbone weights file (.pth or .safetensors)")
    image_size: int | None = _f(None, "backbone input size (default: the backbone's)")
    cache_size: int = _f(DEFAULT_SIZE, "side of the prepared-image cache the images are read from")
    cache: str | None = _f(None, CACHE_HELP)
    epochs: int = _f(40, "epochs of the frozen-backbone stage (early stopping may end it sooner)")
    batch_size: int = _f(64, "paintings per batch")
    lr: float = _f(4e-4, "peak learning rate (one-cycle schedule)")
    weight_decay: float = _f(0.05, "AdamW weight decay")
    proj: int = _f(CRNN_DEFAULTS["proj"], "channels the feature map is projected to")
    hidden: int = _f(CRNN_DEFAULTS["hidden"], "LSTM hidden size per direction")
    layers: int = _f(CRNN_DEFAULTS["layers"], "LSTM layers")
    pool: str = _f(CRNN_DEFAULTS["pool"], "how the LSTM outputs are pooled", choices=POOLS)
    dropout: float = _f(CRNN_DEFAULTS["dropout"], "dropout of the recurrent path")
    use_lstm: bool = _f(CRNN_DEFAULTS["use_lstm"], "ablation: pool the projected map without the LSTM",
                        flag="--no-lstm")
    linear_path: bool = _f(CRNN_DEFAULTS["linear_path"],
                           "ablation: only the recurrent path (by default a linear path on the standardised "
                           "global feature is trained beside it as a classifier of its own, and their logits "
                           "are averaged)")
    linear_dropout: float = _f(CRNN_DEFAULTS["linear_dropout"], "dropout of the linear path")
    style_stats: bool = _f(True, "ablation: the linear path reads the last map's average only (by default it "
                           "also reads the mean and spread of earlier stages' channels, texture and palette cues)")
    mixup: float = _f(0.0, "feature-map mixup alpha (0: off)")
    ema: float = _f(0.98, "EMA decay per step of the kept weights (0: off)")
    class_weighting: str = _f("sqrt", "loss weight of rare classes", choices=CLASS_WEIGHTING)
    label_smoothing: float = _f(0.1, "label smoothing of the cross-entropy")
    ordinal_weight: float = _f(1.0, "EMD loss weight for ordered tasks (0: off)")
    patience: int = _f(15, "stop after this many epochs without a better validation score (--select-by)")
    select_by: str = _f("loss", "what chooses the best epoch and stops early: the validation log loss "
                        "(smooth) or the tasks' mean validation macro-F1 (noisy on a small validation set)",
                        choices=SELECT_BY)
    holdout_fraction: float = _f(0.15, "validation share held out of train when the catalogue has no val rows")
    refit: bool = _f(True, "keep the first pass: by default, after the held-out rows chose the epoch, the head is "
                     "trained again on every row for that many epochs (not done with the catalogue's own val split)")
    seed: int = _f(0, "seed of the split, the initialisation and the batches")
    require_all_labels: bool = _f(False, "the original study's recipe: train only on paintings that have every "
                                  "task's label")
    flip_augment: bool = _f(True, "no horizontal-flip augmentation (by default the mirrored image's features "
                            "are a training view too)")
    finetune: bool = _f(False, "then unfreeze the backbone and train end to end (for a GPU)")
    finetune_epochs: int = _f(5, "epochs of end-to-end fine-tuning (with --finetune)")
    finetune_lr: float = _f(1e-4, "learning rate of fine-tuning")
    finetune_batch_size: int = _f(32, "images per batch when fine-tuning")
    finetune_layer_decay: float = _f(0.75, "layer-wise learning-rate decay of a transformer's blocks when "
                                     "fine-tuning: block i of d learns at lr * decay**(d - i), the patch "
                                     "embedding slowest (1: one rate for every block)")
    num_workers: int = _f(2, "data-loading processes when fine-tuning")
    progress: bool = _f(True, "no progress bars (on stderr)")
    stop_after_epochs: int | None = _f(None, "end this run after this many epochs, as an interruption "
                                       "would (time-boxed jobs; continue with --resume)")

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        """The settings as a plain dict (field order).

        Returns
        -------
        dict
        """
        return asdict(self)

    def to_yaml(self, path: str | os.PathLike) -> Path:
        """Write the settings as YAML (what ``train --config`` reads back), atomically.

        Parameters
        ----------
        path : str or PathLike
            The file to write, e.g. ``RUN/args.yaml``.

        Returns
        -------
        Path
            ``path``.
        """
        import yaml

        from ..utils import atomic_write_text

        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        path = Path(path)
        if path.is_file() and path.read_text() == text:
            return path  # unchanged: a re-run that trains nothing leaves the run folder as it was
        return atomic_write_text(path, text)

    @classmethod
    def read_file(cls, path: str | os.PathLike) -> dict:
        """The settings of a YAML (``.yaml``/``.yml``) or TOML (``.toml``) file, checked and converted.

        Parameters
        ----------
        path : str or PathLike
            A file whose top level maps field names to values (a subset of the fields).

        Returns
        -------
        dict
            Field name -> value, with the field's type (``tasks`` as a list).

        Raises
        ------
        ConfigError
            The file is missing or unreadable, has keys that are not fields, or a value of the wrong type.
        """
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        suffix = path.suffix.lower()
        try:
            if suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            elif suffix == ".toml":
                import tomllib

                data = tomllib.loads(path.read_text(encoding="utf-8"))
            else:
                raise ConfigError(f"config file {path}: use a .yaml, .yml or .toml file")
        except ConfigError:
            raise
        except Exception as exc:  # the YAML and TOML parsers raise their own error types
            raise ConfigError(f"config file {path} cannot be read: {exc}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path}: expected a mapping of settings, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = [k for k in data if k not in known]
        if unknown:
            raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(map(str, unknown))}; "
                              f"known: {', '.join(sorted(known))}")
        return {k: coerce(k, v, source=str(path)) for k, v in data.items()}

    @classmethod
    def from_file(cls, path: str | os.PathLike, **overrides) -> "TrainConfig":
        """Settings from a YAML or TOML file, with ``overrides`` on top.

        Parameters
        ----------
        path : str or PathLike
            See :meth:`read_file`.
        **overrides
            Field values that replace the file's.

        Returns
        -------
        TrainConfig

        Raises
        ------
        ConfigError
            See :meth:`read_file`; also when ``catalog`` or ``out`` is given nowhere.
        """
        values = {**cls.read_file(path), **overrides}
        missing = [k for k in ("catalog", "out") if not values.get(k)]
        if missing:
            raise ConfigError(f"config file {path} has no {' or '.join(missing)}; give --"
                              + " and --".join(missing))
        return cls(**values)

    def save_args(self, run_dir: str | os.PathLike) -> Path:
        """Write ``RUN/args.yaml``.

        Parameters
        ----------
        run_dir : str or PathLike
            The run folder (exists).

        Returns
        -------
        Path
        """
        return self.to_yaml(Path(run_dir) / ARGS_FILE)


TRAIN_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def field_types() -> dict[str, object]:
    """Field name -> resolved type annotation of :class:`TrainConfig`.

    Returns
    -------
    dict
    """
    return typing.get_type_hints(TrainConfig, vars(sys.modules[__name__]))


def base_type(tp) -> tuple[type, bool]:
    """``(int, True)`` for ``int | None``; ``(list, True)`` for ``list[str] | None``; ``(float, False)`` ...

    Parameters
    ----------
    tp : type annotation

    Returns
    -------
    (type, bool)
        The type without ``None``, and whether ``None`` is allowed.
    """
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    optional = type(None) in typing.get_args(tp)
    t = args[0] if optional and args else tp
    return (typing.get_origin(t) or t), optional


def coerce(name: str, value, source: str = "config"):
    """``value`` converted to field ``name``'s type (``"4e-4"`` -> 0.0004, ``"a,b"`` -> ``["a", "b"]``).

    Parameters
    ----------
    name : str
        A field of :class:`TrainConfig`.
    value : object
        The value as read from a file.
    source : str
        Where it came from, for the error message.

    Returns
    -------
    object

    Raises
    ------
    ConfigError
        The value does not fit the field.
    """
    value = _convert(name, value, source)
    choices = TRAIN_FIELDS[name].metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{source}: {name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _convert(name: str, value, source: str):
    t, optional = base_type(field_types()[name])
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{source}: {name} cannot be empty")
    try:
        if t is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
                return value.lower() in ("true", "yes")
            raise ValueError
        if t is list:
            items = value.split(",") if isinstance(value, str) else list(value)
            return [str(x).strip() for x in items if str(x).strip()]
        if t is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if t is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if t is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {name} must be {'a list of names' if t is list else t.__name__}, "
                          f"not {value!r}") from None
    return value


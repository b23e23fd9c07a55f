"""``artextract train``: train the multi-task CRNN on a catalogue; its flags are made from
:class:`artextract.training.config.TrainConfig`'s fields."""
from __future__ import annotations

import argparse
import dataclasses

from ..base import UserError, add_command
from ..options import add_backbone_options, add_progress_option, add_seed_option, pretrained

# fields whose flags are the shared options of artextract.cli.options (the rest come from TrainConfig's fields)
_SHARED = ("backbone", "pretrained", "weights", "seed", "progress")


def _train_values(args) -> dict:
    """The TrainConfig fields given on the command line (the others are absent from ``args``)."""
    from ...training.config import TRAIN_FIELDS

    given = {k: v for k, v in vars(args).items() if k in TRAIN_FIELDS and k not in ("pretrained", "progress")}
    if "pretrained" in vars(args):
        given["pretrained"] = pretrained(args)
    if "no_progress" in vars(args):
        given["progress"] = not args.no_progress
    return given


def _cmd_train(args) -> int:
    from ...job import distributed_job
    from ...training.config import TrainConfig
    from ...training.train import train

    values = TrainConfig.read_file(args.config) if args.config else {}
    values.update(_train_values(args))  # flags given on the command line override the file
    missing = [k for k in ("catalog", "out") if not values.get(k)]
    if missing:
        raise UserError("give " + " and ".join(f"--{k}" for k in missing)
                        + (f" (or put {' and '.join(missing)} in {args.config})" if args.config else ""))
    cfg = TrainConfig(**values)
    with distributed_job(progress=cfg.progress) as job:  # under torchrun the ranks train one model together
        train(cfg, resume=args.resume, job=job)
    return 0


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_train_config_options(p) -> None:
    """One flag per :class:`TrainConfig` field, with the field's help and default.

    ``--backbone``/``--pretrained``/``--weights``, ``--seed`` and ``--no-progress`` are the shared
    options of :mod:`artextract.cli.options`. A bool field that is on by default gets ``--no-NAME``
    (or its ``metadata["flag"]``), one off by default ``--NAME``. Every flag's default is
    ``argparse.SUPPRESS``: a flag not given leaves the field to ``--config`` or to the dataclass.

    Parameters
    ----------
    p : argparse.ArgumentParser
        The ``train`` parser.

    Returns
    -------
    None
    """
    from ...training.config import TRAIN_FIELDS, base_type, coerce, field_types

    types = field_types()
    add_backbone_options(p)
    add_seed_option(p, help=TRAIN_FIELDS["seed"].metadata["help"] + f" (default {TRAIN_FIELDS['seed'].default})")
    add_progress_option(p)
    for name, f in TRAIN_FIELDS.items():
        if name in _SHARED:
            continue
        meta, default = f.metadata, f.default
        t, _ = base_type(types[name])
        if t is bool:
            if default:
                p.add_argument(meta.get("flag", "--no-" + name.replace("_", "-")), dest=name,
                               action="store_false", help=meta["help"])
            else:
                p.add_argument(meta.get("flag", _flag(name)), dest=name, action="store_true", help=meta["help"])
            continue
        shown = "" if default is dataclasses.MISSING or default is None else f" (default {default})"
        kw = dict(dest=name, help=meta["help"] + shown, metavar=name.upper() if t is not str or not meta.get("choices")
                  else None)
        if meta.get("choices"):
            kw["choices"] = meta["choices"]
            kw.pop("metavar")
        if t is list:
            kw["type"] = lambda s, n=name: coerce(n, s, source="--" + n)
        elif t in (int, float):
            kw["type"] = t
        p.add_argument(_flag(name), **kw)
    for action in p._actions:  # argparse has no public way to list a parser's options
        if action.dest in TRAIN_FIELDS or action.dest == "no_progress":
            action.default = argparse.SUPPRESS


def register(sub) -> None:
    """Add ``train`` to ``sub``, the ``artextract`` sub-commands."""
    p = add_command(sub, "train", "train the multi-task CRNN on a catalogue",
                    "artextract train --catalog wikiart.parquet --tasks artist,genre,style --out runs/wikiart",
                    description="Masked multi-task training: each painting trains every head it has a label for "
                    "and no other. Default recipe: frozen backbone, feature maps computed once from the prepared "
                    "cache, the recurrent head trained on them (seconds per epoch on a CPU). --finetune then "
                    "trains end to end (for a GPU). Checkpoints every epoch; --resume continues after a kill. "
                    "Works under torchrun (DistributedDataParallel). The run folder keeps the resolved "
                    "settings as args.yaml, which --config reads back.")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="YAML or TOML file of these settings (the keys are the flags' names with _); flags "
                   "given here override it. A run folder's args.yaml is such a file")
    add_train_config_options(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --out after an interruption")
    p.set_defaults(func=_cmd_train)

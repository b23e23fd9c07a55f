"""Training settings: one dataclass, the single source of the defaults (the CLI reads them from here)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..data.cache import DEFAULT_SIZE

SELECT_BY = ("loss", "macro_f1")  # early-stopping criteria: validation log loss, or mean macro-F1


@dataclass
class TrainConfig:
    catalog: str
    out: str
    tasks: list[str] | None = None
    backbone: str = "mobilenet_v2"
    pretrained: bool = True
    weights: str | None = None
    image_size: int | None = None
    cache_size: int = DEFAULT_SIZE
    epochs: int = 40
    batch_size: int = 64
    lr: float = 4e-4
    weight_decay: float = 0.05
    proj: int = 64
    hidden: int = 64
    layers: int = 1
    pool: str = "attention"
    dropout: float = 0.3
    use_lstm: bool = True
    linear_path: bool = True               # a probe-like linear path beside the recurrent one (logits averaged)
    linear_dropout: float = 0.5
    style_stats: bool = True                # the linear path also reads mid-level channel statistics (if the backbone has taps)
    mixup: float = 0.0                      # feature-map mixup alpha (0 = off)
    ema: float = 0.98                       # keep an exponential moving average of the weights (decay per step)
    class_weighting: str = "sqrt"          # none | sqrt | balanced
    label_smoothing: float = 0.1
    ordinal_weight: float = 1.0            # extra EMD loss weight for ordered tasks (0 = off)
    patience: int = 15
    select_by: str = "loss"                # early stopping / best epoch by val log loss, or "macro_f1"
    holdout_fraction: float = 0.15
    refit: bool = True                      # after early stopping on a held-out part, train again on every row
    seed: int = 0
    require_all_labels: bool = False       # the original study's recipe: keep only fully labelled rows
    flip_augment: bool = True
    finetune: bool = False
    finetune_epochs: int = 5
    finetune_lr: float = 1e-4
    finetune_batch_size: int = 32
    num_workers: int = 2
    progress: bool = True
    stop_after_epochs: int | None = None   # end this session early, as an interruption would (time-boxed jobs)
    extra: dict = field(default_factory=dict)

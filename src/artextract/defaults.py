"""Package-wide defaults, importable without torch (the CLI reads them to build its options)."""
from __future__ import annotations

#: The backbone every command uses unless told otherwise (offline ImageNet weights).
DEFAULT_BACKBONE = "mobilenet_v2"

#: The CRNN head's architecture defaults: ``CRNNHead``'s keyword defaults and ``TrainConfig``'s fields.
CRNN_DEFAULTS = {
    "proj": 64,              # channels the feature map is projected to
    "hidden": 64,            # LSTM hidden size per direction
    "layers": 1,             # LSTM layers
    "pool": "attention",     # attention | mean
    "dropout": 0.3,
    "use_lstm": True,
    "linear_path": True,     # a linear path on the standardised global feature beside the recurrent one
    "linear_dropout": 0.5,
}
POOLS = ("attention", "mean")

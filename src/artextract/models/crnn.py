"""The multi-task convolutional-recurrent network.

The backbone's last spatial feature map ``[B, C, h, w]`` is projected to ``d`` channels and read
as a sequence of ``h*w`` positions (raster order, like the original study's ResNet-50 + LSTM) by a
bidirectional LSTM. The LSTM outputs are pooled (attention or mean) and concatenated with the
projected global average of the map (a skip path that keeps what a linear probe would see), then
one linear head per task gives the logits. With ``linear_path=True`` (the training default) a
second path reads the standardised global average with its own linear head per task; each path is
trained on its own loss and the model's logits are the mean of the two. With ``stats_dim > 0`` both
paths also read the backbone's style statistics (mean and spread of earlier stages' channels, see
:meth:`~artextract.models.base.Backbone.forward_with_stats`), which the last map lacks: the
linear path beside the global average, the recurrent one as a third projected part of its pooled
representation (so the retrieval embedding carries them too).

:class:`CRNNHead` works on feature maps, so the fast CPU recipe trains it on maps computed once;
:class:`MultiTaskCRNN` puts a backbone in front for fine-tuning and for images.
"""
from __future__ import annotations

import torch
from torch import nn

from ..defaults import CRNN_DEFAULTS as D, POOLS
from .backbones import Backbone


class CRNNHead(nn.Module):
    """The multi-task head over a backbone's feature map (see the module docstring).

    Parameters
    ----------
    in_channels : int
        Channels ``C`` of the feature map ``[B, C, h, w]``.
    tasks : dict of str to int
        Number of classes per task; one linear head each.
    proj : int
        Channels the map is projected to (1x1 convolution).
    hidden : int
        LSTM hidden size per direction.
    layers : int
        LSTM layers.
    pool : {"attention", "mean"}
        How the sequence of LSTM outputs is pooled.
    dropout : float
        Dropout before the recurrent path's heads (and between LSTM layers).
    use_lstm : bool
        False: pool the projected map without the LSTM (an ablation).
    linear_path : bool
        A second, linear path on the standardised global average, trained on its own loss; the
        logits are the mean of the two paths.
    linear_dropout : float
        Dropout of the linear path.
    stats_dim : int
        Width of the backbone's style statistics read by both paths (0: none; needs ``linear_path``).

    The defaults are :data:`artextract.defaults.CRNN_DEFAULTS`, the same as ``TrainConfig``'s.
    """

    def __init__(self, in_channels: int, tasks: dict[str, int], *, proj: int = D["proj"], hidden: int = D["hidden"],
                 layers: int = D["layers"], pool: str = D["pool"], dropout: float = D["dropout"],
                 use_lstm: bool = D["use_lstm"], linear_path: bool = D["linear_path"],
                 linear_dropout: float = D["linear_dropout"], stats_dim: int = 0):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}")
        self.config = dict(in_channels=in_channels, tasks=dict(tasks), proj=proj, hidden=hidden, layers=layers,
                           pool=pool, dropout=dropout, use_lstm=use_lstm, linear_path=linear_path,
                           linear_dropout=linear_dropout, stats_dim=stats_dim)
        self.proj = nn.Sequential(nn.Conv2d(in_channels, proj, 1, bias=False), nn.BatchNorm2d(proj),
                                  nn.ReLU(inplace=True))
        self.use_lstm = use_lstm
        seq_dim = proj
        if use_lstm:
            self.lstm = nn.LSTM(proj, hidden, num_layers=layers, batch_first=True, bidirectional=True,
                                dropout=dropout if layers > 1 else 0.0)
            seq_dim = 2 * hidden
        self.pool = pool
        if pool == "attention":
            self.attn = nn.Sequential(nn.Linear(seq_dim, 128), nn.Tanh(), nn.Linear(128, 1))
        self.global_proj = nn.Sequential(nn.Linear(in_channels, proj), nn.ReLU(inplace=True))
        self.embed_dim = seq_dim + proj
        if stats_dim:
            if not linear_path:
                raise ValueError("style statistics need the linear path (linear_path=True) beside the recurrent one")
            self.stats_proj = nn.Sequential(nn.BatchNorm1d(stats_dim), nn.Linear(stats_dim, proj), nn.ReLU(inplace=True))
            self.embed_dim += proj
        self.norm = nn.LayerNorm(self.embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict({t: nn.Linear(self.embed_dim, n) for t, n in tasks.items()})
        self.linear_path = linear_path
        self.stats_dim = stats_dim
        if linear_path:
            # what a linear probe sees: the standardised global average of the map, one linear map per task;
            # trained as a classifier of its own, its logits are averaged with the recurrent path's
            self.global_norm = nn.BatchNorm1d(in_channels + stats_dim, affine=False)
            self.linear_dropout = nn.Dropout(linear_dropout)
            self.linear_heads = nn.ModuleDict({t: nn.Linear(in_channels + stats_dim, n) for t, n in tasks.items()})

    def _stats(self, stats: torch.Tensor | None) -> torch.Tensor | None:
        if not self.stats_dim:
            return None
        if stats is None or stats.shape[-1] != self.stats_dim:
            raise ValueError(f"this head reads {self.stats_dim} style statistics per painting; got "
                             f"{None if stats is None else stats.shape[-1]}")
        return stats.float()

    def embed(self, fmap: torch.Tensor, stats: torch.Tensor | None = None, return_attention: bool = False):
        """Pooled representation ``[B, embed_dim]`` of feature maps ``[B, C, h, w]`` (and their style
        statistics ``[B, stats_dim]`` when the head reads them)."""
        fmap = fmap.float()
        g = self.global_proj(fmap.mean(dim=(2, 3)))
        st = self._stats(stats)
        if st is not None:
            g = torch.cat([g, self.stats_proj(st)], dim=1)
        seq = self.proj(fmap).flatten(2).transpose(1, 2)  # [B, h*w, proj]
        if self.use_lstm:
            seq, _ = self.lstm(seq)
        if self.pool == "attention":
            w = torch.softmax(self.attn(seq).squeeze(-1), dim=1)  # [B, h*w]
            pooled = torch.bmm(w.unsqueeze(1), seq).squeeze(1)
        else:
            w = None
            pooled = seq.mean(dim=1)
        z = self.norm(torch.cat([pooled, g], dim=1))
        return (z, w) if return_attention else z

    def path_logits(self, fmap: torch.Tensor, stats: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        """The pooled representation and each path's logits per task: [recurrent] or [recurrent, linear]."""
        z = self.embed(fmap, stats)
        zd = self.dropout(z)
        paths = [{t: h(zd) for t, h in self.heads.items()}]
        if self.linear_path:
            g = fmap.float().mean(dim=(2, 3))
            if self.stats_dim:
                g = torch.cat([g, self._stats(stats)], dim=1)
            g = self.linear_dropout(self.global_norm(g))
            paths.append({t: h(g) for t, h in self.linear_heads.items()})
        return z, paths

    def embed_and_logits(self, fmap: torch.Tensor, stats: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The pooled representation and the logits per task (the paths' mean), in one pass."""
        z, paths = self.path_logits(fmap, stats)
        if len(paths) == 1:
            return z, paths[0]
        return z, {t: sum(p[t] for p in paths) / len(paths) for t in paths[0]}

    def forward(self, fmap: torch.Tensor, stats: torch.Tensor | None = None, paths: bool = False):
        """Logits per task; with ``paths=True`` the list of each path's logits (what training uses)."""
        return self.path_logits(fmap, stats)[1] if paths else self.embed_and_logits(fmap, stats)[1]


class MultiTaskCRNN(nn.Module):
    """Backbone + :class:`CRNNHead`: images in, logits per task out."""

    def __init__(self, backbone: Backbone, head: CRNNHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The backbone's map and, when the head reads them, its style statistics."""
        if self.head.stats_dim:
            return self.backbone.forward_with_stats(images)
        return self.backbone(images), None

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(*self.features(images))

    def embed_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.head.embed_and_logits(*self.features(images))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.head.embed(*self.features(images))


def masked_multitask_loss(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], *,
                          class_weights: dict[str, torch.Tensor] | None = None, label_smoothing: float = 0.0,
                          ordinal: dict[str, float] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum over tasks of the mean loss over the paintings that have that task's label (target >= 0).

    A painting without a label for a task contributes nothing to that head, so no gradient reaches
    the head from it. ``ordinal[task] = w`` adds ``w`` times the squared earth mover's distance
    between the predicted and true class distributions, which penalises far-off classes of an
    ordered task more than neighbouring ones.

    Parameters
    ----------
    logits : dict of str to Tensor
        ``[B, K_task]`` per task.
    targets : dict of str to Tensor
        ``[B]`` class indices per task, -1 where a painting has no label.
    class_weights : dict of str to Tensor, optional
        Per-class cross-entropy weights per task.
    label_smoothing : float
    ordinal : dict of str to float, optional
        EMD weight per ordered task.

    Returns
    -------
    total : Tensor
        The summed loss (a zero with a graph when no row has a label).
    parts : dict of str to float
        Each task's loss, for the tasks with labels in the batch.
    """
    total = None
    parts: dict[str, float] = {}
    for task, out in logits.items():
        y = targets[task]
        mask = y >= 0
        if not bool(mask.any()):
            continue
        lo, yy = out[mask], y[mask]
        w = class_weights.get(task) if class_weights else None
        loss = nn.functional.cross_entropy(lo, yy, weight=w, label_smoothing=label_smoothing)
        if ordinal and ordinal.get(task):
            p = torch.softmax(lo, dim=1).cumsum(dim=1)
            onehot = nn.functional.one_hot(yy, lo.shape[1]).float().cumsum(dim=1)
            loss = loss + ordinal[task] * ((p - onehot) ** 2).sum(dim=1).mean()
        parts[task] = float(loss.detach())
        total = loss if total is None else total + loss
    if total is None:  # a batch with no labels at all: a zero that still has a graph
        total = sum(o.sum() * 0.0 for o in logits.values())
    return total, parts

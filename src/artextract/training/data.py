"""Stored feature maps as a streaming ``Dataset``: training reads them batch by batch from the
memory-mapped feature stores, so its memory does not grow with the collection.

:class:`StoredMaps` indexes the paintings of one split by position. Each item is read from the
store of the view chosen for it in the current epoch (``center`` or its mirror image ``flip``),
and a whole batch is read in one call (``__getitems__``, with slots sorted for the page cache).
:func:`epoch_order` gives the epoch's shuffled order and flip choices from a seed, so a resumed
run, one process and ``torchrun`` ranks (through :class:`~torch.utils.data.DistributedSampler`,
which draws the same permutation) all see the same epoch.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..job import Job, resolve
from ..models.features import FeatureSet


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's order, flips and mixup pairs."""
    return seed * 100003 + epoch


def epoch_order(n: int, seed: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
    """The epoch's permutation of ``n`` items, its per-item flip choices, and the generator after them.

    The permutation is the one :class:`~torch.utils.data.DistributedSampler` draws with
    ``seed=epoch_seed(seed, 0)`` after ``set_epoch(epoch)``."""
    g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    perm = torch.randperm(n, generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    return perm, flip, g


class StoredMaps(Dataset):
    """Feature maps (and style statistics) of ``ids``, read on demand from the feature stores.

    Parameters
    ----------
    fsets : dict
        ``{view: FeatureSet}``; ``center`` is required, ``flip`` enables the per-item mirror view.
    ids : sequence of str
        Paintings, in the order items are indexed.
    targets : dict
        ``{task: LongTensor [N]}`` class indices (-1 = no label), aligned with ``ids``.
    stats : bool
        Also read the style statistics.
    flip_augment : bool
        Choose the view per item and epoch (see :meth:`set_epoch`); otherwise always ``center``.
    seed : int
        Seed of the flip choices.
    """

    def __init__(self, fsets: dict[str, FeatureSet], ids: Sequence[str], targets: dict[str, torch.Tensor], *,
                 stats: bool = False, flip_augment: bool = False, seed: int = 0):
        self.views = [v for v in ("center", "flip") if v in fsets and (v == "center" or flip_augment)]
        self.fsets = {v: fsets[v] for v in self.views}
        self.ids = list(ids)
        self.targets = targets
        self.use_stats = stats
        self.seed = seed
        self.map_slots = {v: self._slots(fsets[v].maps, v) for v in self.views}
        self.stat_slots = {v: self._slots(fsets[v].stats, v) for v in self.views} if stats else None
        self.flip = torch.zeros(len(self.ids), dtype=torch.bool)

    def _slots(self, store, view: str) -> np.ndarray:
        s = store.slots(self.ids)
        if (s < 0).any():
            raise KeyError(f"{int((s < 0).sum())} painting(s) have no stored {view} features in {store.dir}")
        return s

    @property
    def channels(self) -> int:
        return self.fsets["center"].maps.item_shape[0]

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's view per item (the same draw on every rank and after a resume)."""
        if len(self.views) > 1:
            self.flip = epoch_order(len(self.ids), self.seed, epoch)[1]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return self.__getitems__([i])

    def __getitems__(self, idx: Sequence[int]) -> dict:
        """One batch: ``{"x": [B, C, h, w] float32, "s": [B, D] or None, "y": {task: [B]}, "idx": [B]}``."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        fl = self.flip[idx] if len(self.views) > 1 else torch.zeros(len(idx), dtype=torch.bool)
        shape = self.fsets["center"].maps.item_shape
        x = torch.empty((len(idx), *shape), dtype=torch.float32)
        s = torch.empty((len(idx), self.fsets["center"].stats_dim), dtype=torch.float32) if self.use_stats else None
        for v, rows in (("center", ~fl), ("flip", fl)):
            if not rows.any():
                continue
            pos = idx[rows].numpy()
            x[rows] = torch.from_numpy(_read(self.fsets[v].maps.data, self.map_slots[v][pos])).float()
            if s is not None:
                s[rows] = torch.from_numpy(_read(self.fsets[v].stats.data, self.stat_slots[v][pos])).float()
        return {"x": x, "s": s, "y": {t: y[idx] for t, y in self.targets.items()}, "idx": idx}


def _read(data: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """``data[slots]`` read in slot order (sequential for the page cache), returned in the asked order."""
    order = np.argsort(slots, kind="stable")
    out = np.empty((len(slots), *data.shape[1:]), data.dtype)
    out[order] = data[slots[order]]
    return out


def _batch(x):
    return x  # __getitems__ already returns a collated batch


def train_loader(ds: StoredMaps, batch_size: int, seed: int, epoch: int, *, job: Job | None = None) -> DataLoader:
    """Shuffled batches of ``ds`` for one epoch; under ``torchrun`` each rank of ``job`` (default: the current
    one) reads its share of every global batch through a :class:`DistributedSampler` (the global batch is
    ``batch_size``)."""
    job = resolve(job)
    world = job.world
    ds.set_epoch(epoch)
    sampler = DistributedSampler(ds, num_replicas=world, rank=job.rank, shuffle=True, seed=epoch_seed(seed, 0))
    sampler.set_epoch(epoch)
    # its own generator: a DataLoader would otherwise draw its base seed from the global RNG (dropout's)
    return DataLoader(ds, batch_sampler=NoSingletonBatchSampler(sampler, max(1, batch_size // world)),
                      collate_fn=_batch, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))


class NoSingletonBatchSampler(torch.utils.data.Sampler):
    """Batches of ``batch_size`` indices from ``sampler`` where a last batch of one index joins the batch
    before it: batch normalisation cannot train on a batch of one (a collection one painting above a
    multiple of the batch size would otherwise crash), and no painting is left out of the epoch."""

    def __init__(self, sampler, batch_size: int):
        self.sampler, self.batch_size = sampler, int(batch_size)

    def __iter__(self):
        batch: list[int] = []
        pending: list[int] | None = None
        for i in self.sampler:
            batch.append(int(i))
            if len(batch) == self.batch_size:
                if pending is not None:
                    yield pending
                pending, batch = batch, []
        if len(batch) == 1 and pending is not None:
            pending = pending + batch
            batch = []
        if pending is not None:
            yield pending
        if batch:
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        full, rest = divmod(n, self.batch_size)
        return full + (1 if rest and not (rest == 1 and full) else 0)


def eval_loader(ds: StoredMaps, batch_size: int = 256) -> DataLoader:
    """Every item of ``ds`` in order, centre view."""
    return DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=_batch, generator=torch.Generator())

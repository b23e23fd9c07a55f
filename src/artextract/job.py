"""One job's context: its place among ``torchrun``'s ranks, where its messages go and whether it shows
progress bars.

Every long-running library function takes ``job: Job | None = None`` (default: :func:`current`) in
place of separate ``log``, ``progress``, ``rank`` and ``world`` parameters. A command sets the job once::

    with distributed_job() as job:                          # progress and messages: the current job's
        extract_features(catalog, "mobilenet_v2", job=job)   # or no job=: the current one
        if not job.is_main:
            return 0                                          # the other ranks' share is done

Under ``torchrun`` :func:`distributed_job` joins the process group, silences the other ranks' messages
in one place (as torchvision's ``setup_for_distributed`` does) and leaves the group at the end; without
it the job is rank 0 of 1 and every helper here is a no-op.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import sys
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence, TypeVar

from . import distributed

logger = logging.getLogger("artextract")

T = TypeVar("T")


@dataclass(frozen=True)
class Job:
    """Where a job runs and reports.

    Parameters
    ----------
    rank, world : int
        This process's rank among ``world`` (``torchrun``; 0 of 1 otherwise).
    progress : bool
        Show progress bars (on stderr, rank 0 only).
    log : callable, optional
        Where :meth:`say` sends messages (default: the ``artextract`` logger at INFO).
    """

    rank: int = 0
    world: int = 1
    progress: bool = True
    log: Callable[[str], None] | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the rank that reports, plans shared stores and writes results."""
        return self.rank == 0

    def say(self, msg: str) -> None:
        """A message, from rank 0 only."""
        if self.is_main:
            (self.log or logger.info)(msg)

    def bar(self, total: int | None = None, desc: str = "", unit: str = "img", **kwargs):
        """A tqdm bar on stderr, shown on rank 0 when ``progress`` is on (a silent one otherwise)."""
        from tqdm.auto import tqdm
        return tqdm(total=total, desc=desc, unit=unit, disable=not (self.progress and self.is_main),
                    file=sys.stderr, **kwargs)

    def shard(self, items: Sequence[T]) -> Sequence[T]:
        """This rank's share of ``items``: ``items[rank::world]``."""
        return items[self.rank::self.world]

    def barrier(self) -> None:
        """Wait for every rank."""
        distributed.barrier(self.world)

    def broadcast(self, obj):
        """``obj`` as rank 0 has it, on every rank."""
        return distributed.broadcast(obj, self.world)

    def gather(self, obj) -> list:
        """Every rank's ``obj``, in rank order, on every rank."""
        return distributed.gather(obj, self.world)

    def replace(self, **changes) -> "Job":
        """A copy with some fields changed (e.g. ``job.replace(progress=False)`` for an inner step)."""
        return dataclasses.replace(self, **changes)


_CURRENT: contextvars.ContextVar[Job] = contextvars.ContextVar("artextract_job", default=Job())


def current() -> Job:
    """The job set by the innermost :func:`running` or :func:`distributed_job` (rank 0 of 1, with
    progress bars, when none is)."""
    return _CURRENT.get()


def resolve(job: Job | None) -> Job:
    """``job``, or the current one when None: the first line of every function that takes a job."""
    return job if job is not None else _CURRENT.get()


@contextlib.contextmanager
def running(job: Job) -> Iterator[Job]:
    """Make ``job`` the current job for the duration of a block."""
    token = _CURRENT.set(job)
    try:
        yield job
    finally:
        _CURRENT.reset(token)


@contextlib.contextmanager
def distributed_job(progress: bool | None = None, log: Callable[[str], None] | None = None) -> Iterator[Job]:
    """The job of a command: under ``torchrun`` join the process group, keep the other ranks' messages
    below WARNING, and at the end wait for every rank and leave the group (on an error, leave it at once).

    Parameters
    ----------
    progress : bool, optional
        Progress bars on rank 0 (default: as the current job, which ``main`` sets from ``--no-progress``).
    log : callable, optional
        Where messages go (default: as the current job).

    Yields
    ------
    Job
        The current job inside the block.
    """
    rank, world = distributed.init()
    outer = current()
    job = Job(rank, world, outer.progress if progress is None else progress, log or outer.log)
    root = logging.getLogger("artextract")
    level = root.level
    if rank != 0:
        root.setLevel(logging.WARNING)
    try:
        with running(job):
            yield job
    except BaseException:
        # no barrier on the way out of a failure: the other ranks may be waiting in another collective,
        # and leaving the group makes theirs fail instead of hanging
        root.setLevel(level)
        distributed.abandon(world)
        raise
    root.setLevel(level)
    distributed.shutdown(world)

"""One writer per store: an advisory file lock (``fcntl.flock``) with the holder's pid in it.

Every store that a command writes (the prepared-image cache, a feature store, an index folder)
takes ``<store>/.lock`` for the time it writes. A second job on the same store waits for the
first and says so, naming the holder's pid and command, or, with a timeout, stops with a clear
:class:`StoreBusy` error. The kernel drops the lock when the holder's process ends, even by
``kill -9``, so a lock is never stale.

Under ``torchrun`` only the job's rank 0 takes the lock; the other ranks write disjoint slots of
the same store while rank 0 holds it.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import sys
import time
from pathlib import Path

from ..errors import ArtExtractError

logger = logging.getLogger(__name__)

LOCK_NAME = ".lock"
ENV_TIMEOUT = "ARTEXTRACT_LOCK_TIMEOUT"  # seconds to wait for a busy store; unset = wait as long as it takes


class StoreBusy(ArtExtractError, RuntimeError):
    """Another job holds a store's lock and the wait ran out."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    return f"pid {info.get('pid', '?')} ({info.get('cmd', '?')})"


def _default_timeout() -> float | None:
    v = os.environ.get(ENV_TIMEOUT)
    return float(v) if v not in (None, "") else None


@contextlib.contextmanager
def store_lock(directory: str | os.PathLike, what: str = "store", timeout: float | None = -1.0, poll: float = 0.2):
    """Hold ``directory``'s lock for the body of the ``with``.

    Parameters
    ----------
    directory : path
        The store's folder (created if missing).
    what : str
        How messages name the store ("prepared-image cache", "feature store", "index").
    timeout : float or None
        Seconds to wait when another job holds it: ``None`` waits as long as it takes, ``0`` stops at
        once; the default reads ``ARTEXTRACT_LOCK_TIMEOUT`` (unset: wait).

    Raises
    ------
    StoreBusy
        When the wait runs out; the message names the holder's pid and command.
    """
    if timeout == -1.0:
        timeout = _default_timeout()
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = d / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        t0, said = time.monotonic(), False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
            holder = _holder(path)
            if timeout is not None and time.monotonic() - t0 >= timeout:
                raise StoreBusy(f"the {what} {d} is in use by {holder}; wait for it to finish "
                                f"(or set {ENV_TIMEOUT} to wait longer)")
            if not said:
                logger.warning("the %s %s is in use by %s; waiting for it to finish", what, d, holder)
                said = True
            time.sleep(poll)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "cmd": " ".join(os.path.basename(a) if i == 0 else a
                                                                       for i, a in enumerate(sys.argv))[:200]}).encode(), 0)
        if said:
            logger.warning("the %s %s is free now; going on", what, d)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def job_lock(directory: str | os.PathLike, what: str = "store", rank: int = 0, timeout: float | None = -1.0):
    """:func:`store_lock` on rank 0 only (the job's other ranks work under rank 0's lock)."""
    if rank != 0:
        yield
        return
    with store_lock(directory, what, timeout):
        yield

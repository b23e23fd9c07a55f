"""The job context: rank, world, messages and progress bars in one object, set once per command."""
from __future__ import annotations

import logging

from artextract import job as J


def test_the_default_job_is_rank_0_of_1_with_progress():
    j = J.current()
    assert (j.rank, j.world, j.progress, j.is_main) == (0, 1, True, True)
    assert J.resolve(None) is j
    assert list(j.shard(list(range(5)))) == [0, 1, 2, 3, 4]
    assert j.broadcast({"a": 1}) == {"a": 1} and j.gather(3) == [3]


def test_running_sets_the_current_job_for_a_block_only():
    said = []
    inner = J.Job(rank=1, world=3, progress=False, log=said.append)
    with J.running(inner) as j:
        assert J.current() is j and J.resolve(None) is j
        assert list(j.shard(list(range(7)))) == [1, 4]
        j.say("from rank 1")                                   # other ranks are silent
        assert j.bar(total=3).disable                          # and show no bar
    assert said == [] and J.current().rank == 0
    main = J.Job(log=said.append, progress=False)
    main.say("hello")
    assert said == ["hello"] and main.bar(total=3).disable
    assert J.Job().bar(total=3).disable is False and main.replace(progress=True).progress


def test_distributed_job_without_torchrun_is_one_process_and_restores_logging(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    level = logging.getLogger("artextract").level
    with J.distributed_job(progress=False) as j:
        assert (j.rank, j.world, j.progress) == (0, 1, False) and J.current() is j
    assert J.current() is not j and logging.getLogger("artextract").level == level


def test_distributed_job_silences_the_other_ranks(monkeypatch):
    monkeypatch.setattr(J.distributed, "init", lambda: (1, 2))
    monkeypatch.setattr(J.distributed, "shutdown", lambda world: None)
    root = logging.getLogger("artextract")
    level = root.level
    with J.distributed_job() as j:
        assert not j.is_main and root.level == logging.WARNING
    assert root.level == level


def test_a_failing_rank_leaves_the_group_without_waiting_for_the_others(monkeypatch):
    calls = []
    monkeypatch.setattr(J.distributed, "init", lambda: (0, 2))
    monkeypatch.setattr(J.distributed, "shutdown", lambda world: calls.append("barrier, then leave"))
    monkeypatch.setattr(J.distributed, "abandon", lambda world: calls.append("leave"))
    try:
        with J.distributed_job():
            raise RuntimeError("rank 0 failed")
    except RuntimeError:
        pass
    with J.distributed_job():
        pass
    assert calls == ["leave", "barrier, then leave"]


def test_distributed_job_takes_progress_and_messages_from_the_current_job(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    said = []
    with J.running(J.Job(progress=False, log=said.append)):
        with J.distributed_job() as j:
            j.say("hi")
            assert not j.progress
        with J.distributed_job(progress=True) as j:
            assert j.progress
    assert said == ["hi"]

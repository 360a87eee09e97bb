"""The Tally: counts of a run, from its events alone."""

from __future__ import annotations

from incrun.events import (
    ADOPTED,
    FAILED,
    NOT_RUN,
    OK,
    UP_TO_DATE,
    JobFinished,
    JobResult,
    JobSkipped,
    JobStarted,
    RunStarted,
    Tally,
)


def test_tally_counts_every_kind_of_outcome():
    tally = Tally()
    tally.add(RunStarted(total=6, workers=2, at=100.0))
    tally.add(JobStarted("a", 100.0))
    tally.add(JobStarted("b", 100.5))
    assert set(tally.running) == {"a", "b"}
    tally.add(JobFinished(JobResult("a", OK, 100.0, 101.0)))
    tally.add(JobFinished(JobResult("b", FAILED, 100.5, 103.0, exit_code=1)))
    tally.add(JobSkipped("c", UP_TO_DATE))
    tally.add(JobSkipped("d", ADOPTED))
    tally.add(JobSkipped("e", NOT_RUN, "dependency failed: b"))
    assert tally.running == {}
    assert tally.done == 5
    summary = tally.summary(now=110.0)
    assert (summary.succeeded, summary.failed, summary.up_to_date, summary.adopted) == (1, 1, 1, 1)
    assert summary.not_run == 2  # e, and f that was never reached
    assert summary.elapsed == 10.0
    assert [r.name for r in summary.failures] == ["b"]
    assert not summary.ok


def test_a_run_with_nothing_to_do_is_ok():
    tally = Tally()
    tally.add(RunStarted(total=2, workers=1, at=0.0))
    tally.add(JobSkipped("a", UP_TO_DATE))
    tally.add(JobSkipped("b", UP_TO_DATE))
    assert tally.summary(1.0).ok

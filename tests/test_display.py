"""Tests for incrun.display: what a user sees on a terminal, in CI logs and in JSON lines."""

from __future__ import annotations

import io
import json
import re
import sys

import pytest
from rich.console import Console

from incrun.display import eta_seconds, make_display, progress_line, rule_lines, summary_lines
from incrun.events import (
    ADOPTED,
    ERROR,
    FAILED,
    NOT_RUN,
    OK,
    UP_TO_DATE,
    JobFinished,
    JobResult,
    JobSkipped,
    JobStarted,
    Notice,
    RuleCounts,
    RunFinished,
    RunStarted,
    Summary,
    Tally,
)
from incrun.live import render
from incrun.words import counted

HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")


class FakeClock:
    """A clock that moves only when the test says so."""

    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def visible(text: str) -> str:
    return ANSI.sub("", text)


def rendered(renderable, width: int = 100) -> str:
    console = Console(file=io.StringIO(), force_terminal=True, width=width)
    console.print(renderable)
    return console.file.getvalue()


def finished(name, status=OK, started=0.0, ended=1.0, **fields) -> JobFinished:
    return JobFinished(JobResult(name, status, started, ended, **fields))


def broken_job(name="sweep/b.inp") -> JobFinished:
    return finished(
        name,
        FAILED,
        exit_code=2,
        log_path=".incrun/logs/b.log",
        detail="exit code 2",
        log_tail=("reading b.inp", "\x1b[31mValueError: bad mesh\x1b[0m"),
    )


def tally_of(*events, total=10, workers=4) -> Tally:
    tally = Tally()
    tally.add(RunStarted(total=total, workers=workers, at=0.0))
    for event in events:
        tally.add(event)
    return tally


def failed_summary(*failures: JobResult, **counts) -> Summary:
    return Summary(failures=failures, failed=len(failures), **counts)


# ---- render: the live area, a pure function of (tally, now, width)


def test_render_shows_done_total_counts_running_jobs_and_eta():
    tally = tally_of(
        finished("a", started=0.0, ended=2.0),
        broken_job(),
        JobSkipped("c", UP_TO_DATE),
        JobStarted("slow", at=1.0),
        JobStarted("quick", at=9.0),
    )
    text = visible(rendered(render(tally, now=10.0, width=100, workers=2)))
    assert "3/10" in text
    assert "2 ran (1 failed)" in text and "1 up to date" in text
    assert "2 running" in text
    assert "ETA" in text and "ETA —" not in text
    assert text.index("slow") < text.index("quick")  # longest-running first
    assert "9.0s" in text and "1.0s" in text


def test_render_says_where_a_job_runs_when_its_executor_says():
    tally = tally_of(JobStarted("remote", at=1.0, worker="node7"), JobStarted("here", at=2.0),
                     JobStarted("moved", at=3.0, worker="node1"),
                     JobStarted("moved", at=4.0, worker="node2"))  # its worker died: again
    text = visible(rendered(render(tally, now=10.0, width=100)))
    assert "on node7" in text and "on node2" in text and "on node1" not in text
    assert text.count(" on ") == 2  # the job run here says nothing
    tally.add(finished("remote"))
    assert "remote" not in tally.where


def test_render_is_pure_and_leaves_the_tally_alone():
    tally = tally_of(JobStarted("a", at=0.0), finished("b"))
    before = (dict(tally.counts), dict(tally.running), list(tally.run_durations))
    first = rendered(render(tally, now=5.0, width=80))
    assert rendered(render(tally, now=5.0, width=80)) == first
    assert (dict(tally.counts), dict(tally.running), list(tally.run_durations)) == before


def test_render_caps_the_running_list_with_and_k_more():
    tally = tally_of(*(JobStarted(f"job{i:02d}", at=float(i)) for i in range(12)), total=20)
    text = visible(rendered(render(tally, now=20.0, width=100)))
    assert "job00" in text and "job07" in text
    assert "job08" not in text
    assert "… and 4 more" in text


def test_render_eta_is_unknown_until_a_job_has_run():
    tally = tally_of(JobSkipped("a", UP_TO_DATE), JobStarted("b", at=0.0))
    assert "ETA —" in visible(rendered(render(tally, now=3.0, width=100)))


def test_render_eta_uses_mean_duration_and_workers():
    # 8 jobs left, 4 s each on average, 2 workers: 16 s.
    tally = tally_of(finished("a", ended=4.0), finished("b", ended=4.0), workers=2)
    assert "ETA 16s" in visible(rendered(render(tally, now=4.0, width=100, workers=2)))


def test_eta_from_history_uses_each_jobs_last_duration_then_this_runs_mean():
    # a took 10 s last time, b 2 s, c never ran; 2 workers.
    tally = Tally()
    tally.add(RunStarted(3, 2, at=0.0, pending=3, expected={"a": 10.0, "b": 2.0}))
    assert eta_seconds(tally, 2) == (10 + 2 + 6) / 2  # c: the mean of the known ones
    tally.add(JobStarted("a", 0.0))
    tally.add(JobFinished(JobResult("a", OK, 0.0, 8.0)))
    assert eta_seconds(tally, 2) == (2 + 8) / 2  # c: this run's mean now
    tally.add(JobStarted("b", 8.0))
    assert eta_seconds(tally, 2, now=9.5) == (2 - 1.5 + 8) / 2  # b is 1.5 s in
    assert eta_seconds(tally, 2, now=30.0) == (0 + 8) / 2  # b overdue: none of it left


def test_render_counts_adopted_with_up_to_date_and_names_them():
    tally = tally_of(JobSkipped("a", UP_TO_DATE), JobSkipped("b", ADOPTED))
    assert "2 up to date (adopted 1)" in visible(rendered(render(tally, now=1.0, width=100)))


# ---- summary_lines


def test_summary_when_everything_succeeded_reads_as_success():
    lines = summary_lines(Summary(total=32, succeeded=30, up_to_date=2, elapsed=12.34))
    assert lines == ["done in 12.3s: 30 ran, 2 up to date — all succeeded"]


def test_summary_when_nothing_had_to_run():
    assert summary_lines(Summary(total=32, up_to_date=32, elapsed=0.4)) == [
        "all 32 jobs up to date (0.4s)"
    ]


def test_summary_lists_failures_with_their_logs():
    failure = broken_job().result
    lines = summary_lines(failed_summary(failure, total=36, succeeded=30, up_to_date=2, not_run=3))
    assert lines[0].startswith("done in 0.0s: 31 ran (1 failed), 2 up to date, 3 not run")
    assert "all succeeded" not in lines[0]
    assert lines[1] == "failed: sweep/b.inp  (log: .incrun/logs/b.log)"


def test_summary_lists_at_most_twenty_failures():
    failures = [JobResult(f"j{i}", ERROR, 0.0, 0.0, detail="could not start") for i in range(25)]
    lines = summary_lines(failed_summary(*failures, total=25))
    assert len(lines) == 1 + 20 + 1
    assert lines[-1] == "… and 5 more failures"


def test_summary_omits_empty_categories_but_always_says_ran():
    lines = summary_lines(Summary(total=3, not_run=3, elapsed=1.0))
    assert lines == ["done in 1.0s: 0 ran, 3 not run"]


def test_a_job_that_ran_and_failed_counts_as_ran_everywhere_the_counts_are_said():
    events = [JobSkipped("sweep", UP_TO_DATE, count=49, rule="sweep"), JobStarted("sweep:b", 0.0),
              finished("sweep:b", FAILED, detail="exit code 2")]
    tally = tally_of(*events, total=50)
    assert progress_line(tally, now=2.0, workers=2).startswith(
        "[50/50] 1 ran (1 failed), 49 up to date, 0 running")
    assert "1 ran (1 failed) · 49 up to date" in visible(rendered(render(tally, now=2.0,
                                                                          width=100)))
    summary = tally.summary(now=2.1)
    assert summary_lines(summary)[0] == "done in 2.1s: 1 ran (1 failed), 49 up to date"
    shares = (RuleCounts("sim", 50, succeeded=1, failed=1, up_to_date=48), RuleCounts("post", 1))
    assert rule_lines(shares) == ["  sim   50/50  2 ran (1 failed), 48 up to date",
                                  "  post    0/1  nothing yet"]
    record = [json.loads(line) for line in _json_lines(RunFinished(summary))][0]
    assert (record["succeeded"], record["failed"], record["up_to_date"]) == (0, 1, 49)


def _json_lines(*events) -> list[str]:
    out = io.StringIO()
    display = make_display("json", file=out)
    for event in events:
        display.handle(event)
    return out.getvalue().splitlines()


def test_a_count_of_one_takes_the_singular():
    assert [counted(n, "job") for n in (0, 1, 2)] == ["0 jobs", "1 job", "2 jobs"]
    assert counted(1, "process", "processes") == "1 process"
    assert counted(3, "process", "processes") == "3 processes"
    failures = [JobResult(f"j{i}", ERROR, 0.0, 0.0, detail="could not start") for i in range(21)]
    assert summary_lines(failed_summary(*failures, total=21))[-1] == "… and 1 more failure"


# ---- plain mode


def run_with_failure(display) -> None:
    display.handle(RunStarted(total=3, workers=2, at=0.0))
    display.handle(Notice("2 outputs adopted"))
    display.handle(Notice("runner.py changed", level="warning"))
    display.handle(JobStarted("sweep/a.inp", at=0.0))
    display.handle(finished("sweep/a.inp"))
    display.handle(JobStarted("sweep/b.inp", at=0.0))
    display.handle(broken_job())
    display.handle(JobSkipped("sweep/c.inp", NOT_RUN))
    summary = failed_summary(broken_job().result, total=3, succeeded=1, not_run=1, elapsed=2.0)
    display.handle(RunFinished(summary))


def test_plain_run_with_failure_has_no_escape_codes_and_shows_log_and_tail():
    out = io.StringIO()
    run_with_failure(make_display("plain", file=out, clock=FakeClock()))
    text = out.getvalue()
    assert "\x1b" not in text
    assert text.splitlines()[0] == "incrun: 3 jobs, 2 workers"
    assert "FAILED sweep/b.inp (exit code 2)" in text
    assert "    log: .incrun/logs/b.log" in text
    assert "    ValueError: bad mesh" in text
    assert "warning: runner.py changed" in text
    assert "done in 2.0s: 2 ran (1 failed), 1 not run" in text
    assert "failed: sweep/b.inp  (log: .incrun/logs/b.log)" in text


def test_plain_many_skips_write_a_handful_of_lines_until_the_interval_passes():
    out, clock = io.StringIO(), FakeClock()
    display = make_display("plain", file=out, clock=clock, plain_interval=5.0)
    display.handle(RunStarted(total=10_001, workers=4, at=0.0))
    for i in range(10_000):
        display.handle(JobSkipped(f"in/{i}.inp", UP_TO_DATE))
    assert len(out.getvalue().splitlines()) <= 3
    clock.now = 5.5
    display.handle(JobStarted("in/last.inp", at=5.0))
    progress = out.getvalue().splitlines()[-1]
    assert progress.startswith("[10000/10001] 0 ran, 10000 up to date, 1 running")
    assert progress.endswith("ETA —")


def test_plain_progress_is_rate_limited_by_the_interval():
    out, clock = io.StringIO(), FakeClock()
    display = make_display("plain", file=out, clock=clock, plain_interval=5.0)
    display.handle(RunStarted(total=100, workers=1, at=0.0))
    for second in range(1, 21):
        clock.now = float(second)
        display.handle(finished(f"j{second}", started=second - 1.0, ended=float(second)))
    progress = [line for line in out.getvalue().splitlines() if line.startswith("[")]
    assert len(progress) == 4  # at 5, 10, 15 and 20 seconds
    assert (
        progress[-1] == "[ 20/100] 20 ran, 0 up to date, 0 running, 1.0 jobs/s, ETA 1m20s"
    )


# ---- quiet


def test_quiet_prints_only_failures_and_the_summary_line():
    out, clock = io.StringIO(), FakeClock()
    display = make_display("plain", file=out, clock=clock, quiet=True, plain_interval=0.0)
    run_with_failure(display)
    assert out.getvalue().splitlines() == [
        "FAILED sweep/b.inp (exit code 2)  (log: .incrun/logs/b.log)",
        "done in 2.0s: 2 ran (1 failed), 1 not run",
    ]


def test_quiet_successful_run_prints_nothing():
    out = io.StringIO()
    with make_display("live", file=out, quiet=True, clock=FakeClock()) as display:
        display.handle(RunStarted(total=1, workers=1, at=0.0))
        display.handle(finished("a"))
        display.handle(RunFinished(Summary(total=1, succeeded=1, elapsed=1.0)))
    assert out.getvalue() == ""


# ---- json


def test_json_writes_one_parseable_object_per_event_in_order():
    out = io.StringIO()
    run_with_failure(make_display("json", file=out, quiet=True))
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [record["event"] for record in records] == [
        "run_started", "notice", "notice", "job_started", "job_finished",
        "job_started", "job_finished", "job_skipped", "run_finished",
    ]  # fmt: skip
    assert records[0] == {"event": "run_started", "total": 3, "workers": 2, "pending": 3,
                          "expected_jobs": 0, "expected_seconds": 0, "rules": {},
                          "growing": False}
    assert records[6] == {
        "event": "job_finished", "name": "sweep/b.inp", "status": FAILED, "exit_code": 2,
        "duration": 1.0, "log": ".incrun/logs/b.log", "detail": "exit code 2",
    }  # fmt: skip
    assert records[7]["reason"] == NOT_RUN
    assert records[-1]["failed"] == 1 and records[-1]["not_run"] == 1
    assert records[-1]["elapsed"] == 2.0


# ---- live


def test_live_prints_failure_block_and_summary_and_closes_twice():
    out = io.StringIO()
    display = make_display("live", file=out, clock=FakeClock(), width=100)
    run_with_failure(display)
    display.close()
    display.close()
    text = visible(out.getvalue())
    assert "FAILED sweep/b.inp (exit code 2)" in text
    assert ".incrun/logs/b.log" in text
    assert "ValueError: bad mesh" in text
    assert "warning: runner.py changed" in text
    assert "done in 2.0s: 2 ran (1 failed), 1 not run" in text


def test_live_without_color_emits_no_color_codes():
    out = io.StringIO()
    with make_display("live", file=out, no_color=True, clock=FakeClock()) as display:
        run_with_failure(display)
    assert not re.search(r"\x1b\[[0-9;]*3[0-9]m", out.getvalue())


def test_live_up_to_date_run_prints_one_line_and_draws_no_area():
    out = io.StringIO()
    with make_display("live", file=out, clock=FakeClock()) as display:
        display.handle(RunStarted(total=5, workers=2, at=0.0, pending=0))
        display.handle(JobSkipped("", UP_TO_DATE, count=5))
        display.handle(RunFinished(Summary(total=5, up_to_date=5, elapsed=1.0)))
    assert visible(out.getvalue()) == "all 5 jobs up to date (1.0s)\n"
    assert "\x1b[?25l" not in out.getvalue()  # a live area hides the cursor: none was drawn


def test_live_draws_the_total_at_once_and_context_manager_stops_it():
    out = io.StringIO()
    with make_display("live", file=out, clock=FakeClock(), width=100) as display:
        display.handle(RunStarted(total=5, workers=2, at=0.0))
        assert "0/5" in visible(out.getvalue())  # not a stale frame from before the run
        display.handle(JobStarted("a", at=0.0))
        drawn = out.getvalue()
        assert drawn.count(HIDE_CURSOR) == 1 and SHOW_CURSOR not in drawn
    closed = out.getvalue()
    assert closed.count(SHOW_CURSOR) == 1 and closed.rindex(SHOW_CURSOR) > closed.index(HIDE_CURSOR)
    # The area is transient: its three lines (bar, tally, running job) are erased at the end.
    assert re.fullmatch(r"\r(\x1b\[1A\x1b\[2K){3}", closed.split(SHOW_CURSOR)[-1])
    display.close()  # already closed by the with block: no error, and nothing drawn
    assert out.getvalue() == closed


# ---- the factory


def test_factory_captures_stdout_at_construction(monkeypatch):
    captured = io.StringIO()
    monkeypatch.setattr(sys, "stdout", captured)
    display = make_display("plain", clock=FakeClock())
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # as job code might
    display.handle(RunStarted(total=1, workers=1, at=0.0))
    assert captured.getvalue() == "incrun: 1 job, 1 worker\n"


def test_factory_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="unknown display mode"):
        make_display("fancy", file=io.StringIO())

"""Tests for incrun.status: why a job is stale, in words, and the summary `incrun status` prints."""

from __future__ import annotations

import json

from doit.dependency import Dependency, JsonDB
from doit.task import Task

from incrun.checker import ContentChecker
from incrun.status import (
    COMMAND_CHANGED,
    DEP_CHANGED,
    INPUT_CHANGED,
    OUTPUT_MISSING,
    JobState,
    as_json,
    as_lines,
    dry_run_lines,
    group_state,
    why_from_doit,
)


def job(input_path: str = "a.inp", deps=("runner.py",), targets=("a.out",)) -> Task:
    """A task as incrun makes it for one input."""
    return Task(f"sweep:{input_path}", [["true"]], file_dep=[input_path, *deps],
                targets=list(targets), meta={"incrun": {"input": input_path}})


def hand_written() -> Task:
    return Task("gather", [["true"]], file_dep=["a.out"])


# -- why_from_doit -----------------------------------------------------------------


def test_status_reason_missing_target_names_output():
    why = why_from_doit(job(), {"missing_target": ["a.out"]})
    assert why.kind == OUTPUT_MISSING
    reason = why.text
    assert "missing" in reason and "a.out" in reason


def test_status_reason_changed_input():
    assert why_from_doit(job(), {"changed_file_dep": ["a.inp"]}) == \
        (INPUT_CHANGED, "input changed")


def test_status_reason_changed_other_file_names_it():
    why = why_from_doit(job(), {"changed_file_dep": ["runner.py"]})
    assert why.kind == DEP_CHANGED
    reason = why.text
    assert "runner.py" in reason
    assert "input" not in reason


def test_status_reason_uptodate_false_on_job_is_command_changed():
    assert why_from_doit(job(), {"uptodate_false": [(False, [], {})]}) == \
        (COMMAND_CHANGED, "command changed")


def test_status_reason_uptodate_false_on_hand_written_task():
    reason = why_from_doit(hand_written(), {"uptodate_false": [(False, [], {})]}).text
    assert reason and reason != "command changed"


def test_status_reason_missing_dependency_names_it():
    reason = why_from_doit(job(), {"missing_file_dep": ["runner.py"]}).text
    assert "runner.py" in reason


def test_status_reason_many_changed_files_shortened():
    files = [f"lib/module_{i}.py" for i in range(10)]
    reason = why_from_doit(hand_written(), {"changed_file_dep": files}).text
    assert files[0] in reason
    assert files[-1] not in reason
    assert "more" in reason


def test_status_reason_from_real_doit_status(tmp_path):
    # The reasons dict as doit itself builds it, with incrun's checker.
    inp, runner, out = (str(tmp_path / name) for name in ("a.inp", "runner.py", "a.out"))
    for path in (inp, runner, out):
        with open(path, "w", encoding="utf-8") as stream:
            stream.write("one")
    deps = Dependency(JsonDB, str(tmp_path / "db.json"), checker_cls=ContentChecker)
    task = job(inp, deps=(runner,), targets=(out,))
    deps.save_success(task)
    with open(inp, "w", encoding="utf-8") as stream:
        stream.write("two, longer")
    status = deps.get_status(task, {task.name: task}, get_log=True)
    assert why_from_doit(task, status.reasons) == (INPUT_CHANGED, "input changed")


# -- as_lines / as_json ---------------------------------------------------------------

STATES = [
    JobState("sweep:a.inp", "up-to-date"),
    JobState("sweep:b.inp", "stale", "input changed"),
    JobState("sweep:c.inp", "failed", "failed last time (exit 3)"),
    JobState("sweep:d.inp", "up-to-date"),
    JobState("sweep:e.inp", "stale", "never run"),
]


def test_status_as_lines_counts_first():
    first = as_lines(STATES)[0]
    assert "2 up to date" in first and "2 stale" in first and "1 failed" in first


def test_status_as_lines_lists_only_stale_and_failed():
    listed = as_lines(STATES)[1:]
    assert len(listed) == 3
    text = "\n".join(listed)
    assert "sweep:a.inp" not in text and "sweep:d.inp" not in text
    for task, reason in [("sweep:b.inp", "input changed"), ("sweep:c.inp", "exit 3"),
                         ("sweep:e.inp", "never run")]:
        assert any(task in line and reason in line for line in listed)


def test_status_as_lines_all_up_to_date_is_one_line():
    lines = as_lines([JobState("sweep:a.inp", "up-to-date")])
    assert len(lines) == 1 and "1 up to date" in lines[0]


def test_status_as_json_counts_and_jobs():
    report = json.loads(json.dumps(as_json(STATES)))
    assert report["counts"] == {"up_to_date": 2, "stale": 2, "failed": 1, "running": 0,
                                 "ignored": 0}
    jobs = {entry["task"]: entry for entry in report["jobs"]}
    assert jobs["sweep:c.inp"]["state"] == "failed"
    assert jobs["sweep:b.inp"]["reason"] == "input changed"


def test_dry_run_lines_list_what_would_run_forced_included():
    states = [*STATES, JobState("sweep:f.inp", "up-to-date", "forced (-B)", "forced")]
    lines = dry_run_lines(states)
    assert lines[0].startswith("would run 4 of 6 jobs (2 up to date)")
    assert [line.split()[0] for line in lines[1:]] == \
        ["sweep:b.inp", "sweep:c.inp", "sweep:e.inp", "sweep:f.inp"]


def test_a_job_running_now_is_counted_apart():
    running = JobState("sweep:g.inp", "running", "running (pid 42)", "running")
    assert as_lines([running]) == ["0 up to date, 0 stale, 0 failed, 1 running",
                                   "  running  sweep:g.inp  running (pid 42)"]


def test_a_rule_is_up_to_date_only_when_every_job_is_and_says_how_many_would_run():
    assert group_state("sweep", [STATES[0], STATES[3]]) == JobState("sweep", "up-to-date")
    stale = group_state("sweep", STATES)
    assert (stale.state, stale.reason) == ("failed", "3 of 5 jobs would run, 1 failed last time")
    running = JobState("sweep:g.inp", "running", "running (pid 42)", "running")
    assert group_state("sweep", [STATES[0], running]).reason == "1 of 2 jobs would run, 1 running"

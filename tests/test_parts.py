"""A big run of independent jobs goes to doit a part at a time (engine._run_parts): the parts
make one run, as the user sees it, with --fail-fast, --limit and the records as for one."""

from __future__ import annotations

import gc
import json

import pytest
from doit.task import Task

from incrun import cli, coordinator, engine, errors
from incrun.config import RuleSpec
from incrun.plan import build

RUNNER = """\
import sys
name = sys.argv[1]
if "bad" in name:
    sys.exit(1)
open(name[:-4] + ".out", "w").write("done")
"""


@pytest.fixture
def small_parts(monkeypatch):
    """Parts of three jobs, whatever the slots."""
    monkeypatch.setattr(engine, "PART_JOBS", 3)
    monkeypatch.setattr(engine, "PART_JOBS_PER_SLOT", 1)


def sweep_project(root, names):
    root.mkdir(exist_ok=True)
    (root / "runner.py").write_text(RUNNER)
    for name in names:
        (root / name).write_text("x")
    return root


def test_the_stale_jobs_of_independent_rules_come_in_parts(tmp_path):
    root = sweep_project(tmp_path / "p", [f"{i}.inp" for i in range(7)])
    plan = build((RuleSpec(),), root)
    pending = plan.pending()
    parts = plan.parts(pending, 3)
    assert [[job.input for _, jobs in part for job in jobs] for part in parts] == \
        [["0.inp", "1.inp", "2.inp"], ["3.inp", "4.inp", "5.inp"], ["6.inp"]]


def test_a_chain_of_rules_stays_in_one_part(tmp_path):
    root = sweep_project(tmp_path / "p", [f"{i}.inp" for i in range(7)])
    (root / "post.py").write_text("")
    rules = (RuleSpec(name="sim"),
             RuleSpec(name="post", inputs=("*.out",), command=("{python}", "post.py", "{input}"),
                      outputs=("{stem}.sum",)))
    plan = build(rules, root)
    pending = plan.pending()
    assert plan.parts(pending, 3) == [pending]


def run(root, *args, capsys):
    code = cli.main(["-C", str(root), "-n", "1", "--json", *args])
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return code, events


def finished(events) -> list[str]:
    return [event["name"] for event in events if event["event"] == "job_finished"]


def test_a_run_in_parts_is_one_run(tmp_path, small_parts, capsys, monkeypatch):
    monkeypatch.setenv("CI", "true")
    names = [f"{i}.inp" for i in range(10)]
    root = sweep_project(tmp_path / "p", names)
    code, events = run(root, capsys=capsys)
    assert code == errors.OK
    starts = [event for event in events if event["event"] == "run_started"]
    assert len(starts) == 1 and starts[0]["total"] == 10  # announced once, for every part
    assert sorted(finished(events)) == sorted(f"sweep:{name}" for name in names)
    assert all((root / f"{i}.out").read_text() == "done" for i in range(10))
    code, events = run(root, capsys=capsys)
    assert code == errors.OK and finished(events) == []  # every part's records were kept


def test_fail_fast_and_limit_hold_across_parts(tmp_path, small_parts, capsys, monkeypatch):
    monkeypatch.setenv("CI", "true")
    names = ["0.inp", "1-bad.inp", *(f"{i}.inp" for i in range(2, 10))]
    root = sweep_project(tmp_path / "p", names)
    code, events = run(root, "--fail-fast", "--in-order", capsys=capsys)
    assert code == errors.JOBS_FAILED
    assert finished(events) == ["sweep:0.inp", "sweep:1-bad.inp"]  # no later part started
    (root / "1-bad.inp").unlink()
    code, events = run(root, "--limit", "4", "--in-order", capsys=capsys)
    assert code == errors.OK
    assert len(finished(events)) == 4  # the limit counts across parts


def test_a_parts_tasks_are_freed_as_it_ends_with_no_cycle_left(tmp_path, small_parts, capsys,
                                                               monkeypatch):
    """doit's actions point back at their task: were they built for a rule's jobs, or left
    tied, every part would leave its tasks to the collector, a million of them in a big run."""
    monkeypatch.setenv("CI", "true")
    root = sweep_project(tmp_path / "p", [f"{i}.inp" for i in range(7)])
    gc.collect()
    gc.disable()  # what the run leaves in cycles stays, to be counted
    try:
        code, events = run(root, capsys=capsys)
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [item for item in gc.garbage if isinstance(item, Task)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert code == 0 and len(finished(events)) == 7
    assert left == []


LIMITED = """\
[rules.licensed]
inputs = ["*.big"]
command = "{python} runner.py {input}"
outputs = ["{stem}.out"]
jobs = 1

[rules.free]
inputs = ["*.inp"]
"""


@pytest.mark.parametrize("slots, limit", [(1, 6), (2, 9), (2, 10)])
def test_limit_holds_exactly_while_a_rules_limit_releases_its_jobs(tmp_path, capsys,
                                                                   monkeypatch, slots, limit):
    """--limit counts the jobs chosen to start and not yet marked running: a job that its
    rule's limit lets go meanwhile does not start beyond it."""
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(coordinator, "MARK_AHEAD", 1)  # batches of a few jobs
    root = sweep_project(tmp_path / "p", [f"s{i}.inp" for i in range(8)])
    for i in range(4):
        (root / f"b{i}.big").write_text("x")
    (root / "incrun.toml").write_text(LIMITED)
    code, events = run(root, "-n", str(slots), "--limit", str(limit), capsys=capsys)
    assert code == errors.OK
    assert len(finished(events)) == limit

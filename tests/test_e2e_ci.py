"""End to end: what CI gets from a run. A JUnit file its test-report viewers accept, a GitHub
step summary and annotations, and a cached `.incrun/` that makes the next pipeline rerun nothing."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

# The JUnit schema CI tools agree on (junit-10.xsd, from Jenkins' xunit plugin, MIT licence),
# as pytest checks its own JUnit files against it: a copy of pytest 9.2.0's
# testing/example_scripts/junit-10.xsd, kept here so no test fetches anything.
SCHEMA = Path(__file__).parent / "schemas" / "junit-10.xsd"


@pytest.fixture(scope="session")
def junit_schema():
    etree = pytest.importorskip("lxml.etree")
    return etree.XMLSchema(etree.parse(str(SCHEMA)))


def ci_project(project):
    """a, b, c up to date; d changed since; e fails; f never ran."""
    project.inputs("a.inp", "b.inp", "c.inp", "d.inp")
    project.run()
    project.ran()
    project.write("d.inp", "x = 4\n")
    project.write("e.inp", "FAIL\n")
    project.write("f.inp", "x = 6\n")


def test_junit_has_a_testcase_per_job_and_passes_the_schema(project, junit_schema):
    from lxml import etree

    ci_project(project)
    result = project.run("--junit", "report.xml")
    assert result.returncode == 1
    report = project.root / "report.xml"
    junit_schema.assertValid(etree.parse(str(report)))
    suite = ET.parse(report).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"),
            suite.get("skipped")) == ("6", "1", "0", "3")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert set(cases) == {"a.inp", "b.inp", "c.inp", "d.inp", "e.inp", "f.inp"}
    assert all(case.get("classname") == "sweep" for case in cases.values())
    failure = cases["e.inp"].find("failure")
    assert failure.get("message") == "exit code 3"
    assert "bad input: cannot simulate" in failure.text  # the log's tail
    assert "log: .incrun/logs/" in failure.text
    assert cases["a.inp"].find("skipped").get("message") == "up to date"
    assert list(cases["d.inp"]) == [] and float(cases["d.inp"].get("time")) > 0


def test_a_no_op_run_lists_every_job_as_skipped(project, junit_schema):
    from lxml import etree

    project.inputs("a.inp", "b.inp")
    project.run()
    assert project.run("--junit", "out/report.xml").returncode == 2  # its folder is missing
    (project.root / "out").mkdir()
    assert project.run("--junit", "out/report.xml").returncode == 0
    tree = etree.parse(str(project.root / "out" / "report.xml"))
    junit_schema.assertValid(tree)
    assert [case.find("skipped").get("message") for case in tree.iter("testcase")] == \
        ["up to date", "up to date"]


def test_in_github_actions_a_step_summary_and_annotations(project):
    ci_project(project)
    summary = project.root.parent / "summary.md"
    summary.write_text("earlier step\n")
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    result = project.run(env=env)
    assert result.returncode == 1
    text = summary.read_text()
    assert text.startswith("earlier step\n### incrun: done in")  # appended, not replaced
    assert "| `sweep:e.inp` | exit code 3 | `.incrun/logs/sweep/e.inp.log` |" in text
    assert "| slowest jobs | seconds |" in text
    errors = [line for line in result.stdout.splitlines() if line.startswith("::error ")]
    assert len(errors) == 1
    assert errors[0].startswith("::error file=e.inp,title=incrun%3A sweep%3Ae.inp::exit code 3%0A")
    assert "bad input: cannot simulate" in errors[0]
    quiet = project.run()  # outside GitHub Actions: neither
    assert "::error" not in quiet.stdout


def test_the_suite_run_in_github_actions_keeps_its_settings_from_the_tests(project,
                                                                           monkeypatch):
    # A contributor's own CI: its settings must not reach the incrun a test starts, which
    # would print annotations the test does not expect and write to that CI's real summary.
    summary = project.root.parent / "the callers-summary.md"
    summary.write_text("the caller's step\n")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    ci_project(project)
    result = project.run()
    assert result.returncode == 1
    assert "FAILED sweep:e.inp" in result.stdout
    assert "::error" not in result.stdout
    assert summary.read_text() == "the caller's step\n"


def test_a_cached_state_dir_in_a_fresh_clone_reruns_nothing(project, tmp_path):
    # CI restores .incrun/ from its cache into a fresh checkout: same content, new mtimes.
    project.inputs("a.inp", "b.inp", "sub/c.inp")
    assert project.run("-n", "2").returncode == 0
    project.ran()
    clone = tmp_path / "clone"
    shutil.copytree(project.root, clone, copy_function=shutil.copyfile)  # no times kept
    assert (clone / "a.inp").stat().st_mtime_ns != (project.root / "a.inp").stat().st_mtime_ns
    project.root = clone
    again = project.run("-n", "2")
    assert again.returncode == 0, again.stderr
    assert "all 3 jobs up to date" in again.stdout
    assert project.ran() == []
    project.write("b.inp", "x = 2\n")  # ... and what did change still reruns
    project.run()
    assert project.ran() == ["b.inp"]


def shard_lists(project, count: int) -> list[set[str]]:
    """The jobs each shard would run, from a dry run."""
    found = []
    for index in range(1, count + 1):
        result = project.run("--dry-run", "--json", "--shard", f"{index}/{count}")
        assert result.returncode == 0, result.stderr
        found.append({job["task"] for job in json.loads(result.stdout)["would_run"]})
    return found


def test_shards_split_the_jobs_and_keep_them_where_they_were(project):
    names = [f"in{i:03d}.inp" for i in range(60)]
    project.inputs(*names)
    before = shard_lists(project, 3)
    assert set().union(*before) == {f"sweep:{name}" for name in names}
    assert sum(len(shard) for shard in before) == 60 and all(len(s) >= 10 for s in before)
    project.inputs(*(f"new{i:02d}.inp" for i in range(20)))
    after = shard_lists(project, 3)
    assert all(old <= new for old, new in zip(before, after))  # nobody moved
    ran = []
    for index in (1, 2, 3):
        result = project.run("-n", "2", "--shard", f"{index}/3")
        assert result.returncode == 0, result.stderr
        ran.append(set(project.ran()))
    assert [{f"sweep:{name}" for name in shard} for shard in ran] == after
    assert "all 80 jobs up to date" in project.run().stdout


def test_an_empty_shard_is_no_error_and_hand_written_tasks_wait(project):
    project.write("dodo.py", "from incrun import Rule\n\nsweep = Rule()\n\n\n"
                             "def task_sweep():\n    yield from sweep.tasks()\n\n\n"
                             "def task_gather():\n    return {'actions': ['touch gathered'],\n"
                             "            'file_dep': sweep.outputs()}\n")
    project.inputs("only.inp")
    results = [project.run("--shard", f"{index}/2") for index in (1, 2)]
    assert [result.returncode for result in results] == [0, 0]
    assert project.ran() == ["only.inp"]  # by exactly one of the two shards
    assert not (project.root / "gathered").exists()
    assert project.run().returncode == 0 and (project.root / "gathered").exists()
    bad = project.run("--shard", "3/2")
    assert bad.returncode == 2 and "I/N" in bad.stderr


def test_limit_runs_at_most_k_stale_jobs_and_the_rest_later(project):
    project.inputs(*(f"in{i}.inp" for i in range(10)))
    first = project.run("--limit", "3", "-n", "2")
    assert first.returncode == 0, first.stdout
    assert len(project.ran()) == 3
    assert "7 left for later (--limit)" in first.stdout
    assert project.run("--limit", "3").returncode == 0
    assert len(project.ran()) == 3
    assert project.run().returncode == 0
    assert len(project.ran()) == 4


def test_json_output_stays_json_in_github_actions(project):
    ci_project(project)
    result = project.run("--json", env={"GITHUB_ACTIONS": "true"})
    assert result.returncode == 1
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1]["event"] == "run_finished" and events[-1]["failed"] == 1

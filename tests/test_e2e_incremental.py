"""End to end: the real `incrun` on real files decides by content what to run again."""

from __future__ import annotations

import json
import os
import re
import shutil
import time

from incrun.store import Store


def test_sweep_first_run_makes_every_output_then_nothing_reruns(project):
    project.inputs("a.inp", "b.inp", "sub/c.inp")
    first = project.run("-n", "2")
    assert first.returncode == 0, first.stderr
    assert project.ran() == ["a.inp", "b.inp", "sub/c.inp"]
    assert (project.root / "sub" / "c.out").read_text() == "X = 1\n"
    second = project.run("-n", "2")
    assert second.returncode == 0
    assert project.ran() == []
    assert "all 3 jobs up to date" in second.stdout


def test_changed_input_reruns_exactly_that_job(project):
    project.inputs("a.inp", "b.inp", "c.inp")
    project.run()
    project.ran()
    project.write("b.inp", "x = 2\n")
    result = project.run()
    assert result.returncode == 0
    assert project.ran() == ["b.inp"]
    assert (project.root / "b.out").read_text() == "X = 2\n"


def output_mtimes(root) -> dict[str, int]:
    return {str(path): path.stat().st_mtime_ns for path in root.rglob("*.out")}


def test_a_large_sweep_reruns_nothing_then_exactly_the_changed_job(project):
    # The benchmark's 100,000-job case at a size the suite can afford: outputs from an earlier
    # build are adopted, then the fast no-op path must skip every job without touching one.
    names = [f"batch{i % 7}/in{i:05d}.inp" for i in range(3000)]
    past = time.time() - 60
    for name in names:
        os.utime(project.write(name, f"x = {name}\n"), (past, past))
        project.write(name[:-4] + ".out", f"X = {name.upper()}\n")
    os.utime(project.root / "runner.py", (past, past))
    assert "adopted 3000" in project.run("-n", "2").stdout
    before = output_mtimes(project.root)
    noop = project.run("-n", "2")
    assert noop.returncode == 0
    assert "all 3000 jobs up to date" in noop.stdout
    assert project.ran() == [] and output_mtimes(project.root) == before
    edited = names[1234]
    project.write(edited, "x = changed\n")
    changed = project.run("-n", "2")
    assert changed.returncode == 0
    assert project.ran() == [edited]
    output = project.root / (edited[:-4] + ".out")
    assert output.read_text() == "X = CHANGED\n"
    after = output_mtimes(project.root)
    assert [path for path in after if after[path] != before[path]] == [str(output)]


def test_deleted_output_reruns_that_job(project):
    project.inputs("a.inp", "b.inp")
    project.run()
    project.ran()
    (project.root / "a.out").unlink()
    project.run()
    assert project.ran() == ["a.inp"]


def test_changed_runner_reruns_every_job(project):
    project.inputs("a.inp", "b.inp")
    project.run()
    project.ran()
    runner = project.root / "runner.py"
    runner.write_text(runner.read_text() + "\n# a change\n")
    project.run()
    assert project.ran() == ["a.inp", "b.inp"]


def test_changed_dep_or_command_reruns_every_job(project):
    project.inputs("a.inp", "b.inp")
    project.write("params.txt", "alpha = 1\n")
    project.write("incrun.toml", 'deps = ["params.txt"]\n')
    project.run()
    project.ran()
    project.write("params.txt", "alpha = 2\n")
    project.run()
    assert project.ran() == ["a.inp", "b.inp"]
    project.write("incrun.toml", 'deps = ["params.txt"]\n'
                                 'command = ["{python}", "runner.py", "{input}", "--fast"]\n')
    project.run()
    assert project.ran() == ["a.inp", "b.inp"]
    project.run()
    assert project.ran() == []


def test_touch_reruns_nothing_and_the_new_mtime_is_recorded(project):
    project.inputs("a.inp", "b.inp")
    project.run()
    project.ran()
    later = time.time() + 100
    for name in ("a.inp", "b.inp", "runner.py"):
        os.utime(project.root / name, (later, later))
    result = project.run()
    assert result.returncode == 0
    assert project.ran() == []
    store = Store(project.root / ".incrun").open(writable=False)
    state = store.backend.get("sweep:a.inp", "a.inp")
    assert state[0] == os.stat(project.root / "a.inp").st_mtime  # next run need not hash it
    store.close()


def test_copied_project_with_new_mtimes_reruns_nothing(project, tmp_path):
    project.inputs("a.inp", "b.inp")
    project.run()
    project.ran()
    copy = tmp_path / "clone"
    shutil.copytree(project.root, copy)  # copytree gives every file a new mtime
    later = time.time() + 50
    for path in copy.rglob("*"):
        os.utime(path, (later, later))
    project.root = copy
    result = project.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert project.ran() == []


def test_outputs_from_before_incrun_are_adopted_when_newer(project):
    project.inputs("a.inp", "b.inp", "c.inp")
    past = time.time() - 1000
    for name in ("a.inp", "b.inp", "c.inp", "runner.py"):
        os.utime(project.root / name, (past, past))
    project.write("a.out", "made by make\n")
    project.write("b.out", "made by make\n")
    os.utime(project.root / "b.out", (past - 10, past - 10))  # older than its input
    result = project.run()
    assert result.returncode == 0
    assert "adopted 1" in result.stdout
    assert project.ran() == ["b.inp", "c.inp"]
    assert (project.root / "a.out").read_text() == "made by make\n"
    assert project.run().returncode == 0
    assert project.ran() == []


def test_partial_output_of_an_interrupted_job_is_not_adopted(project):
    project.inputs("a.inp")
    store = Store(project.root / ".incrun").open()
    store.job_started("sweep:a.inp", time.time())  # as if killed while it ran
    store.close()
    project.write("a.out", "half")
    project.run()
    assert project.ran() == ["a.inp"]
    assert (project.root / "a.out").read_text() == "X = 1\n"


def test_status_json_tells_why_each_job_is_stale(project):
    project.inputs("a.inp", "b.inp", "c.inp", "d.inp")
    project.write("d.inp", "FAIL\n")
    project.run()
    project.write("a.inp", "x = 9\n")
    (project.root / "b.out").unlink()
    project.write("e.inp", "x = 5\n")
    result = project.run("status", "--json")
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert report["counts"] == {"up_to_date": 1, "stale": 3, "failed": 1, "running": 0,
                                 "ignored": 0}
    reasons = {job["task"]: job["reason"] for job in report["jobs"]}
    assert reasons["sweep:a.inp"] == "input changed"
    assert reasons["sweep:b.inp"] == "output missing: b.out"
    assert reasons["sweep:e.inp"] == "never run"
    assert reasons["sweep:d.inp"].startswith("failed last time")
    text = project.run("status").stdout
    assert text.splitlines()[0] == "1 up to date, 3 stale, 1 failed"
    assert "sweep:a.inp" in text and "sweep:c.inp" not in text


def test_an_output_edited_by_hand_reruns_nothing_and_the_next_check_is_fast(project):
    project.inputs("a.inp", "b.inp")
    project.run()
    project.ran()
    project.write("a.out", "edited by hand\n")  # outputs are checked for existence, as in doit
    assert project.run().returncode == 0
    assert project.ran() == []
    store = Store(project.root / ".incrun").open(writable=False)
    recorded = store.signature("sweep:a.inp")
    store.close()
    stat = os.stat(project.root / "a.out")
    assert f"{stat.st_mtime_ns}:{stat.st_size}" in recorded  # refreshed: no doit next time


def test_naming_an_up_to_date_job_runs_nothing(project):
    project.inputs("a.inp", "b.inp")
    project.run()
    project.ran()
    result = project.run("a.inp")
    assert result.returncode == 0
    assert project.ran() == []
    assert "up to date" in result.stdout


# An import module's line in `python -X importtime` output, for doit's and rich's own modules.
HEAVY_IMPORT = re.compile(r"^import time:.*\|\s+(doit|rich)(\.\S+)?\s*$", re.MULTILINE)


def test_a_no_op_run_never_loads_doit_or_rich(project):
    # The fast path vouches for every job by one stat per file; if it let any job through,
    # doit would be imported to check it, and on a terminal rich to draw it.
    project.inputs(*(f"in{i}.inp" for i in range(20)))
    assert project.run("-n", "4").returncode == 0
    project.ran()
    timing = {"PYTHONPROFILEIMPORTTIME": "1"}
    plain = project.run("-n", "4", env=timing)
    assert plain.returncode == 0 and "all 20 jobs up to date" in plain.stdout
    assert "import time:" in plain.stderr  # the timing was on: an empty list means something
    assert HEAVY_IMPORT.findall(plain.stderr) == []
    code, screen = project.on_terminal("-n", "4", env=timing)
    assert code == 0 and "all 20 jobs up to date" in screen and "import time:" in screen
    assert HEAVY_IMPORT.findall(screen.replace("\r\n", "\n")) == []
    assert project.ran() == []
    project.write("in7.inp", "x = 7\n")  # and the check can see the difference: one changed
    changed = project.run("-n", "4", env=timing)
    assert changed.returncode == 0 and project.ran() == ["in7.inp"]
    assert {module for module, _ in HEAVY_IMPORT.findall(changed.stderr)} == {"doit"}

"""End to end: `list`, `info`, `status` and `explain` read one state and say it in incrun's
words; a retry keeps the log of every attempt; a job that runs now says so, with the pid of the
run; every log path printed is relative to the project."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

from conftest import incrun_env, poll, start

# A rule over data/*.inp (the test runner: X.inp -> X.out, FAIL fails it), a hand-written task
# over all its outputs, and a private one.
DODO = '''
from incrun import Rule

sim = Rule(name="sim", inputs=["data/*.inp"], command=["{python}", "runner.py", "{input}"])


def task_sim():
    """Simulate each case."""
    yield from sim.tasks()


def gather(outputs, target):
    with open(target, "w") as stream:
        for path in outputs:
            stream.write(path + ": " + open(path).read())


def task_report():
    """Every output in one file."""
    outputs = sim.outputs()
    return {"file_dep": outputs, "targets": ["report.txt"],
            "actions": [(gather, [outputs, "report.txt"])], "clean": True}


def task__scratch():
    return {"actions": ["echo scratch"], "file_dep": ["runner.py"]}
'''


def described(project, *inputs: str):
    project.write("dodo.py", DODO)
    for name in inputs:
        project.write(f"data/{name}", "x = 1\n")
    result = project.run()
    assert result.returncode == 0, result.stdout + result.stderr
    return project


def info(project, name: str) -> list[str]:
    result = project.run("info", name)
    assert result.returncode == 0, result.stderr  # whatever the task's state
    assert not re.search(r"^ *meta\b|'incrun'|config_changed", result.stdout, re.M)  # internals
    return result.stdout.splitlines()


def fact(lines: list[str], label: str) -> str:
    """The value `info` gives after a label."""
    found = [line[len(label) + 2:].strip() for line in lines if line.startswith(f"  {label} ")]
    assert found, f"no {label!r} in {lines}"
    return found[0]


def listing(project, *args: str) -> dict[str, str]:
    """`list -s`: each task's status letter."""
    result = project.run("list", "-s", *args)
    assert result.returncode == 0, result.stderr
    return {line.split()[1]: line.split()[0] for line in result.stdout.splitlines()}


def test_list_info_and_status_agree_on_a_rule_and_its_jobs(project):
    described(project, "a.inp", "b c.inp")
    assert project.run("status").stdout.startswith("4 up to date, 0 stale, 0 failed")
    assert listing(project) == {"report": "U", "sim": "U"}  # the rule's group task too
    group = info(project, "sim")
    assert group[:2] == ["sim", "  Simulate each case."]
    assert fact(group, "jobs") == "2" and fact(group, "state") == "up to date"

    job = info(project, "data/b c.inp")
    assert job[0] == "sim:data/b c.inp"
    assert fact(job, "command").endswith(" runner.py 'data/b c.inp'")  # quoted for reading
    assert fact(job, "reads") == "data/b c.inp" and "            runner.py" in job
    assert fact(job, "writes") == "data/b c.out" and fact(job, "state") == "up to date"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d, succeeded after \d+\.\d\ds; "
                        r"log \.incrun/logs/sim/data/b_c\.inp-\w+\.log", fact(job, "last run"))

    project.write("data/a.inp", "x = 2\n")
    assert "2 stale" in project.run("status").stdout
    letters = project.run("list", "-s").stdout
    assert "R sim" in letters and "(1 of 2 jobs would run)" in letters
    group = info(project, "sim")
    assert fact(group, "state") == "stale: 1 of 2 jobs would run"
    assert any(line.split() == ["sim:data/a.inp", "stale:", "input", "changed"]
               for line in group)

    project.write("data/a.inp", "FAIL\n")
    assert project.run().returncode == 1
    failed = info(project, "data/a.inp")
    assert fact(failed, "state") == "failed: failed last time (exit code 3)"
    assert fact(failed, "last run").endswith("(exit code 3); log .incrun/logs/sim/data/a.inp.log")
    assert "1 failed last time" in project.run("list", "-s").stdout
    state = json.loads(project.run("status", "--json").stdout)["jobs"]
    assert {job["task"]: job["state"] for job in state}["sim:data/a.inp"] == "failed"
    assert listing(project) == {"report": "R", "sim": "R"}

    unknown = project.run("info", "nosuch")
    assert unknown.returncode == 8 and "nosuch" in unknown.stderr


def test_info_of_a_hand_written_task_shows_its_command_and_its_state(project):
    described(project, "a.inp")
    task = info(project, "_scratch")
    assert task[0] == "_scratch" and fact(task, "command") == "echo scratch"
    assert fact(task, "reads") == "runner.py" and fact(task, "state") == "up to date"
    assert fact(task, "last run").endswith("; log .incrun/logs/_scratch.log")
    report = info(project, "report")
    assert report[1] == "  Every output in one file."
    assert fact(report, "command") == "Python: function gather"


def test_list_prints_names_for_scripts_and_states_on_a_terminal(project):
    described(project, "a.inp", "b.inp")
    assert project.run("list", "-q").stdout.splitlines() == ["report", "sim"]
    theirs = subprocess.run([sys.executable, "-m", "doit", "list", "-q"], cwd=project.root,
                            env=incrun_env(), capture_output=True, text=True, timeout=60)
    assert [line.strip() for line in theirs.stdout.splitlines()] == ["report", "sim"]
    assert project.run("list", "-q", "--all").stdout.splitlines() == \
        ["report", "sim", "sim:data/a.inp", "sim:data/b.inp"]
    assert "_scratch" in project.run("list", "-q", "-p").stdout.split()
    piped = project.run("list").stdout.splitlines()
    assert piped[0].split(None, 1) == ["report", "Every output in one file."]  # no status
    assert project.run("list", "-s", "-q").stdout.splitlines() == ["U report", "U sim"]
    code, drawn = project.on_terminal("list")
    assert code == 0 and re.search(r"^U sim +Simulate each case\.", drawn, re.M)
    code, drawn = project.on_terminal("list", "-q")
    assert code == 0 and drawn.split() == ["report", "sim"]


# -- explain ------------------------------------------------------------------------------


def test_explain_of_a_task_is_that_task_and_with_deps_what_it_needs(project):
    described(project, "a.inp", "b.inp", "c.inp")
    lines = project.run("explain", "report").stdout.splitlines()
    assert [line for line in lines if not line.startswith(" ")] == [
        "report: up to date: its files and command are unchanged since it succeeded, and its "
        "outputs are there"]
    with_deps = project.run("explain", "report", "--deps").stdout.splitlines()
    assert [line.split(":")[0] for line in with_deps if not line.startswith(" ")] == \
        ["sim", "sim", "sim", "report"]  # its jobs first, in the order they run


def test_after_clean_a_job_says_output_missing_beside_its_last_successful_run(project):
    described(project, "a.inp")
    # clean that also drops what was recorded of the files (doit's `clean --forget`)
    project.write("dodo.py", DODO + '\nDOIT_CONFIG = {"cleanforget": True}\n')
    assert project.run("clean").returncode == 0
    assert not (project.root / "data" / "a.out").exists()
    for name, missing in (("data/a.inp", "data/a.out"), ("report", "report.txt")):
        lines = project.run("explain", name).stdout.splitlines()
        assert lines[0].endswith(f": stale: output missing: {missing}")
        assert re.search(r"last run  .*, succeeded after", "\n".join(lines))
    status = json.loads(project.run("status", "--json").stdout)["jobs"]
    assert {job["task"]: job["kind"] for job in status} == {  # never `never-run`: they ran
        "sim:data/a.inp": "output-missing", "report": "output-missing",
        "_scratch": "forgotten"}  # no output of its own: what clean --forget did is said


# -- retries, running jobs, log paths ------------------------------------------------------

# Fails on its first two attempts, each time saying why; the third succeeds.
TWICE_FLAKY = r'''
import os, sys
inp = sys.argv[1]
tries = len([name for name in os.listdir(".") if name.startswith(inp + ".try")]) + 1
open(f"{inp}.try{tries}", "w").close()
print(f"attempt {tries} working")
if tries < 3:
    print(f"licence server busy ({tries})", file=sys.stderr)
    sys.exit(1)
open(inp[:-4] + ".out", "w").write("ok\n")
'''

FLAKY_TASK = '''
import os

def flaky():
    tried = os.path.exists("flaky.tried")
    open("flaky.tried", "w").close()
    print("flaky says", "second" if tried else "first")
    return tried

def task_flaky():
    return {"actions": [flaky], "file_dep": ["runner.py"]}
'''


def test_retries_keep_every_attempts_log(project):
    project.write("runner.py", TWICE_FLAKY)
    project.write("dodo.py", FLAKY_TASK)
    project.inputs("a.inp")
    result = project.run("--retries", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    log = (project.root / ".incrun/logs/sweep/a.inp.log").read_text().splitlines()
    assert log == ["attempt 1 working", "licence server busy (1)", "--- attempt 2 of 3 ---",
                   "attempt 2 working", "licence server busy (2)", "--- attempt 3 of 3 ---",
                   "attempt 3 working"]
    task_log = (project.root / ".incrun/logs/flaky.log").read_text()
    assert task_log.index("flaky says first") < task_log.index("--- attempt 2 of 3 ---") < \
        task_log.index("flaky says second")


HANGS = r'''
import os, sys, time
inp = sys.argv[1]
if "slow" in inp:
    os.makedirs("started", exist_ok=True)
    open(os.path.join("started", os.path.basename(inp)), "w").close()
    deadline = time.time() + 60
    while not os.path.exists("release") and time.time() < deadline:
        time.sleep(0.02)
open(inp[:-4] + ".out", "w").write("done\n")
'''


def test_a_job_running_now_says_so_with_the_pid_of_its_run(project):
    project.write("runner.py", HANGS)
    project.inputs("fast.inp", "slow1.inp", "slow2.inp")
    first = start(project, "slow1.inp")  # killed: its job was interrupted
    poll(lambda: (project.root / "started" / "slow1.inp").exists(), what="slow1 to start")
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate(timeout=30)
    poll(lambda: "interrupted" in project.run("explain", "slow1.inp").stdout,
         what="slow1 to be interrupted")
    run = start(project, "fast.inp", "slow2.inp")
    try:
        poll(lambda: (project.root / "started" / "slow2.inp").exists(), what="slow2 to start")
        states = {job["task"]: (job["state"], job["reason"]) for job in
                  json.loads(project.run("status", "--json").stdout)["jobs"]}
        assert states["sweep:slow2.inp"] == ("running", f"running (pid {run.pid})")
        assert states["sweep:slow1.inp"] == ("stale", "interrupted last time")  # not this run's
        explained = project.run("explain", "slow2.inp").stdout.splitlines()
        assert explained[0] == f"sweep:slow2.inp: running (pid {run.pid})"
        assert explained[-1].endswith(", running now")
        assert "1 running" in project.run("status").stdout
    finally:
        (project.root / "release").write_text("")
        out, err = run.communicate(timeout=60)
    assert run.returncode == 0, out + err
    assert project.run("explain", "slow2.inp").stdout.startswith("sweep:slow2.inp: up to date")


FAILING_TASK = '''
def task_promise():
    return {"actions": ["echo cannot keep it; exit 4"], "file_dep": ["a.inp"],
            "targets": ["promise.txt"]}
'''


def test_every_log_path_printed_is_relative_to_the_project(project):
    project.write("dodo.py", FAILING_TASK)
    project.inputs("a.inp", "b.inp")
    project.write("b.inp", "FAIL\n")
    junit = project.root / "junit.xml"
    result = project.run("--junit", str(junit))
    assert result.returncode == 1
    assert "log: .incrun/logs/promise.log" in result.stdout
    assert "log: .incrun/logs/sweep/b.inp.log" in result.stdout
    events = [json.loads(line) for line in project.run("--json").stdout.splitlines()]
    logs = {event["name"]: event["log"] for event in events if event.get("log")}
    assert logs == {"promise": ".incrun/logs/promise.log",
                    "sweep:b.inp": ".incrun/logs/sweep/b.inp.log"}
    explained = project.run("explain", "promise").stdout
    assert "; log .incrun/logs/promise.log" in explained
    root = str(project.root)
    for printed in (result.stdout, explained, junit.read_text(),
                    project.run("info", "promise").stdout, project.run("report").stdout):
        assert root not in printed.replace(f"{root}/.incrun/report.html", "")

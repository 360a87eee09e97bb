"""End to end: a retry keeps the log of every attempt; a job that runs now says so, with the pid
of the run; every log path printed is relative to the project."""

from __future__ import annotations

import json
import os
import signal

from conftest import poll, start

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

"""End to end: before running, `--dry-run` and `explain` say what would run and why, and change
nothing."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from incrun.status import (
    COMMAND_CHANGED,
    DEP_CHANGED,
    FAILED_LAST_TIME,
    FORCED,
    INPUT_CHANGED,
    NEVER_RUN,
    OUTPUT_MISSING,
)
from incrun.store import Store


def snapshot(root) -> dict[str, tuple[int, bytes]]:
    """Every file under the project, with its mtime and content: what "changes nothing" means."""
    return {str(path.relative_to(root)): (path.stat().st_mtime_ns, path.read_bytes())
            for path in sorted(root.rglob("*")) if path.is_file()}


def stale_project(project):
    """a: input changed; b: output missing; c: up to date; d: failed last time; e: never run."""
    project.inputs("a.inp", "b.inp", "c.inp", "d.inp")
    project.write("d.inp", "FAIL\n")
    project.run()
    project.ran()
    project.write("a.inp", "x = 9\n")
    (project.root / "b.out").unlink()
    project.write("e.inp", "x = 5\n")


def dry_run(project, *args: str) -> dict:
    before = snapshot(project.root)
    result = project.run("--dry-run", "--json", *args)
    assert result.returncode == 0, result.stderr
    assert snapshot(project.root) == before, "a dry run changed files"
    assert project.ran() == []
    return {job["task"]: (job["kind"], job["reason"]) for job in
            json.loads(result.stdout)["would_run"]}


def test_dry_run_lists_each_stale_job_with_its_reason_and_changes_nothing(project):
    stale_project(project)
    before = snapshot(project.root)
    result = project.run("--dry-run")
    assert result.returncode == 0, result.stderr
    assert snapshot(project.root) == before and project.ran() == []
    lines = result.stdout.splitlines()
    assert lines[0].startswith("would run 4 of 5 jobs (1 up to date)")
    listed = dict(line.split(None, 1) for line in lines[1:])
    assert listed == {"sweep:a.inp": "input changed", "sweep:b.inp": "output missing: b.out",
                      "sweep:d.inp": "failed last time (exit code 3)",
                      "sweep:e.inp": "never run"}
    # ... and the real run then runs exactly those
    project.run()
    assert project.ran() == ["a.inp", "b.inp", "e.inp"]  # d fails before it records a run


def test_dry_run_json_gives_a_kind_for_every_reason(project):
    stale_project(project)
    assert dry_run(project) == {
        "sweep:a.inp": (INPUT_CHANGED, "input changed"),
        "sweep:b.inp": (OUTPUT_MISSING, "output missing: b.out"),
        "sweep:d.inp": (FAILED_LAST_TIME, "failed last time (exit code 3)"),
        "sweep:e.inp": (NEVER_RUN, "never run")}
    forced = dry_run(project, "-B")
    assert forced["sweep:c.inp"] == (FORCED, "forced (-B)")
    assert forced["sweep:a.inp"][0] == INPUT_CHANGED  # its own reason comes first
    assert dry_run(project, "c.inp") == {}  # a selection: only its job, up to date


def test_dry_run_names_a_changed_runner_or_command(project):
    project.inputs("a.inp", "b.inp")
    project.run()
    project.ran()
    project.write("runner.py", (project.root / "runner.py").read_text() + "\n# tuned\n")
    assert {kind for kind, _ in dry_run(project).values()} == {DEP_CHANGED}
    assert "runner.py" in dry_run(project)["sweep:a.inp"][1]
    project.run()
    project.ran()
    project.write("incrun.toml", 'command = "{python} runner.py {input} --fast"\n')
    assert dry_run(project) == {"sweep:a.inp": (COMMAND_CHANGED, "command changed"),
                                "sweep:b.inp": (COMMAND_CHANGED, "command changed")}


def test_explain_says_why_one_input_or_output_is_stale_or_up_to_date(project):
    stale_project(project)
    before = snapshot(project.root)
    changed = project.run("explain", "a.out")
    assert changed.returncode == 0, changed.stderr
    lines = changed.stdout.splitlines()
    assert lines[0] == "sweep:a.inp: stale: input changed"
    assert any(line.split() == ["writes", "a.out"] for line in lines)
    assert any("last run" in line and "succeeded" in line for line in lines)
    fresh = project.run("explain", "c.inp").stdout
    assert fresh.startswith("sweep:c.inp: up to date")
    failed = project.run("explain", "d.inp").stdout
    assert "failed last time (exit code 3)" in failed and "log .incrun/logs/" in failed
    assert "last run  never" in project.run("explain", "e.inp").stdout
    assert snapshot(project.root) == before and project.ran() == []


def test_explain_takes_one_known_path(project):
    project.inputs("a.inp")
    project.run()
    unknown = project.run("explain", "nope.inp")
    assert unknown.returncode == 8 and "nope.inp" in unknown.stderr
    several = project.run("explain", "a.inp", "a.out")
    assert several.returncode == 2 and "exactly one" in several.stderr
    assert project.run("status", "--dry-run").returncode == 2


HISTORY_RUNNER = '''
import os, signal, sys
inp = sys.argv[1]
text = open(inp).read()
if "KILL" in text:
    os.kill(os.getpid(), signal.SIGKILL)
if "FAIL" in text:
    sys.exit(3)
if "FLAKY" in text and not os.path.exists(inp + ".tried"):
    open(inp + ".tried", "w").close()
    sys.exit(1)
open(inp[:-4] + ".out", "w").write(text.upper())
'''


def test_each_run_keeps_a_record_of_every_job_it_ran(project):
    project.write("runner.py", HISTORY_RUNNER)
    project.inputs("a.inp", "b.inp", "c.inp")
    project.write("fail.inp", "FAIL\n")
    project.write("kill.inp", "KILL\n")
    project.write("flaky.inp", "FLAKY\n")
    first = project.run("-n", "2", "--retries", "1")
    assert first.returncode == 1
    project.write("a.inp", "x = 2\n")
    project.run("-n", "2")
    store = Store(project.root / ".incrun").open(writable=False)
    try:
        runs = store.runs()
        assert [run["ran"] for run in runs] == [3, 6]  # newest first: a, fail, kill; all six
        assert runs[1]["failed"] == 2 and runs[1]["workers"] == 2
        jobs = {job["task"]: job for job in store.history(runs[1]["id"])}
        latest = {job["task"] for job in store.history(runs[0]["id"])}
    finally:
        store.close()
    assert latest == {"sweep:a.inp", "sweep:fail.inp", "sweep:kill.inp"}
    assert set(jobs) == {f"sweep:{name}.inp" for name in ("a", "b", "c", "fail", "kill", "flaky")}
    assert (jobs["sweep:fail.inp"]["exit_code"], jobs["sweep:fail.inp"]["signal"]) == (3, None)
    assert (jobs["sweep:kill.inp"]["exit_code"], jobs["sweep:kill.inp"]["signal"]) == (None, 9)
    assert jobs["sweep:flaky.inp"]["attempts"] == 2 and jobs["sweep:flaky.inp"]["status"] == "ok"
    assert jobs["sweep:a.inp"]["exit_code"] == 0
    assert {job["worker"] for job in jobs.values()} == {"w0", "w1"}
    for job in jobs.values():
        assert runs[1]["started"] <= job["started"] <= job["ended"] <= runs[1]["ended"]


SLEEPER = '''
import sys, time
inp = sys.argv[1]
time.sleep(float(open(inp).read()))
open(inp[:-4] + ".out", "w").write("done")
'''


def start_order(project) -> list[str]:
    return [record["input"] for record in sorted(project.records(), key=lambda r: r["start"])]


def test_with_history_the_longest_jobs_start_first(project):
    project.write("runner.py", SLEEPER.replace('open(inp[:-4]', RECORDING + 'open(inp[:-4]'))
    durations = {"a.inp": "0.05", "b.inp": "0.05", "c.inp": "0.6", "d.inp": "0.05",
                 "e.inp": "0.3"}
    for name, seconds in durations.items():
        project.write(name, seconds)
    project.run("-n", "1")
    assert start_order(project) == list(durations)  # no history: input order
    project.ran()
    project.run("-n", "1", "-B")
    assert start_order(project)[:2] == ["c.inp", "e.inp"]
    project.ran()
    project.write("f.inp", "0.05")  # never ran: counts as the mean of all, 0.21 s
    project.write("a.inp", "0.06")
    project.run("-n", "1")
    assert start_order(project) == ["f.inp", "a.inp"]
    project.ran()
    project.run("-n", "1", "-B", "--in-order")
    assert start_order(project) == sorted(durations) + ["f.inp"]


RECORDING = '''import json, os, uuid
os.makedirs("records", exist_ok=True)
json.dump({"input": inp, "start": time.time()},
          open(os.path.join("records", uuid.uuid4().hex + ".json"), "w"))
'''


REPORT_RUNNER = '''
import sys, time
inp = sys.argv[1]
text = open(inp).read()
time.sleep(float(text.split()[0]))
if "FAIL" in text:
    print("diverged at step 12", file=sys.stderr)
    sys.exit(3)
open(inp[:-4] + ".out", "w").write(text)
'''
OK_GREEN, FAILED_RED = (0x2E, 0x9E, 0x44), (0xD6, 0x27, 0x28)


def chromium(*args: str) -> subprocess.CompletedProcess:
    program = shutil.which("chromium") or shutil.which("chromium-browser")
    if program is None:
        pytest.skip("no chromium here (.ci/run installs Debian's)")
    return subprocess.run([program, "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", *args], capture_output=True, text=True,
                          timeout=120, check=True)


def bands(image, color, tolerance: int = 8) -> list[int]:
    """The rows of the image where the color is, grouped into bands: their count and xs."""
    pixels, (width, height) = image.load(), image.size
    rows = [y for y in range(height) if any(
        all(abs(a - b) <= tolerance for a, b in zip(pixels[x, y][:3], color))
        for x in range(0, width, 2))]
    return [row for index, row in enumerate(rows) if index == 0 or row != rows[index - 1] + 1]


def test_report_draws_the_last_run_in_a_browser(project):
    from PIL import Image

    project.write("runner.py", REPORT_RUNNER)
    for i in range(12):
        project.write(f"p{i:02d}.inp", f"0.{i % 4 + 1}\n")
    project.write("p12.inp", "0.3 FAIL\n")
    assert project.run("report").returncode == 3  # no history yet: a clear error
    assert project.run("-n", "3").returncode == 1
    made = project.run("report", "--out", "report.html")
    assert made.returncode == 0, made.stderr
    page = project.root / "report.html"
    dom = chromium("--dump-dom", page.as_uri()).stdout
    assert dom.count('<rect class="job ok"') == 12 and dom.count('<rect class="job failed"') == 1
    assert "diverged at step 12" in dom and "Slowest jobs" in dom
    shot = project.root / "shot.png"
    chromium("--window-size=1100,900", f"--screenshot={shot}", page.as_uri())
    image = Image.open(shot).convert("RGB")
    assert len(bands(image, OK_GREEN)) >= 3 + 1  # a lane per worker, and the legend's swatch
    assert len(bands(image, FAILED_RED)) == 2  # the failed job's bar, the legend's swatch


def test_the_second_run_knows_how_long_its_jobs_took_last_time(project):
    project.write("runner.py", SLEEPER)
    for name, seconds in {"a.inp": "0.3", "b.inp": "0.1", "c.inp": "0.2"}.items():
        project.write(name, seconds)
    first = [json.loads(line) for line in project.run("--json").stdout.splitlines()]
    assert first[0]["event"] == "run_started" and first[0]["expected_jobs"] == 0
    took = sum(event["duration"] for event in first if event["event"] == "job_finished")
    project.write("d.inp", "0.1")
    second = json.loads(project.run("-B", "--json").stdout.splitlines()[0])
    assert second["pending"] == 4 and second["expected_jobs"] == 3
    assert second["expected_seconds"] == pytest.approx(took, abs=0.01)


def test_explain_json_gives_the_same_facts_for_tools(project):
    stale_project(project)
    jobs = json.loads(project.run("explain", "d.out", "--json").stdout)["jobs"]
    assert len(jobs) == 1
    job = jobs[0]
    assert (job["task"], job["state"], job["kind"]) == ("sweep:d.inp", "failed",
                                                        "failed-last-time")
    assert job["reads"] == ["d.inp", "runner.py"] and job["writes"] == ["d.out"]
    assert job["last_run"]["exit_code"] == 3 and job["last_run"]["status"] == "failed"
    assert job["last_run"]["log"].startswith(".incrun/logs/")
    never = json.loads(project.run("explain", "e.inp", "--json").stdout)["jobs"][0]
    assert never["kind"] == "never-run" and never["last_run"] is None

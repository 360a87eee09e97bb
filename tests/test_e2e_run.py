"""End to end: parallel runs, failures, logs and what the user sees, with the real command."""

from __future__ import annotations

import re


def max_overlap(records: list[dict]) -> int:
    """The most jobs running at one moment, from the jobs' own start and end records."""
    edges = sorted([(r["start"], 1) for r in records] + [(r["end"], -1) for r in records],
                   key=lambda edge: (edge[0], edge[1]))
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def test_n_jobs_run_at_once_and_never_more(project):
    names = [f"in{i}.inp" for i in range(9)]
    project.inputs(*names)
    result = project.run("-n", "3", env={"BARRIER": "3"})
    assert result.returncode == 0, result.stdout
    records = project.records()
    assert sorted(r["input"] for r in records) == names
    assert max_overlap(records) == 3
    assert len({r["pid"] for r in records}) == 9  # a process per job


def test_a_failure_keeps_going_removes_its_output_and_shows_its_log(project):
    project.inputs("a.inp", "b.inp", "c.inp")
    project.write("b.inp", "FAIL\n")
    result = project.run("-n", "2")
    assert result.returncode == 1
    assert project.ran() == ["a.inp", "c.inp"]
    assert not (project.root / "b.out").exists()  # the partial output is gone
    log = project.root / ".incrun" / "logs" / "sweep" / "b.inp.log"
    assert "bad input: cannot simulate" in log.read_text()
    assert "FAILED sweep:b.inp (exit code 3)" in result.stdout
    assert ".incrun/logs/sweep/b.inp.log" in result.stdout
    assert "    bad input: cannot simulate" in result.stdout  # the log's tail
    assert "working on a.inp" not in result.stdout  # output of good jobs stays in the logs


def test_a_log_is_kept_for_output_and_failures_and_silent_jobs_leave_none(project):
    project.write("runner.py", "import sys\n"
                               "text = open(sys.argv[1]).read()\n"
                               "if 'SAY' in text: print('said', sys.argv[1])\n"
                               "if 'FAIL' in text: sys.exit(2)\n"
                               "open(sys.argv[1][:-4] + '.out', 'w').write(text)\n")
    for name, text in (("quiet.inp", "x"), ("loud.inp", "SAY"), ("bad.inp", "FAIL")):
        project.write(name, text)
    assert project.run("-n", "2").returncode == 1
    logs = project.root / ".incrun" / "logs" / "sweep"
    assert (logs / "loud.inp.log").read_text() == "said loud.inp\n"
    assert (logs / "bad.inp.log").read_text() == ""  # a failure always has a log
    assert not (logs / "quiet.inp.log").exists()
    project.write("loud.inp", "quiet now")
    project.write("bad.inp", "fixed")
    assert project.run("-n", "2").returncode == 0
    assert sorted(path.name for path in logs.iterdir()) == []  # no log from an earlier run
    assert not list((project.root / ".incrun" / "logs").glob(".scratch-*"))


def test_a_rerun_retries_only_the_failed_job(project):
    project.inputs("a.inp", "b.inp")
    project.write("b.inp", "FAIL\n")
    project.run()
    project.ran()
    assert project.run().returncode == 1
    assert project.ran() == []  # b failed again, a stayed done
    project.write("b.inp", "x = 2\n")
    assert project.run().returncode == 0
    assert project.ran() == ["b.inp"]


def test_exit_zero_without_the_output_is_a_failure(project):
    project.inputs("a.inp")
    project.write("a.inp", "NOOUT\n")
    result = project.run()
    assert result.returncode == 1
    assert "no output a.out" in result.stdout


def test_fail_fast_stops_launching_after_the_first_failure(project):
    project.inputs("a.inp", "b.inp", "c.inp", "d.inp")
    project.write("a.inp", "FAIL\n")
    result = project.run("-x", "-n", "1")
    assert result.returncode == 1
    assert project.ran() == []
    assert "3 not run" in result.stdout


def test_plain_output_has_no_escape_codes_and_no_line_per_skipped_job(project):
    names = [f"d/in{i:04d}.inp" for i in range(150)]  # ten times the lines allowed below
    project.inputs(*names)
    project.write("d/in0007.inp", "FAIL\n")
    first = project.run("-n", "4")
    assert "\x1b" not in first.stdout + first.stderr
    second = project.run()
    assert "\x1b" not in second.stdout
    assert len(second.stdout.splitlines()) < 12
    # The failed job ran again, and failed again: it ran, and is counted as such.
    assert "1 ran (1 failed), 149 up to date" in second.stdout, second.stdout


def test_quiet_prints_nothing_when_all_is_well(project):
    project.inputs("a.inp")
    result = project.run("-q")
    assert result.returncode == 0
    assert result.stdout == ""


def run_on_terminal(project, **env) -> str:
    """All a failing run drew on a terminal."""
    code, screen = project.on_terminal(env=env)
    assert code == 1, screen
    return screen


def test_live_display_on_a_terminal(project):
    project.inputs("a.inp", "b.inp", "c.inp")
    project.write("c.inp", "FAIL\n")
    screen = run_on_terminal(project)
    assert "\x1b[" in screen  # drawn with terminal control codes
    assert re.search(r"\b3/3\b", screen)
    assert "3 ran (1 failed)" in screen
    assert "FAILED sweep:c.inp" in screen
    assert re.search(r"\x1b\[[0-9;]*3[1-7]m", screen)  # in colour


def test_no_color_keeps_the_live_display_without_colours(project):
    project.inputs("a.inp", "c.inp")
    project.write("c.inp", "FAIL\n")
    screen = run_on_terminal(project, NO_COLOR="1")
    assert "FAILED sweep:c.inp" in screen and "\x1b[" in screen
    assert not re.search(r"\x1b\[[0-9;]*3[1-7]m", screen)


def test_selection_by_input_output_task_or_folder(project):
    project.inputs("a.inp", "b.inp", "deep/c.inp", "deep/d.inp")
    project.run("a.inp")
    assert project.ran() == ["a.inp"]
    project.run("b.out")
    assert project.ran() == ["b.inp"]
    project.run("deep/")
    assert project.ran() == ["deep/c.inp", "deep/d.inp"]
    project.run("sweep:a.inp", "-B")
    assert project.ran() == ["a.inp"]


def test_a_count_of_one_reads_in_the_singular(project):
    project.inputs("a.inp")
    result = project.run("-n", "1")
    assert result.stdout.splitlines()[0] == "incrun: 1 job, 1 worker", result.stdout
    report = project.run("report", "--out", "report.html")
    assert report.returncode == 0 and "(1 job)" in report.stdout, report.stdout
    assert "1 job ran on\n1 worker" in (project.root / "report.html").read_text()

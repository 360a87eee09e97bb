"""The commands a doit user types, end to end: -a, -s, -f, ignore, reset-dep, dumpdb,
tabcompletion."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from conftest import incrun_command

CHAIN = '''
def task_prepare():
    return {"actions": ["echo prepare >> ran.log", "cp in.txt prepared.txt"],
            "file_dep": ["in.txt"], "targets": ["prepared.txt"]}


def task_use():
    return {"actions": ["echo use >> ran.log", "cp prepared.txt used.txt"],
            "file_dep": ["prepared.txt"], "targets": ["used.txt"]}
'''


def ran(project) -> list[str]:
    log = project.root / "ran.log"
    found = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return found


def test_always_execute_forces_a_run_of_what_is_up_to_date(project):
    project.inputs("a.inp", "b.inp")
    assert project.run().returncode == 0
    project.ran()
    again = project.run("-a", "a.inp")
    assert again.returncode == 0 and project.ran() == ["a.inp"]


def test_single_runs_the_named_task_without_what_it_depends_on(project):
    project.write("dodo.py", CHAIN)
    project.write("in.txt", "1\n")
    assert project.run().returncode == 0 and ran(project) == ["prepare", "use"]
    project.write("in.txt", "2\n")
    assert project.run("-s", "use").returncode == 0
    assert ran(project) == []  # prepared.txt unchanged: use is up to date, prepare not run
    assert project.run("use").returncode == 0 and ran(project) == ["prepare", "use"]


def test_a_dodo_file_of_another_name_elsewhere(project, tmp_path):
    project.write("build/tasks.py", CHAIN)
    project.write("build/in.txt", "1\n")
    result = project.run("-f", "build/tasks.py")
    assert result.returncode == 0, result.stderr
    assert (project.root / "build" / "used.txt").read_text() == "1\n"
    assert (project.root / "build" / ".incrun").is_dir()  # its folder is the project


def test_ignore_skips_a_job_until_it_is_forgotten(project):
    project.inputs("a.inp", "b.inp")
    project.run()
    project.ran()
    assert project.run("ignore", "b.inp").returncode == 0
    project.write("a.inp", "x = 2\n")
    project.write("b.inp", "x = 2\n")
    assert project.run("status").stdout.splitlines() == [
        "0 up to date, 1 stale, 0 failed, 1 ignored",
        "  stale    sweep:a.inp  input changed",
        "  ignored  sweep:b.inp  ignored (incrun forget brings it back)"]
    assert "I sweep:b.inp" in project.run("list", "--all", "-s").stdout
    run = project.run("-a")  # as under doit, even -a runs no ignored task
    assert run.returncode == 0 and project.ran() == ["a.inp"]
    assert "done in" in run.stdout and "1 ran, 1 ignored — all succeeded" in run.stdout
    assert project.run("forget", "b.inp").returncode == 0
    assert project.run().returncode == 0 and project.ran() == ["b.inp"]


def test_reset_dep_records_jobs_as_done_when_their_files_are_there(project):
    project.inputs("a.inp", "b.inp", "c.inp")
    for name in ("a", "b"):
        project.write(f"{name}.out", "made by hand")
    result = project.run("reset-dep")
    assert result.returncode == 0, result.stderr
    assert "done: sweep:a.inp" in result.stdout and "done: sweep:b.inp" in result.stdout
    assert "not done: sweep:c.inp (c.out is missing)" in result.stdout
    assert project.run().returncode == 0 and project.ran() == ["c.inp"]
    assert (project.root / "a.out").read_text() == "made by hand"
    status = json.loads(project.run("status", "--json").stdout)
    assert status["counts"] == {"up_to_date": 3, "stale": 0, "failed": 0, "running": 0,
                                 "ignored": 0}


def test_dumpdb_shows_each_jobs_record_in_words_and_as_json(project):
    project.inputs("a.inp")
    project.run()
    text = project.run("dumpdb").stdout
    assert text.splitlines()[0] == "sweep:a.inp"
    assert "last run  succeeded" in text and "a.inp  6 bytes" in text
    records = json.loads(project.run("dumpdb", "--json").stdout)
    assert [record["task"] for record in records] == ["sweep:a.inp"]
    assert records[0]["job"]["status"] == "ok"


@pytest.mark.skipif(not shutil.which("bash"), reason="no bash here")
def test_the_bash_completion_completes_commands_options_and_task_names(project):
    project.inputs("a.inp")
    script = project.run("tabcompletion").stdout
    path = project.write("completion.sh", script)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0

    def complete(*words: str) -> list[str]:
        line = " ".join(words)
        code = (f"source {path}; COMP_WORDS=(incrun {line}); COMP_CWORD={len(words)}; "
                '_incrun; printf "%s\\n" "${COMPREPLY[@]}"')
        folder = os.path.dirname(incrun_command()[0])
        env = {**os.environ, "PATH": folder + os.pathsep + os.environ["PATH"]}
        return subprocess.run(["bash", "-c", code], cwd=project.root, env=env,
                              capture_output=True, text=True, timeout=60).stdout.split()

    assert complete("sta") == ["status"]
    assert "--json" in complete("status", "--j")
    assert "sweep:a.inp" in complete("sweep")
    zsh = project.run("tabcompletion", "--shell", "zsh").stdout
    assert zsh.startswith("#compdef incrun") and "bashcompinit" in zsh


def test_clean_dry_run_says_what_it_would_delete_and_deletes_nothing(project):
    project.inputs("a.inp")
    project.run()
    said = project.run("clean", "--dry-run")
    assert said.returncode == 0 and "a.out" in said.stdout
    assert (project.root / "a.out").exists()
    assert project.run("clean").returncode == 0 and not (project.root / "a.out").exists()

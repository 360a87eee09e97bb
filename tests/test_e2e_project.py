"""End to end: config files, dodo.py next to plain doit, the other commands, and user mistakes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import incrun_command, incrun_env

REPO = Path(__file__).resolve().parents[1]

DODO = '''
from incrun import Rule

sweep = Rule(inputs=["cases/*.inp"], command=["{python}", "runner.py", "{input}"])


def task_sweep():
    """One run per case."""
    yield from sweep.tasks()


def gather(outputs, target):
    with open(target, "w") as stream:
        for path in outputs:
            stream.write(path + ": " + open(path).read())


def task_summary():
    """Every output in one file."""
    outputs = sweep.outputs()
    return {"file_dep": outputs, "targets": ["summary.txt"],
            "actions": [(gather, [outputs, "summary.txt"])], "clean": True}
'''


def plain_doit(project, *args):
    return subprocess.run([sys.executable, "-m", "doit", *args], cwd=project.root,
                          env=incrun_env(), capture_output=True, text=True, timeout=120)


def test_config_in_pyproject_sets_inputs_command_outputs(project):
    project.write("pyproject.toml", '[tool.incrun]\ninputs = ["params/**/*.yml"]\n'
                  'command = "{python} conv.py \'{input}\' {output}"\noutputs = "out/{/.}.txt"\n')
    project.write("conv.py", "import sys\nopen(sys.argv[2], 'w').write(open(sys.argv[1]).read())\n")
    project.inputs("params/a.yml", "params/deep/b c.yml", "params/ignored.inp")
    result = project.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in (project.root / "out").iterdir()) == ["a.txt", "b c.txt"]
    again = project.run()
    assert again.returncode == 0 and "all 2 jobs up to date" in again.stdout, again.stdout


def test_gitignore_and_exclude_keep_files_out(project):
    project.inputs("a.inp", "scratch/b.inp", "old/c.inp")
    project.write(".gitignore", "scratch/\n")
    project.write("incrun.toml", 'exclude = ["old/"]\n')
    project.run()
    assert project.ran() == ["a.inp"]


def test_dodo_rule_and_hand_written_task_run_together(project):
    project.write("dodo.py", DODO)
    project.inputs("cases/a.inp", "cases/b.inp")
    result = project.run("-n", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = (project.root / "summary.txt").read_text()
    assert "cases/a.out: X = 1" in summary and "cases/b.out" in summary
    project.ran()
    project.write("cases/b.inp", "x = 2\n")
    project.run()
    assert project.ran() == ["cases/b.inp"]
    assert "cases/b.out: X = 2" in (project.root / "summary.txt").read_text()


def test_the_same_dodo_runs_lists_and_cleans_under_plain_doit(project):
    project.write("dodo.py", DODO)
    project.inputs("cases/a.inp", "cases/b.inp")
    ours = project.run("list", "--all").stdout.split()
    theirs = plain_doit(project, "list", "--all").stdout.split()
    assert [w for w in theirs if w.startswith(("sweep", "summary"))] == \
           [w for w in ours if w.startswith(("sweep", "summary"))]
    done = plain_doit(project, "-n", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert project.ran() == ["cases/a.inp", "cases/b.inp"]
    assert (project.root / "summary.txt").exists()
    assert plain_doit(project, "clean").returncode == 0
    assert not (project.root / "summary.txt").exists()
    assert not (project.root / "cases" / "a.out").exists()


def test_clean_removes_declared_outputs_only_and_forget_reruns(project):
    project.inputs("a.inp", "b.inp")
    project.write("notes.out", "mine")
    project.run()
    project.ran()
    assert project.run("clean", "a.inp").returncode == 0
    assert not (project.root / "a.out").exists() and (project.root / "b.out").exists()
    assert project.run("clean").returncode == 0
    assert not (project.root / "b.out").exists()
    assert (project.root / "notes.out").read_text() == "mine"
    project.run()
    project.ran()
    assert project.run("forget", "b.inp").returncode == 0
    project.run()
    assert project.ran() == ["b.inp"]  # forgotten: rerun, not adopted


def test_list_and_info_describe_the_jobs(project):
    project.inputs("a.inp")
    listing = project.run("list", "--all")
    assert listing.returncode == 0
    assert "sweep:a.inp" in listing.stdout
    info = project.run("info", "a.inp")
    assert info.returncode == 0  # whatever the task's state: it is said, not an error
    assert "runner.py" in info.stdout and "a.out" in info.stdout
    assert "state     stale: never run" in info.stdout
    project.run()
    assert "state     up to date" in project.run("info", "sweep:a.inp").stdout


@pytest.mark.parametrize("setup, args, code, words", [
    ({}, (), 3, "no runner.py"),
    ({"runner.py": "pass\n"}, (), 4, "no input file matches"),
    ({"runner.py": "", "a.inp": "", "incrun.toml": "inputs = [\n"}, (), 5, "incrun.toml"),
    ({"runner.py": "", "a.inp": "", "incrun.toml": 'command = "python runner.py {inp}"'},
     (), 6, "unknown placeholder {inp}"),
    ({"runner.py": "", "a.inp": "", "dodo.py": "import no_such_module\n"}, (), 7,
     "dodo.py failed to import"),
    ({"runner.py": "", "a.inp": ""}, ("nosuch.inp",), 8, "'nosuch.inp'"),
    ({"runner.py": "", "a.inp": "", "incrun.toml": "jobz = 2\n"}, (), 5, "unknown setting"),
    ({"runner.py": "", "a.inp": "", "incrun.toml": 'output = ["{stem}.res"]\n'}, (), 5,
     "unknown setting 'output' (hint: did you mean 'outputs'?"),
    ({"runner.py": "", "a.inp": "", "pyproject.toml": '[tool.incrun.rules.sim]\noutput = "x"\n'},
     (), 5, "rule 'sim': unknown setting 'output' (hint: did you mean 'outputs'?"),
    ({"runner.py": "", "a.inp": "", "incrun.toml": '[tool.incrun]\ninputs = ["*.inp"]\n'}, (),
     5, "incrun.toml: the settings go at the top level there, not under [tool.incrun]"),
    ({"runner.py": "", "a.inp": "", "dodo.py": "def broken(:\n"}, (), 7,
     "dodo.py failed to import: SyntaxError: invalid syntax (line 1) (hint:"),
])
def test_user_mistakes_give_one_line_a_hint_and_an_exit_code(tmp_path, setup, args, code, words):
    from conftest import Project

    project = Project(tmp_path)
    for name, text in setup.items():
        project.write(name, text)
    result = project.run(*args)
    assert result.returncode == code
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "hint:" in lines[0]


def test_the_repository_demo_loads():
    result = subprocess.run([sys.executable, "-m", "incrun", "list", "--all"], cwd=REPO,
                            env=incrun_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    listed = re.findall(r"simulate:(data/\S+\.inp)", result.stdout)
    inputs = sorted(str(path.relative_to(REPO)) for path in (REPO / "data").glob("*.inp"))
    assert len(inputs) == 32 and sorted(listed) == inputs  # each of the demo's inputs, once
    post = re.findall(r"post:(data/\S+)\.out", result.stdout)
    assert sorted(post) == [path[:-len(".inp")] for path in inputs]  # chained: made, not found
    assert re.search(r"\bsummary +python data/summarize.py data/summary.csv <32 inputs>",
                     result.stdout)


def test_python_dash_m_and_help_with_examples():
    result = subprocess.run([sys.executable, "-m", "incrun", "--help"], env=incrun_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "examples:" in result.stdout and "exit codes:" in result.stdout


def test_run_from_a_subfolder_finds_the_project_above_and_says_so(project):
    project.inputs("data/a/x.inp", "data/b.inp")
    inside = project.root / "data" / "a"
    status = subprocess.run([*incrun_command(), "status"], cwd=inside, env=incrun_env(),
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert "0 up to date, 2 stale" in status.stdout
    assert f"incrun: project {project.root}" in status.stderr
    one = subprocess.run([*incrun_command(), "x.inp"], cwd=inside, env=incrun_env(),
                         capture_output=True, text=True, timeout=60)  # named from here
    assert one.returncode == 0, one.stdout + one.stderr
    assert project.ran() == ["data/a/x.inp"]
    assert not (inside / ".incrun").exists() and (project.root / ".incrun").is_dir()


def test_a_folder_in_no_project_is_still_nothing_to_run(tmp_path):
    (tmp_path / ".git").mkdir()  # the top of a repository: the search stops there
    inside = tmp_path / "docs" / "notes"
    inside.mkdir(parents=True)
    result = subprocess.run([*incrun_command(), "status"], cwd=inside, env=incrun_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3 and f"nothing to run in {inside}" in result.stderr


def test_the_state_folder_keeps_itself_out_of_git(project):
    project.inputs("a.inp")
    assert project.run().returncode == 0
    assert (project.root / ".incrun" / ".gitignore").read_text().splitlines()[-1] == "*"


def test_output_piped_into_head_ends_quietly(project):
    project.inputs(*(f"in{i:04d}.inp" for i in range(3000)))
    for args in (["list", "--all"], ["status"], ["--dry-run"]):
        writer = subprocess.Popen([*incrun_command(), *args], cwd=project.root,
                                  env=incrun_env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        head = subprocess.run(["head", "-1"], stdin=writer.stdout, capture_output=True,
                              text=True, timeout=60)
        writer.stdout.close()  # head's end of the pipe only: incrun then writes into nothing
        errors = writer.stderr.read()
        assert writer.wait(60) in (0, 141), (args, errors)
        assert len(head.stdout.splitlines()) == 1, args
        assert "Traceback" not in errors and "BrokenPipe" not in errors, args


# A task that declares three targets and makes one; its dependent reads the one it makes. Each
# run of a task is noted in ran.txt, a line each.
UNMADE_TARGETS_DODO = '''
def note(name):
    with open("ran.txt", "a") as stream:
        stream.write(name + "\\n")


def make(target):
    note("data")
    with open(target, "w") as stream:
        stream.write(open("src.txt").read().upper())


def report():
    note("report")
    with open("report.txt", "w") as stream:
        stream.write(open("data.txt").read())


def task_data():
    return {"actions": [(make, ["data.txt"])], "file_dep": ["src.txt"],
            "targets": ["data.txt", "extra.txt", "more.txt"]}


def task_report():
    return {"actions": [report], "file_dep": ["data.txt"], "targets": ["report.txt"]}
'''


def runs_noted(root: Path) -> list[str]:
    """The tasks noted since the last call, in the order they ran; clears the notes."""
    notes = root / "ran.txt"
    ran = notes.read_text().split() if notes.exists() else []
    notes.unlink(missing_ok=True)
    return ran


def test_a_task_that_leaves_a_declared_target_unmade_succeeds_and_reruns_as_under_doit(
        project, tmp_path):
    project.write("dodo.py", UNMADE_TARGETS_DODO)
    project.write("src.txt", "hello\n")
    twin = tmp_path / "under-doit"
    shutil.copytree(project.root, twin)
    theirs, ours = [], []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "doit"], cwd=twin, env=incrun_env(),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        theirs.append(runs_noted(twin))
        result = project.run()
        assert result.returncode == 0, result.stdout + result.stderr
        ours.append(runs_noted(project.root))
        warnings = [line for line in result.stdout.splitlines() if "warning" in line]
        assert warnings == ["warning: data: declared targets extra.txt, more.txt were not "
                            "created; it will run again next time"]
    assert theirs == ours == [["data", "report"], ["data"]]
    assert (project.root / "report.txt").read_text() == "HELLO\n"
    status = project.run("status").stdout.splitlines()
    assert "  stale   data    output missing: extra.txt, more.txt" in status
    events = [json.loads(line) for line in project.run("--json").stdout.splitlines()]
    assert [(event["event"], event["level"]) for event in events if "level" in event] == \
        [("notice", "warning")]


def test_a_rule_job_that_exits_zero_without_its_output_still_fails_in_a_dodo(project):
    project.write("dodo.py", DODO)
    project.inputs("cases/a.inp")
    project.write("cases/b.inp", "NOOUT\n")
    result = project.run()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED sweep:cases/b.inp (exit code 0 but no output cases/b.out)" in result.stdout
    assert "not run: summary (needs sweep:cases/b.inp, which failed)" in result.stdout
    assert project.run().returncode == 1  # and again, until it makes its output

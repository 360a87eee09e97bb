"""End to end: the files a command names. A script that is not there is one line before anything
runs; words that only look like files are left alone; a missing dependency is said as such."""

from __future__ import annotations

import json

import pytest

from incrun.status import DEP_MISSING

# X.inp -> X.out; its options are only there to be passed.
SIM = '''
import sys
src = sys.argv[-1]
open(src[:-4] + ".out", "w").write(open(src).read().upper())
'''


@pytest.fixture
def sim(project):
    """A project whose command runs sim.py, with a.inp and b.inp."""
    project.write("sim.py", SIM)
    project.inputs("a.inp", "b.inp")
    return project


def one_line_error(result, code: int) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def kinds(project, *args: str) -> dict[str, tuple[str, str]]:
    """What `--dry-run --json` says of each job that would run: (kind, reason)."""
    result = project.run("--dry-run", "--json", *args)
    assert result.returncode == 0, result.stderr
    return {job["task"]: (job["kind"], job["reason"])
            for job in json.loads(result.stdout)["would_run"]}


def test_a_command_naming_a_missing_script_is_one_line_and_nothing_runs_or_is_recorded(sim):
    sim.write("incrun.toml", 'command = "{python} sim.py {input}"\n')
    assert sim.run().returncode == 0
    state = (sim.root / ".incrun" / "state.db").read_bytes()
    (sim.root / "a.inp").write_text("x = 2\n")
    sim.write("incrun.toml", 'command = "{python} simm.py {input}"\n')
    error = one_line_error(sim.run("--retries", "2"), 5)
    assert error == ("incrun: error: simm.py, named in the command, does not exist "
                     "(hint: did you mean sim.py?)")
    assert (sim.root / "a.out").read_text() == "X = 1\n"  # not run
    assert (sim.root / ".incrun" / "state.db").read_bytes() == state  # nothing recorded
    status = sim.run("status")  # status still works, and says why
    assert status.returncode == 0
    assert "  stale   sweep:b.inp  dependency missing: simm.py" in status.stdout.splitlines()
    assert kinds(sim)["sweep:a.inp"] == (DEP_MISSING, "dependency missing: simm.py")
    sim.write("incrun.toml", 'command = "{python} sim.py {input}"\n')
    result = sim.run()
    assert result.returncode == 0 and "1 ran, 1 up to date" in result.stdout, result.stdout


def test_a_dodo_rule_naming_a_missing_script_is_the_same_line(sim):
    sim.write("dodo.py", "from incrun import Rule\n"
                         "sim = Rule(name='sim', command=['{python}', 'tools/sim.py', '{input}'])\n"
                         "def task_sim():\n    yield from sim.tasks()\n")
    error = one_line_error(sim.run(), 5)
    assert "tools/sim.py, named in the command, does not exist" in error
    assert "paths in the command are relative to the project folder" in error
    assert not (sim.root / "a.out").exists()


def test_a_missing_script_is_named_in_a_pipeline_with_its_rule(sim):
    sim.write("post.py", "import sys\nopen(sys.argv[2], 'w').write('ok')\n")
    sim.write("incrun.toml", '[rules.sim]\ninputs = ["*.inp"]\ncommand = "{python} sim.py {input}"'
                             '\n[rules.post]\ninputs = ["*.out"]\noutputs = ["{stem}.sum"]\n'
                             'command = "./post.sh {input} {output}"\n')
    error = one_line_error(sim.run(), 5)
    assert "post.sh, named in the command of rule 'post', does not exist" in error
    assert "did you mean post.py?" in error
    assert not (sim.root / "a.out").exists() and not (sim.root / ".incrun").exists()


@pytest.mark.parametrize("command", [
    "{python} sim.py --config conf.yml -n 3 --log logs/{name}.txt {input}",
    "./run.sh python3 -u sim.py out/results.h5 {input}",
])
def test_words_that_only_look_like_files_are_left_alone(sim, command):
    sim.write("run.sh", '#!/bin/sh\nexec "$@"\n')
    (sim.root / "run.sh").chmod(0o755)
    sim.write("incrun.toml", f'command = "{command}"\n')
    result = sim.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert (sim.root / "b.out").read_text() == "X = 1\n"


def test_a_script_another_rule_makes_is_made_first_and_its_change_reruns_every_job(sim):
    sim.write("tool.py.in", SIM)
    sim.write("incrun.toml", '[rules.tool]\ninputs = ["tool.py.in"]\ncommand = "cp {input} '
                             '{output}"\noutputs = ["{stem}"]\n'
                             '[rules.sim]\ninputs = ["*.inp"]\ncommand = "{python} tool.py '
                             '{input}"\n')
    result = sim.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert (sim.root / "a.out").read_text() == "X = 1\n"
    assert "all 3 jobs up to date" in sim.run().stdout  # each job's signature recorded
    sim.write("tool.py.in", SIM.replace(".upper()", ".upper() + 'v2'"))
    result = sim.run()
    assert result.returncode == 0 and "3 ran" in result.stdout, result.stdout
    assert (sim.root / "a.out").read_text() == "X = 1\nv2"  # in the same run


def test_a_missing_dep_is_said_missing_not_a_changed_list(sim):
    sim.write("params.yml", "p: 1\n")
    sim.write("conf.yml", "c: 1\n")
    sim.write("incrun.toml", 'command = "{python} sim.py --config conf.yml {input}"\n'
                             'deps = ["params.yml"]\n')
    assert sim.run().returncode == 0
    (sim.root / "params.yml").unlink()
    status = sim.run("status")
    assert status.returncode == 0
    assert "  stale   sweep:a.inp  dependency missing: params.yml" in status.stdout.splitlines()
    explain = sim.run("explain", "a.inp")
    assert explain.stdout.startswith("sweep:a.inp: stale: dependency missing: params.yml")
    error = one_line_error(sim.run(), 5)
    assert "dependency 'params.yml' does not exist" in error
    sim.write("params.yml", "p: 1\n")
    (sim.root / "conf.yml").unlink()  # named in the command, not its script: a dep while there
    assert kinds(sim)["sweep:a.inp"] == (DEP_MISSING, "dependency missing: conf.yml")


def test_a_dep_another_rule_makes_is_made_first(sim):
    sim.write("params.in", "p: 1\n")
    sim.write("incrun.toml", '[rules.params]\ninputs = ["params.in"]\ncommand = "cp {input} '
                             '{output}"\noutputs = ["{stem}.yml"]\n'
                             '[rules.sim]\ninputs = ["*.inp"]\ncommand = "{python} sim.py '
                             '{input}"\ndeps = ["params.yml"]\n')
    result = sim.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all 3 jobs up to date" in sim.run().stdout  # each job's signature recorded
    sim.write("params.in", "p: 2\n")
    result = sim.run()
    assert result.returncode == 0 and "3 ran" in result.stdout, result.stdout

"""Tests for incrun.rules: placeholders, jobs made from inputs, and the doit tasks they become."""

from __future__ import annotations

import shlex
import sys

import pytest
from doit.loader import generate_tasks

from incrun.config import RuleSpec
from incrun.dodo_api import Rule
from incrun.errors import BAD_PLACEHOLDER, NO_INPUTS, BadConfig, BadPlaceholder, NoInputs
from incrun.plan import build
from incrun.rules import (
    check_template,
    expand,
    make_jobs,
    path_values,
    require_jobs,
    script_of,
)


def make(root, *paths: str) -> None:
    for path in paths:
        file = root / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text("x", encoding="utf-8")


@pytest.fixture
def project(tmp_path):
    """A zero-config project: runner.py and two inputs."""
    make(tmp_path, "runner.py", "a.inp", "data/b.inp")
    return tmp_path


def by_input(jobs) -> dict:
    return {job.input: job for job in jobs}


# -- placeholders -----------------------------------------------------------------


@pytest.mark.parametrize("key, value", [
    ("input", "data/sub/a.inp"), ("stem", "data/sub/a"), ("name", "a.inp"),
    ("dir", "data/sub"), ("", "data/sub/a.inp"), (".", "data/sub/a"), ("/", "a.inp"),
    ("//", "data/sub"), ("/.", "a"),
])
def test_rules_path_values_nested_input(key, value):
    assert path_values("data/sub/a.inp")[key] == value


def test_rules_path_values_top_level_dir_is_dot():
    values = path_values("a.inp")
    assert values["dir"] == values["//"] == "."
    assert values["stem"] == "a"


def test_rules_path_values_leading_dash_not_an_option():
    values = path_values("-x.inp")
    assert values["input"] == values[""] == "./-x.inp"
    assert not values["stem"].startswith("-")


def test_rules_expand_double_braces_are_literals():
    values = path_values("a.inp")
    assert expand("{{input}} {input} }}{{", values) == "{input} a.inp }{"


def test_rules_expand_value_not_expanded_again():
    assert expand("{input}", path_values("{stem}.inp")) == "{stem}.inp"


def test_rules_check_template_unknown_placeholder():
    with pytest.raises(BadPlaceholder) as caught:
        check_template("--in={inptu}")
    assert caught.value.exit_code == BAD_PLACEHOLDER == 6
    assert "{inptu}" in str(caught.value)


def test_rules_check_template_literal_braces_accepted():
    check_template("{{not a placeholder}} {input} {/.}")  # must not raise


@pytest.mark.parametrize("template", ["{output}.bak", "{python}.out"])
def test_rules_make_jobs_outputs_refuse_output_and_python(project, template):
    with pytest.raises(BadPlaceholder, match="outputs"):
        make_jobs(RuleSpec(outputs=(template,)), project)


def test_rules_make_jobs_command_may_use_output(project):
    spec = RuleSpec(command=("prog", "{input}", "-o", "{output}"))
    assert by_input(make_jobs(spec, project))["a.inp"].argv == ("prog", "a.inp", "-o", "a.out")


# -- jobs -------------------------------------------------------------------------


def test_rules_make_jobs_one_per_input_zero_config(project):
    jobs = by_input(make_jobs(RuleSpec(), project))
    assert sorted(jobs) == ["a.inp", "data/b.inp"]
    job = jobs["data/b.inp"]
    assert job.task == "sweep:data/b.inp"
    assert list(job.argv) == [sys.executable, "runner.py", "data/b.inp"]
    assert job.outputs == ("data/b.out",)


@pytest.mark.parametrize("name", ["a;touch PWNED.inp", "$(x).inp", "a b.inp", "'q\".inp",
                                  "{input}.inp", "new\nline.inp"])
def test_rules_make_jobs_hostile_names_single_argv_element(tmp_path, name):
    make(tmp_path, "runner.py", name)
    [job] = make_jobs(RuleSpec(), tmp_path)
    assert not isinstance(job.argv, str)
    assert list(job.argv) == [sys.executable, "runner.py", name]  # the name as one argument


def test_rules_make_jobs_leading_dash_input(tmp_path):
    make(tmp_path, "runner.py", "-x.inp")
    [job] = make_jobs(RuleSpec(), tmp_path)
    assert job.argv[-1] == "./-x.inp"
    assert job.input == "-x.inp"
    assert job.outputs == ("-x.out",)


def test_rules_make_jobs_deps_input_runner_and_configured(project):
    make(project, "params.json")
    jobs = by_input(make_jobs(RuleSpec(deps=("params.json",)), project))
    assert jobs["data/b.inp"].deps == ("data/b.inp", "runner.py", "params.json")


def test_rules_make_jobs_command_file_is_dep(project):
    make(project, "tools/run.sh")
    spec = RuleSpec(command=("bash", "tools/run.sh", "{input}"))
    assert by_input(make_jobs(spec, project))["a.inp"].deps == ("a.inp", "tools/run.sh")


def test_a_missing_dep_is_refused_by_the_plan_of_a_run_and_kept_as_a_dep_for_status(project):
    with pytest.raises(BadConfig, match="nope.json"):
        build([RuleSpec(deps=("nope.json",))], project)
    [sweep] = build([RuleSpec(deps=("nope.json",))], project, check_files=False).sweeps
    assert sweep.job(0).deps == ("a.inp", "runner.py", "nope.json")  # doit: dependency missing


@pytest.mark.parametrize("command, script", [
    ("{python} sim.py {input}", "sim.py"),
    ("{python} -u -X dev ./tools/sim.py --fast {input}", "tools/sim.py"),
    ("python3 -W ignore sim.py {input}", "sim.py"),
    ("/usr/bin/python3.11 sim.py", "sim.py"),
    ("bash tools/run.sh {input}", "tools/run.sh"),
    ("./run.sh {input} out.txt", "run.sh"),
    ("bin/sim -n 3 {input}", "bin/sim"),
    ("{python} -m sims.run {input}", None),
    ("{python} -c 'print(1)' {input}", None),
    ("{python} {input}", None),
    ("{python} {dir}/sim.py {input}", None),
    ("bash -c 'echo hi' {input}", None),
    ("sim --config conf.yml {input}", None),  # a program on PATH, an option's file
    ("/opt/sim/bin/sim {input}", None),  # outside the project: may be a cluster's own
    ("sims:simulate", None),
])
def test_the_script_a_command_runs_is_the_one_file_it_names_that_must_exist(command, script):
    assert script_of(tuple(shlex.split(command))) == script


def test_a_missing_script_is_a_dep_of_every_job_so_status_can_say_it_is_missing(project):
    spec = RuleSpec(command=("{python}", "simm.py", "--out", "x.txt", "{input}"))
    assert by_input(make_jobs(spec, project))["a.inp"].deps == ("a.inp", "simm.py")


def test_rules_make_jobs_outputs_and_deps_never_inputs(tmp_path):
    make(tmp_path, "runner.py", "X.inp", "X.out", "stray.out")
    jobs = make_jobs(RuleSpec(inputs=("*",)), tmp_path)
    assert [job.input for job in jobs] == ["X.inp"]


@pytest.mark.parametrize("template", ["../{stem}.out", "/tmp/x", "{dir}/../../{name}.out"])
def test_rules_make_jobs_output_outside_project_refused(project, template):
    with pytest.raises(BadConfig, match="outside"):
        make_jobs(RuleSpec(outputs=(template,)), project)


def test_rules_make_jobs_output_through_symlink_outside_refused(tmp_path):
    # DESIGN: "a target resolving outside the root is refused before anything runs".
    outside = tmp_path / "outside"
    outside.mkdir()
    project = tmp_path / "project"
    make(project, "runner.py", "a.inp")
    (project / "results").symlink_to(outside, target_is_directory=True)
    with pytest.raises(BadConfig, match="outside"):
        make_jobs(RuleSpec(outputs=("results/{stem}.out",)), project)


def test_rules_command_digest_same_across_venvs(project, monkeypatch):
    before = by_input(make_jobs(RuleSpec(), project))["a.inp"].command_digest()
    monkeypatch.setattr(sys, "executable", "/elsewhere/venv/bin/python3")
    after = by_input(make_jobs(RuleSpec(), project))["a.inp"]
    assert after.argv[0] == "/elsewhere/venv/bin/python3"
    assert after.command_digest() == before
    assert "/elsewhere" not in before + after.command_digest()


def test_rules_command_digest_changes_with_argument(project):
    plain = by_input(make_jobs(RuleSpec(), project))["a.inp"]
    spec = RuleSpec(command=("{python}", "runner.py", "--fast", "{input}"))
    changed = by_input(make_jobs(spec, project))["a.inp"]
    assert changed.command_digest() != plain.command_digest()


# -- doit tasks ---------------------------------------------------------------------


def test_rules_rule_tasks_accepted_by_doit(project):
    tasks = {task.name: task for task in generate_tasks("sweep", Rule(root=project).tasks())}
    assert {"sweep:a.inp", "sweep:data/b.inp"} <= set(tasks)
    task = tasks["sweep:data/b.inp"]
    assert task.file_dep == {"data/b.inp", "runner.py"}
    assert task.targets == ["data/b.out"]
    [action] = task.actions
    assert action.action == [sys.executable, "runner.py", "data/b.inp"]


def test_rules_rule_tasks_custom_rule(project):
    rule = Rule(inputs=["data/*.inp"], command=["prog", "{input}"], outputs=["{stem}.res"],
                root=project)
    tasks = {task.name: task for task in generate_tasks("sweep", rule.tasks())}
    assert "sweep:a.inp" not in tasks
    assert tasks["sweep:data/b.inp"].targets == ["data/b.res"]
    assert tasks["sweep:data/b.inp"].actions[0].action == ["prog", "data/b.inp"]


def test_rules_require_jobs_empty_raises_no_inputs():
    with pytest.raises(NoInputs) as caught:
        require_jobs([], RuleSpec(inputs=("data/*.inp",)))
    assert caught.value.exit_code == NO_INPUTS == 4
    assert "data/*.inp" in str(caught.value)


def test_rules_require_jobs_nonempty_passes_through(project):
    jobs = make_jobs(RuleSpec(), project)
    assert require_jobs(jobs, RuleSpec()) == jobs


def test_a_dodo_rules_command_given_as_a_string_is_split_as_the_configs_is():
    rule = Rule(inputs=["*.inp"], command="{python} 'my sim.py' --in {input}")
    assert rule.spec.command == ("{python}", "my sim.py", "--in", "{input}")
    assert Rule(inputs=["*.inp"], command=["{python}", "my sim.py"]).spec.command == (
        "{python}", "my sim.py")
    with pytest.raises(BadConfig, match="cannot be split"):
        Rule(inputs=["*.inp"], command="{python} 'unclosed")

"""The loader: the project's rule as doit tasks, merged with dodo.py; names on the command line."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from incrun import config
from incrun.errors import BadDodo, NoInputs, UnknownTask
from incrun.loader import IncrunLoader, import_dodo, is_job


def load(root, targets=()):
    loader = IncrunLoader(config.build(root))
    loader.config = {}
    loader.setup({})
    loader.load_doit_config()
    cmd = SimpleNamespace(execute_tasks=True, sel_default_tasks=not targets)
    args = list(targets)
    tasks = loader.load_tasks(cmd, args)
    return {task.name: task for task in tasks}, args


@pytest.fixture
def root(tmp_path):
    (tmp_path / "runner.py").write_text("")
    for name in ("a.inp", "sub/b.inp"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    return tmp_path


def test_zero_config_gives_a_group_and_a_job_per_input(root):
    tasks, _ = load(root)
    jobs = sorted(name for name in tasks if is_job(tasks[name]))
    assert jobs == ["sweep:a.inp", "sweep:sub/b.inp"]
    job = tasks["sweep:sub/b.inp"]
    assert job.file_dep == {"sub/b.inp", "runner.py"}
    assert job.targets == ["sub/b.out"]
    assert not is_job(tasks["sweep"])


def test_dodo_tasks_are_added_to_the_rule(root):
    (root / "dodo.py").write_text("def task_hello():\n    return {'actions': ['echo hi']}\n")
    tasks, _ = load(root)
    assert "hello" in tasks and "sweep:a.inp" in tasks


def test_a_dodo_rule_replaces_the_project_rule(root, monkeypatch):
    monkeypatch.chdir(root)  # as the engine does: a Rule's paths are relative to the project
    (root / "dodo.py").write_text(
        "from incrun import Rule\n"
        "def task_only_sub():\n    yield from Rule(inputs=['sub/*.inp']).tasks()\n")
    tasks, _ = load(root)
    assert [n for n in tasks if is_job(tasks[n])] == ["only_sub:sub/b.inp"]


def test_a_dodo_rule_matching_nothing_adds_no_other_rule(root, monkeypatch):
    monkeypatch.chdir(root)
    (root / "dodo.py").write_text(
        "from incrun import Rule\n"
        "def task_none():\n    yield from Rule(inputs=['*.nothing']).tasks()\n")
    tasks, _ = load(root)
    assert not [n for n in tasks if is_job(tasks[n])]


def test_no_input_without_dodo_is_an_error(tmp_path):
    (tmp_path / "runner.py").write_text("")
    with pytest.raises(NoInputs):
        load(tmp_path)


def test_selection_by_input_output_and_folder_is_translated(root):
    _, args = load(root, ["a.inp", "sub/b.out", "sub/"])
    assert args == ["sweep:a.inp", "sub/b.out", "sweep:sub/b.inp"]
    _, args = load(root, [str(root / "a.inp")])
    assert args == ["sweep:a.inp"]


def test_unknown_selection_is_a_user_error(root):
    with pytest.raises(UnknownTask) as error:
        load(root, ["nothing.inp"])
    assert "incrun list --all" in error.value.hint


@pytest.mark.parametrize("source, words", [
    ("def broken(:\n", "SyntaxError: invalid syntax (line 1)"),
    ("x = 1\n  y = 2\n", "IndentationError: unexpected indent (line 2)"),
    ("x = 1\nraise RuntimeError('no config found')\n", "RuntimeError: no config found (line 2)"),
    ("import helper\n", "SyntaxError: '(' was never closed (helper.py, line 2)"),
])
def test_a_dodo_that_fails_to_import_names_the_error_and_its_line_once(tmp_path, source, words):
    (tmp_path / "dodo.py").write_text(source)
    (tmp_path / "helper.py").write_text("x = 1\ny = (\n")
    with pytest.raises(BadDodo) as error:
        import_dodo(tmp_path / "dodo.py")
    assert error.value.message == f"dodo.py failed to import: {words}"


def test_a_task_function_that_raises_is_a_bad_dodo(root):
    (root / "dodo.py").write_text("def task_x():\n    raise ValueError('boom')\n")
    with pytest.raises(BadDodo) as error:
        load(root)
    assert "boom" in error.value.message

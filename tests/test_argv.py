"""The command line split as doit splits it, and each command's own parser and help."""

from __future__ import annotations

import subprocess

import pytest

from incrun import cli, errors
from incrun.argv import split
from incrun.commands_help import COMMANDS, option_table

RUN = option_table("run")


def test_a_tasks_own_options_stay_after_its_name_in_order():
    found = split(["-n", "2", "cleanclean:cd", "--EUD", "True", "-c", "other.yml"], RUN)
    assert found.options == ["-n", "2"]
    assert found.selection == ["cleanclean:cd", "--EUD", "True", "-c", "other.yml"]


def test_incruns_own_options_are_its_own_wherever_they_are():
    found = split(["data/a.inp", "-B", "--timeout", "5", "-j4", "-xq"], RUN)
    assert found.options == ["-B", "--timeout", "5", "-j4", "-xq"]
    assert found.selection == ["data/a.inp"]


def test_words_after_a_double_dash_are_the_tasks_positional_arguments():
    found = split(["test", "--", "-k", "some_test", "-n", "3"], RUN)
    assert found.selection == ["test", "--", "-k", "some_test", "-n", "3"]
    assert found.options == []


def test_a_double_dash_before_any_name_makes_names_of_what_follows():
    assert split(["--", "-odd.inp"], RUN).selection == ["-odd.inp"]


def test_name_equals_value_is_a_variable_but_a_path_with_equals_is_a_name():
    found = split(["EUD=True", "data/x=1.inp", "plot", "--size", "a=b"], RUN)
    assert found.variables == {"EUD": "True"}
    assert found.selection == ["data/x=1.inp", "plot", "--size", "a=b"]


def test_an_unknown_option_before_any_name_is_left_for_the_parser_to_refuse():
    assert split(["--bogus"], RUN).options == ["--bogus"]
    with pytest.raises(SystemExit) as stop:
        cli.parse(["--bogus"], env={})
    assert stop.value.code == errors.USAGE


@pytest.mark.parametrize("argv", [["-a"], ["-B"], ["--always-execute"], ["--always"]])
def test_every_spelling_of_always_forces(argv, tmp_path):
    assert cli.parse(["-C", str(tmp_path), *argv], env={}).always


@pytest.mark.parametrize("argv", [["-j", "3"], ["-n", "3"], ["--jobs", "3"], ["--process=3"]])
def test_make_and_doit_spellings_of_the_jobs_at_once(argv, tmp_path):
    assert cli.parse(["-C", str(tmp_path), *argv], env={}).jobs == 3


def test_keep_going_and_continue_undo_fail_fast(tmp_path):
    assert cli.parse(["-C", str(tmp_path), "-x"], env={}).fail_fast
    for spelling in ("-k", "--keep-going", "--continue"):
        assert not cli.parse(["-C", str(tmp_path), "-x", spelling], env={}).fail_fast


def test_doit_options_reach_the_config(tmp_path):
    (tmp_path / "other.py").write_text("")
    config = cli.parse(["-C", str(tmp_path), "-v", "2", "-s", "-f", str(tmp_path / "other.py"),
                        "plot", "X=1"], env={})
    assert (config.verbosity, config.single, config.variables) == (2, True, (("X", "1"),))
    assert config.dodo == tmp_path / "other.py" and config.targets == ("plot",)


def test_a_dodo_file_elsewhere_makes_its_folder_the_project(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "build.py").write_text("")
    monkeypatch.chdir(tmp_path)
    config = cli.parse(["-f", "sub/build.py"], env={})
    assert config.root == (tmp_path / "sub").resolve()
    assert config.dodo == (tmp_path / "sub" / "build.py").resolve()
    assert cli.main(["-f", "sub/missing.py"]) == errors.USAGE


def test_list_shows_states_with_s_else_a_terminal_decides(tmp_path):
    assert cli.parse(["-C", str(tmp_path), "list"], env={}).list_status is None
    assert cli.parse(["-C", str(tmp_path), "list", "-s"], env={}).list_status is True
    assert cli.parse(["-C", str(tmp_path), "list", "-q"], env={}).quiet


def test_options_of_one_command_are_not_anothers(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.parse(["-C", str(tmp_path), "status", "--timeout", "3"], env={})
    assert stop.value.code == errors.USAGE
    assert "usage: incrun status" in capsys.readouterr().err
    assert cli.parse(["-C", str(tmp_path), "graph", "--jobs"], env={}).graph_jobs
    assert cli.parse(["-C", str(tmp_path), "auto"], env={}).command == "watch"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_has_its_own_usage_and_examples(command):
    result = subprocess.run([*cli_command(), command, "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    name = "incrun" if command == "run" else f"incrun {command}"
    assert result.stdout.startswith(f"usage: {name} ")
    assert "examples:\n  incrun" in result.stdout
    assert subprocess.run([*cli_command(), "help", command], capture_output=True, text=True,
                          timeout=60).stdout == result.stdout


def test_help_lists_the_commands_and_every_config_key():
    result = subprocess.run([*cli_command(), "help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for word in ("watch", "dumpdb", "reset-dep", "tabcompletion", "timeout", "retries",
                 "exit codes"):
        assert word in result.stdout
    unknown = subprocess.run([*cli_command(), "help", "nope"], capture_output=True, text=True,
                             timeout=60)
    assert unknown.returncode == errors.USAGE and "no command 'nope'" in unknown.stderr


def cli_command() -> list[str]:
    from conftest import incrun_command

    return incrun_command()

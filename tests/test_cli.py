"""The command line: argv to a frozen Config; mistakes are usage errors, not tracebacks."""

from __future__ import annotations

import io

import pytest

from incrun import cli, errors


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_parse_defaults_to_run_with_plain_display_off_a_terminal(tmp_path):
    config = cli.parse(["-C", str(tmp_path)], env={}, stdout=io.StringIO())
    assert config.command == "run" and config.display == "plain"
    assert config.root == tmp_path.resolve()
    assert config.jobs >= 1


def test_parse_picks_the_command_and_its_targets(tmp_path):
    config = cli.parse(["-C", str(tmp_path), "clean", "a.inp", "b.inp"], env={})
    assert config.command == "clean" and config.targets == ("a.inp", "b.inp")


def test_parse_options(tmp_path):
    config = cli.parse(["-C", str(tmp_path), "-n", "3", "-x", "-B", "-q", "x.inp"],
                       env={"NO_COLOR": "1"}, stdout=Terminal())
    assert (config.jobs, config.fail_fast, config.always, config.quiet) == (3, True, True, True)
    assert config.no_color and config.display == "live"
    assert config.targets == ("x.inp",)


def test_jobs_from_config_file_unless_given(tmp_path):
    (tmp_path / "incrun.toml").write_text("jobs = 5\n")
    assert cli.parse(["-C", str(tmp_path)], env={}).jobs == 5
    assert cli.parse(["-C", str(tmp_path), "-n", "2"], env={}).jobs == 2


def test_grace_from_the_option_else_the_config_file_else_five_seconds(tmp_path):
    assert cli.parse(["-C", str(tmp_path)], env={}).grace == 5.0
    (tmp_path / "incrun.toml").write_text("grace = 30\n")
    assert cli.parse(["-C", str(tmp_path)], env={}).grace == 30.0
    assert cli.parse(["-C", str(tmp_path), "--grace", "0.5"], env={}).grace == 0.5


@pytest.mark.parametrize("argv", [["-n", "0"], ["-n", "many"], ["--bogus"], ["--grace", "0"],
                                  ["--grace", "soon"]])
def test_bad_options_exit_with_the_usage_code(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.parse(argv, env={})
    assert stop.value.code == errors.USAGE


@pytest.mark.parametrize("argv", [["info"], ["forget"], ["-C", "/no/such/dir"]])
def test_incomplete_commands_are_usage_errors(argv, capsys):
    assert cli.main(argv) == errors.USAGE
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "hint:" in err

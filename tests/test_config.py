"""Tests for incrun.config: reading the project's settings and choosing how to display a run."""

from __future__ import annotations

import io

import pytest

from incrun.config import FileSettings, choose_display, project_rules, read_settings
from incrun.errors import BAD_CONFIG, BadConfig


class Tty(io.StringIO):
    """A stream that says it is an interactive terminal."""

    def isatty(self) -> bool:
        return True


def write(path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


# -- read_settings ---------------------------------------------------------------


def test_config_read_settings_pyproject_tool_table(tmp_path):
    write(tmp_path / "pyproject.toml",
          '[project]\nname = "x"\n[tool.incrun]\ninputs = ["data/*.inp"]\njobs = 3\n')
    settings = read_settings(tmp_path)
    assert settings.rules[0].inputs == ("data/*.inp",)
    assert settings.jobs == 3
    assert "pyproject.toml" in settings.source


def test_config_read_settings_incrun_toml_top_level(tmp_path):
    write(tmp_path / "incrun.toml", 'inputs = "*.dat"\noutputs = ["{stem}.res"]\n')
    settings = read_settings(tmp_path)
    assert settings.rules[0].inputs == ("*.dat",)
    assert settings.rules[0].outputs == ("{stem}.res",)
    assert settings.source == "incrun.toml"


def test_config_read_settings_incrun_toml_wins(tmp_path):
    write(tmp_path / "pyproject.toml", '[tool.incrun]\ninputs = ["*.from-pyproject"]\n')
    write(tmp_path / "incrun.toml", 'inputs = ["*.from-incrun"]\n')
    assert read_settings(tmp_path).rules[0].inputs == ("*.from-incrun",)


def test_config_read_settings_pyproject_without_table_is_no_settings(tmp_path):
    write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n')
    settings = read_settings(tmp_path)
    assert settings.rules is None
    assert settings.jobs is None


def test_config_read_settings_command_string_split_with_quotes(tmp_path):
    write(tmp_path / "incrun.toml", """command = "prog --title 'a b' {input}"\n""")
    assert read_settings(tmp_path).rules[0].command == ("prog", "--title", "a b", "{input}")


def test_config_read_settings_command_list_kept(tmp_path):
    write(tmp_path / "incrun.toml", 'command = ["prog", "a b", "x;y", "{input}"]\n')
    assert read_settings(tmp_path).rules[0].command == ("prog", "a b", "x;y", "{input}")


def test_config_read_settings_unknown_key_hint_lists_known(tmp_path):
    write(tmp_path / "incrun.toml", 'imputs = ["*.inp"]\n')
    with pytest.raises(BadConfig) as caught:
        read_settings(tmp_path)
    assert "imputs" in caught.value.message
    for key in ("inputs", "exclude", "command", "outputs", "deps", "jobs"):
        assert key in caught.value.hint


@pytest.mark.parametrize("name", ["incrun.toml", "pyproject.toml"])
def test_config_read_settings_bad_toml_names_file(tmp_path, name):
    write(tmp_path / name, "[tool.incrun\ninputs = \n")
    with pytest.raises(BadConfig) as caught:
        read_settings(tmp_path)
    assert caught.value.exit_code == BAD_CONFIG == 5
    assert name in str(caught.value)


@pytest.mark.parametrize("value", ["0", '"4"', "true", "-2", "1.5"])
def test_config_read_settings_bad_jobs_rejected(tmp_path, value):
    write(tmp_path / "incrun.toml", f"jobs = {value}\n")
    with pytest.raises(BadConfig, match="jobs"):
        read_settings(tmp_path)


def test_config_read_settings_positive_jobs_accepted(tmp_path):
    write(tmp_path / "incrun.toml", "jobs = 4\n")
    assert read_settings(tmp_path).jobs == 4


@pytest.mark.parametrize("value", ["0", '"30"', "true", "-1"])
def test_config_read_settings_bad_grace_rejected(tmp_path, value):
    write(tmp_path / "incrun.toml", f"grace = {value}\n")
    with pytest.raises(BadConfig, match="grace") as raised:
        read_settings(tmp_path)
    assert raised.value.exit_code == BAD_CONFIG


def test_config_read_settings_grace_in_seconds(tmp_path):
    write(tmp_path / "incrun.toml", "grace = 0.5\n")
    assert read_settings(tmp_path).grace == 0.5


# -- project_rules -----------------------------------------------------------------


def test_config_project_rules_zero_config_with_runner(tmp_path):
    write(tmp_path / "runner.py", "")
    (rule,) = project_rules(tmp_path, read_settings(tmp_path))
    assert rule.inputs == ("*.inp",)
    assert rule.command == ("{python}", "runner.py", "{input}")
    assert rule.outputs == ("{stem}.out",)


def test_config_project_rules_none_without_runner_or_config(tmp_path):
    assert project_rules(tmp_path, read_settings(tmp_path)) == ()


def test_config_project_rules_config_without_runner(tmp_path):
    write(tmp_path / "incrun.toml", 'command = ["prog", "{input}"]\n')
    (rule,) = project_rules(tmp_path, read_settings(tmp_path))
    assert rule.command == ("prog", "{input}")


def test_config_project_rules_empty_settings_is_none(tmp_path):
    assert project_rules(tmp_path, FileSettings()) == ()


# -- choose_display ----------------------------------------------------------------


def test_config_choose_display_pipe_is_plain():
    assert choose_display(io.StringIO(), env={}) == "plain"


def test_config_choose_display_tty_is_live():
    assert choose_display(Tty(), env={"TERM": "xterm-256color"}) == "live"


def test_config_choose_display_ci_is_plain():
    assert choose_display(Tty(), env={"CI": "true", "TERM": "xterm"}) == "plain"


def test_config_choose_display_dumb_terminal_is_plain():
    assert choose_display(Tty(), env={"TERM": "dumb"}) == "plain"


def test_config_choose_display_json_when_asked():
    assert choose_display(Tty(), env={}, as_json=True) == "json"
    assert choose_display(io.StringIO(), env={"CI": "true"}, as_json=True) == "json"


# -- beyond one machine ------------------------------------------------------------


@pytest.mark.parametrize("text, kind, address, workers", [
    ("tcp://10.0.0.5:8786", "scheduler", "tcp://10.0.0.5:8786", 0),
    ("tls://sched.lab:8786", "scheduler", "tls://sched.lab:8786", 0),
    ("local:8", "local", "", 8),
    ("slurm", "slurm", "", 0),
])
def test_config_parse_cluster_takes_the_four_forms(text, kind, address, workers):
    from incrun.config import parse_cluster

    cluster = parse_cluster(text)
    assert (cluster.kind, cluster.address, cluster.workers) == (kind, address, workers)
    assert str(cluster) == text


@pytest.mark.parametrize("text", ["localhost:8786", "tcp://host", "tcp://host:0", "local:0",
                                  "local:x", "slurm:4", "http://h:1", ""])
def test_config_parse_cluster_refuses_anything_else_naming_the_forms(text):
    from incrun.config import parse_cluster

    with pytest.raises(BadConfig) as refused:
        parse_cluster(text)
    assert "tcp://" in refused.value.hint


def test_config_cluster_env_stage_and_sections_from_the_config_file(tmp_path):
    from incrun.config import build

    write(tmp_path / "pyproject.toml", '[tool.incrun]\ncluster = "local:3"\nenv = ["A", "B"]\n'
          'stage = true\nstage_limit = 1000\n[tool.incrun.slurm]\ncores = 4\n'
          '[tool.incrun.dask]\nca = "ca.pem"\n')
    config = build(tmp_path)
    assert str(config.cluster) == "local:3" and config.in_flight is None
    assert (config.env, config.stage, config.stage_limit) == (("A", "B"), True, 1000)
    assert config.slurm == {"cores": 4} and config.dask == {"ca": "ca.pem"}
    assert build(tmp_path, jobs=2).in_flight == 2  # -n, as given: the cap in flight


@pytest.mark.parametrize("table, words", [
    ('env = "A"', "'env' must be a list"),
    ("stage = 1", "'stage' must be true or false"),
    ('[tool.incrun.slurm]\nqueue = "x"', "unknown setting 'queue'"),
    ('[tool.incrun.dask]\npassword = "x"', "unknown setting 'password'"),
    ('cluster = "sge"', "not a cluster incrun knows"),
    ("[tool.incrun.slurm]\ncores = 0", "'cores' must be a positive integer"),
    ('[tool.incrun.slurm]\nextra = "--qos=x"', "'extra' must be a list"),
    ("[tool.incrun.slurm]\nwalltime = 60", "'walltime' must be a non-empty string"),
])
def test_config_bad_cluster_settings_are_one_line(tmp_path, table, words):
    write(tmp_path / "pyproject.toml", f"[tool.incrun]\n{table}\n")
    with pytest.raises(BadConfig) as refused:
        read_settings(tmp_path)
    assert words in refused.value.message and refused.value.exit_code == BAD_CONFIG


def test_config_an_unknown_key_that_is_a_slip_gets_the_known_one(tmp_path):
    write(tmp_path / "incrun.toml", 'output = ["{stem}.res"]\n')
    with pytest.raises(BadConfig) as refused:
        read_settings(tmp_path)
    assert "unknown setting 'output'" in refused.value.message
    assert refused.value.hint.startswith("did you mean 'outputs'?")


def test_config_tool_incrun_inside_incrun_toml_says_where_the_keys_go(tmp_path):
    write(tmp_path / "incrun.toml", '[tool.incrun]\ninputs = ["*.dat"]\n')
    with pytest.raises(BadConfig) as refused:
        read_settings(tmp_path)
    assert "the settings go at the top level there" in refused.value.message

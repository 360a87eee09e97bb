"""The same dodo.py files under plain doit and under incrun, side by side: task lists, what
runs (each task writes a line to ran.log when it runs), what is made, what reruns after a
change, and what `clean` deletes. One dodo.py per doit feature, in tests/dodos/."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import incrun_command, incrun_env

DODOS = Path(__file__).parent / "dodos"
STATE = {".incrun", ".doit.db", ".doit.db.db", ".doit.db.dat", ".doit.db.dir", ".doit.db.bak",
         "__pycache__", "ran.log"}


class Twins:
    """One dodo.py folder copied twice: `doit` runs in one, `incrun` in the other."""

    def __init__(self, tmp_path: Path, name: str):
        self.folders = {}
        for tool in ("doit", "incrun"):
            self.folders[tool] = tmp_path / tool
            shutil.copytree(DODOS / name, self.folders[tool])

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        program = [sys.executable, "-m", "doit"] if tool == "doit" else incrun_command()
        return subprocess.run([*program, *args], cwd=self.folders[tool], env=incrun_env(),
                              capture_output=True, text=True, timeout=120)

    def both(self, *args: str) -> dict[str, subprocess.CompletedProcess]:
        """Run both with the same arguments; each must succeed."""
        results = {tool: self.run(tool, *args) for tool in self.folders}
        for tool, result in results.items():
            assert result.returncode == 0, f"{tool} {args}: {result.stdout}{result.stderr}"
        return results

    def ran(self) -> dict[str, list[str]]:
        """What each tool ran since the last look (ran.log, emptied), in the order it ran."""
        found = {}
        for tool, folder in self.folders.items():
            log = folder / "ran.log"
            found[tool] = log.read_text().splitlines() if log.exists() else []
            log.unlink(missing_ok=True)
        return found

    def files(self) -> dict[str, dict[str, str]]:
        """Every file each folder holds, with its content, the tools' own state left out."""
        return {tool: {str(path.relative_to(folder)): path.read_text(errors="replace")
                       for path in sorted(folder.rglob("*"))
                       if path.is_file() and not STATE & set(path.relative_to(folder).parts)}
                for tool, folder in self.folders.items()}

    def write(self, rel: str, text: str) -> None:
        for folder in self.folders.values():
            (folder / rel).write_text(text)

    def same(self, *args: str) -> list[str]:
        """Run both; they ran the same tasks and made the same files. What they ran."""
        self.both(*args)
        ran = self.ran()
        assert ran["incrun"] == ran["doit"], ran
        files = self.files()
        assert files["incrun"] == files["doit"]
        return ran["doit"]

    def same_list_and_clean(self) -> None:
        listed = {tool: sorted(self.run(tool, "list", "--all", "-q").stdout.split())
                  for tool in self.folders}
        assert listed["incrun"] == listed["doit"] and listed["doit"], listed
        self.both("clean")
        files = self.files()
        assert files["incrun"] == files["doit"]


@pytest.fixture
def twins(tmp_path, request):
    return Twins(tmp_path, request.param)


@pytest.mark.parametrize("twins", ["params"], indirect=True)
def test_task_params_after_the_name_and_from_pyproject(twins):
    assert twins.same("cleanclean:cd", "--EUD", "True") == [
        "cleanclean:cd EUD=True config=default.yml"]
    assert twins.same("cleanclean:cd", "-c", "other.yml") == [
        "cleanclean:cd EUD=False config=other.yml"]
    assert twins.same("cleanclean:ef") == ["cleanclean:ef EUD=False config=from-pyproject.yml"]
    assert twins.same("cleanclean:cd", "--EUD=yes", "cleanclean:ef", "-c", "x.yml") == [
        "cleanclean:cd EUD=yes config=default.yml", "cleanclean:ef EUD=False config=x.yml"]
    twins.same_list_and_clean()


@pytest.mark.parametrize("twins", ["posarg"], indirect=True)
def test_positional_arguments_after_a_double_dash(twins):
    assert twins.same("test", "--", "-k", "some_test") == ["test -k some_test"]
    assert twins.same("test", "a", "b") == ["test a b"]


@pytest.mark.parametrize("twins", ["getvar"], indirect=True)
def test_get_var_at_import_and_name_equals_value(twins):
    assert twins.same() == ["show EUD=false"]
    assert twins.same() == []  # up to date
    twins.write("input.txt", "two\n")
    assert twins.same("EUD=True") == ["show EUD=true"]
    assert (twins.folders["incrun"] / "eud.txt").read_text() == "EUD=true\n"
    twins.same_list_and_clean()


@pytest.mark.parametrize("twins", ["delayed"], indirect=True)
def test_sub_tasks_made_after_another_task_can_be_named_and_rerun_as_doit_does(twins):
    assert twins.same("upper:p1.txt") == ["make", "upper:parts/p1.txt"]
    assert sorted(twins.same()) == ["upper:parts/p0.txt", "upper:parts/p2.txt"]
    assert twins.same() == []
    twins.write("parts.txt", "alpha BETA gamma\n")  # p1 changes; p0 and p2 come out the same
    assert twins.same() == ["make", "upper:parts/p1.txt"]
    twins.same_list_and_clean()


@pytest.mark.parametrize("twins", ["delayed"], indirect=True)
def test_the_count_of_jobs_grows_with_tasks_made_during_the_run_and_adds_up(twins):
    first = twins.run("incrun")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].startswith("incrun: 1 job so far, more as tasks are made")
    assert "done in" in lines[-3] and "4 ran — all succeeded" in lines[-3]
    assert lines[-2:] == ["  make   1/1  1 ran", "  upper  3/3  3 ran"]
    twins.write("parts.txt", "alpha BETA gamma\n")
    again = twins.run("incrun").stdout.splitlines()
    assert "2 ran, 2 up to date — all succeeded" in again[-3]
    assert again[-1] == "  upper  3/3  1 ran, 2 up to date"


@pytest.mark.parametrize("twins", ["verbose"], indirect=True)
def test_verbosity_two_titles_and_teardown_output_are_shown_as_doit_shows_them(twins):
    results = twins.both()
    for result in results.values():
        for words in ("greeting hello", "hello from the task", "to stderr",
                      "teardown says bye"):
            assert words in result.stdout + result.stderr, result.stdout
    assert twins.ran()["incrun"] == ["hello", "teardown"]
    log = (twins.folders["incrun"] / ".incrun" / "logs" / "hello.log").read_text()
    assert "hello from the task" in log and "--- teardown ---\nteardown says bye" in log
    twins.write("name.txt", "you\n")
    as_json = twins.run("incrun", "--json")
    assert "hello from the task" not in as_json.stdout and "teardown says" not in as_json.stdout
    quiet = twins.run("incrun", "-a", "-v", "0")  # the command line's verbosity wins
    assert "hello from the task" not in quiet.stdout
    twins.same_list_and_clean()


@pytest.mark.parametrize("twins", ["notarget"], indirect=True)
def test_a_task_that_does_not_make_its_target_succeeds_and_runs_again(twins):
    assert twins.same() == ["promise", "after"]
    assert twins.same() == ["promise"]  # not up to date: never.txt is missing
    twins.same_list_and_clean()


@pytest.mark.parametrize("twins", ["serial"], indirect=True)
def test_hand_written_tasks_run_one_at_a_time_in_the_order_written(twins):
    assert twins.same() == ["folder", "figures"]
    twins.write("data.txt", "2\n")
    assert twins.same() == ["folder", "figures"]
    twins.same_list_and_clean()

"""End to end: `incrun watch` as a user runs it, editing files while it watches, stopping it with
Ctrl-C (a real SIGINT). Each wait is a bounded poll on what incrun printed or the jobs wrote."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import incrun_command, incrun_env, poll, processes_in

from incrun import watch
from incrun.discover import GitIgnored
from incrun.store import Store

WATCHING = "watching for changes (Ctrl-C to stop)"


class Watcher:
    """`incrun watch ...` running in the project, in a session of its own (as from a shell),
    its output kept as it comes: on pipes (plain lines), or on a terminal (the live display)."""

    def __init__(self, project, *args: str, terminal: bool = False, env: dict | None = None):
        self.project = project
        self.chunks: list[bytes] = []
        if terminal:
            main, secondary = pty.openpty()
            settings = {"TERM": "xterm-256color", "COLUMNS": "100", **(env or {})}
            self.process = subprocess.Popen(
                [*incrun_command(), "watch", *args], cwd=project.root, stdin=secondary,
                stdout=secondary, stderr=secondary, start_new_session=True,
                env=incrun_env(settings, ci=False))
            os.close(secondary)
            self._source = main
        else:
            self.process = subprocess.Popen(
                [*incrun_command(), "watch", *args], cwd=project.root, env=incrun_env(env),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True)
            self._source = self.process.stdout.fileno()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def runs(self) -> int:
        """The runs it started: each says how many jobs it has."""
        return len(re.findall(r"^incrun: \d+ jobs?\b", self.text, re.MULTILINE))

    def _read(self) -> None:
        while True:
            if not select.select([self._source], [], [], 0.2)[0]:
                if self.process.poll() is not None and not select.select(
                        [self._source], [], [], 0.2)[0]:
                    return
                continue
            try:
                chunk = os.read(self._source, 4096)
            except OSError:  # the terminal closed: incrun exited
                return
            if not chunk:
                return
            self.chunks.append(chunk)

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", "replace")

    def said(self, line: str) -> int:
        return self.text.count(line)

    def wait_watching(self, times: int) -> None:
        """Until it has said, `times` in all, that it watches: that many runs (or tries) done."""
        poll(lambda: self.said(WATCHING) >= times, what=f"{WATCHING!r} x{times}:\n{self.text}")

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to incrun, as a terminal sends it; its exit code."""
        os.kill(self.process.pid, signal.SIGINT)
        code = self.process.wait(timeout=30)
        self._reader.join(timeout=10)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        else:
            os.close(self._source)


@pytest.fixture
def watching(project):
    """Starts watchers in the project; each is stopped (killed, if it still runs) at the end."""
    started = []

    def begin(*args: str, **options) -> Watcher:
        watcher = Watcher(project, *args, **options)
        started.append(watcher)
        return watcher

    yield begin
    for watcher in started:
        watcher.close()


def recorded(project) -> set[str]:
    """The jobs recorded as succeeded, as a run in progress has committed them."""
    store = Store(project.root / ".incrun").open(writable=False)
    try:
        return set(store.signatures())
    finally:
        store.close()


def runs(watcher) -> int:
    """Runs drawn in plain lines: each says how many jobs it has."""
    return watcher.text.count("incrun: 3 jobs,")


def test_an_edit_reruns_its_job_only_and_the_runs_own_writes_never_loop(project, watching):
    project.inputs("a.inp", "b.inp", "c.inp")
    watcher = watching("-n", "2")
    watcher.wait_watching(1)
    assert project.ran() == ["a.inp", "b.inp", "c.inp"]

    project.write("a.inp", "x = 2\n")
    watcher.wait_watching(2)
    assert project.ran() == ["a.inp"]
    assert "incrun: changed: a.inp" in watcher.text
    assert (project.root / "a.out").read_text() == "X = 2\n"

    # An unrelated file, then a user's deletion of an output while idle: that job comes back.
    # The runs' own writes (outputs, the runner's records/, .incrun/) never started a run:
    # one run per change, no more.
    project.write("notes.txt", "to do\n")
    (project.root / "c.out").unlink()
    watcher.wait_watching(3)
    assert project.ran() == ["c.inp"]
    assert (project.root / "c.out").exists()
    assert runs(watcher) == 3
    assert watcher.said(WATCHING) == 3

    assert watcher.interrupt() == 0
    assert watcher.text.rstrip().endswith("incrun: stopped watching")
    assert "Traceback" not in watcher.text
    assert runs(watcher) == 3
    assert not processes_in(project.root, settle=5.0)


def test_a_new_input_runs_and_a_burst_of_saves_is_one_run(project, watching):
    project.inputs("a.inp")
    watcher = watching()
    watcher.wait_watching(1)
    project.ran()
    for number in range(5):  # saved again and again, as an editor or a script does
        project.write("a.inp", f"x = {number}\n")
    project.write("sub/new.inp", "y = 1\n")
    watcher.wait_watching(2)
    assert project.ran() == ["a.inp", "sub/new.inp"]
    assert (project.root / "a.out").read_text() == "X = 4\n"
    assert watcher.runs() == 2  # the first run, then one for the whole burst
    assert watcher.interrupt() == 0


def test_options_apply_to_each_run_and_files_outside_the_selection_are_not_watched(
        project, watching):
    project.inputs("a.inp", "b.inp")
    watcher = watching("a.inp", "--timeout", "30")
    watcher.wait_watching(1)
    assert project.ran() == ["a.inp"]
    project.write("b.inp", "x = 2\n")  # not selected: no run
    project.write("a.inp", "x = 3\n")
    watcher.wait_watching(2)
    assert project.ran() == ["a.inp"]
    assert "changed: a.inp\n" in watcher.text  # b.inp was no change to this selection
    assert watcher.interrupt() == 0


def test_a_bad_config_after_an_edit_is_said_and_the_watch_goes_on(project, watching):
    project.inputs("a.inp")
    watcher = watching()
    watcher.wait_watching(1)
    project.ran()
    project.write("incrun.toml", 'inputs = ["*.inp"\n')
    poll(lambda: "incrun: error: incrun.toml:" in watcher.text, what=watcher.text)
    watcher.wait_watching(2)
    assert watcher.process.poll() is None
    project.write("incrun.toml", 'command = ["{python}", "runner.py", "{input}", "-v"]\n')
    watcher.wait_watching(3)
    assert project.ran() == ["a.inp"]  # fixed, with a new command: its job reruns
    assert watcher.interrupt() == 0


def test_a_bad_config_at_the_start_ends_it_as_a_run_would(project):
    project.inputs("a.inp")
    project.write("incrun.toml", "jobs = 0\n")
    result = project.run("watch")
    assert result.returncode == 5
    assert result.stderr.startswith("incrun: error: incrun.toml: 'jobs'")


def test_another_run_holding_the_project_is_said_and_the_watch_goes_on(project, watching):
    project.inputs("a.inp")
    watcher = watching()
    watcher.wait_watching(1)
    project.ran()
    with open(project.root / ".incrun" / "lock", "a+") as lock:  # as another run holds it
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.truncate(0)
        lock.write("pid 1 on elsewhere\n")
        lock.flush()
        project.write("a.inp", "x = 2\n")
        poll(lambda: "incrun: another incrun run holds this project (pid 1 on elsewhere): "
                     "trying again at the next change" in watcher.text,
             what=watcher.text)
        watcher.wait_watching(2)
    project.write("a.inp", "x = 3\n")  # the other run is over: the next change runs
    watcher.wait_watching(3)
    assert project.ran() == ["a.inp"]
    assert watcher.text.count("another incrun run holds") == 1
    assert watcher.interrupt() == 0


DODO = """
import shutil

def task_copy():
    def copy():
        shutil.copy("src.txt", "dst.txt")
        with open("copies.log", "a") as log:
            log.write("copied\\n")
    return {"actions": [copy], "file_dep": ["src.txt"], "targets": ["dst.txt"]}
"""


def test_a_dodo_py_tasks_file_dep_and_the_dodo_py_itself_are_watched(project, watching):
    (project.root / "runner.py").unlink()
    project.write("dodo.py", DODO)
    project.write("src.txt", "one\n")
    watcher = watching()
    watcher.wait_watching(1)
    project.write("src.txt", "two\n")
    watcher.wait_watching(2)
    assert (project.root / "dst.txt").read_text() == "two\n"
    hello = '\ndef task_hello():\n    return {"actions": ["echo hi > hello.txt"]}\n'
    project.write("dodo.py", DODO + hello)
    watcher.wait_watching(3)
    assert (project.root / "hello.txt").exists()
    assert (project.root / "copies.log").read_text() == "copied\ncopied\n"  # not a third
    assert watcher.interrupt() == 0


# Its job for a `hang.inp` waits (bounded) for a file, after saying so with one of its own.
HANGING = r'''
import os, sys, time
inp = sys.argv[1]
if "hang" in inp:
    open("hanging", "w").close()
    deadline = time.time() + 60
    while not os.path.exists("release") and time.time() < deadline:
        time.sleep(0.02)
open(inp[:-4] + ".out", "w").write(open(inp).read().upper())
'''


def test_an_edit_during_a_run_is_seen_when_the_run_ends(project, watching):
    project.write("runner.py", HANGING)
    project.inputs("a.inp")
    watcher = watching("-n", "2")
    watcher.wait_watching(1)
    project.inputs("hang.inp")  # a new input: its job runs, and waits
    poll(lambda: (project.root / "hanging").exists(), what="the hanging job to start")
    project.write("a.inp", "x = 2\n")  # meanwhile, an edit
    (project.root / "release").write_text("")
    watcher.wait_watching(3)
    assert "incrun: changed: a.inp\n" in watcher.text
    assert (project.root / "a.out").read_text() == "X = 2\n"
    assert watcher.runs() == 3
    assert watcher.interrupt() == 0


def test_ctrl_c_during_a_run_on_a_terminal_stops_the_run_then_the_watch(project, watching):
    project.write("runner.py", HANGING)
    project.inputs("a.inp")
    watcher = watching("-n", "2", terminal=True)
    watcher.wait_watching(1)
    assert "\x1b[" in watcher.text  # the live display, drawn on the terminal
    project.inputs("b.inp", "hang.inp")
    poll(lambda: (project.root / "hanging").exists(), what="the hanging job to start")
    poll(lambda: "sweep:b.inp" in recorded(project), what="b.inp's job to be recorded")
    assert watcher.interrupt() == 130
    assert "stopped by SIGINT" in watcher.text
    assert "stopped watching" not in watcher.text
    assert not processes_in(project.root, settle=5.0)  # the hanging job was ended
    assert not (project.root / "hang.out").exists()
    status = subprocess.run([*incrun_command(), "status"], cwd=project.root,
                            env=incrun_env(), capture_output=True, text=True).stdout
    assert "sweep:hang.inp  interrupted last time" in status
    assert "b.inp" not in status  # finished, and recorded


def test_without_watchfiles_it_names_the_extra_to_install(project, tmp_path):
    project.inputs("a.inp")
    hidden = tmp_path / "hidden"
    (hidden / "watchfiles").mkdir(parents=True)
    (hidden / "watchfiles" / "__init__.py").write_text("raise ImportError('not installed')\n")
    result = project.run("watch", env={"PYTHONPATH": str(hidden)})
    assert result.returncode == 12
    assert result.stderr == ("incrun: error: incrun watch needs watchfiles, which is not "
                             "installed (hint: pip install 'incrun[watch]')\n")
    assert not (project.root / "a.out").exists()


def test_auto_is_doits_name_for_watch():
    from incrun import cli

    assert cli.parse_options(["auto", "-n", "2"])[1]["command"] == "watch"


# -- what counts as a change, and a burst ---------------------------------------------------


def changes(tmp_path: Path, *paths: str, kind: int = 2) -> set[tuple[int, str]]:
    return {(kind, str(tmp_path / path)) for path in paths}


def test_what_counts_as_a_change(tmp_path):
    root = str(tmp_path)
    (tmp_path / "a.out").write_text("A")
    known = watch.watched(root, reads=["a.inp", "runner.py", "a.out"], writes=["a.out"])
    never = GitIgnored(tmp_path)

    def found(*paths, kind=2, known=known):
        return watch.wanted(changes(tmp_path, *paths, kind=kind), root, known, never)

    assert found("a.inp", "runner.py") == ([f"{root}/a.inp", f"{root}/runner.py"], [])
    assert found(".incrun/state.db", "__pycache__/x.pyc", ".git/index") == ([], [])
    assert found("a.out") == ([], [])  # as the run left it
    assert found("pyproject.toml", "data/.gitignore")[0] != []
    assert found("notes.txt") == ([], [])  # modified, and read by no job
    assert found("new.inp", kind=1) == ([], [f"{root}/new.inp"])  # appeared: perhaps an input
    (tmp_path / "a.out").write_text("edited")
    assert found("a.out") == ([f"{root}/a.out"], [])
    (tmp_path / "a.out").unlink()
    assert found("a.out", kind=3) == ([f"{root}/a.out"], [])
    assert found("a.inp", known=None) == ([], [])  # unreadable project: only new files count
    assert found("incrun.toml", known=None) == ([f"{root}/incrun.toml"], [])
    own = watch.CONFIG_FILES | {"build/tasks.py"}  # `incrun watch -f build/tasks.py`
    assert watch.wanted(changes(tmp_path, "build/tasks.py"), root, known, never,
                        config_files=own)[0] == [f"{root}/build/tasks.py"]


def test_a_folder_moved_in_or_away_holding_inputs_is_a_change(tmp_path):
    root = str(tmp_path)
    known = watch.watched(root, reads=["data/b.inp", "data/b/x.inp", "data/c"], writes=[])
    never = GitIgnored(tmp_path)
    for folder in ("data/b", "data", "data/c"):
        assert watch.wanted(changes(tmp_path, folder, kind=3), root, known, never)[0]
    for other in ("data/bb", "data/b/y", "dat"):
        assert not watch.wanted(changes(tmp_path, other, kind=3), root, known, never)[0]


def test_what_gitignore_ignores_never_appears(tmp_path):
    (tmp_path / ".gitignore").write_text("build/\n*.tmp\n")
    root = str(tmp_path)
    known = watch.watched(root, reads=[], writes=[])
    added = changes(tmp_path, "build/x.inp", "a.tmp", "sub/b.tmp", "c.inp", kind=1)
    assert watch.wanted(added, root, known, GitIgnored(tmp_path)) == ([], [f"{root}/c.inp"])


def test_saves_in_a_burst_are_one_rerun_and_a_long_burst_waits_no_longer_than_its_limit():
    now = [0.0]

    def batches(script):
        for step, batch in script:
            now[0] += step
            yield batch

    # a save every 0.1 s for 0.5 s, then quiet: one burst
    script = [(1.0, {1})] + [(0.1, {n}) for n in range(2, 6)] + [(0.1, set())] * 4 + \
        [(5.0, {9})] + [(0.1, set())] * 4
    found = list(watch.bursts(batches(script), clock=lambda: now[0]))
    assert found == [{1, 2, 3, 4, 5}, {9}]
    # saves that never stop: run after LONGEST, then carry on
    now[0] = 0.0
    steady = [(0.1, {n}) for n in range(100)]
    first = next(watch.bursts(batches(steady), clock=lambda: now[0]))
    assert 25 <= len(first) <= 35


"""Shared fixtures: throw-away projects and the real `incrun` command run on them."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# A runner like a user's: reads X.inp, writes X.out, and leaves a record of its run
# (start, end, pid) in records/, so tests can count runs and prove overlap.
RUNNER = r'''
import json, os, sys, time, uuid
inp = sys.argv[1]
text = open(inp, encoding="utf-8").read()
record = {"input": inp, "start": time.time(), "pid": os.getpid()}
barrier = os.environ.get("BARRIER")
if barrier:  # wait until N jobs have started (bounded), to prove they overlap
    os.makedirs("started", exist_ok=True)
    open(os.path.join("started", uuid.uuid4().hex), "w").close()
    deadline = time.time() + 10
    while len(os.listdir("started")) < int(barrier) and time.time() < deadline:
        time.sleep(0.01)
print("working on", inp)
if "FAIL" in text:
    open(inp[:-4] + ".out", "w").write("partial")
    print("bad input: cannot simulate", file=sys.stderr)
    sys.exit(3)
if "NOOUT" not in text:
    open(inp[:-4] + ".out", "w", encoding="utf-8").write(text.upper())
record["end"] = time.time()
os.makedirs("records", exist_ok=True)
with open(os.path.join("records", uuid.uuid4().hex + ".json"), "w") as f:
    json.dump(record, f)
'''


# What the caller's environment would change in incrun's behaviour: the tests' own CI (GitHub
# Actions annotations and step summary), colours, the terminal's size, import timing.
CALLERS_SETTINGS = ("CI", "GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "NO_COLOR", "FORCE_COLOR",
                    "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES",
                    "PYTHONPROFILEIMPORTTIME")


def incrun_env(env: dict | None = None, ci: bool = True) -> dict:
    """The environment a test's incrun runs in: the caller's, without what would change what
    incrun does (as in CI, unless `ci` is False), with the test's own settings."""
    clean = {key: value for key, value in os.environ.items() if key not in CALLERS_SETTINGS}
    if ci:
        clean["CI"] = "true"  # plain lines, whatever the caller's terminal
    clean.update(env or {})
    return clean


@pytest.fixture(autouse=True)
def _callers_settings_cleared(monkeypatch):
    """The same for incrun code run in the tests' own process (displays, parsers)."""
    for key in CALLERS_SETTINGS:
        monkeypatch.delenv(key, raising=False)


def incrun_command() -> list[str]:
    script = Path(sys.executable).parent / "incrun"
    if script.exists():
        return [str(script)]
    found = shutil.which("incrun")
    return [found] if found else [sys.executable, "-m", "incrun"]


class Project:
    """A project folder with a runner.py and helpers to run incrun in it and read what ran."""

    def __init__(self, root: Path):
        self.root = root

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def inputs(self, *names: str, text: str = "x = 1\n") -> None:
        for name in names:
            self.write(name, text)

    def run(self, *args: str, env: dict | None = None, timeout: float = 120):
        return subprocess.run([*incrun_command(), *args], cwd=self.root, env=incrun_env(env),
                              capture_output=True, text=True, timeout=timeout)

    def on_terminal(self, *args: str, env: dict | None = None,
                    timeout: float = 60) -> tuple[int, str]:
        """Run incrun in a pseudo-terminal, as a user at a shell would: its exit code and all it
        drew. Bounded: past `timeout` it is killed and the test fails."""
        main, secondary = pty.openpty()
        terminal = {"TERM": "xterm-256color", "COLUMNS": "100", **(env or {})}
        process = subprocess.Popen([*incrun_command(), *args], cwd=self.root, stdin=secondary,
                                   stdout=secondary, stderr=secondary, start_new_session=True,
                                   env=incrun_env(terminal, ci=False))
        os.close(secondary)
        chunks, deadline = [], time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                if not select.select([main], [], [], left)[0]:
                    continue
                try:
                    chunk = os.read(main, 4096)
                except OSError:  # the terminal closed: incrun exited
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            else:
                os.killpg(process.pid, signal.SIGKILL)
                raise AssertionError(f"incrun on a terminal still drawing after {timeout}s")
            code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            os.close(main)
        return code, b"".join(chunks).decode("utf-8", "replace")

    def records(self) -> list[dict]:
        folder = self.root / "records"
        if not folder.exists():
            return []
        return [json.loads(p.read_text()) for p in folder.glob("*.json")]

    def ran(self) -> list[str]:
        """Inputs run since the last call, sorted; clears the records."""
        names = sorted(record["input"] for record in self.records())
        shutil.rmtree(self.root / "records", ignore_errors=True)
        return names


@pytest.fixture
def project(tmp_path: Path):
    """A project with the test runner; no process the test started in it may outlive the test."""
    root = tmp_path / "project"
    root.mkdir()
    proj = Project(root)
    proj.write("runner.py", RUNNER)
    yield proj
    leftovers = [pid for folder in {root, proj.root} for pid in processes_in(folder, settle=5.0)]
    for pid in leftovers:  # jobs of this test's incrun, working in its folder: ours to end
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not leftovers, f"processes left running in the project: {leftovers}"


# -- processes the tests start and watch --------------------------------------------


def poll(condition, timeout: float = 30.0, what: str = "condition"):
    """Wait, bounded, until condition() is true; fail the test otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def processes_in(folder: Path, settle: float = 0.0) -> list[int]:
    """Processes working in the folder: jobs, and anything they left running. With `settle`,
    those still there after waiting up to that long for them to go."""
    if settle:
        with contextlib.suppress(AssertionError):
            poll(lambda: not processes_in(folder), timeout=settle, what="processes to end")
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if Path(os.readlink(entry / "cwd")) == folder:
                    found.append(int(entry.name))
            except OSError:
                pass
    return [pid for pid in found if alive(pid)]


def start(project, *args: str, env: dict | None = None) -> subprocess.Popen:
    """incrun in a session (and process group) of its own, as a shell would start it."""
    return subprocess.Popen([*incrun_command(), *args], cwd=project.root, env=incrun_env(env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)

"""The process groups of running jobs: each job leads its own group, so that ending a job ends
everything it started; a guard process ends them if incrun itself is killed."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..config import DEFAULT_GRACE


def end_group(process: subprocess.Popen, grace: float) -> None:
    """TERM the job's whole process group, then KILL it if anything is left after `grace`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        if sig == signal.SIGTERM:
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                pass


def kill_group(pid: int) -> None:
    """SIGKILL the group `pid` leads, now; gone already is fine."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@contextlib.contextmanager
def exit_watch(process):
    """`exited(seconds)`: the exit code once the process ends, waiting at most that long (None
    if it still runs). On Linux a pidfd wakes the wait the moment it ends; elsewhere, polling."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # not Linux 5.3+, or the process is gone already
        pidfd = None

    def exited(seconds: float) -> int | None:
        if pidfd is not None:
            select.select([pidfd], [], [], seconds)
            return process.poll()
        try:
            return process.wait(seconds)
        except subprocess.TimeoutExpired:
            return None

    try:
        yield exited
    finally:
        if pidfd is not None:
            os.close(pidfd)


def watch(process, timeout: float | None, grace: float, holds, every: float,
          beat=None, beat_every: float = 0.0) -> tuple[int, bool]:
    """A remote worker's wait for its job: to its end, its timeout, or until `holds()` says
    it may not run on (its run stopped); then its group is ended, TERM and KILL after `grace`.
    `beat()`, if given, is called every `beat_every` seconds meanwhile. The exit code, and
    whether the job ran out of time."""
    deadline = None if timeout is None else time.monotonic() + timeout
    next_beat = time.monotonic() + beat_every
    with exit_watch(process) as exited:
        while (code := exited(every)) is None:
            now = time.monotonic()
            if deadline is not None and now > deadline:
                end_group(process, grace)
                return process.wait(), True
            if not holds():
                end_group(process, grace)
                return process.wait(), False
            if beat is not None and now >= next_beat:
                beat()
                next_beat = now + beat_every
    return code, False


class ChildProcess:
    """A multiprocessing.Process as ProcessGroups sees a job: a pid that leads a group, and
    wait() as Popen has it."""

    def __init__(self, process):
        self.process = process
        self.pid = process.pid

    def wait(self, timeout: float | None = None) -> int | None:
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise subprocess.TimeoutExpired("child process", timeout)
        return self.process.exitcode


class GroupLeader:
    """A job a worker process started, as ProcessGroups sees it: incrun can end its group but
    cannot wait for it (it is the worker's child), so wait() watches the group until it is gone."""

    def __init__(self, pid: int):
        self.pid = pid

    def wait(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                os.killpg(self.pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("job", timeout)
            time.sleep(0.02)


class ProcessGroups:
    """The process groups of running jobs, so that a stopped run leaves nothing behind.

    A guard process, started with the first group, is told of each one (but for those whose
    parent ends them itself, `guarded=False`): if incrun itself is killed (kill -9, out of
    memory), the guard ends the groups it was left with.
    """

    def __init__(self, grace: float = DEFAULT_GRACE, guard: bool = True):
        self.grace = grace
        self._processes: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._wants_guard = guard
        self._guard: subprocess.Popen | None = None

    def add(self, process: subprocess.Popen, guarded: bool = True) -> None:
        with self._lock:
            if self._wants_guard and guarded:
                self._wants_guard = False
                self._guard = _start_guard(self.grace)
            self._processes[process.pid] = process
            if guarded:
                self._tell_guard(f"+{process.pid}")

    def discard(self, process: subprocess.Popen, guarded: bool = True) -> None:
        with self._lock:
            self._processes.pop(process.pid, None)
            if guarded:
                self._tell_guard(f"-{process.pid}")

    def _tell_guard(self, line: str) -> None:
        if self._guard is not None:
            try:
                self._guard.stdin.write(line + "\n")
                self._guard.stdin.flush()
            except (OSError, ValueError):
                self._guard = None  # the guard is gone: run on without it

    def end_all(self, grace: float | None = None) -> None:
        """TERM every running group at once, then KILL what is left after the grace period."""
        with self._lock:
            processes = list(self._processes.values())
        grace = self.grace if grace is None else grace
        threads = [threading.Thread(target=end_group, args=(p, grace)) for p in processes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def kill_all(self) -> None:
        """SIGKILL every running group now (a second Ctrl-C)."""
        with self._lock:
            processes = list(self._processes.values())
        for process in processes:
            kill_group(process.pid)

    def close(self) -> None:
        if self._guard is not None:
            with self._lock:
                self._guard.stdin.close()
            self._guard.wait()
            self._guard = None


def _start_guard(grace: float) -> subprocess.Popen | None:
    script = Path(__file__).resolve().parent.parent / "guard.py"  # run alone: no imports to pay
    try:
        return subprocess.Popen([sys.executable, "-I", str(script), repr(grace)],
                                stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, text=True, start_new_session=True)
    except OSError:
        return None

"""The local executor: jobs as subprocesses on this machine, N at a time, each in its own group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ..events import ERROR, FAILED, OK, TIMEOUT, JobResult

TAIL_LINES = 15


def remove_outputs(outputs, root: Path) -> None:
    """Delete declared outputs: the link itself, never what a symlink points to."""
    for output in outputs:
        try:
            (root / output).unlink()
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            pass  # a folder declared as output is the user's to manage


def log_tail(log_path: Path, lines: int = TAIL_LINES) -> tuple[str, ...]:
    try:
        with open(log_path, "rb") as log:
            log.seek(max(0, os.fstat(log.fileno()).st_size - 64 * 1024))
            text = log.read().decode("utf-8", "replace")
    except OSError:
        return ()
    return tuple(text.splitlines()[-lines:])


def _missing(outputs, root: Path) -> list[str]:
    return [output for output in outputs if not (root / output).exists()]


def _exit_detail(code: int) -> str:
    if code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}"


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


class ProcessGroups:
    """The process groups of running jobs, so that a stopped run leaves nothing behind.

    A guard process, started with the first job, is told of each group: if incrun itself is
    killed (kill -9, out of memory), the guard ends the groups it was left with.
    """

    def __init__(self, grace: float = 5.0, guard: bool = True):
        self.grace = grace
        self._processes: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._wants_guard = guard
        self._guard: subprocess.Popen | None = None

    def add(self, process: subprocess.Popen) -> None:
        with self._lock:
            if self._wants_guard:
                self._wants_guard = False
                self._guard = _start_guard()
            self._processes[process.pid] = process
            self._tell_guard(f"+{process.pid}")

    def discard(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._processes.pop(process.pid, None)
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
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def close(self) -> None:
        if self._guard is not None:
            with self._lock:
                self._guard.stdin.close()
            self._guard.wait()
            self._guard = None


def _start_guard() -> subprocess.Popen | None:
    script = Path(__file__).resolve().parent.parent / "guard.py"  # run alone: no imports to pay
    try:
        return subprocess.Popen([sys.executable, "-I", str(script)], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, text=True, start_new_session=True)
    except OSError:
        return None


def _wait(process: subprocess.Popen, timeout: float | None, grace: float) -> tuple[int, bool]:
    """The exit code, and whether the job ran out of time and was ended."""
    try:
        return process.wait(timeout), False
    except subprocess.TimeoutExpired:
        end_group(process, grace)
        return process.wait(), True


def run_job(spec: dict, root: Path, log_path: Path, clock=time.time,
            groups: ProcessGroups | None = None) -> JobResult:
    """Run one job spec to the end; a failure is a value, never an exception."""
    name, outputs = spec["task"], spec["outputs"]
    started = clock()
    remove_outputs(outputs, root)  # nothing half-written from an earlier attempt may count
    for output in outputs:
        (root / output).parent.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    grace = groups.grace if groups is not None else 5.0
    try:
        with open(log_path, "wb") as log:
            process = subprocess.Popen(spec["argv"], cwd=root, stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
            if groups is not None:
                groups.add(process)
            try:
                code, timed_out = _wait(process, spec.get("timeout"), grace)
            finally:
                if groups is not None:
                    groups.discard(process)
    except OSError as error:
        detail = f"cannot start {spec['argv'][0]!r}: {error.strerror}"
        return JobResult(name, ERROR, started, clock(), None, str(log_path), detail)
    status, detail = OK, ""
    missing = _missing(outputs, root)
    if timed_out:
        status, detail = TIMEOUT, f"timed out after {spec['timeout']:g}s"
    elif code != 0:
        status, detail = FAILED, _exit_detail(code)
    elif missing:
        status, detail = FAILED, "exit code 0 but no output " + ", ".join(missing)
    if status != OK:
        remove_outputs(outputs, root)
        return JobResult(name, status, started, clock(), code, str(log_path), detail,
                         log_tail(log_path))
    return JobResult(name, OK, started, clock(), code, str(log_path))


class LocalExecutor:
    """At most `workers` jobs at once; threads wait on the subprocesses, the master stays free."""

    def __init__(self, workers: int, root: Path, grace: float = 5.0, guard: bool = True):
        self.workers = workers
        self.root = root
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="incrun-job")
        self.groups = ProcessGroups(grace, guard)

    def submit(self, spec: dict, log_path: Path) -> Future:
        return self._pool.submit(run_job, spec, self.root, log_path, time.time, self.groups)

    def submit_call(self, function, *args) -> Future:
        return self._pool.submit(function, *args)

    def stop(self) -> None:
        """End the running jobs (TERM, then KILL after the grace period), in the background."""
        threading.Thread(target=self.groups.end_all, daemon=True).start()

    def shutdown(self, kill: bool = False) -> None:
        """Wait for running jobs; with `kill`, end their process groups first."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        if kill:
            self.groups.end_all()
        self._pool.shutdown(wait=True)
        self.groups.close()

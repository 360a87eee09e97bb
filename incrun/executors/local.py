"""The local executor: jobs as subprocesses on this machine, N at a time, each in its own group."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ..events import ERROR, FAILED, OK, JobResult

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


class ProcessGroups:
    """The process groups of running jobs, so that an interrupted run leaves nothing behind."""

    def __init__(self):
        self._processes: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def add(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._processes[process.pid] = process

    def discard(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._processes.pop(process.pid, None)

    def terminate_all(self, grace: float = 2.0) -> None:
        """TERM every group, then KILL what is still there after the grace period."""
        with self._lock:
            processes = list(self._processes.values())
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for process in processes:
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            for process in processes:
                try:
                    process.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass


def run_job(spec: dict, root: Path, log_path: Path, clock=time.time,
            groups: ProcessGroups | None = None) -> JobResult:
    """Run one job spec to the end; a failure is a value, never an exception."""
    name, outputs = spec["task"], spec["outputs"]
    started = clock()
    remove_outputs(outputs, root)  # nothing half-written from an earlier attempt may count
    for output in outputs:
        (root / output).parent.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log_path, "wb") as log:
            process = subprocess.Popen(spec["argv"], cwd=root, stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
            if groups is not None:
                groups.add(process)
            try:
                code = process.wait()
            finally:
                if groups is not None:
                    groups.discard(process)
    except OSError as error:
        detail = f"cannot start {spec['argv'][0]!r}: {error.strerror}"
        return JobResult(name, ERROR, started, clock(), None, str(log_path), detail)
    status, detail = OK, ""
    missing = _missing(outputs, root)
    if code != 0:
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

    def __init__(self, workers: int, root: Path):
        self.workers = workers
        self.root = root
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="incrun-job")
        self._groups = ProcessGroups()

    def submit(self, spec: dict, log_path: Path) -> Future:
        return self._pool.submit(run_job, spec, self.root, log_path, time.time, self._groups)

    def submit_call(self, function, *args) -> Future:
        return self._pool.submit(function, *args)

    def shutdown(self, kill: bool = False) -> None:
        """Wait for running jobs; with `kill`, end their process groups first."""
        if kill:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._groups.terminate_all()
        self._pool.shutdown(wait=True, cancel_futures=True)

"""The local executor: jobs as subprocesses on this machine, N at a time, each in its own group."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..events import ERROR, FAILED, OK, TIMEOUT, JobResult

TAIL_LINES = 15


# What a worker thread tells the runner about a job, with the job's name and a value.
STARTED = "started"  # value: when it started
FINISHED = "finished"  # value: its JobResult


def remove_outputs(outputs, root: Path | str) -> None:
    """Delete declared outputs: the link itself, never what a symlink points to."""
    for output in outputs:
        try:
            os.unlink(os.path.join(root, output))
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


def _missing(outputs, root: Path | str) -> list[str]:
    return [output for output in outputs if not os.path.exists(os.path.join(root, output))]


class Lookups:
    """What the jobs of a run share, looked up once a run rather than once a job: the folders
    they write into (made if missing) and the programs they start (found on PATH)."""

    def __init__(self):
        self._made: set[str] = set()
        self._programs: dict[str, str] = {}

    def ensure_folder(self, path: str) -> None:
        """Make sure the folder holding `path` exists."""
        folder = os.path.dirname(path)
        if folder and folder not in self._made:
            os.makedirs(folder, exist_ok=True)
            self._made.add(folder)

    def program(self, name: str) -> str:
        """The file a command's first word starts; as given if it is a path or not found."""
        if name not in self._programs:
            found = None if os.sep in name else shutil.which(name)
            self._programs[name] = found or name
        return self._programs[name]


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


def run_job(spec: dict, root: Path | str, log_path: Path | str, clock=time.time,
            groups: ProcessGroups | None = None, lookups: Lookups | None = None) -> JobResult:
    """Run one job spec to the end; a failure is a value, never an exception."""
    name, outputs = spec["task"], spec["outputs"]
    started = clock()
    remove_outputs(outputs, root)  # nothing half-written from an earlier attempt may count
    lookups = lookups or Lookups()
    for output in outputs:
        lookups.ensure_folder(os.path.join(root, output))
    log_file = os.path.join(root, log_path)
    lookups.ensure_folder(log_file)
    argv = spec["argv"]
    grace = groups.grace if groups is not None else 5.0
    try:
        with open(log_file, "wb") as log:
            process = subprocess.Popen(argv, executable=lookups.program(argv[0]), cwd=root,
                                       stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
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
                         log_tail(log_file))
    return JobResult(name, OK, started, clock(), code, str(log_path))


class LocalExecutor:
    """At most `workers` jobs at once. Each worker thread starts its next queued job the moment
    its last one ends, so no job waits for the runner's bookkeeping; the runner hears of every
    start and end through one queue of (STARTED or FINISHED, job name, value) messages."""

    def __init__(self, workers: int, root: Path, grace: float = 5.0, guard: bool = True):
        self.workers = workers
        self.root = root
        self.groups = ProcessGroups(grace, guard)
        self._lookups = Lookups()
        self._todo: queue.SimpleQueue = queue.SimpleQueue()  # (name, function, args) or None
        self._messages: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._stopped = False
        self._cancelled: list[str] = []  # queued jobs taken back, not yet told to the runner
        self._cancel_lock = threading.Lock()

    def submit(self, name: str, spec: dict, log_path: str) -> None:
        """Queue a job spec; it starts when a worker is free."""
        self.submit_call(name, run_job, spec, str(self.root), log_path, time.time, self.groups,
                         self._lookups)

    def submit_call(self, name: str, function, *args) -> None:
        """Queue a call that returns the job's JobResult."""
        if len(self._threads) < self.workers:  # started as needed: a no-op run starts none
            thread = threading.Thread(target=self._work, name=f"incrun-job-{len(self._threads)}",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()
        self._todo.put((name, function, args))

    def report(self, result: JobResult) -> None:
        """A job run in the caller's thread: its start and end, as a worker would tell them."""
        self._messages.put((STARTED, result.name, result.started))
        self._messages.put((FINISHED, result.name, result))

    def _work(self) -> None:
        while (item := self._todo.get()) is not None:
            name, function, args = item
            if self._stopped:  # taken from the queue as the run stopped: never started
                with self._cancel_lock:
                    self._cancelled.append(name)
                continue
            started = time.time()
            self._messages.put((STARTED, name, started))
            try:
                result = function(*args)
            except Exception as error:  # a bug here must not leave the runner waiting
                result = JobResult(name, ERROR, started, time.time(),
                                   detail=f"{type(error).__name__}: {error}")
            self._messages.put((FINISHED, name, result))

    def messages(self) -> list[tuple[str, str, object]]:
        """Wait for the next message, then take every one already there."""
        found = [self._messages.get()]
        while not self._messages.empty():
            found.append(self._messages.get())
        return found

    def cancel_queued(self) -> list[str]:
        """Take back the queued jobs no worker has started; their names."""
        with self._cancel_lock:
            cancelled, self._cancelled = self._cancelled, []
        while not self._todo.empty():
            item = self._todo.get()
            if item is not None:
                cancelled.append(item[0])
        return cancelled

    def stop(self) -> None:
        """Start nothing more; end the running jobs (TERM, then KILL after the grace period)
        in the background."""
        self._stopped = True
        threading.Thread(target=self.groups.end_all, daemon=True).start()

    def shutdown(self, kill: bool = False) -> None:
        """Drop queued jobs, wait for running ones; with `kill`, end their process groups first."""
        self.cancel_queued()
        if kill:
            self.groups.end_all()
        for _ in self._threads:
            self._todo.put(None)
        for thread in self._threads:
            thread.join()
        self.groups.close()

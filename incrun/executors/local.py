"""The local executor: jobs on this machine, N at a time: commands as subprocesses, each in its
own process group, and `module:function` calls in long-lived worker processes."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from ..events import ERROR, FAILED, OK, TIMEOUT, JobResult
from .groups import ProcessGroups, end_group
from .inprocess import WorkerProcess, run_call
from .jobfiles import Lookups, Scratch, job_result, prepare

# What a worker thread tells the runner about a job, with the job's name and a value.
STARTED = "started"  # value: when it started
FINISHED = "finished"  # value: its JobResult


def _exit_detail(code: int) -> str:
    if code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}"


def _wait(process: subprocess.Popen, timeout: float | None, grace: float) -> tuple[int, bool]:
    """The exit code, and whether the job ran out of time and was ended."""
    try:
        return process.wait(timeout), False
    except subprocess.TimeoutExpired:
        end_group(process, grace)
        return process.wait(), True


@contextmanager
def _output_file(log_file: str, scratch: Scratch | None):
    """Where the job's output goes: the worker's scratch file, or else the log itself."""
    if scratch is not None:
        yield scratch.start()
    else:
        with open(log_file, "wb") as log:
            yield log.fileno()


def run_job(spec: dict, root: Path | str, log_path: Path | str, clock=time.time,
            groups: ProcessGroups | None = None, lookups: Lookups | None = None,
            scratch: Scratch | None = None) -> JobResult:
    """Run one job spec as a subprocess, to the end; a failure is a value, never an exception."""
    started = clock()
    lookups = lookups or Lookups()
    log_file = prepare(spec["outputs"], root, log_path, lookups)
    argv = spec["argv"]
    grace = groups.grace if groups is not None else 5.0
    try:
        with _output_file(log_file, scratch) as output:
            process = subprocess.Popen(argv, executable=lookups.program(argv[0]), cwd=root,
                                       stdin=subprocess.DEVNULL, stdout=output,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            if groups is not None:
                groups.add(process)
            try:
                code, timed_out = _wait(process, spec.get("timeout"), grace)
            finally:
                if groups is not None:
                    groups.discard(process)
    except OSError as error:
        return job_result(spec, root, log_path, started, clock(), ERROR,
                          f"cannot start {argv[0]!r}: {error.strerror}", scratch=scratch)
    status, detail = OK, ""
    if timed_out:
        status, detail = TIMEOUT, f"timed out after {spec['timeout']:g}s"
    elif code != 0:
        status, detail = FAILED, _exit_detail(code)
    return job_result(spec, root, log_path, started, clock(), status, detail, code,
                      scratch=scratch)


class LocalExecutor:
    """At most `workers` jobs at once. Each worker thread starts its next queued job the moment
    its last one ends, so no job waits for the runner's bookkeeping; the runner hears of every
    start and end through one queue of (STARTED or FINISHED, job name, value) messages."""

    def __init__(self, workers: int, root: Path, grace: float = 5.0, guard: bool = True,
                 logs: Path | None = None):
        self.workers = workers
        self.root = root
        self.logs = logs  # where worker threads keep their scratch files (see jobfiles.Scratch)
        self.groups = ProcessGroups(grace, guard)
        self._lookups = Lookups()
        self._todo: queue.SimpleQueue = queue.SimpleQueue()  # (name, function, args) or None
        self._messages: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._stopped = False
        self._cancelled: list[str] = []  # queued jobs taken back, not yet told to the runner
        self._cancel_lock = threading.Lock()
        self._own = threading.local()  # each worker thread's scratch file and worker process

    def submit(self, name: str, spec: dict, log_path: str) -> None:
        """Queue a job spec; it starts when a worker is free."""
        self.submit_call(name, self._run_call if spec.get("call") else self._run_job, spec,
                         log_path)

    def _run_job(self, spec: dict, log_path: str) -> JobResult:
        """A subprocess job, its output into this worker thread's scratch file."""
        if getattr(self._own, "scratch", None) is None:
            self._own.scratch = Scratch(self.logs) if self.logs is not None else None
        return run_job(spec, str(self.root), log_path, time.time, self.groups, self._lookups,
                       self._own.scratch)

    def _run_call(self, spec: dict, log_path: str) -> JobResult:
        """An in-process job, in the worker process of this worker thread."""
        if getattr(self._own, "worker", None) is None:
            self._own.worker = WorkerProcess(str(self.root), self.groups, self.logs)
        return run_call(spec, str(self.root), log_path, self._own.worker, time.time,
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
        try:
            self._serve()
        finally:
            for owned in (getattr(self._own, "worker", None), getattr(self._own, "scratch", None)):
                if owned is not None:
                    owned.close()

    def _serve(self) -> None:
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

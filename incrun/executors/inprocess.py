"""In-process jobs: a `module:function` command runs in a long-lived worker process, without
starting Python per job. Each worker thread of the local executor owns one such process; the
process is started by "spawn" on every platform (so Linux, macOS and Python 3.14's forkserver
default behave the same), in a session of its own, and replaced when it dies.

Only plain data crosses the pipe: the function's name, its string arguments, a log path, and
back a status and a one-line detail.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

from ..events import FAILED, OK, TIMEOUT, JobResult
from ..rules import find_function
from .groups import ChildProcess, ProcessGroups, end_group
from .jobfiles import Lookups, job_result, prepare

START_METHOD = "spawn"


def serve(connection, root: str) -> None:
    """The worker process: call what it is sent, one job at a time, until told to stop."""
    os.setpgid(0, 0)  # its own group: a timeout or a stop ends it and whatever it started
    os.chdir(root)
    sys.path.insert(0, root)  # the project's modules, as `python runner.py` would find them
    connection.send("ready")  # in its group: from now on it can be ended as a whole
    functions: dict[str, object] = {}
    while True:
        try:
            message = connection.recv()
        except EOFError:  # incrun is gone
            return
        if message is None:
            return
        target, args, log_path = message
        connection.send(_call(functions, target, args, log_path))


def _call(functions: dict, target: str, args: list[str], log_path: str) -> tuple[bool, str]:
    """Call the function with stdout and stderr (the file descriptors) going to the log."""
    with open(log_path, "wb") as log:
        saved = [os.dup(1), os.dup(2)]
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            function = functions.get(target) or functions.setdefault(target,
                                                                    find_function(target))
            function(*args)
            ok, detail = True, ""
        except BaseException as error:  # noqa: B036 (SystemExit too: the job's failure)
            traceback.print_exc()
            ok, detail = False, _describe(error)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
    return ok, detail


def _describe(error: BaseException) -> str:
    if isinstance(error, SystemExit):
        return f"exit code {error.code}" if error.code not in (None, 0) else "raised SystemExit"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


class WorkerProcess:
    """One long-lived worker process and the pipe to it, started when first needed and again
    after it died."""

    def __init__(self, root: str, groups: ProcessGroups):
        self.root = root
        self.groups = groups  # a stopped run ends the process's whole group
        self._child: ChildProcess | None = None
        self._connection = None

    def _start(self) -> None:
        context = multiprocessing.get_context(START_METHOD)
        ours, theirs = context.Pipe()
        process = context.Process(target=serve, args=(theirs, self.root), daemon=True,
                                  name="incrun-worker")
        process.start()
        theirs.close()
        self._child, self._connection = ChildProcess(process), ours
        if ours.recv() != "ready":  # EOFError if it could not start
            raise EOFError
        self.groups.add(self._child)

    def call(self, target: str, args: list[str], log_path: str,
             timeout: float | None) -> tuple[str, str]:
        """Run one call: (OK, ""), (FAILED, why) or (TIMEOUT, "")."""
        try:
            if self._child is None:
                self._start()
            self._connection.send((target, args, log_path))
            if self._connection.poll(timeout):
                ok, detail = self._connection.recv()
                return (OK, "") if ok else (FAILED, detail)
        except (EOFError, OSError):  # it died during the call: a new one takes the next
            return FAILED, self._forget()
        end_group(self._child, self.groups.grace)
        self._forget()
        return TIMEOUT, ""

    def _forget(self) -> str:
        """The process ended, or is to be replaced: why it ended, in words."""
        child, self._child = self._child, None
        self.groups.discard(child)
        self._connection.close()
        child.process.join()
        code = child.process.exitcode
        if code is not None and code < 0:
            return f"the worker process was killed by signal {-code}"
        return f"the worker process exited (code {code})"

    def close(self) -> None:
        """Tell an idle process to stop, and end it if it does not."""
        if self._child is None:
            return
        try:
            self._connection.send(None)
        except OSError:
            pass
        try:
            self._child.wait(self.groups.grace)
        except subprocess.TimeoutExpired:
            end_group(self._child, self.groups.grace)
        self._forget()


def run_call(spec: dict, root: Path | str, log_path: Path | str, worker: WorkerProcess,
             clock=time.time, lookups: Lookups | None = None) -> JobResult:
    """Run one `module:function` job in the worker process, to the end; a failure is a value,
    never an exception."""
    started = clock()
    log_file = prepare(spec["outputs"], root, log_path, lookups or Lookups())
    target, *args = spec["argv"]
    status, detail = worker.call(target, args, log_file, spec.get("timeout"))
    if status == TIMEOUT:
        detail = f"timed out after {spec['timeout']:g}s"
    return job_result(spec, root, log_path, started, clock(), status, detail,
                      finished="returned")

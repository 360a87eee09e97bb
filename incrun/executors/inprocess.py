"""In-process jobs: a `module:function` command runs in a long-lived worker process, without
starting Python per job. Each worker thread of the local executor owns one such process and
replaces it when it dies.

The process is a fresh interpreter started by incrun itself (spawn semantics, the same on Linux,
macOS and under Python 3.14's forkserver default, whatever multiprocessing would pick), in a
session of its own, and it never imports the script that started incrun. Only plain data crosses
the socket: the function's name, its string arguments, a log path; back a status and a line.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path

from ..events import FAILED, OK, TIMEOUT, JobResult
from ..rules import find_function
from .groups import ProcessGroups, end_group
from .jobfiles import Lookups, Scratch, job_result, prepare

# How the worker starts: this incrun's package, whatever sys.path the new interpreter has.
_BOOT = ("import sys; sys.path.insert(0, {home!r}); "
         "from incrun.executors.inprocess import serve; serve({fd}, {root!r}, {logs!r})")


def serve(fd: int, root: str, logs: str | None) -> None:
    """The worker process: call what it is sent, one job at a time, until told to stop."""
    connection = Connection(fd)
    os.chdir(root)
    sys.path.insert(0, root)  # the project's modules, as `python runner.py` would find them
    scratch = Scratch(logs) if logs is not None else None
    functions: dict[str, object] = {}
    while True:
        try:
            message = connection.recv()
        except EOFError:  # incrun is gone
            return
        if message is None:
            return
        target, args, log_path = message
        if scratch is None:
            with open(log_path, "wb") as log:
                connection.send(_call(functions, target, args, log.fileno()))
        else:
            ok, detail = _call(functions, target, args, scratch.start())
            scratch.finish(log_path, keep=not ok)
            connection.send((ok, detail))


def _call(functions: dict, target: str, args: list[str], output: int) -> tuple[bool, str]:
    """Call the function, its stdout and stderr (the file descriptors) going to `output`."""
    saved = [os.dup(1), os.dup(2)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(output, 1)
    os.dup2(output, 2)
    try:
        function = functions.get(target) or functions.setdefault(target, find_function(target))
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
    """One long-lived worker process and the socket to it, started when first needed and again
    after it died."""

    def __init__(self, root: str, groups: ProcessGroups, logs: Path | None = None):
        self.root = root
        self.groups = groups  # a stopped run ends the process's whole group
        self.logs = str(logs) if logs is not None else None  # for its scratch file
        self._process: subprocess.Popen | None = None
        self._connection: Connection | None = None

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        home = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        boot = _BOOT.format(home=home, fd=theirs.fileno(), root=self.root, logs=self.logs)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", boot], pass_fds=[theirs.fileno()], cwd=self.root,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)
        finally:
            theirs.close()
        self._connection = Connection(ours.detach())
        self.groups.add(self._process)

    def call(self, target: str, args: list[str], log_path: str,
             timeout: float | None) -> tuple[str, str]:
        """Run one call: (OK, ""), (FAILED, why) or (TIMEOUT, "")."""
        try:
            if self._process is None:
                self._start()
            self._connection.send((target, args, log_path))
            if timeout is None or self._connection.poll(timeout):  # poll() costs a selector
                ok, detail = self._connection.recv()
                return (OK, "") if ok else (FAILED, detail)
        except (EOFError, OSError):  # it died during the call: a new one takes the next
            return FAILED, self._forget()
        end_group(self._process, self.groups.grace)
        self._forget()
        return TIMEOUT, ""

    def _forget(self) -> str:
        """The process ended, or is to be replaced: why it ended, in words."""
        process, self._process = self._process, None
        self.groups.discard(process)
        self._connection.close()
        code = process.wait()
        if code < 0:
            return f"the worker process was killed by signal {-code}"
        return f"the worker process exited (code {code})"

    def close(self) -> None:
        """Tell an idle process to stop, and end it if it does not."""
        if self._process is None:
            return
        try:
            self._connection.send(None)
            self._process.wait(self.groups.grace)
        except (OSError, subprocess.TimeoutExpired):
            end_group(self._process, self.groups.grace)
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

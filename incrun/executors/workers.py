"""Worker processes, the side that runs jobs. Each job slot of the local executor is a long-lived
Python process that runs the job specs it is sent one after another, the next one already
queued: a command as a subprocess in a process group of its own, a `module:function` call in
the worker itself. Starting jobs from here keeps incrun's own process (its interpreter lock, its
bookkeeping) off the path from one job to the next.

A worker is a fresh interpreter that incrun starts itself (spawn semantics, the same on Linux,
macOS and under Python 3.14's forkserver default), and it never imports the script that started
incrun. Only plain data crosses its socket: job specs as JSON one way (then CLOSE), (STARTED |
FINISHED, job name, value) messages the other way. If incrun goes away, or the worker is told
to stop (SIGTERM), it ends its running job's whole group before it exits.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path

from ..events import ERROR, FAILED, OK, TIMEOUT, JobResult
from .contract import JobSpec
from .groups import DEFAULT_GRACE, ProcessGroups, end_group
from .jobfiles import Lookups, Scratch, job_result, open_log, prepare
from .warm import WarmStarts, script_of

STARTED = "started"  # value: (when, pid of the process leading the job's group)
FINISHED = "finished"  # value: the JobResult
COLD = "cold"  # value: why a script asked to start warm starts cold (said once per script)
RESTART = "restart"  # value: the file that changed; the worker exits, its jobs go to a new one
CLOSE = b""  # incrun's last message to a worker; the others are job specs, as JSON

# How incrun starts a worker: this very incrun package, whatever sys.path the interpreter has.
# Not the working folder (`-c` puts it first): every import would list the project's folder,
# which may hold 100,000 files.
BOOT = ("import sys; sys.path[:] = [{home!r}, *(path for path in sys.path if path)]; "
        "from incrun.executors.workers import serve; serve({fd}, {root!r}, {logs!r}, {grace!r})")


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


def _scratch_for(spec: JobSpec, scratch: Scratch | None) -> Scratch | None:
    """The scratch file a job's output goes to first, if any: a retry's goes to its log at
    once, after the earlier attempts' output."""
    return scratch if spec.attempt == 1 else None


@contextmanager
def _output_file(log_file: str, scratch: Scratch | None, spec: JobSpec):
    """Where the job's output goes: the worker's scratch file, or else the log itself."""
    if scratch is not None:
        yield scratch.start()
    else:
        with open_log(log_file, spec.attempt, spec.tries) as log:
            yield log.fileno()


def run_job(spec: JobSpec, root: Path | str, clock=time.time,
            groups: ProcessGroups | None = None, lookups: Lookups | None = None,
            scratch: Scratch | None = None,
            on_start: Callable[[subprocess.Popen], None] | None = None,
            wait=_wait, start=None) -> JobResult:
    """Run one job spec as a subprocess, to the end; a failure is a value, never an exception.

    `on_start` hears of the process once it runs; `wait(process, timeout, grace)` waits for it;
    `start(argv, cwd, env, output)`, if given, starts it (a warm start), else a new program.
    """
    started = clock()
    lookups = lookups or Lookups()
    log_file = prepare(spec, root, lookups)
    scratch = _scratch_for(spec, scratch)
    argv = spec.argv
    grace = groups.grace if groups is not None else DEFAULT_GRACE
    try:
        env = {**os.environ, **dict(spec.env)} if spec.env else None
        with _output_file(log_file, scratch, spec) as output:
            if start is not None:
                process = start(argv, str(root), env, output)
            else:
                process = subprocess.Popen(argv, executable=lookups.program(argv[0]), cwd=root,
                                           env=env, stdin=subprocess.DEVNULL, stdout=output,
                                           stderr=subprocess.STDOUT, start_new_session=True)
            if groups is not None:
                groups.add(process)
            try:
                if on_start is not None:
                    on_start(process)
                code, timed_out = wait(process, spec.timeout, grace)
            except BaseException:  # its watcher failed (a worker stopped hard): it ends too
                end_group(process, grace)
                raise
            finally:
                if groups is not None:
                    groups.discard(process)
    except OSError as error:
        return job_result(spec, root, started, clock(), ERROR,
                          f"cannot start {argv[0]!r}: {error.strerror}", scratch=scratch)
    status, detail = OK, ""
    if timed_out:
        status, detail = TIMEOUT, f"timed out after {spec.timeout:g}s"
    elif code != 0:
        status, detail = FAILED, _exit_detail(code)
    return job_result(spec, root, started, clock(), status, detail, code, scratch=scratch)


def call(functions: dict, target: str, args: list[str], output: int) -> tuple[bool, str]:
    """Call the function, its stdout and stderr (the file descriptors) going to `output`."""
    saved = [os.dup(1), os.dup(2)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(output, 1)
    os.dup2(output, 2)
    try:
        if target not in functions:
            from ..calls import find_function  # only workers that run calls need it

            if os.getcwd() not in sys.path:  # the project's modules, as `python runner.py`
                sys.path.insert(0, os.getcwd())  # would find them
            functions[target] = find_function(target)
        function = functions[target]
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


class _IncrunGone(Exception):
    """The socket to incrun closed: it exited or was killed."""


class _Restart(Exception):
    """A file the warm imports came from changed: a fresh worker must take over."""


class Worker:
    """The worker process's loop: jobs in, messages out."""

    def __init__(self, connection: Connection, root: str, logs: str | None, grace: float):
        self.connection = connection
        self.root = root
        self.grace = grace
        self.scratch = Scratch(logs) if logs is not None else None
        self.lookups = Lookups()
        self.functions: dict[str, object] = {}
        self.warm = WarmStarts(root, sys.path[1:])  # sys.path[0] is incrun's own (see BOOT)
        self.pending: deque = deque()  # jobs received while one ran
        self.running: subprocess.Popen | None = None
        # A child's exit and a message from incrun both wake the wait for a running job.
        self._wakeup, wakeup_write = os.pipe()
        os.set_blocking(self._wakeup, False)
        os.set_blocking(wakeup_write, False)
        signal.set_wakeup_fd(wakeup_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._terminated)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is incrun's to handle
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wakeup, selectors.EVENT_READ)
        self._selector.register(connection.fileno(), selectors.EVENT_READ)

    def run(self) -> None:
        try:
            while (message := self._next()) is not None:
                spec = JobSpec.from_json(message)
                result = self._call(spec) if spec.call else self._command(spec)
                self.connection.send((FINISHED, spec.task, result))
        except _IncrunGone:
            pass
        except _Restart as changed:
            self.connection.send((RESTART, "", str(changed)))
        finally:
            if self.scratch is not None:
                self.scratch.close()

    def _next(self) -> bytes | None:
        """The next job spec; None when incrun closes the worker, or is gone."""
        if self.pending:
            message = self.pending.popleft()
        else:
            try:
                message = self.connection.recv_bytes()
            except EOFError:
                return None
        return None if message == CLOSE else message

    def _command(self, spec: JobSpec) -> JobResult:
        def started(process: subprocess.Popen) -> None:
            self.running = process
            self.connection.send((STARTED, spec.task, (time.time(), process.pid)))

        try:
            return run_job(spec, self.root, lookups=self.lookups, scratch=self.scratch,
                           on_start=started, wait=self._wait, start=self._warm_start(spec))
        finally:
            self.running = None

    def _warm_start(self, spec: JobSpec):
        """How a job asked to start warm starts: forked from this worker once it has imported
        what the script imports; None (a new program) if its script cannot, said once."""
        script = script_of(spec.argv) if spec.warm else None
        if script is None:
            return None
        changed = self.warm.changed()
        if changed is not None:
            raise _Restart(changed)
        first = script not in self.warm.prepared
        why = self.warm.prepare(script)
        if why is None:
            return self.warm.fork
        if first:
            self.connection.send((COLD, spec.task, why))
        return None

    def _call(self, spec: JobSpec) -> JobResult:
        started = time.time()
        self.connection.send((STARTED, spec.task, (started, os.getpid())))
        log_file = prepare(spec, self.root, self.lookups)
        scratch = _scratch_for(spec, self.scratch)
        target, *args = spec.argv
        with _output_file(log_file, scratch, spec) as output:
            ok, detail = call(self.functions, target, args, output)
        return job_result(spec, self.root, started, time.time(), OK if ok else FAILED, detail,
                          finished="returned", scratch=scratch)

    def _wait(self, process: subprocess.Popen, timeout: float | None,
              grace: float) -> tuple[int, bool]:
        """Wait for the job, taking in the jobs incrun queues meanwhile; end it at its timeout,
        or if incrun goes away."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := process.poll()) is None:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                end_group(process, grace)
                return process.wait(), True
            for key, _ in self._selector.select(remaining):
                if key.fd == self._wakeup:
                    self._drain_wakeup()
                    continue
                try:
                    self.pending.append(self.connection.recv_bytes())
                except EOFError:
                    end_group(process, grace)  # nothing may outlive incrun
                    raise _IncrunGone from None
        return code, False

    def _drain_wakeup(self) -> None:
        try:
            while os.read(self._wakeup, 512):
                pass
        except BlockingIOError:
            pass

    def _terminated(self, signum, frame) -> None:
        """Told to stop (by incrun, or the guard after incrun died): the job goes first."""
        if self.running is not None:
            end_group(self.running, self.grace)
        os._exit(128 + signum)


def serve(fd: int, root: str, logs: str | None, grace: float = DEFAULT_GRACE) -> None:
    """The worker process's entry point."""
    os.chdir(root)
    Worker(Connection(fd), root, logs, grace).run()

"""What every executor is given and what it tells: the job spec, which crosses every boundary as
JSON (to a worker process here, to a remote worker elsewhere; no user code is ever pickled),
the three messages an executor sends back, and the protocol the coordinator drives it by."""

from __future__ import annotations

import json
import queue
import sys
import time
from dataclasses import MISSING, dataclass, field, fields
from typing import Protocol

from .. import __version__
from ..events import JobResult

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


@dataclass(frozen=True)
class JobSpec:
    """One job, all an executor needs to run it; paths are relative to the project."""

    task: str  # the job's name, "<rule>:<input>"
    argv: tuple[str, ...]  # the command; for a call, `module:function` then its arguments
    outputs: tuple[str, ...]  # must all exist after a success; removed before and on failure
    log: str  # where the job's stdout and stderr go
    timeout: float | None = None  # seconds; then the job's whole process group is ended
    attempt: int = 1  # 2 and up: a retry, whose output goes after the earlier attempts'
    call: bool = False  # run `argv[0]` as a function in a worker process, not as a program
    inputs: tuple[str, ...] = field(default=())  # a gather job's, listed in `inputs_file`
    inputs_file: str | None = None  # written before the job starts, when its command reads it
    reads: tuple[str, ...] = field(default=())  # every file it reads: what --stage sends
    hashed: tuple[str, ...] = field(default=())  # its own inputs: hashed where it ran, if it
    # succeeded, in parallel (the coordinator would read them one after another)
    env: tuple[tuple[str, str], ...] = field(default=())  # (name, value): set for the command
    tries: int = 1  # attempts it may have at most: 1 + its retries
    version: str = __version__  # of the incrun that made the spec: a worker's must match
    python: str = PYTHON  # "3.11": a worker running a call must have the same
    warm: bool = False  # `{python} SCRIPT …` forked from a worker that imported what it imports

    def to_json(self, whole: bool = True) -> str:
        """Every field, for any worker, of any version. Not `whole`: for a worker running this
        very incrun (the local executor's), which fills in the defaults, only the fields that
        differ from them, and the version and Python. Every field is a str, number, bool,
        None or tuple of those: no deep copy (asdict's) is needed."""
        if whole:
            return json.dumps({name: getattr(self, name) for name in _SPEC_FIELDS})
        return json.dumps({name: value for name in _SPEC_FIELDS
                           if (value := getattr(self, name)) != _DEFAULTS.get(name, _SENT)
                           or name in _ALWAYS_SENT})

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        data = json.loads(text)
        for key in ("argv", "outputs", "inputs", "reads", "hashed"):
            if key in data:
                data[key] = tuple(data[key])
        if "env" in data:
            data["env"] = tuple(tuple(pair) for pair in data["env"])
        return cls(**data)


_SPEC_FIELDS = tuple(spec_field.name for spec_field in fields(JobSpec))
_SENT = object()  # no default: always sent
_DEFAULTS = {spec_field.name: spec_field.default if spec_field.default is not MISSING
             else spec_field.default_factory() for spec_field in fields(JobSpec)
             if spec_field.default is not MISSING or spec_field.default_factory is not MISSING}
_ALWAYS_SENT = ("version", "python")


@dataclass(frozen=True)
class Started:
    """The job's process runs (from `at`, on the executor's clock), on `worker` if it says."""

    task: str
    at: float
    worker: str = ""


@dataclass(frozen=True)
class Finished:
    """The job ended, however it ended: its result says how."""

    result: JobResult

    @property
    def task(self) -> str:
        return self.result.name

    @classmethod
    def unanswered(cls, spec: JobSpec, status: str, detail: str, worker: str = "") -> Finished:
        """A remote job that ended with no result from its worker: stopped, refused before it
        was sent, or lost."""
        now = time.time()
        return cls(JobResult(spec.task, status, now, now, log_path=spec.log, detail=detail,
                             worker=worker or None))


@dataclass(frozen=True)
class Cancelled:
    """The run stopped before the job started: it is as it was, to run another time."""

    task: str


@dataclass(frozen=True)
class Note:
    """Something the user should hear of (a worker joined or left); `warning` if it hurts."""

    text: str
    warning: bool = False


@dataclass(frozen=True)
class Lost:
    """The executor can run nothing more (its cluster is gone): the run ends, every job it
    had is then Finished or Cancelled, and what finished stays recorded."""

    reason: str


Message = Started | Finished | Cancelled | Note | Lost


def take_messages(messages: queue.SimpleQueue, timeout: float | None) -> list[Message]:
    """`Executor.messages` over a queue: the next one (waiting at most `timeout` seconds; none
    is then an empty list), and every one already there."""
    try:
        found = [messages.get(timeout=timeout)]
    except queue.Empty:
        return []
    while not messages.empty():
        found.append(messages.get())
    return found


class Executor(Protocol):
    """Runs what the coordinator submits, at most `slots` jobs at once, and tells it of every
    start and end; it never decides what runs and never records anything."""

    slots: int  # 0 until known (a cluster's, once reached): the coordinator submits one job
    ahead: int  # jobs it wants submitted beyond those running, ready to start
    root: object  # pathlib.Path of the project

    def warm_up(self, jobs: int, calls: bool = False) -> None:
        """A hint, before the first submit: about this many jobs will come (some calls)."""

    def submit(self, spec: JobSpec) -> None:
        """Run a rule's job; it starts when a slot is free."""

    def submit_task(self, name: str, task, log_path: str, timeout: float | None,
                    attempt: int = 1, tries: int = 1) -> None:
        """Run a hand-written doit task (its actions may be Python) on this machine; a retry
        (`attempt` 2 and up, of `tries`) adds its output to its log."""

    def messages(self, timeout: float | None = None) -> list[Message]:
        """Wait for the next message (at most `timeout` seconds), then take all there are."""

    def hold(self) -> None:
        """Start nothing more (--fail-fast after a failure): what has not started is
        Cancelled, what runs finishes."""

    def stop(self) -> None:
        """Start nothing more: queued jobs are Cancelled, running ones ended in the grace
        period, each then Finished."""

    def kill(self) -> None:
        """End every running job now (a second Ctrl-C): nothing may outlive incrun."""

    def close(self, kill: bool = False) -> None:
        """Wait for the running jobs (or, with `kill`, end them) and release everything."""

"""The worker side of the broker executors (Celery, RQ): what a worker does with one message
from the broker. It is installed incrun code and the message is JSON: a job spec, never code.
The job runs in the project folder as the local workers run it, and the coordinator hears of it
through JSON replies: taken, started, alive every HEARTBEAT seconds, finished (each with the
worker's incrun, Python and host), or dropped.

A job runs only while its run's lease holds: a run that was stopped, or whose incrun is gone
(killed even), has its running jobs ended and its queued ones dropped. A message the broker
delivers a second time (its first worker died holding it) is dropped too: the coordinator,
which heard the job go silent, sends it again under a new attempt, so it never runs twice."""

from __future__ import annotations

import base64
import json
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from .. import __version__
from ..config import DEFAULT_GRACE
from ..errors import first_line
from ..events import ERROR, JobResult
from .contract import PYTHON
from .groups import ProcessGroups, watch
from .remote import plain, run_remote, run_staged

HEARTBEAT = 2.0  # seconds between a running job's "alive" replies
POLL = 0.5  # seconds between a running job's looks at its run's lease
LEASE_WAIT = 6.0  # seconds a job waits to hear of its run's lease; then the run is gone
ALIVE, ENDED, UNKNOWN = "alive", "ended", "unknown"  # a run's lease, as a worker knows it


class Lease(Protocol):
    def state(self, run: str, message_id: str) -> str:
        """ALIVE if the job of this message may run, ENDED if its run ended (stopped, its
        incrun gone, the message superseded), UNKNOWN if nothing was heard of the run yet."""


def identity(worker: str) -> dict:
    """What every reply says of the worker that sends it."""
    return {"worker": worker, "host": socket.gethostname(), "version": __version__,
            "python": PYTHON}


def run_message(message: dict, post: Callable[[dict], None], lease: Lease, worker: str,
                groups: ProcessGroups | None = None, redelivered: bool = False) -> None:
    """Run the job of one message to its end (or until its lease ends), telling the
    coordinator through `post` each step of the way; whatever goes wrong here is told as the
    job's error, never left unsaid (the coordinator would wait for it)."""
    me = identity(worker)
    run, message_id = message["run"], message["id"]

    def reply(kind: str, **values) -> None:
        post({"kind": kind, "id": message_id, **me, **values})

    if "probe" in message:
        reply("probe", text=_read(message["probe"]))
        return
    if redelivered:
        reply("dropped", why="delivered a second time: incrun sends it again itself")
        return
    # From here on the coordinator hears of the job every few seconds: a worker that dies
    # holding it, before its process starts, leaves a silence it notices, as mid-job.
    _quietly(reply, "taken")
    if not _lease_holds(lease, run, message_id):
        reply("dropped", why="its run has ended")
        return
    try:
        reply("finished", **_run(message, reply, lease, groups))
    except Exception as error:  # noqa: BLE001 - a worker that cannot run it: the job's error
        now = time.time()
        task = json.loads(message["spec"]).get("task", "?")
        reply("finished", result=plain(JobResult(task, ERROR, now, now,
                                                 detail=f"on {me['host']}: "
                                                        f"{type(error).__name__}: "
                                                        f"{first_line(error)}")))


def _run(message: dict, reply, lease: Lease, groups: ProcessGroups | None) -> dict:
    """The job, run here or (staged) in a scratch folder: what the "finished" reply says."""
    run, message_id = message["run"], message["id"]
    grace = float(message.get("grace", DEFAULT_GRACE))  # the run's --grace
    hooks = {"groups": groups,
             "on_start": lambda process: _quietly(reply, "started", at=time.time()),
             "wait": _waiting(lambda: lease.state(run, message_id) == ALIVE,
                              lambda: _quietly(reply, "alive"), grace)}
    spec_json = message["spec"]
    files = message.get("files")
    if files is None:
        return {"result": run_remote(spec_json, message["root"], **hooks)}
    staged = {path: base64.b64decode(data) for path, data in files.items()}
    values, made = run_staged(spec_json, staged, tempfile.gettempdir(), message["limit"],
                              **hooks)
    return {"result": values,
            "made": {path: base64.b64encode(data).decode() for path, data in made.items()}}


def _lease_holds(lease: Lease, run: str, message_id: str) -> bool:
    deadline = time.monotonic() + LEASE_WAIT
    while (state := lease.state(run, message_id)) == UNKNOWN and time.monotonic() < deadline:
        time.sleep(0.1)
    return state == ALIVE


def _quietly(reply, kind: str, **values) -> None:
    """A reply that cannot be sent is not the job's failure: the coordinator, hearing nothing,
    sends the job again once its lease (and so this job) has ended."""
    try:
        reply(kind, **values)
    except Exception:  # noqa: BLE001 - the broker's many errors: all mean the same here
        pass


def _waiting(holds: Callable[[], bool], beat: Callable[[], None], grace: float):
    """run_job's `wait`: to the job's end, its timeout, or its lease's end (then TERM, and KILL
    after the run's `grace`); a heartbeat every HEARTBEAT seconds meanwhile."""

    def wait(process, timeout: float | None, _worker_grace: float) -> tuple[int, bool]:
        return watch(process, timeout, grace, holds, POLL, beat, HEARTBEAT)

    return wait


def _read(path: str) -> str:
    """The probe file as this worker sees it: its text, or "" if it cannot."""
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def hello(queues: list[str], slots: int, worker: str) -> dict:
    """What a worker answers when the coordinator looks for workers: who it is, which queues
    it takes jobs from, and how many at once."""
    return {**identity(worker), "queues": queues, "slots": slots}


"""The worker side of the Dask executor: installed incrun code that a Dask worker runs by name
for each job (`run_on_worker`), the plugin that keeps the process groups of a worker's jobs, and
the probe of the project folder. A job runs to its end, or until the scheduler gives up its task
(the run stopped, or incrun's client is gone, killed even): then its process group is ended, as
Dask itself cannot stop a task that runs."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import distributed
from distributed import WorkerPlugin

from .. import __version__
from .contract import JobSpec
from .groups import DEFAULT_GRACE, ProcessGroups, watch
from .remote import run_remote, run_staged

POLL = 0.2  # seconds between a worker's looks at whether its job was cancelled


class JobGroups(WorkerPlugin):
    """On each worker: the process groups of the jobs it runs, and the guard that ends them
    should the worker die (SIGKILL, out of memory) before it can."""

    name = "incrun-job-groups"

    def __init__(self, grace: float = DEFAULT_GRACE):
        self.grace = grace
        self.groups: ProcessGroups | None = None

    def setup(self, worker) -> None:
        self.groups = ProcessGroups(self.grace)

    def teardown(self, worker) -> None:
        """Nothing is ended here: another run on the same cluster registering its own plugin
        tears this one down, and the jobs of this one run on, their groups still held by their
        calls. When the worker itself goes, its guard ends what is left."""


def _cancelled(worker, key) -> bool:
    """Whether the scheduler gave up this task: cancelled, or its client gone."""
    task = worker.state.tasks.get(key)
    return task is None or task.state in ("cancelled", "released", "forgotten")


def run_on_worker(spec_json: str, files: dict[str, bytes] | None = None, *, root: str,
                  topic: str, limit: int = 0):
    """What a Dask worker runs for one job: the job, to its end or until its task is cancelled;
    its result as plain values (and with `files`, staged: the outputs' bytes)."""
    worker = distributed.get_worker()
    key = worker.get_current_task()
    name = str(worker.name)
    plugin = worker.plugins.get(JobGroups.name)
    task = JobSpec.from_json(spec_json).task

    def started(process) -> None:
        worker.log_event(topic, {"task": task, "at": time.time(), "name": name})

    def wait(process, timeout: float | None, grace: float) -> tuple[int, bool]:
        return watch(process, timeout, grace, lambda: not _cancelled(worker, key), POLL)

    hooks = {"groups": plugin.groups if plugin is not None else None, "on_start": started,
             "wait": wait}
    if files is not None:  # the outputs' bytes come back as the task's result
        values, made = run_staged(spec_json, files, worker.local_directory, limit, **hooks)
        values["worker"] = name
        return values, made
    values = run_remote(spec_json, root, **hooks)
    values["worker"] = name
    # Pushed to the client with the scheduler's events: no fetch of a result per job.
    worker.log_event(topic, {"key": key, "result": values})
    return None


def read_probe(path: str) -> tuple[str, str, str]:
    """The probe file as a worker sees it: its text (empty if it cannot), the host, incrun."""
    try:
        text = Path(path).read_text()
    except OSError:
        text = ""
    return text, socket.gethostname(), __version__

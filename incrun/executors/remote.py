"""The worker side of a remote executor: what a worker on another host (a Dask worker, say)
calls with a job spec as JSON. It is installed incrun code, never code sent by the client: it
refuses a spec from another version of incrun, runs the job in the project folder as the local
workers do, and answers with the result as plain data."""

from __future__ import annotations

import socket
import time
from dataclasses import asdict
from pathlib import Path

from .. import __version__
from ..events import ERROR, JobResult
from .contract import PYTHON, JobSpec
from .workers import run_job


def refusal(spec: JobSpec, host: str | None = None) -> str | None:
    """Why this worker must not run the job: it is not the incrun (or, for a call, not the
    Python) the run was started with. None when it may."""
    host = host or socket.gethostname()
    if spec.version != __version__:
        return f"stale worker: {host} has incrun {__version__}, this run needs {spec.version}"
    if spec.call and spec.python != PYTHON:
        return f"stale worker: {host} has Python {PYTHON}, this run needs Python {spec.python}"
    return None


def run_remote(spec_json: str, root: str | Path) -> dict:
    """Run one job here, to the end; its JobResult as JSON-able values (see `result_of`)."""
    spec = JobSpec.from_json(spec_json)
    why = refusal(spec)
    if why is not None:
        now = time.time()
        return _plain(JobResult(spec.task, ERROR, now, now, detail=why))
    return _plain(run_job(spec, root))


def _plain(result: JobResult) -> dict:
    values = asdict(result)
    values["log_tail"] = list(values["log_tail"])
    return values


def result_of(values: dict) -> JobResult:
    """The JobResult a remote worker answered with."""
    return JobResult(**{**values, "log_tail": tuple(values["log_tail"])})

"""The worker side of a remote executor: what a worker on another host (a Dask worker, say)
calls with a job spec as JSON. It is installed incrun code, never code sent by the client: it
refuses a spec from another version of incrun, runs the job in the project folder as the local
workers do, and answers with the result as plain data."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

from .. import __version__
from ..events import ERROR, FAILED, OK, JobResult
from .contract import PYTHON, JobSpec
from .jobfiles import remove_outputs
from .workers import run_job

# A call run on a worker of a cluster: in a Python of its own, which a stop can end (the worker's
# own threads are shared by its jobs). The project folder is its working folder, on sys.path.
CALL_BOOT = "import sys; from incrun.calls import call; call(*sys.argv[1:])"


def refusal(spec: JobSpec, host: str | None = None) -> str | None:
    """Why this worker must not run the job: it is not the incrun (or, for a call, not the
    Python) the run was started with. None when it may."""
    host = host or socket.gethostname()
    if spec.version != __version__:
        return f"stale worker: {host} has incrun {__version__}, this run needs {spec.version}"
    if spec.call and spec.python != PYTHON:
        return f"stale worker: {host} has Python {PYTHON}, this run needs Python {spec.python}"
    return None


def as_command(spec: JobSpec) -> JobSpec:
    """The job as a program to start: a call becomes a Python of its own that makes it."""
    if not spec.call:
        return spec
    return replace(spec, argv=(sys.executable, "-c", CALL_BOOT, *spec.argv), call=False)


def run_remote(spec_json: str, root: str | Path, **hooks) -> dict:
    """Run one job here, to the end; its JobResult as JSON-able values (see `result_of`).
    `hooks` are run_job's (groups, on_start, wait)."""
    spec = JobSpec.from_json(spec_json)
    why = refusal(spec)
    if why is not None:
        now = time.time()
        return plain(JobResult(spec.task, ERROR, now, now, detail=why))
    return plain(run_job(as_command(spec), root, **hooks))


def run_staged(spec_json: str, files: dict[str, bytes], scratch: str, limit: int,
               **hooks) -> tuple[dict, dict[str, bytes]]:
    """Run one job in a folder of its own under `scratch`, holding the files it reads (there is
    no shared project folder); its result, and its outputs and log as bytes, at most `limit`."""
    spec = JobSpec.from_json(spec_json)
    folder = tempfile.mkdtemp(prefix="incrun-job-", dir=scratch)
    try:
        for path, data in files.items():
            place = os.path.realpath(os.path.join(folder, path))
            if not place.startswith(folder + os.sep):  # never written outside its folder
                now = time.time()
                return plain(JobResult(spec.task, ERROR, now, now, detail=f"cannot stage "
                                       f"{path}: outside the job's folder")), {}
            os.makedirs(os.path.dirname(place), exist_ok=True)
            with open(place, "wb") as stream:
                stream.write(data)
        values = run_remote(spec_json, folder, **hooks)
        if values["status"] != OK:
            return values, _files_of(folder, [spec.log], limit)[0]
        made, too_big = _files_of(folder, [*spec.outputs, spec.log], limit)
        if too_big:
            remove_outputs(spec.outputs, folder)
            values.update(status=FAILED, detail=too_big)
            return values, _files_of(folder, [spec.log], limit)[0]
        return values, made
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _files_of(folder: str, paths, limit: int) -> tuple[dict[str, bytes], str]:
    """The files among `paths` that exist, and why not, if together they pass `limit`."""
    found, total = {}, 0
    for path in paths:
        place = os.path.join(folder, path)
        if not os.path.isfile(place):
            continue
        total += os.path.getsize(place)
        if total > limit:
            return {}, past_stage_limit(path, limit)
        with open(place, "rb") as stream:
            found[path] = stream.read()
    return found, ""


def past_stage_limit(path: str, limit: int) -> str:
    """Why a staged job's files, sent or brought back, are too much: the file that passed."""
    return f"{path} takes the job's files past the --stage limit of {limit:,} bytes"


def plain(result: JobResult) -> dict:
    values = asdict(result)
    values["log_tail"] = list(values["log_tail"])
    values["hashes"] = [list(state) for state in values["hashes"]]
    return values


def result_of(values: dict) -> JobResult:
    """The JobResult a remote worker answered with."""
    return JobResult(**{**values, "log_tail": tuple(values["log_tail"]),
                        "hashes": tuple(tuple(state) for state in values.get("hashes", ()))})

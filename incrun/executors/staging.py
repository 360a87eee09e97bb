"""Whether remote workers share the project folder (the probe), and --stage for when they do
not: the files a job reads, sent with it, and what it made, brought back into the project,
whole or not at all. The same for every remote executor (Dask, the brokers)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from ..errors import ClusterError
from ..events import ERROR, JobResult
from .contract import JobSpec
from .jobfiles import remove_outputs
from .remote import past_stage_limit


def files_to_send(root: Path, spec: JobSpec, limit: int) -> tuple[dict[str, bytes] | None, str]:
    """The files the job reads, by path, or why they cannot be sent."""
    files, total = {}, 0
    for path in spec.reads:
        if os.path.isabs(path) or ".." in Path(path).parts:
            return None, (f"cannot send {path} with --stage: it is outside the project "
                          "(the workers need it at the same path)")
        try:
            data = (root / path).read_bytes()
        except OSError as error:
            return None, f"cannot read {path} to send it: {error.strerror}"
        total += len(data)
        if total > limit:
            return None, past_stage_limit(path, limit)
        files[path] = data
    return files, ""


def bring_back(root: Path, spec: JobSpec, result: JobResult,
               made: dict[str, bytes]) -> JobResult:
    """A staged job's outputs and log, written into the project whole or not at all; a failed
    job leaves none of its outputs, not even those of an earlier run."""
    if not result.ok:
        remove_outputs(spec.outputs, root)
    strangers = sorted(set(made) - {*spec.outputs, spec.log})
    if strangers:  # only the job's own files come back, never one named by a message
        remove_outputs(spec.outputs, root)
        return replace(result, status=ERROR,
                       detail=f"its worker sent back {strangers[0]}, not a file of the job's")
    try:
        for path, data in made.items():
            place = root / path
            place.parent.mkdir(parents=True, exist_ok=True)
            if path == spec.log and spec.attempt > 1:  # after the earlier attempts'
                with open(place, "ab") as log:
                    log.write(data)
                continue
            temporary = place.with_name(f"{place.name}.{os.getpid()}.incomplete")
            temporary.write_bytes(data)
            temporary.replace(place)
    except OSError as error:
        remove_outputs(spec.outputs, root)
        return replace(result, status=ERROR, detail=f"cannot write what the job made: {error}")
    return result


@contextlib.contextmanager
def probe_file(root: Path) -> Iterator[tuple[Path, str]]:
    """A file under .incrun/ holding a token, for a worker to read back; removed after."""
    probes = root / ".incrun"
    probes.mkdir(exist_ok=True)
    token = uuid.uuid4().hex
    probe = probes / f"probe-{token}"
    probe.write_text(token)
    try:
        yield probe, token
    finally:
        probe.unlink()


def not_shared(workers: str, host: str, probe: Path) -> ClusterError:
    """The run stops: the workers do not see the project folder."""
    return ClusterError(f"{workers} cannot read the project folder: {host} finds no {probe}",
                        hint="mount the project at the same path on the workers, or use --stage")

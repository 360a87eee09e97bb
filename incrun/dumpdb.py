"""What `incrun dumpdb` prints of the store's records: each task's last run and the state of
the files it depended on, in words (or as JSON)."""

from __future__ import annotations

from .store import FAILED, FORGOTTEN, RUNNING, SUCCEEDED
from .words import moment

STATUS_WORDS = {SUCCEEDED: "succeeded", FAILED: "failed", RUNNING: "running or cut off",
                FORGOTTEN: "forgotten"}


def _when(seconds: float | None) -> str:
    return moment(seconds) if seconds else "?"


def _job_line(job: dict) -> str:
    text = STATUS_WORDS.get(job["status"], job["status"])
    if job.get("started"):
        text += f", {_when(job['started'])}"
        if job.get("ended"):
            text += f" after {job['ended'] - job['started']:.2f}s"
    if job.get("exit_code") is not None:
        text += f", exit code {job['exit_code']}"
    if (job.get("attempts") or 1) > 1:
        text += f", {job['attempts']} attempts"
    if job.get("detail"):
        text += f" ({job['detail']})"
    return text


def _file_lines(deps: dict) -> list[str]:
    """The recorded state of each file it read: (mtime, size, content hash), as doit keeps it."""
    lines = []
    for path in deps.get("deps:", []):
        state = deps.get(path)
        if isinstance(state, list) and len(state) == 3:
            mtime, size, digest = state
            lines.append(f"    {path}  {size} bytes, modified {_when(mtime)}, md5 {digest}")
        else:
            lines.append(f"    {path}  (no state recorded)")
    return lines


def lines(records: list[dict]) -> list[str]:
    """Each task's record, a few lines each; a line saying so when there is none."""
    if not records:
        return ["nothing recorded yet"]
    out = []
    for record in records:
        out.append(record["task"])
        job, deps = record.get("job"), record.get("deps", {})
        if job:
            out.append(f"  last run  {_job_line(job)}")
            if job.get("log"):
                out.append(f"  log       {job['log']}")
        if deps.get("ignore:"):
            out.append("  ignored   (incrun forget brings it back)")
        values = deps.get("_values_:") or {}
        shown = {key: value for key, value in values.items() if not key.startswith("_")}
        if shown:
            out.append(f"  values    {shown}")
        files = _file_lines(deps)
        if files:
            out.append("  read")
            out += files
    return out

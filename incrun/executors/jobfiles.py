"""A job's files, whatever runs it: outputs removed before it starts and after it fails, the
folders it writes into, its log and the log's tail, and the result it amounts to."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..events import FAILED, OK, JobResult

TAIL_LINES = 15


def remove_outputs(outputs, root: Path | str) -> None:
    """Delete declared outputs: the link itself, never what a symlink points to."""
    for output in outputs:
        try:
            os.unlink(os.path.join(root, output))
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            pass  # a folder declared as output is the user's to manage


def log_tail(log_path: Path, lines: int = TAIL_LINES) -> tuple[str, ...]:
    try:
        with open(log_path, "rb") as log:
            log.seek(max(0, os.fstat(log.fileno()).st_size - 64 * 1024))
            text = log.read().decode("utf-8", "replace")
    except OSError:
        return ()
    return tuple(text.splitlines()[-lines:])


def missing_outputs(outputs, root: Path | str) -> list[str]:
    return [output for output in outputs if not os.path.exists(os.path.join(root, output))]


class Lookups:
    """What the jobs of a run share, looked up once a run rather than once a job: the folders
    they write into (made if missing) and the programs they start (found on PATH)."""

    def __init__(self):
        self._made: set[str] = set()
        self._programs: dict[str, str] = {}

    def ensure_folder(self, path: str) -> None:
        """Make sure the folder holding `path` exists."""
        folder = os.path.dirname(path)
        if folder and folder not in self._made:
            os.makedirs(folder, exist_ok=True)
            self._made.add(folder)

    def program(self, name: str) -> str:
        """The file a command's first word starts; as given if it is a path or not found."""
        if name not in self._programs:
            found = None if os.sep in name else shutil.which(name)
            self._programs[name] = found or name
        return self._programs[name]


def prepare(outputs, root: Path | str, log_path: Path | str, lookups: Lookups) -> str:
    """Before a job starts: its outputs removed (nothing half-written by an earlier attempt may
    count), the folders it writes into made; the path of its log file."""
    remove_outputs(outputs, root)
    for output in outputs:
        lookups.ensure_folder(os.path.join(root, output))
    log_file = os.path.join(root, log_path)
    lookups.ensure_folder(log_file)
    return log_file


def job_result(spec: dict, root: Path | str, log_path: Path | str, started: float,
               ended: float, status: str, detail: str = "", exit_code: int | None = None,
               finished: str = "exit code 0") -> JobResult:
    """How a job ended. A success without every declared output is a failure (`finished` says
    how it seemed to succeed); a failure leaves no outputs and carries its log's tail."""
    name, outputs = spec["task"], spec["outputs"]
    if status == OK and (missing := missing_outputs(outputs, root)):
        status, detail = FAILED, f"{finished} but no output " + ", ".join(missing)
    if status == OK:
        return JobResult(name, OK, started, ended, exit_code, str(log_path))
    remove_outputs(outputs, root)
    return JobResult(name, status, started, ended, exit_code, str(log_path), detail,
                     log_tail(os.path.join(root, log_path)))

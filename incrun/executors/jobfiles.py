"""A job's files, whatever runs it: outputs removed before it starts and after it fails, the
folders it writes into, its log and the log's tail, and the result it amounts to."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..events import FAILED, OK, JobResult
from ..hashing import file_states
from .contract import JobSpec

TAIL_LINES = 15
SCRATCH_PREFIX = ".scratch-"  # in the logs folder; left over only by a killed run


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
    return tuple(read_log(log_path, 64 * 1024).splitlines()[-lines:])


def read_log(log_path: Path, most: int = 1024 * 1024) -> str:
    """A job's log as text (its last `most` bytes), to show it; "" if there is none."""
    try:
        with open(log_path, "rb") as log:
            log.seek(max(0, os.fstat(log.fileno()).st_size - most))
            return log.read().decode("utf-8", "replace")
    except OSError:
        return ""


def append_log(log_path: Path, part: str, text: str) -> None:
    """More of a job's output after it ended (its teardown's), under a line naming it."""
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf-8", errors="replace") as log:
            log.write(f"--- {part} ---\n{text}")
    except OSError:
        pass  # the output is lost, not the run


def open_log(log_file: str | Path, attempt: int = 1, tries: int = 1):
    """The job's log, opened (binary) for one attempt's output: emptied for a first attempt;
    for a retry, kept, so the output of the attempts before, which says why they failed, stays
    above a line naming the attempt that follows."""
    if attempt == 1:
        return open(log_file, "wb")
    log = open(log_file, "ab")
    log.write(f"--- attempt {attempt} of {tries} ---\n".encode())
    log.flush()  # before the job's own output, which goes to the file descriptor
    return log


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


def prepare(spec: JobSpec, root: Path | str, lookups: Lookups) -> str:
    """Before a job starts: its outputs removed (nothing half-written by an earlier attempt may
    count), the folders it writes into made, a gather job's list of inputs written; the path of
    its log file."""
    remove_outputs(spec.outputs, root)
    for output in spec.outputs:
        lookups.ensure_folder(os.path.join(root, output))
    if spec.inputs_file is not None:
        write_inputs_file(spec.inputs_file, spec.inputs, root)
    log_file = os.path.join(root, spec.log)
    lookups.ensure_folder(log_file)
    return log_file


def write_inputs_file(path: str, inputs, root: Path | str = ".") -> None:
    """A gather job's list of inputs, one per line, written whole or not at all."""
    path = os.path.join(root, path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.{os.getpid()}.incomplete"
    with open(temporary, "w", encoding="utf-8", errors="surrogateescape") as stream:
        stream.writelines(f"{line}\n" for line in inputs)
    os.replace(temporary, path)


def job_result(spec: JobSpec, root: Path | str, started: float, ended: float, status: str,
               detail: str = "", exit_code: int | None = None, finished: str = "exit code 0",
               scratch: Scratch | None = None) -> JobResult:
    """How a job ended. A success without every declared output is a failure (`finished` says
    how it seemed to succeed); a failure leaves no outputs, keeps a log and carries its tail.
    `scratch` holds the job's output until now (None if it went to the log directly)."""
    name, outputs, log_path = spec.task, spec.outputs, spec.log
    if status == OK and (missing := missing_outputs(outputs, root)):
        status, detail = FAILED, f"{finished} but no output " + ", ".join(missing)
    log_file = os.path.join(root, log_path)
    if scratch is not None:
        scratch.finish(log_file, keep=status != OK)
    if status == OK:
        return JobResult(name, OK, started, ended, exit_code, str(log_path),
                         hashes=file_states(spec.hashed, str(root)))
    remove_outputs(outputs, root)
    if not os.path.exists(log_file):  # a failure always shows a log, if an empty one
        open(log_file, "ab").close()
    return JobResult(name, status, started, ended, exit_code, str(log_path), detail,
                     log_tail(log_file))


class Scratch:
    """A worker's file for the output of its jobs, reused from one job to the next. It becomes
    a job's log only if the job wrote something or failed: a sweep of silent jobs creates no
    log files, each of which costs the file system more than the job's bookkeeping."""

    def __init__(self, folder: Path | str):
        self.folder = str(folder)
        self.path: str | None = None
        self.fd: int | None = None

    def start(self) -> int:
        """The file descriptor, emptied, a job's output goes to (append mode: shared safely)."""
        if self.fd is None:
            os.makedirs(self.folder, exist_ok=True)
            self.path = os.path.join(self.folder, f"{SCRATCH_PREFIX}{os.getpid()}-{id(self)}")
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
                              0o644)
        else:
            os.ftruncate(self.fd, 0)
        return self.fd

    def finish(self, log_file: str, keep: bool = False) -> None:
        """The job's output becomes its log if there is any, or if `keep`; otherwise the job
        has no log, and none from an earlier run is left to be mistaken for its own."""
        if keep or os.fstat(self.fd).st_size:
            os.replace(self.path, log_file)  # the next job gets a new file
            os.close(self.fd)
            self.fd = None
            return
        try:
            os.unlink(log_file)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            os.unlink(self.path)
            self.fd = None

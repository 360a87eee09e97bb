"""What doit asks to tell whether a job changed: its files by content (mtime as a shortcut; a
`touch` costs one hash, once), and its command."""

from __future__ import annotations

import inspect
import os

from doit.dependency import MD5Checker
from doit.tools import config_changed

from .hashing import FileState, file_md5


class ContentChecker(MD5Checker):
    """doit's (mtime, size, md5) state, plus two things doit lacks.

    - A file whose mtime changed but whose content did not (a touch, a fresh clone, a CI cache
      restore) is noted in `refreshed`, so its new mtime can be saved and the next run skips
      the hash.
    - Hashes are remembered for the run, so a runner script shared by 10,000 jobs is read once.
    - A worker's hashes of its job's own inputs are used once, if the file is as it was then
      (mtime and size): the coordinator does not read, one after another, every job's input.
    """

    def __init__(self):
        self.refreshed: dict[str, tuple] = {}
        self._hashes: dict[tuple, str] = {}
        self._learned: dict[tuple, str] = {}

    def learn(self, states: tuple[FileState, ...]) -> None:
        """Files hashed elsewhere (by the worker that ran the job whose success is saved next),
        in place of those learned before."""
        self._learned = {(path, mtime, size): digest for path, mtime, size, digest in states}

    def _md5(self, path: str, mtime: float, size: int) -> str:
        key = (path, mtime, size)
        digest = self._learned.pop(key, None) or self._hashes.get(key)
        if digest is None:
            digest = self._hashes[key] = file_md5(path)
        return digest

    def check_modified(self, file_path, file_stat, state):
        timestamp, size, file_md5 = state
        if file_stat.st_mtime == timestamp:
            return False
        if file_stat.st_size != size:
            return True
        new_state = (file_stat.st_mtime, size, self._md5(file_path, file_stat.st_mtime, size))
        if new_state[2] != file_md5:
            return True
        self.refreshed[file_path] = new_state
        return False

    def get_state(self, dep, current_state):
        stat = os.stat(dep)
        if current_state and current_state[0] == stat.st_mtime:
            return None
        return stat.st_mtime, stat.st_size, self._md5(dep, stat.st_mtime, stat.st_size)


class command_changed(config_changed):  # noqa: N801 (named as doit's own uptodate helpers)
    """doit's `config_changed` for a job's command, its call signature declared: doit would
    otherwise inspect it for every task it checks (a quarter of a millisecond each)."""

    __signature__ = inspect.signature(config_changed("").__call__)

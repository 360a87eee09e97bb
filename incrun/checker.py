"""What doit asks to tell whether a job changed: its files by content (mtime as a shortcut; a
`touch` costs one hash, once), and its command."""

from __future__ import annotations

import hashlib
import inspect
import os

from doit.dependency import MD5Checker
from doit.tools import config_changed


class ContentChecker(MD5Checker):
    """doit's (mtime, size, md5) state, plus two things doit lacks.

    - A file whose mtime changed but whose content did not (a touch, a fresh clone, a CI cache
      restore) is noted in `refreshed`, so its new mtime can be saved and the next run skips
      the hash.
    - Hashes are remembered for the run, so a runner script shared by 10,000 jobs is read once.
    """

    def __init__(self):
        self.refreshed: dict[str, tuple] = {}
        self._hashes: dict[tuple, str] = {}

    def _md5(self, path: str, mtime: float, size: int) -> str:
        key = (path, mtime, size)
        digest = self._hashes.get(key)
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


def file_md5(path: str) -> str:
    """doit's md5 of a file's content, read without a Python file object (half the cost of
    doit's own for the small inputs of a sweep) and in large blocks (for the big ones)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        digest = hashlib.md5()
        while block := os.read(fd, 1 << 20):
            digest.update(block)
    finally:
        os.close(fd)
    return digest.hexdigest()


class command_changed(config_changed):  # noqa: N801 (named as doit's own uptodate helpers)
    """doit's `config_changed` for a job's command, its call signature declared: doit would
    otherwise inspect it for every task it checks (a quarter of a millisecond each)."""

    __signature__ = inspect.signature(config_changed("").__call__)

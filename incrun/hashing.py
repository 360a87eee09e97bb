"""Hashes: of text, stable in every process (Python's own `hash` is salted per process), which
places jobs in CI shards and keeps long log names apart; and of a file's content, by which a
job's files are told changed or not (doit's md5), taken by the coordinator or by a worker."""

from __future__ import annotations

import hashlib
import os
import zlib

FileState = tuple[str, float, int, str]  # path, mtime, size, md5: doit's state of a file


def hash_text(text: str) -> int:
    return zlib.crc32(text.encode("utf-8", "surrogateescape"))


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


def file_states(paths, root: str) -> tuple[FileState, ...]:
    """The state of each file (paths relative to `root`) as it is now; those gone are left out."""
    states = []
    for path in paths:
        full = os.path.join(root, path)
        try:
            info = os.stat(full)
            states.append((path, info.st_mtime, info.st_size, file_md5(full)))
        except OSError:
            continue
    return tuple(states)

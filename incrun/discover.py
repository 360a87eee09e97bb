"""Finding input files: gitignore-style patterns (pathspec), .gitignore honoured; pure, sorted."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from pathspec import GitIgnoreSpec

# Never looked into: version control, incrun's own state, caches.
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", ".incrun", "__pycache__"})


_SUFFIX_ONLY = re.compile(r"\*(\.[^*?\[\]/\\!]+)")  # `*.inp`: any file, any depth


def compile_patterns(patterns: Iterable[str]) -> GitIgnoreSpec:
    return GitIgnoreSpec.from_lines(list(patterns))


def _suffix_matcher(ends: tuple[str, ...]) -> Callable[[str], bool]:
    folders: dict[str, bool] = {}  # as in git, a matching folder's files match too

    def matches(rel: str) -> bool:
        if rel.endswith(ends):
            return True
        folder = rel.rpartition("/")[0]
        if folder not in folders:
            folders[folder] = any(part.endswith(ends) for part in folder.split("/") if part)
        return folders[folder]

    return matches


def matcher(patterns: Iterable[str]) -> Callable[[str], bool]:
    """A test of a relative path against gitignore-style patterns.

    The common case, patterns like `*.inp`, is a suffix test of the file name: the same
    answer as pathspec's, at a fraction of the cost over 100,000 files.
    """
    patterns = [p for p in patterns if p.strip() and not p.startswith("#")]
    if not patterns:
        return lambda rel: False
    suffixes = [_SUFFIX_ONLY.fullmatch(p.strip()) for p in patterns]
    if all(suffixes):
        return _suffix_matcher(tuple(match.group(1) for match in suffixes))
    return compile_patterns(patterns).match_file


class _IgnoreRules:
    """The `.gitignore` files met on the way down, each applying below its own directory."""

    def __init__(self):
        self._specs: list[tuple[str, GitIgnoreSpec]] = []

    def read(self, directory: Path, rel_dir: str) -> None:
        try:
            lines = (directory / ".gitignore").read_text(errors="replace").splitlines()
        except OSError:
            return
        prefix = rel_dir + "/" if rel_dir else ""
        self._specs.append((prefix, compile_patterns(lines)))

    def ignored(self, rel_path: str) -> bool:
        verdict = None
        for prefix, spec in self._specs:  # deeper files come later and win
            if rel_path.startswith(prefix):
                include = spec.check_file(rel_path[len(prefix):]).include
                if include is not None:
                    verdict = include
        return bool(verdict)


def walk_files(root: Path) -> Iterator[str]:
    """Files below root that git would not ignore, as relative POSIX paths; dir symlinks skipped."""
    rules = _IgnoreRules()
    pending = [(root, "")]
    while pending:
        directory, rel_dir = pending.pop()
        rules.read(directory, rel_dir)
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.is_dir(follow_symlinks=False):
                if entry.name not in SKIPPED_DIRS and not rules.ignored(rel + "/"):
                    subdirs.append((Path(entry.path), rel))
            elif entry.is_file() and not rules.ignored(rel):
                yield rel
        pending.extend(reversed(subdirs))


def find_inputs(
    root: Path, inputs: Iterable[str], exclude: Iterable[str] = (), skip: Iterable[str] = ()
) -> list[str]:
    """Files below root matching `inputs` and not `exclude`, minus the paths in `skip`; sorted."""
    wanted, unwanted = matcher(inputs), matcher(exclude)
    skipped = set(skip)
    found = [
        rel
        for rel in walk_files(root)
        if wanted(rel) and not unwanted(rel) and rel not in skipped
    ]
    return sorted(found)

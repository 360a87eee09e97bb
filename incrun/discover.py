"""Finding input files: gitignore-style patterns (pathspec), .gitignore honoured; pure, sorted."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .wildcards import glob_form

# Never looked into: version control, incrun's own state, caches.
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", ".incrun", "__pycache__"})


_SUFFIX_ONLY = re.compile(r"\*(\.[^*?\[\]/\\!]+)")  # `*.inp`: any file, any depth

# Picks, among the files of one folder (its relative path, its files' relative paths), those a
# set of patterns matches.
Selector = Callable[[str, list[str]], list[str]]


def compile_patterns(patterns: Iterable[str]):
    """A pathspec GitIgnoreSpec; imported here, as plain `*.inp` patterns never need it."""
    from pathspec import GitIgnoreSpec

    return GitIgnoreSpec.from_lines(list(patterns))


def _suffix_selector(ends: tuple[str, ...]) -> Selector:
    def select(folder: str, files: list[str]) -> list[str]:
        if any(part.endswith(ends) for part in folder.split("/") if part):
            return files  # as in git, the files of a matching folder match too
        return [rel for rel in files if rel.endswith(ends)]

    return select


def selector(patterns: Iterable[str]) -> Selector:
    """The files of a folder that gitignore-style patterns match.

    The common case, patterns like `*.inp`, is a suffix test of the file names: the same
    answer as pathspec's, at a fraction of the cost over 100,000 files.
    """
    patterns = [glob_form(p) for p in patterns if p.strip() and not p.startswith("#")]
    if not patterns:
        return lambda folder, files: []
    suffixes = [_SUFFIX_ONLY.fullmatch(p.strip()) for p in patterns]
    if all(suffixes):
        return _suffix_selector(tuple(match.group(1) for match in suffixes))
    match = compile_patterns(patterns).match_file
    return lambda folder, files: [rel for rel in files if match(rel)]


class _IgnoreRules:
    """The `.gitignore` files met on the way down, each applying below its own directory."""

    def __init__(self):
        self._specs: list = []  # (folder prefix, GitIgnoreSpec)

    def __bool__(self) -> bool:
        return bool(self._specs)

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


class GitIgnored:
    """Whether git would ignore a path below root (a file, or a folder with `/` at its end), as
    `walk_folders` skips it; each folder's `.gitignore` is read once, when first needed."""

    def __init__(self, root: Path):
        self._root = root
        self._rules = _IgnoreRules()
        self._read: set[str] = set()

    def __call__(self, rel_path: str) -> bool:
        parts = rel_path.rstrip("/").split("/")
        for depth in range(len(parts)):
            folder = "/".join(parts[:depth])
            if depth and (parts[depth - 1] in SKIPPED_DIRS or self._rules.ignored(folder + "/")):
                return True  # in a folder git ignores
            if folder not in self._read:
                self._read.add(folder)
                self._rules.read(self._root / folder, folder)
        return parts[-1] in SKIPPED_DIRS or self._rules.ignored(rel_path)


def walk_folders(root: Path) -> Iterator[tuple[str, list[str]]]:
    """Each folder below root (relative path, "" for root) with its files that git would not
    ignore, as relative POSIX paths, in no particular order; folder symlinks are not followed."""
    rules = _IgnoreRules()
    pending = [(root, "")]
    while pending:
        directory, rel_dir = pending.pop()
        rules.read(directory, rel_dir)
        prefix = rel_dir + "/" if rel_dir else ""
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        files = []
        for entry in entries:
            if entry.is_file():  # the common case first; a symlink to a file is a file
                files.append(prefix + entry.name)
            elif entry.is_dir(follow_symlinks=False):
                rel = prefix + entry.name
                if entry.name not in SKIPPED_DIRS and not (rules and rules.ignored(rel + "/")):
                    pending.append((Path(entry.path), rel))
        if rules:
            files = [rel for rel in files if not rules.ignored(rel)]
        yield rel_dir, files


def find_inputs(
    root: Path, inputs: Iterable[str], exclude: Iterable[str] = (), skip: Iterable[str] = ()
) -> list[str]:
    """Files below root matching `inputs` and not `exclude`, minus the paths in `skip`; sorted."""
    found = find_each(root, {"": (inputs, exclude)})[""]
    skipped = set(skip)
    return [rel for rel in found if rel not in skipped] if skipped else found


def find_each(root: Path, patterns: dict[str, tuple[Iterable[str], Iterable[str]]]
              ) -> dict[str, list[str]]:
    """For each name's (inputs, exclude), the files below root it picks, as find_inputs does;
    in one walk of the tree, however many rules there are."""
    pickers = {name: (selector(inputs), selector(exclude))
               for name, (inputs, exclude) in patterns.items()}
    found: dict[str, list[str]] = {name: [] for name in patterns}
    for folder, files in walk_folders(root):
        for name, (wanted, unwanted) in pickers.items():
            chosen = wanted(folder, files)
            dropped = set(unwanted(folder, chosen)) if chosen else ()
            found[name].extend([rel for rel in chosen if rel not in dropped]
                               if dropped else chosen)
    return {name: sorted(paths) for name, paths in found.items()}


def select_paths(paths: Iterable[str], inputs: Iterable[str],
                 exclude: Iterable[str] = ()) -> list[str]:
    """Of these relative paths (files that may not exist yet), those `inputs` match and
    `exclude` does not, as `find_inputs` would pick them on disk; grouped by folder."""
    wanted, unwanted = selector(inputs), selector(exclude)
    by_folder: dict[str, list[str]] = {}
    for rel in paths:
        by_folder.setdefault(rel.rpartition("/")[0], []).append(rel)
    found = []
    for folder, files in by_folder.items():
        chosen = wanted(folder, files)
        dropped = set(unwanted(folder, chosen)) if chosen else ()
        found.extend([rel for rel in chosen if rel not in dropped] if dropped else chosen)
    return found

"""`incrun watch` (doit's `auto`): the stale jobs run, then again whenever a file they read, an
output they wrote or the project's config changes. Owns the loop and what counts as a change;
each run is `engine.run`'s, with its display, its Ctrl-C and its exit code."""

from __future__ import annotations

import bisect
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

from . import engine, errors
from .config import DODO, Config
from .discover import SKIPPED_DIRS, GitIgnored
from .status import named_files

# At the project's root, the files that say what the jobs are; a `.gitignore` anywhere says
# which files are inputs. A change to one of them always reruns.
CONFIG_FILES = frozenset({"incrun.toml", "pyproject.toml", DODO, "doit.cfg"})
TICK_MS = 100  # how often an idle watch looks at the file events (and at Ctrl-C)
QUIET = 0.3  # seconds without a change that end a burst of saves: one rerun for the burst
LONGEST = 3.0  # seconds a burst that goes on is waited for, at most, before it runs
STOPPED = frozenset(128 + signum for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
ADDED = 1  # watchfiles.Change.added

Stamp = tuple[int, int, int]  # an output's mtime (ns), size and inode


def stamp(path: str) -> Stamp | None:
    """The file as it is now; None when it is missing."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


@dataclass(frozen=True)
class Watched:
    """The files the jobs read and the outputs they write (absolute paths), and how the last
    run left each output: an event on an output is a change only if it is no longer so, which
    tells the run's own writes (and their late events) from a user's."""

    sources: tuple[str, ...]  # read and made by no job; sorted, to find those in a folder
    outputs: frozenset[str]  # what the jobs write (a pipeline's middle files included)
    left: dict[str, Stamp | None] = field(default_factory=dict)  # by output, after the run

    def holds_source(self, path: str) -> bool:
        """Whether the path is a source, or a folder holding one (moved in or away whole)."""
        at = bisect.bisect_left(self.sources, path)
        if at < len(self.sources) and self.sources[at] == path:
            return True
        folder = path + os.sep  # what lies in it sorts together, from here on
        at = bisect.bisect_left(self.sources, folder)
        return at < len(self.sources) and self.sources[at].startswith(folder)


def watched(root: str, reads: Iterable[str], writes: Iterable[str],
            left: dict | None = None) -> Watched:
    """What `status.Files` names, as absolute paths; the outputs as `left` says the last run
    left them, or, without it, as they are now (just after a run)."""
    outputs = frozenset(os.path.normpath(os.path.join(root, path)) for path in writes)
    sources = {os.path.normpath(os.path.join(root, path)) for path in reads} - outputs
    stamps = {output: stamp(output) for output in outputs} if left is None else left
    return Watched(tuple(sorted(sources)), outputs, stamps)


def wanted(changes: Iterable[tuple[int, str]], root: str, known: Watched | None,
           ignored: Callable[[str], bool], stamp_of=stamp,
           config_files: frozenset[str] = CONFIG_FILES) -> tuple[list[str], list[str]]:
    """Of these changes (watchfiles' kind and absolute path), the paths that call for a run;
    and the other files that appeared and are not ignored (`ignored` takes a relative path):
    each may be a new input, or, when the project could not be read (`known` None), the file
    it lacked. Both sorted."""
    found, appeared = set(), set()
    for kind, path in changes:
        rel = os.path.relpath(path, root)
        parts = rel.split(os.sep)
        if parts[0] == os.pardir or SKIPPED_DIRS.intersection(parts):
            continue  # .incrun/, __pycache__, .git/: never a change to the jobs
        if rel in config_files or parts[-1] == ".gitignore":
            found.add(path)
        elif known is not None and path in known.outputs:
            if path not in known.left or stamp_of(path) != known.left[path]:
                found.add(path)  # edited or deleted since the run left it
        elif known is not None and known.holds_source(path):
            found.add(path)
        elif kind == ADDED and not ignored(rel):
            appeared.add(path)
    return sorted(found), sorted(appeared)


def bursts(batches: Iterator[set], clock=time.monotonic) -> Iterator[set]:
    """Batches of changes merged into bursts: a burst ends after QUIET seconds without a
    change, or LONGEST seconds after it began. An empty batch is a tick with no change."""
    for batch in batches:
        if not batch:
            continue
        burst, began, last = set(batch), clock(), clock()
        for more in batches:
            now = clock()
            if more:
                burst |= more
                last = now
            if now - last >= QUIET or now - began >= LONGEST:
                break
        yield burst


def watch(build: Callable[[], Config], out=sys.stderr) -> int:
    """Run, then rerun on every change until Ctrl-C. `build` reads the project's files again
    with the command line's options. A mistake before the first run ends it with its exit
    code, as a run would; after that, it is said and the watch goes on (the user is fixing it).
    Ctrl-C while idle ends it with 0; during a run, the run stops as on Ctrl-C, and so does
    the watch, with the run's exit code."""
    notify = _watchfiles()
    first = replace(build(), command="run")
    events = notify.watch(first.root, watch_filter=None, step=50, rust_timeout=TICK_MS,
                          yield_on_timeout=True, raise_interrupt=True,
                          ignore_permission_denied=True)
    try:
        next(events)  # watching from now: what changes during the first run is seen after it
        return _Watch(build, first, out).loop(bursts(events))
    finally:
        events.close()


class _Watch:
    """One watch: the config of the last run, what its jobs read and write, what was said."""

    def __init__(self, build: Callable[[], Config], config: Config, out):
        self.build = build
        self.config = config
        self.root = str(config.root)
        self.out = out
        self.known: Watched | None = None
        self.locked = False  # the last try found another run holding the project
        self.ran = False  # a run (or a try) ended: what the jobs read and write is looked at
        self.told = False  # something was said, or a run drew, since "watching" was said

    def say(self, text: str) -> None:
        print(f"incrun: {text}", file=self.out, flush=True)
        self.told = True

    def loop(self, changes: Iterator[set]) -> int:
        code = self.run(self.config)
        while code not in STOPPED:
            try:
                if self.ran:  # the outputs as the run left them, the inputs as they are
                    self.ran, self.known = False, self.look()
                if self.told:  # once between runs; a silent retry adds nothing to say
                    self.say("watching for changes (Ctrl-C to stop)")
                    self.told = False
                found = self.wait(changes)
            except KeyboardInterrupt:
                self.say("stopped watching")
                return errors.OK
            if not self.locked:
                self.say("changed: " + named_files(os.path.relpath(path, self.root)
                                                   for path in found))
            try:
                config = replace(self.build(), command="run")
            except errors.IncrunError as error:  # the config, being edited
                self.say(errors.one_line(error))
                self.known, self.locked, code = None, False, None
                continue
            code = self.run(config)
        return code

    def run(self, config: Config) -> int | None:
        """One run; None if it could not, and why is said once. A KeyboardInterrupt outside
        the run's own handling ends the watch as it ends a run."""
        self.config = config
        try:
            code = engine.run(config)
        except errors.Locked as error:  # tried again at the next change
            if not self.locked:
                self.say(f"{error.message}: trying again at the next change")
            self.locked, self.ran = True, True
            return None
        except errors.IncrunError as error:
            self.say(errors.one_line(error))
            self.known, self.locked = None, False
            return None
        self.locked, self.ran, self.told = False, True, True
        return code

    @property
    def config_files(self) -> frozenset[str]:
        """The files that say what the jobs are; a dodo file given with -f among them."""
        dodo = self.config.dodo
        return CONFIG_FILES | {os.path.relpath(dodo, self.root)} if dodo else CONFIG_FILES

    def wait(self, changes: Iterator[set]) -> list[str]:
        """The changed paths of the next burst of changes that calls for a run."""
        while True:
            burst = next(changes)
            ignored = GitIgnored(self.config.root)
            found, appeared = wanted(burst, self.root, self.known, ignored,
                                     config_files=self.config_files)
            if appeared and not found and self.known is None:
                return appeared  # the project could not be read: this may be what it lacked
            if appeared and not found:  # perhaps a new input: the jobs as they are now
                self.known = self.look(keep=self.known)
                found, _ = wanted(burst, self.root, self.known, ignored,
                                  config_files=self.config_files)
            if found:
                return found

    def look(self, keep: Watched | None = None) -> Watched | None:
        """The files the selected jobs read and write now, with the outputs as they are (just
        after a run) or as `keep` says the last run left them; None if the project cannot be
        read now (said)."""
        try:
            files = engine.project_files(self.config)
        except errors.IncrunError as error:
            self.say(errors.one_line(error))
            return None
        return watched(self.root, files.reads, files.writes,
                       keep.left if keep is not None else None)


def _watchfiles():
    try:
        import watchfiles
    except ImportError:
        raise errors.MissingExtra("watchfiles", "watch", "incrun watch") from None
    return watchfiles

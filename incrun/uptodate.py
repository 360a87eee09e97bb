"""The fast up-to-date check: a rule job whose files are as they were at its recorded success is
up to date without asking doit. One `stat` per file: the floor of any check.

A signature is the rule's key (its command and output templates, and the stat of every file all
its jobs share), then the stat of the job's input (a gather job's: a hash of its inputs' names
and stats) and of each output. Any difference only means that doit, which compares content,
decides.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import signal
import sys
from collections.abc import Callable


def stamp(path: str) -> str | None:
    """A file's mtime and size as text; None if it is missing."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return f"{info.st_mtime_ns}:{info.st_size}"


class Signatures:
    """Signatures of rule jobs now; the shared files are stat-ed once per run."""

    def __init__(self):
        self._keys: dict[tuple[str, tuple[str, ...]], str | None] = {}

    def rule_key(self, digest: str, shared: tuple[str, ...]) -> str | None:
        """A short key for the rule and its shared files; None if one of them is missing."""
        if (digest, shared) not in self._keys:
            stamps = [stamp(path) for path in shared]
            key = None
            if None not in stamps:
                text = "\n".join([digest, *shared, *stamps])
                key = hashlib.blake2b(text.encode("utf-8", "surrogateescape"),
                                      digest_size=8).hexdigest()
            self._keys[(digest, shared)] = key
        return self._keys[(digest, shared)]

    def now(self, digest: str, input_path: str, outputs, shared: tuple[str, ...],
            gathered=None, own_deps=()) -> str | None:
        """The signature of one job now; None if any of its files is missing."""
        inputs = stamp(input_path) if gathered is None else gathered_stamp(gathered)
        texts = [self.rule_key(digest, shared), inputs]
        texts.extend(stamp(dep) for dep in own_deps)
        texts.extend(stamp(output) for output in outputs)
        return None if None in texts else "|".join(texts)

    def of(self, spec: dict) -> str | None:
        """The signature of a job spec (see `rules.Job.spec`) now."""
        return self.now(spec["digest"], spec["input"], spec["outputs"], tuple(spec["shared"]),
                        spec.get("inputs"), spec.get("deps", ()))


def gathered_stamp(paths) -> str | None:
    """One short text for a gather job's inputs: which they are, and each one's stat."""
    digest = hashlib.blake2b(digest_size=8)
    for path in paths:
        text = stamp(path)
        if text is None:
            return None
        digest.update(f"{path}\0{text}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


# A no-op check of more jobs than this per core is split over the cores (see check_ahead):
# below it, forking costs more than it saves.
JOBS_PER_PART = 25_000
# fork() without exec is safe on Linux; macOS's system libraries may crash in such a child.
FORKS_SAFELY = sys.platform.startswith("linux")


class UpToDate:
    """Which jobs of a sweep are up to date by signature; only the others are handed to doit."""

    def __init__(self, store, signatures: Signatures, keep_names: bool = False, cores: int = 1):
        self.store = store
        self.signatures = signatures
        self.cores = cores  # at most this many processes check signatures at once
        self.by_rule: dict[str, int] = {}  # jobs found up to date so far, by rule
        self.names: list[str] | None = [] if keep_names else None  # their task names
        # Outputs of the rules checked so far, stat-ed already: the next rule's inputs.
        self._made: dict[str, str] = {}
        self._mismatched: dict[str, list[int]] = {}  # by rule, found by check_ahead

    @property
    def count(self) -> int:
        return sum(self.by_rule.values())

    def _found(self, rule: str, count: int) -> None:
        if count:
            self.by_rule[rule] = self.by_rule.get(rule, 0) + count

    def check_ahead(self, sweeps) -> None:
        """Compare the signature of every job of these rules now, before `stale` asks rule by
        rule: a big plan is split in parts, each checked by a process of its own, on as many
        cores. A small one is left to `stale`."""
        rules = [sweep for sweep in sweeps if not sweep.spec.gather and len(sweep)]
        parts = min(self.cores, sum(len(sweep) for sweep in rules) // JOBS_PER_PART)
        if parts < 2 or not FORKS_SAFELY:
            return
        keys = [self.signatures.rule_key(sweep.digest, sweep.shared) for sweep in rules]
        recorded = self.store.signatures()

        def part(number: int) -> list[list[int]]:
            made: dict[str, str] = {}  # outputs of this part's jobs, for the next rule's
            return [_mismatched(sweep, key, recorded, made, made, len(sweep) * number // parts,
                                len(sweep) * (number + 1) // parts)
                    for sweep, key in zip(rules, keys)]

        for found in in_parallel(part, parts):
            for sweep, indices in zip(rules, found):
                self._mismatched.setdefault(sweep.spec.name, []).extend(indices)

    def stale(self, sweep, remade=frozenset(), feeds: bool = False) -> list[int]:
        """The indices of the sweep's jobs whose signature is not the recorded one, or whose
        input is among the files `remade` (outputs of upstream jobs that are stale). A sweep
        that `feeds` a rule checked later keeps its outputs' stats for it."""
        if sweep.spec.gather:
            return self._stale_gather(sweep, remade)
        stale = self._mismatched.pop(sweep.spec.name, None)
        if stale is None:
            key = self.signatures.rule_key(sweep.digest, sweep.shared)
            stale = _mismatched(sweep, key, self.store.signatures(), self._made,
                                self._made if feeds else None, 0, len(sweep))
        if remade:
            stale = sorted(set(stale).union(_reading(sweep, remade)))
        self._found(sweep.spec.name, len(sweep) - len(stale))
        if self.names is not None:
            stale_set = set(stale)
            prefix = sweep.task_name("")
            self.names += [prefix + rel for index, rel in enumerate(sweep.inputs)
                           if index not in stale_set]
        return stale

    def _stale_gather(self, gather, remade) -> list[int]:
        if not len(gather):
            return []
        job = gather.job()
        expected = self.store.signatures().get(job.task)
        if expected is None or not remade.isdisjoint(job.deps) \
                or self.signatures.of(job.spec()) != expected:
            return [0]
        self._found(job.task, 1)
        if self.names is not None:
            self.names.append(job.task)
        return []


def _reading(sweep, remade) -> list[int]:
    """The indices of the sweep's jobs that read one of the files `remade`: all of them when it
    is one they share (a script another rule writes)."""
    if not remade.isdisjoint(sweep.shared):
        return list(range(len(sweep)))
    deps = sweep.job_deps
    return [index for index, rel in enumerate(sweep.inputs)
            if rel in remade or (deps is not None and not remade.isdisjoint(deps[index]))]


def _mismatched(sweep, key, recorded, made, keep, start: int, stop: int) -> list[int]:
    """The indices from start to stop of the sweep's jobs whose signature now is not the one
    recorded at their success. Stats are looked up in `made` first; `keep`, when given,
    gets those of the outputs.

    The one loop over every job of a no-op run, so it is written for speed: no job objects,
    one stat per file, one string compared per job.
    """
    if key is None:  # a file every job shares is missing
        return list(range(start, stop))
    prefix = sweep.task_name("")
    jobs = zip(sweep.inputs[start:stop], sweep.outputs[start:stop])
    if sweep.job_deps is None and len(sweep.spec.outputs) == 1:
        return _mismatched_one_output(jobs, start, recorded, prefix, key, made, keep)
    found = []
    for index, (rel, outputs) in enumerate(jobs, start):
        expected = recorded.get(prefix + rel)
        texts = [key, made.get(rel) or stamp(rel)]
        deps = sweep.job_deps[index] if sweep.job_deps is not None else ()
        texts.extend(stamp(dep) for dep in deps)
        for output in outputs:
            texts.append(stamp(output))
            if keep is not None:
                keep[output] = texts[-1]
        if expected is None or None in texts or "|".join(texts) != expected:
            found.append(index)
    return found


def _mismatched_one_output(jobs, start, recorded, prefix, key, made, keep) -> list[int]:
    """`_mismatched` for the usual jobs: one output and no deps of their own, every call but
    the stats inlined."""
    stat = os.stat
    found = []
    for index, (rel, (output,)) in enumerate(jobs, start):
        expected = recorded.get(prefix + rel)
        if expected is None:
            found.append(index)
            continue
        try:
            read = made.get(rel)  # an output of the rule before, stat-ed already
            if read is None:
                info = stat(rel)
                read = f"{info.st_mtime_ns}:{info.st_size}"
            info = stat(output)
        except OSError:
            found.append(index)
            continue
        written = f"{info.st_mtime_ns}:{info.st_size}"
        if keep is not None:
            keep[output] = written
        if f"{key}|{read}|{written}" != expected:
            found.append(index)
    return found


def in_parallel(work: Callable[[int], object], parts: int) -> list:
    """[work(0), ..., work(parts - 1)]: part 0 here, each other one in a forked child that
    sends its result back pickled. A part whose child cannot start or fails is done here.
    Only for work that reads memory and the file system: a child never returns to the caller,
    and leaves nothing behind."""
    children = []  # (part, child) not yet reaped
    try:
        for number in range(1, parts):
            children.append((number, _start_part(work, number)))
        results = [work(0)]
        while children:
            number, child = children.pop(0)  # _result_of reaps it, however it returns
            result = _result_of(child) if child is not None else None
            results.append(work(number) if result is None else result[0])
        return results
    finally:
        for _, child in children:  # interrupted: no child outlives the check
            if child is not None:
                os.kill(child[0], signal.SIGKILL)
                _result_of(child)


def _start_part(work, number: int) -> tuple[int, int] | None:
    """A child computing work(number) and writing it to a pipe: its pid and the pipe's end."""
    try:
        reader, writer = os.pipe()
    except OSError:
        return None
    try:
        pid = os.fork()
    except OSError:
        os.close(reader)
        os.close(writer)
        return None
    if pid == 0:  # the child: whatever happens, it ends here
        code = 1
        try:
            os.close(reader)
            with open(writer, "wb") as pipe:
                pickle.dump(work(number), pipe, protocol=pickle.HIGHEST_PROTOCOL)
            code = 0
        finally:
            os._exit(code)
    os.close(writer)
    return pid, reader


def _result_of(child: tuple[int, int]) -> tuple[object] | None:
    """The child's result (in a 1-tuple), or None if it failed; the child is reaped."""
    pid, reader = child
    try:
        with open(reader, "rb") as pipe:
            data = pipe.read()
    finally:
        _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return None
    try:
        return (pickle.loads(data),)
    except Exception:  # a truncated pickle: the child died while writing
        return None

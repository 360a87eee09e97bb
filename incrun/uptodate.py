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


class UpToDate:
    """Which jobs of a sweep are up to date by signature; only the others are handed to doit."""

    def __init__(self, store, signatures: Signatures, keep_names: bool = False):
        self.store = store
        self.signatures = signatures
        self.by_rule: dict[str, int] = {}  # jobs found up to date so far, by rule
        self.names: list[str] | None = [] if keep_names else None  # their task names

    @property
    def count(self) -> int:
        return sum(self.by_rule.values())

    def _found(self, rule: str, count: int) -> None:
        if count:
            self.by_rule[rule] = self.by_rule.get(rule, 0) + count

    def stale(self, sweep, remade=frozenset()) -> list[int]:
        """The indices of the sweep's jobs whose signature is not the recorded one, or whose
        input is among the files `remade` (outputs of upstream jobs that are stale).

        The one loop over every job of a no-op run, so it is written for speed: no job objects,
        one stat per file, one string compared per job.
        """
        if sweep.spec.gather:
            return self._stale_gather(sweep, remade)
        key = self.signatures.rule_key(sweep.digest, sweep.shared)
        if key is None:
            return list(range(len(sweep)))
        recorded = self.store.signatures()
        prefix = sweep.task_name("")
        stat = os.stat
        job_deps = sweep.job_deps  # None, or each job's deps named after its wildcards
        stale = []
        for index, (rel, outputs) in enumerate(zip(sweep.inputs, sweep.outputs)):
            expected = recorded.get(prefix + rel)
            if expected is None or (remade and _reads(rel, job_deps, index, remade)):
                stale.append(index)
                continue
            try:
                info = stat(rel)
                texts = [key, f"{info.st_mtime_ns}:{info.st_size}"]
                for dep in job_deps[index] if job_deps is not None else ():
                    info = stat(dep)
                    texts.append(f"{info.st_mtime_ns}:{info.st_size}")
                for output in outputs:
                    info = stat(output)
                    texts.append(f"{info.st_mtime_ns}:{info.st_size}")
            except OSError:
                stale.append(index)
                continue
            if "|".join(texts) != expected:
                stale.append(index)
        self._found(sweep.spec.name, len(sweep) - len(stale))
        if self.names is not None:
            stale_set = set(stale)
            self.names += [prefix + rel for index, rel in enumerate(sweep.inputs)
                           if index not in stale_set]
        return stale

    def _stale_gather(self, gather, remade) -> list[int]:
        if not len(gather):
            return []
        job = gather.job()
        expected = self.store.signatures().get(job.task)
        if expected is None or not remade.isdisjoint(job.gathered) \
                or self.signatures.of(job.spec()) != expected:
            return [0]
        self._found(job.task, 1)
        if self.names is not None:
            self.names.append(job.task)
        return []


def _reads(rel: str, job_deps, index: int, remade) -> bool:
    """Whether a job reads one of the files `remade`."""
    return rel in remade or (job_deps is not None and not remade.isdisjoint(job_deps[index]))

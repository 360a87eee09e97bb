"""The fast up-to-date check: a rule job whose files are as they were at its recorded success is
up to date without asking doit. One `stat` per file: the floor of any check.

A signature is the rule's key (its command and output templates, and the stat of every file all
its jobs share), then the stat of the job's input and of each output. Any difference only means
that doit, which compares content, decides.
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

    def now(self, digest: str, input_path: str, outputs, shared: tuple[str, ...]) -> str | None:
        """The signature of one job now; None if any of its files is missing."""
        texts = [self.rule_key(digest, shared), stamp(input_path)]
        texts.extend(stamp(output) for output in outputs)
        return None if None in texts else "|".join(texts)

    def of(self, spec: dict) -> str | None:
        """The signature of a job spec (see `rules.Job.spec`) now."""
        return self.now(spec["digest"], spec["input"], spec["outputs"], tuple(spec["shared"]))


class UpToDate:
    """Which jobs of a sweep are up to date by signature; only the others are handed to doit."""

    def __init__(self, store, signatures: Signatures, keep_names: bool = False):
        self.store = store
        self.signatures = signatures
        self.count = 0  # jobs found up to date so far
        self.names: list[str] | None = [] if keep_names else None  # their task names

    def stale(self, sweep) -> list[int]:
        """The indices of the sweep's jobs whose signature is not the recorded one.

        The one loop over every job of a no-op run, so it is written for speed: no job objects,
        one stat per file, one string compared per job.
        """
        key = self.signatures.rule_key(sweep.digest, sweep.shared)
        if key is None:
            return list(range(len(sweep)))
        recorded = self.store.signatures()
        prefix = sweep.task_name("")
        stat = os.stat
        stale = []
        for index, (rel, outputs) in enumerate(zip(sweep.inputs, sweep.outputs)):
            expected = recorded.get(prefix + rel)
            if expected is None:
                stale.append(index)
                continue
            try:
                info = stat(rel)
                texts = [key, f"{info.st_mtime_ns}:{info.st_size}"]
                for output in outputs:
                    info = stat(output)
                    texts.append(f"{info.st_mtime_ns}:{info.st_size}")
            except OSError:
                stale.append(index)
                continue
            if "|".join(texts) != expected:
                stale.append(index)
        self.count += len(sweep) - len(stale)
        if self.names is not None:
            stale_set = set(stale)
            self.names += [prefix + rel for index, rel in enumerate(sweep.inputs)
                           if index not in stale_set]
        return stale

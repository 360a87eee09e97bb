"""`Rule`, for a dodo.py: the rules of one dodo.py planned together, so their jobs chain, under
incrun and under plain doit alike.

doit calls the dodo.py's task functions, not incrun: what incrun knows of a run (its fast
up-to-date check, the order of stale jobs, the shard) is put in the dodo.py's own globals by
incrun's loader while it asks for their tasks, as `RunSettings`, where each rule made there
finds it. Under plain doit there is none, and every job is a task.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .config import (
    DEFAULT_INPUTS,
    DEFAULT_OUTPUTS,
    RuleSpec,
    command_words,
    positive_seconds,
    warm_rule,
)
from .errors import BadConfig
from .plan import Plan, build
from .rules import Gather, Job, Sweep


@dataclass
class RunSettings:
    """What incrun's run tells the rules of a dodo.py, and what it learns from them."""

    up_to_date: object = None  # uptodate.UpToDate: its up-to-date jobs are left out
    order: object = None  # schedule.Expected: the order of each rule's stale jobs
    shard: tuple[int, int] | None = None  # --shard I/N: the rules keep the jobs of shard I
    check_files: bool = False  # a run: a missing script or dep is refused before any job
    asked: set[str] = field(default_factory=set)  # rules whose tasks the dodo.py asked for


# The name of the run's settings in a dodo.py's globals, while incrun loads its tasks.
RUN_KEY = "__incrun_run__"


class Rule:
    """Inputs, command and outputs, as a rule in `[tool.incrun.rules.NAME]`.

    In a dodo.py::

        sim = Rule(name="sim", inputs=["data/*.inp"],
                   command=["{python}", "data/runner.py", "{input}"])
        post = Rule(name="post", inputs=sim, command=["{python}", "post.py", "{input}"],
                    outputs=["{stem}.sum"])

        def task_sim():
            yield from sim.tasks()

        def task_post():
            yield from post.tasks()

    `inputs` are patterns, or rules whose outputs are the inputs, or both. The rules of a
    dodo.py (those bound to a name at its top level) are planned together: patterns match the
    outputs other rules declare, made yet or not, and each job comes after those it reads from.
    """

    def __init__(self, inputs=None, command=None, outputs=None, deps=(), exclude=(),
                 name: str = "sweep", root: str | os.PathLike = ".",
                 timeout: float | None = None, retries: int | None = None,
                 jobs: int | None = None, gather: bool = False, warm: bool = False):
        listed = _listed(inputs)
        self.upstream = [item for item in listed if isinstance(item, Rule)]
        patterns = _paths(item for item in listed if not isinstance(item, Rule))
        self.spec = RuleSpec(
            inputs=patterns or (() if self.upstream else DEFAULT_INPUTS),
            exclude=_paths(_listed(exclude)),
            command=_command(command),
            outputs=_paths(_listed(outputs)) or DEFAULT_OUTPUTS,
            deps=_paths(_listed(deps)),
            name=name,
            timeout=positive_seconds(timeout, "Rule timeout"),
            retries=_count(retries, "retries", 0),
            jobs=_count(jobs, "jobs", 1),
            gather=bool(gather),
            after=tuple(rule.spec.name for rule in self.upstream),
            warm=warm_rule(warm, _command(command), f"Rule {name!r}"),
        )
        self.root = Path(root)
        # Where the rule was made (the dodo.py's globals): its sibling rules are found there.
        self._namespace = sys._getframe(1).f_globals
        self._group: _Group | None = None

    @property
    def _run(self) -> RunSettings | None:
        """incrun's settings while it loads the dodo.py's tasks; None under plain doit."""
        return self._namespace.get(RUN_KEY)

    def sweep(self) -> Sweep | Gather:
        return self._planned().plan.sweep(self.spec.name)

    def jobs(self) -> list[Job]:
        return self.sweep().jobs()

    def pending(self, up_to_date=None) -> list[Job]:
        """The jobs that `up_to_date` (a check of every rule's jobs) cannot vouch for, and
        those downstream of them."""
        return self._planned().pending(up_to_date)[self.spec.name]

    def tasks(self):
        """doit task dicts, one per input (one for a gather rule, named as the rule); a plain
        `doit` runs them as well as incrun does."""
        run = self._run
        if run is not None:
            run.asked.add(self.spec.name)
        for job in self.pending(run.up_to_date if run is not None else None):
            task = job.task_dict()
            if self.spec.gather:
                task["basename"] = self.spec.name
            yield task

    def outputs(self) -> list[str]:
        return [output for outputs in self.sweep().outputs for output in outputs]

    def _planned(self) -> _Group:
        if self._group is None or self._group.run is not self._run:  # planned for this run
            group = _Group(self._siblings(), self.root, self._run)
            for rule in group.rules:
                rule._group = group
        return self._group

    def _siblings(self) -> list[Rule]:
        """The rules planned with this one: those at the top of its dodo.py, itself, and the
        rules it reads from, each once."""
        found = [value for value in self._namespace.values() if isinstance(value, Rule)]
        pending, seen = [self, *found], {}
        while pending:
            rule = pending.pop(0)
            if id(rule) not in seen:
                seen[id(rule)] = rule
                pending.extend(rule.upstream)
        return list(seen.values())


class _Group:
    """The rules of one dodo.py and their plan, made once."""

    def __init__(self, rules: list[Rule], root: Path, run: RunSettings | None):
        names = [rule.spec.name for rule in rules]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise BadConfig(f"two rules in dodo.py are named {twice[0]!r}",
                            hint="give each Rule its own name=")
        self.rules = rules
        self.run = run
        self.plan: Plan = build([rule.spec for rule in rules], root,
                                run.shard if run is not None else None, require_inputs=False,
                                check_files=run is not None and run.check_files)
        self._pending: tuple[object, dict[str, list[Job]]] | None = None

    def pending(self, up_to_date) -> dict[str, list[Job]]:
        """Each rule's pending jobs, by name; worked out once per check."""
        if self._pending is None or self._pending[0] is not up_to_date:
            found = self.plan.pending(up_to_date, self.run.order if self.run else None)
            self._pending = (up_to_date, {sweep.spec.name: jobs for sweep, jobs in found})
        return self._pending[1]


def _listed(value) -> list:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike, Rule)):
        return [value]
    return list(value)


def _command(command) -> tuple[str, ...]:
    """A Rule's command: an argv list, or a string split as the config's is (never run by a
    shell)."""
    if isinstance(command, (str, os.PathLike)):
        return command_words(os.fspath(command), "Rule command")
    return command_words(list(_paths(_listed(command))) or None, "Rule command")


def _paths(values) -> tuple[str, ...]:
    return tuple(os.fspath(value) for value in values)


def _count(value, what: str, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadConfig(f"Rule {what} must be a whole number, at least {minimum}: {value!r}")
    return value

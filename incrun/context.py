"""The state of one run that the engine shares with the runner: policy, store, executor, events."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from .events import UP_TO_DATE, JobSkipped, RunStarted, rule_of
from .uptodate import Signatures, UpToDate


@dataclass
class RunContext:
    """What one run's runner needs from the engine."""

    store: object  # store.Store
    executor: object  # executors.contract.Executor
    emit: Callable
    fail_fast: bool = False
    always: bool = False
    retries: int = 0
    timeout: float | None = None  # from the command line: wins over every rule's own
    limit: int | None = None  # --limit: at most this many jobs start
    clock: Callable[[], float] = time.time
    interrupted: int | None = None  # the signal that stopped the run
    lost: str = ""  # why the executor can run nothing more (its cluster is gone)
    stage: bool = False  # jobs carry the files they read (--stage)
    job_env: tuple[tuple[str, str], ...] = ()  # `env`: variables every job is given
    warm: bool = False  # --warm: `{python} SCRIPT` jobs start warm, whatever their rule says
    signatures: Signatures = field(default_factory=Signatures)
    up_to_date: UpToDate | None = None  # finds the jobs up to date before doit sees them
    started: float = 0.0  # when the run began, before any job was checked
    expected: object = None  # schedule.Expected: the stale jobs' last known durations
    own_tasks: int | None = None  # a dodo.py's tasks at once, when -n or `jobs` says
    idle: bool = False  # the coordinator waits for the executor, its store between changes
    launched: int = 0  # jobs started so far (retries not counted), for --limit
    halted: bool = False  # --fail-fast after a failure: nothing more starts
    announced: bool = False  # RunStarted was emitted

    def __post_init__(self):
        self.started = self.started or self.clock()

    def start(self, for_doit: list[str], growing: bool = False) -> None:
        """Announce the run: the jobs doit will check or run (by name), and those found up to
        date already, counted a rule at a time rather than one event each; `growing` if tasks
        are yet to be made (doit's create_after)."""
        clean = self.up_to_date.by_rule if self.up_to_date else {}
        rules = Counter(rule_of(name) for name in for_doit)
        rules.update(clean)
        self.announced = True
        durations = dict(self.expected.durations) if self.expected is not None else {}
        self.emit(RunStarted(len(for_doit) + sum(clean.values()), self.executor.slots,
                             self.started, len(for_doit), durations, dict(rules), growing))
        names = self.up_to_date.names if self.up_to_date else None
        for rule, count in clean.items():
            of_rule = tuple(name for name in names if rule_of(name) == rule) if names else ()
            self.emit(JobSkipped("", UP_TO_DATE, count=count, names=of_rule, rule=rule))

    @property
    def limit_reached(self) -> bool:
        """--limit K: K jobs have started; the others wait for a later run."""
        return self.limit is not None and self.launched >= self.limit

    @property
    def ending(self) -> bool:
        """Nothing more may start: stopped by a signal, the cluster lost, a failure under
        --fail-fast, or --limit reached."""
        return self.interrupted is not None or bool(self.lost) or self.halted \
            or self.limit_reached

    def lose(self, reason: str) -> None:
        """The executor's cluster is gone: launch nothing more; the run ends with `reason`."""
        if not self.lost:
            self.lost = reason
            self.executor.stop()

    def interrupt(self, signum: int) -> None:
        """First Ctrl-C or SIGTERM: launch nothing more, end the running jobs."""
        self.interrupted = signum
        self.executor.stop()

"""Events of a run and results of jobs: frozen values the engine emits and displays consume."""

from __future__ import annotations

from dataclasses import dataclass, field

# How a job that ran ended.
OK = "ok"
FAILED = "failed"  # non-zero exit, killed by a signal, or an output missing
ERROR = "error"  # could not be started, or a dodo.py action raised
TIMEOUT = "timeout"  # killed after running longer than its timeout
INTERRUPTED = "interrupted"  # stopped by Ctrl-C or SIGTERM: neither done nor failed

# Why a job did not run.
UP_TO_DATE = "up-to-date"
ADOPTED = "adopted"  # outputs from before incrun, newer than their inputs
IGNORED = "ignored"
NOT_RUN = "not-run"  # a dependency failed, or the run stopped early
DEFERRED = "deferred"  # left for a later run by --limit: not a failure


def rule_of(task: str) -> str:
    """The rule a job belongs to (`sim` of `sim:data/a.inp`), as doit names sub-tasks; a
    hand-written task is its own."""
    return task.partition(":")[0]


@dataclass(frozen=True)
class JobResult:
    """What an executor reports for one finished job; never raised, always returned."""

    name: str
    status: str
    started: float
    ended: float
    exit_code: int | None = None
    log_path: str | None = None
    detail: str = ""  # one line saying why it failed
    log_tail: tuple[str, ...] = ()
    attempts: int = 1
    worker: str | None = None  # the slot that ran it: "w0", "w1"... (processes), "t0"... (threads)
    hashes: tuple = ()  # of a success: hashing.FileState of the files the spec asked to hash

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def duration(self) -> float:
        return self.ended - self.started


@dataclass(frozen=True)
class RunStarted:
    total: int  # jobs in the selection, up-to-date ones included
    workers: int
    at: float
    pending: int | None = None  # jobs that may run (the others are up to date); default: total
    expected: dict[str, float] = field(default_factory=dict)  # last known durations, by job
    rules: dict[str, int] = field(default_factory=dict)  # jobs in the selection, by rule
    growing: bool = False  # tasks made once others ran (doit's create_after) are to come

    def __post_init__(self):
        if self.pending is None:
            object.__setattr__(self, "pending", self.total)


@dataclass(frozen=True)
class JobStarted:
    name: str
    at: float
    worker: str = ""  # where it runs, when not on this machine: a cluster worker's name
    title: str = ""  # a dodo.py task's own `title`, shown in place of its name


@dataclass(frozen=True)
class JobAdded:
    """A task made during the run (by a `create_after` task function): one more job."""

    name: str


@dataclass(frozen=True)
class JobOutput:
    """What a task printed, shown at verbosity 2 once it ended; it is in its log anyway."""

    name: str
    lines: tuple[str, ...]
    part: str = "output"  # or "teardown"
    title: str = ""


@dataclass(frozen=True)
class JobFinished:
    result: JobResult


@dataclass(frozen=True)
class JobSkipped:
    name: str  # a task, or a rule when `count` jobs are skipped at once
    reason: str  # UP_TO_DATE, ADOPTED, IGNORED or NOT_RUN
    detail: str = ""
    count: int = 1
    names: tuple[str, ...] = ()  # of the `count` jobs, when a consumer asked for them
    rule: str = ""  # of the `count` jobs, when they are of one rule


@dataclass(frozen=True)
class Notice:
    """A one-line message for the user (a warning, a count of adopted outputs)."""

    text: str
    level: str = "info"  # "info" or "warning"


@dataclass(frozen=True)
class RuleCounts:
    """One rule's share of a run."""

    name: str
    total: int
    succeeded: int = 0
    failed: int = 0
    up_to_date: int = 0  # adopted ones included
    not_run: int = 0
    running: int = 0

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.up_to_date + self.not_run


@dataclass(frozen=True)
class Summary:
    total: int
    succeeded: int = 0
    failed: int = 0
    up_to_date: int = 0
    adopted: int = 0
    ignored: int = 0  # by `incrun ignore`: not run, and not up to date either
    not_run: int = 0
    deferred: int = 0
    elapsed: float = 0.0
    failures: tuple[JobResult, ...] = field(default=())
    blocked: tuple[tuple[str, str], ...] = field(default=())  # not run: (job, why)
    rules: tuple[RuleCounts, ...] = field(default=())  # each rule's share, when there are several

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.not_run == 0

    @property
    def ran_nothing(self) -> bool:
        """Every job was up to date: a no-op run."""
        return self.succeeded + self.failed + self.not_run == 0


@dataclass(frozen=True)
class RunFinished:
    summary: Summary


Event = (RunStarted | JobStarted | JobAdded | JobOutput | JobFinished | JobSkipped | Notice
         | RunFinished)


class Tally:
    """Counts the events of one run; the engine's and the displays' single source of counts."""

    def __init__(self, total: int = 0, started_at: float = 0.0):
        self.total = total
        self.started_at = started_at
        self.running: dict[str, float] = {}
        self.where: dict[str, str] = {}  # of the running jobs, those whose executor says
        self.counts = {OK: 0, FAILED: 0, UP_TO_DATE: 0, ADOPTED: 0, IGNORED: 0, NOT_RUN: 0,
                       DEFERRED: 0}
        self.failures: list[JobResult] = []
        self.blocked: list[tuple[str, str]] = []  # jobs not run for a failure: (job, why)
        self.run_durations: list[float] = []
        self.expected: dict[str, float] = {}  # of the jobs that may run, those with a history
        self.expected_left = 0.0  # their sum, for those not finished
        self.unknown_left = 0  # jobs that may run, not finished, with no history
        self.rules: dict[str, dict[str, int]] = {}  # by rule: its total and its counts
        self.titles: dict[str, str] = {}  # of the tasks that have their own
        self.shown: set[str] = set()  # tasks whose whole output was shown (verbosity 2)
        self.growing = False  # more jobs may be made as the run goes

    def add(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.total, self.started_at = event.total, event.at
            self.expected = event.expected
            self.expected_left = sum(event.expected.values())
            self.unknown_left = max(event.pending - len(event.expected), 0)
            self.rules = {rule: _rule_tally(total) for rule, total in event.rules.items()}
            self.growing = event.growing
        elif isinstance(event, JobAdded):
            self.total += 1
            self.unknown_left += 1
            self.rules.setdefault(rule_of(event.name), _rule_tally(0))["total"] += 1
        elif isinstance(event, JobOutput):
            self.shown.add(event.name)
        elif isinstance(event, JobStarted):
            self.running[event.name] = event.at
            if event.worker:
                self.where[event.name] = event.worker
            if event.title:
                self.titles[event.name] = event.title
        elif isinstance(event, JobFinished):
            result = event.result
            self._left(result.name)
            self.running.pop(result.name, None)
            self.where.pop(result.name, None)
            self.run_durations.append(result.duration)
            outcome = OK if result.ok else FAILED
            self.counts[outcome] += 1
            self._count(result.name, outcome)
            if not result.ok:
                self.failures.append(result)
        elif isinstance(event, JobSkipped):
            if event.name:
                self._left(event.name)
            reason = event.reason
            self.counts[reason] += event.count
            # A rule's line counts what needs nothing done: up to date, adopted or ignored.
            self._count(event.rule or event.name,
                        UP_TO_DATE if reason in (ADOPTED, IGNORED) else reason, event.count)
            if reason == NOT_RUN and event.detail != INTERRUPTED:
                self.blocked.append((event.name, event.detail))

    def label(self, name: str) -> str:
        """What the display calls a job: its title if it has one."""
        return self.titles.get(name, name)

    def _count(self, name: str, outcome: str, count: int = 1) -> None:
        counts = self.rules.get(rule_of(name)) if name else None
        if counts is not None and outcome in counts:
            counts[outcome] += count

    def rule_counts(self) -> tuple[RuleCounts, ...]:
        """Each rule's share, when the run has several; jobs running now counted as such."""
        if len(self.rules) < 2:
            return ()
        running: dict[str, int] = {}
        for name in self.running:
            running[rule_of(name)] = running.get(rule_of(name), 0) + 1
        return tuple(RuleCounts(rule, counts["total"], counts[OK], counts[FAILED],
                                counts[UP_TO_DATE], counts[NOT_RUN], running.get(rule, 0))
                     for rule, counts in self.rules.items())

    def _left(self, name: str) -> None:
        """A job that may have run is done with: its expected time is no longer to come."""
        if name in self.expected:
            self.expected_left -= self.expected[name]
        elif self.unknown_left:
            self.unknown_left -= 1

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def summary(self, now: float) -> Summary:
        return Summary(
            total=self.total,
            succeeded=self.counts[OK],
            failed=self.counts[FAILED],
            up_to_date=self.counts[UP_TO_DATE],
            adopted=self.counts[ADOPTED],
            ignored=self.counts[IGNORED],
            not_run=self.counts[NOT_RUN] + max(0, self.total - self.done),
            deferred=self.counts[DEFERRED],
            elapsed=now - self.started_at,
            failures=tuple(self.failures),
            blocked=tuple(self.blocked),
            rules=self._finished_rules(),
        )

    def _finished_rules(self) -> tuple[RuleCounts, ...]:
        """At the end: a rule's jobs that neither ran nor were skipped did not run."""
        return tuple(RuleCounts(rule.name, rule.total, rule.succeeded, rule.failed,
                                rule.up_to_date, rule.total - rule.succeeded - rule.failed
                                - rule.up_to_date)
                     for rule in self.rule_counts())


def _rule_tally(total: int) -> dict[str, int]:
    return {"total": total, OK: 0, FAILED: 0, UP_TO_DATE: 0, NOT_RUN: 0}


def fail_detail(fail) -> str:
    """One line for a doit failure: the exception itself when there is one, not doit's wrapper."""
    lines = [line.strip() for line in "".join(fail.traceback).splitlines() if line.strip()]
    text = lines[-1] if lines else (fail.message or type(fail).__name__)
    return text.strip().splitlines()[0][:200]


class EventReporter:
    """doit's reporter interface, turned into events; only what doit decides on its own is reported
    here (up to date, ignored, a failed dependency), the runner reports the jobs it runs."""

    def __init__(self, emit, counted: set[str]):
        self.emit = emit
        self.counted = counted  # tasks with actions; group tasks are never shown

    def skip_uptodate(self, task) -> None:
        if task.name in self.counted:
            self.emit(JobSkipped(task.name, UP_TO_DATE))

    def skip_ignore(self, task) -> None:
        if task.name in self.counted:
            self.emit(JobSkipped(task.name, IGNORED))

    def add_failure(self, task, fail) -> None:
        """Called by doit before a task runs: a failed dependency or an unreadable file_dep."""
        if task.name not in self.counted:
            return
        detail = fail_detail(fail)
        if type(fail).__name__ == "UnmetDependency":
            self.emit(JobSkipped(task.name, NOT_RUN, detail))
        else:
            self.emit(JobFinished(JobResult(task.name, ERROR, 0.0, 0.0, detail=detail)))

    def cleanup_error(self, exception) -> None:
        self.emit(Notice(f"teardown failed: {exception}", "warning"))

    def runtime_error(self, msg: str) -> None:
        self.emit(Notice(msg, "warning"))

    def get_status(self, task) -> None:
        """Nothing to show: checking is silent."""

    def execute_task(self, task) -> None:
        """The runner emits JobStarted itself."""

    def add_success(self, task) -> None:
        """The runner emits JobFinished itself."""

    def teardown_task(self, task) -> None:
        """Teardowns are not jobs."""

    def complete_run(self) -> None:
        """The engine emits RunFinished with the summary."""

"""Showing a run to the user: plain lines for pipes and CI, JSON lines for machines, and the
choice of display (the rich live display for a terminal is in `live`); consumes events, never
drives execution."""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import fields
from typing import Any, TextIO

from incrun.events import (
    ADOPTED,
    FAILED,
    IGNORED,
    NOT_RUN,
    OK,
    UP_TO_DATE,
    Event,
    JobAdded,
    JobFinished,
    JobOutput,
    JobResult,
    JobSkipped,
    JobStarted,
    Notice,
    RuleCounts,
    RunFinished,
    RunStarted,
    Summary,
    Tally,
)
from incrun.words import counted

Clock = Callable[[], float]

MAX_FAILURES_LISTED = 20
MAX_BLOCKED_NAMED = 5  # jobs named on one `not run:` line
# Escape sequences and control characters: a job's log tail must not repaint our terminal.
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x08\x0a-\x1f\x7f]")


# ---- words and numbers shared by every renderer (pure) ----


def clean(text: str) -> str:
    return _CONTROL.sub("", text)


def format_seconds(seconds: float, precise: bool = True) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s" if precise else f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def jobs_per_second(tally: Tally, now: float) -> float | None:
    """Among jobs that ran: skipped jobs would make the rate meaningless."""
    ran = tally.counts[OK] + tally.counts[FAILED]
    elapsed = now - tally.started_at
    return ran / elapsed if ran and elapsed > 0 else None


def eta_seconds(tally: Tally, workers: int, now: float | None = None) -> float | None:
    """The work left, divided among the workers: each job's last known duration, this run's
    mean for a job with no history; less what the running jobs have done already. Jobs not
    yet checked may turn out up to date, so this is an upper bound."""
    if tally.expected:
        durations = tally.run_durations or list(tally.expected.values())
        mean = sum(durations) / len(durations)
        left = max(tally.expected_left, 0.0) + tally.unknown_left * mean
        if now is not None:
            left -= sum(min(now - started, tally.expected.get(name, mean))
                        for name, started in tally.running.items())
        return max(left, 0.0) / max(workers, 1)
    if not tally.run_durations:
        return None
    remaining = max(tally.total - tally.done, 0)
    mean = sum(tally.run_durations) / len(tally.run_durations)
    return remaining * mean / max(workers, 1)


def _eta_text(tally: Tally, workers: int, now: float | None = None) -> str:
    eta = eta_seconds(tally, workers, now)
    return "ETA —" if eta is None else f"ETA {format_seconds(eta, precise=False)}"


def ran_part(succeeded: int, failed: int) -> tuple[str, str]:
    """`3 ran (1 failed)`: every job that ran, failures included, and how many of them failed;
    the one wording of these counts for the progress line, the live display, each rule's share
    and the summary."""
    ran = f"{succeeded + failed} ran"
    if failed:
        return f"{ran} ({failed} failed)", "bold red"
    return ran, "green"


def up_to_date_words(up_to_date: int, adopted: int) -> str:
    """`5 up to date (adopted 2)`: adopted outputs count as up to date."""
    words = f"{up_to_date + adopted} up to date"
    return words + f" (adopted {adopted})" if adopted else words


def progress_parts(tally: Tally, now: float, workers: int) -> list[tuple[str, str]]:
    """The progress counts as (words, rich style) pairs; plain mode drops the styles."""
    counts = tally.counts
    parts = [ran_part(counts[OK], counts[FAILED]),
             (up_to_date_words(counts[UP_TO_DATE], counts[ADOPTED]), "blue")]
    if counts[IGNORED]:
        parts.append((f"{counts[IGNORED]} ignored", "dim"))
    if counts[NOT_RUN]:
        parts.append((f"{counts[NOT_RUN]} not run", "yellow"))
    parts.append((f"{len(tally.running)} running", "cyan"))
    rate = jobs_per_second(tally, now)
    if rate is not None:
        parts.append((f"{rate:.1f} jobs/s", ""))
    parts.append((_eta_text(tally, workers, now), ""))
    return parts


def total_text(tally: Tally) -> str:
    """The jobs in the run; `14+` while tasks may still be made (doit's create_after)."""
    return f"{tally.total}+" if tally.growing else str(tally.total)


def progress_line(tally: Tally, now: float, workers: int) -> str:
    width = len(str(tally.total))
    counter = f"[{tally.done:>{width}}/{total_text(tally)}]"
    line = counter + " " + ", ".join(words for words, _ in progress_parts(tally, now, workers))
    rules = tally.rule_counts()
    if rules:
        line += " | " + ", ".join(f"{rule.name} {rule.done}/{rule.total}" for rule in rules)
    return line


def rule_parts(rule: RuleCounts) -> list[tuple[str, str]]:
    """One rule's counts as (words, rich style) pairs, the zero ones left out."""
    parts = [ran_part(rule.succeeded, rule.failed)] if rule.succeeded + rule.failed else []
    parts += [(f"{count} {words}", style) for count, words, style in (
        (rule.up_to_date, "up to date", "blue"), (rule.not_run, "not run", "yellow"),
        (rule.running, "running", "cyan")) if count]
    return parts or [("nothing yet", "dim")]


def rule_lines(rules: tuple[RuleCounts, ...]) -> list[str]:
    """A line per rule: `  post     2/3  2 ran, 1 not run`; none for a run of one rule."""
    name_width = max((len(rule.name) for rule in rules), default=0)
    done = [f"{rule.done}/{rule.total}" for rule in rules]
    done_width = max((len(text) for text in done), default=0)
    return [clean(f"  {rule.name:<{name_width}}  {count:>{done_width}}  "
                  + ", ".join(words for words, _ in rule_parts(rule)))
            for rule, count in zip(rules, done)]


def _failure_reason(result: JobResult) -> str:
    if result.detail:
        return result.detail
    if result.exit_code is not None:
        return f"exit code {result.exit_code}"
    return result.status


def failure_lines(result: JobResult, tally: Tally | None = None) -> list[str]:
    """A failure as one block: headline (the task's title, if it has one), log path, the log's
    last lines (unless its whole output was just shown)."""
    label = tally.label(result.name) if tally else result.name
    lines = [clean(f"FAILED {label} ({_failure_reason(result)})")]
    if result.log_path:
        lines.append(clean(f"    log: {result.log_path}"))
    if tally is None or result.name not in tally.shown:
        lines.extend("    " + clean(line) for line in result.log_tail)
    return lines


def failure_one_line(result: JobResult) -> str:
    log = f"  (log: {result.log_path})" if result.log_path else ""
    return clean(f"FAILED {result.name} ({_failure_reason(result)}){log}")


def output_lines(output: JobOutput) -> list[str]:
    """What a task printed, as one block under its title or name (verbosity 2)."""
    label = output.title or output.name
    headline = f"{label}:" if output.part == "output" else f"{label} ({output.part}):"
    return [clean(headline), *("    " + clean(line) for line in output.lines)]


def notice_line(notice: Notice) -> str:
    prefix = "warning: " if notice.level == "warning" else ""
    return clean(prefix + notice.text)


# ---- the final summary (pure, used by live and plain) ----


def _summary_counts(summary: Summary) -> str:
    parts = [ran_part(summary.succeeded, summary.failed)[0]]
    if summary.up_to_date + summary.adopted:
        parts.append(up_to_date_words(summary.up_to_date, summary.adopted))
    if summary.ignored:
        parts.append(f"{summary.ignored} ignored")
    if summary.not_run:
        parts.append(f"{summary.not_run} not run")
    if summary.deferred:
        parts.append(f"{summary.deferred} left for later (--limit)")
    return ", ".join(parts)


def _failure_list(failures: tuple[JobResult, ...]) -> list[str]:
    lines = []
    for result in failures[:MAX_FAILURES_LISTED]:
        where = f"log: {result.log_path}" if result.log_path else _failure_reason(result)
        lines.append(clean(f"failed: {result.name}  ({where})"))
    if len(failures) > MAX_FAILURES_LISTED:
        lines.append(f"… and {counted(len(failures) - MAX_FAILURES_LISTED, 'more failure')}")
    return lines


def _blocked_list(blocked: tuple[tuple[str, str], ...]) -> list[str]:
    """The jobs not run, a line for each reason: `not run: a, b (needs x, which failed)`."""
    by_reason: dict[str, list[str]] = {}
    for name, reason in blocked:
        by_reason.setdefault(reason, []).append(name)
    lines = []
    for reason, names in list(by_reason.items())[:MAX_FAILURES_LISTED]:
        shown = ", ".join(names[:MAX_BLOCKED_NAMED])
        if len(names) > MAX_BLOCKED_NAMED:
            shown += f" and {len(names) - MAX_BLOCKED_NAMED} more"
        lines.append(clean(f"not run: {shown} ({reason})" if reason else f"not run: {shown}"))
    if len(by_reason) > MAX_FAILURES_LISTED:
        left = counted(len(by_reason) - MAX_FAILURES_LISTED, "more reason")
        lines.append(f"… and more jobs not run, for {left}")
    return lines


def summary_lines(summary: Summary) -> list[str]:
    elapsed = format_seconds(summary.elapsed)
    if summary.ran_nothing and summary.ignored:
        done = summary.total - summary.ignored
        return [f"{counted(done, 'job')} up to date, {summary.ignored} ignored ({elapsed})"]
    if summary.ran_nothing:
        adopted = f", adopted {summary.adopted}" if summary.adopted else ""
        jobs = "the 1 job is" if summary.total == 1 else f"all {summary.total} jobs"
        return [f"{jobs} up to date{adopted} ({elapsed})"]
    headline = f"done in {elapsed}: {_summary_counts(summary)}"
    if summary.ok:
        return [headline + " — all succeeded"]
    return [headline, *_failure_list(summary.failures), *_blocked_list(summary.blocked)]


def _ran_rule_lines(summary: Summary) -> list[str]:
    """Each rule's share, after a run that ran something (a no-op run stays one line)."""
    if summary.ran_nothing:
        return []
    return rule_lines(summary.rules)


# ---- displays ----


class Display:
    """Consumes every event of a run; `close` is idempotent."""

    def handle(self, event: Event) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):  # unannotated: typing.Self is 3.11+ (ruff PYI019/PYI034)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_SGR = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33"}


def _styled(text: str, style: str, no_color: bool) -> str:
    """A line in the terminal's own colours (the few styles incrun uses), without rich."""
    codes = ";".join(_SGR[word] for word in style.split())
    return text if no_color or not codes else f"\x1b[{codes}m{text}\x1b[0m"


class LiveDisplay(Display):
    """The display for a terminal: a rich live area (see `live`) from the moment a run has
    jobs to run. A run that finds everything up to date prints its summary line itself and never
    loads rich."""

    def __init__(self, file: TextIO, clock: Clock, no_color: bool = False,
                 width: int | None = None):
        self._file, self._clock, self._no_color, self._width = file, clock, no_color, width
        self._tally, self._workers = Tally(), 1
        self._lock = threading.Lock()  # the area's refresh thread reads the Tally we write
        self._area = None  # live.LiveArea, once there is something to show

    def _view(self) -> tuple[Tally, float, int]:
        with self._lock:
            return self._tally, self._clock(), self._workers

    def _start_area(self) -> None:
        if self._area is None:
            from .live import LiveArea  # rich, only now

            self._area = LiveArea(self._file, self._view, self._no_color, self._width)

    def handle(self, event: Event) -> None:
        with self._lock:
            self._tally.add(event)
        if isinstance(event, RunStarted):
            self._workers = event.workers
            if event.pending:
                self._start_area()
        elif isinstance(event, JobStarted):
            self._start_area()
        elif isinstance(event, JobFinished) and not event.result.ok:
            headline, *rest = failure_lines(event.result, self._tally)
            self._say((headline, "bold red"), *((line, "dim") for line in rest))
        elif isinstance(event, JobOutput):
            headline, *rest = output_lines(event)
            self._say((headline, "bold"), *((line, "") for line in rest))
        elif isinstance(event, Notice):
            self._say((notice_line(event), "yellow" if event.level == "warning" else ""))
        elif isinstance(event, RunFinished):
            self.close()
            headline, *failures = summary_lines(event.summary)
            self._say((headline, "bold green" if event.summary.ok else "bold red"),
                      *((line, "") for line in _ran_rule_lines(event.summary)),
                      *((line, "red") for line in failures))

    def _say(self, *lines: tuple[str, str]) -> None:
        if self._area is not None:
            self._area.print(list(lines))
            return
        self._file.write("".join(_styled(text, style, self._no_color) + "\n"
                                 for text, style in lines))
        self._file.flush()

    def close(self) -> None:
        if self._area is not None:
            self._area.stop()


class PlainDisplay(Display):
    """Lines with no escape codes, a progress line at most every `interval` seconds."""

    def __init__(self, file: TextIO, clock: Clock, interval: float = 5.0, quiet: bool = False):
        self._file, self._clock, self._interval, self._quiet = file, clock, interval, quiet
        self._tally, self._workers = Tally(), 1
        self._last_progress = clock()

    def handle(self, event: Event) -> None:
        self._tally.add(event)
        if isinstance(event, RunStarted):
            self._start(event)
        elif isinstance(event, JobFinished) and not event.result.ok:
            result = event.result
            self._write(*([failure_one_line(result)] if self._quiet else
                          failure_lines(result, self._tally)))
        elif isinstance(event, JobOutput) and not self._quiet:
            self._write(*output_lines(event))
        elif isinstance(event, Notice) and not self._quiet:
            self._write(notice_line(event))
        elif isinstance(event, RunFinished):
            self._finish(event.summary)
            return
        self._maybe_progress()

    def _start(self, event: RunStarted) -> None:
        self._workers, self._last_progress = event.workers, self._clock()
        if not self._quiet:
            # 0 workers: not known yet (a cluster's)
            workers = f", {counted(event.workers, 'worker')}" if event.workers else ""
            more = " so far, more as tasks are made" if event.growing else ""
            self._write(f"incrun: {counted(event.total, 'job')}{more}{workers}")

    def _maybe_progress(self) -> None:
        now = self._clock()
        if self._quiet or now - self._last_progress < self._interval:
            return
        self._last_progress = now
        self._write(progress_line(self._tally, now, self._workers))

    def _finish(self, summary: Summary) -> None:
        lines = summary_lines(summary)
        if not self._quiet:
            self._write(lines[0], *_ran_rule_lines(summary), *lines[1:])
        elif not summary.ok:
            self._write(lines[0])

    def _write(self, *lines: str) -> None:
        self._file.write("".join(line + "\n" for line in lines))
        self._file.flush()


def _result_json(result: JobResult) -> dict[str, Any]:
    return {
        "name": result.name,
        "status": result.status,
        "exit_code": result.exit_code,
        "duration": round(result.duration, 3),
        "log": result.log_path,
        "detail": result.detail,
    }


_JSON_NAMES = {
    RunStarted: "run_started",
    JobStarted: "job_started",
    JobAdded: "job_added",
    JobFinished: "job_finished",
    JobSkipped: "job_skipped",
    Notice: "notice",
    RunFinished: "run_finished",
}


def _fields(value: Any, leave_out: tuple[str, ...]) -> dict[str, Any]:
    # By field name, so a field added to events.py reaches JSON consumers without a change here.
    return {f.name: getattr(value, f.name) for f in fields(value) if f.name not in leave_out}


def event_json(event: Event) -> dict[str, Any] | None:
    """One event as a JSON-ready dict; None for an event type this version does not know."""
    name = _JSON_NAMES.get(type(event))
    if name is None:
        return None
    if isinstance(event, JobFinished):
        return {"event": name, **_result_json(event.result)}
    if isinstance(event, RunFinished):
        summary = _fields(event.summary, leave_out=("failures", "rules"))
        return {"event": name, **summary,
                "rules": {rule.name: _fields(rule, leave_out=("name", "running"))
                          for rule in event.summary.rules}}
    if isinstance(event, RunStarted):  # the history's sum rather than every job's duration
        return {"event": name, **_fields(event, leave_out=("at", "expected")),
                "expected_jobs": len(event.expected),
                "expected_seconds": round(sum(event.expected.values()), 3)}
    # Timestamps are monotonic-clock readings, meaningless outside this process.
    return {"event": name, **_fields(event, leave_out=("at", "names"))}


class JsonDisplay(Display):
    """One JSON object per line per event, flushed, for machines; never quiet."""

    def __init__(self, file: TextIO):
        self._file = file

    def handle(self, event: Event) -> None:
        record = event_json(event)
        if record is not None:
            self._file.write(json.dumps(record, default=str) + "\n")  # str: any future field
            self._file.flush()


def make_display(
    mode: str,
    *,
    file: TextIO | None = None,
    quiet: bool = False,
    no_color: bool = False,
    clock: Clock = time.monotonic,
    plain_interval: float = 5.0,
    width: int | None = None,
) -> Display:
    """The one place a display is chosen. `clock` must be the clock events are stamped with.

    mode: "live" (rich, for a terminal), "plain" (pipes, CI) or "json" (machines).
    Quiet live and quiet plain are the same: failures only, as plain lines.
    """
    out = file if file is not None else sys.stdout  # captured now: jobs may swap sys.stdout
    if mode == "json":
        return JsonDisplay(out)
    if mode == "plain" or (mode == "live" and quiet):
        return PlainDisplay(out, clock, interval=plain_interval, quiet=quiet)
    if mode == "live":
        return LiveDisplay(out, clock, no_color=no_color, width=width)
    raise ValueError(f"unknown display mode {mode!r}: expected live, plain or json")

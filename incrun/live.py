"""The live display on a terminal: a rich Live area (bar, counts, rate, ETA, running jobs)
redrawn by rich's own thread at a bounded rate; events only update its Tally."""

from __future__ import annotations

import heapq
import threading
import time
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .display import (
    Clock,
    Display,
    clean,
    failure_lines,
    format_seconds,
    notice_line,
    progress_parts,
    summary_lines,
)
from .events import Event, JobFinished, JobResult, Notice, RunFinished, RunStarted, Summary, Tally

MAX_RUNNING_ROWS = 8


def _running_rows(tally: Tally, now: float) -> Table:
    rows = Table.grid(padding=(0, 2))
    rows.add_column(no_wrap=True, overflow="ellipsis")
    rows.add_column(justify="right", no_wrap=True)
    # Longest-running first; nsmallest stays linear however many workers run.
    oldest = heapq.nsmallest(MAX_RUNNING_ROWS, tally.running.items(), key=lambda item: item[1])
    for name, started in oldest:
        rows.add_row(Text("  " + clean(name)), Text(format_seconds(now - started), "cyan"))
    hidden = len(tally.running) - len(oldest)
    if hidden > 0:
        rows.add_row(Text(f"  … and {hidden} more", "dim"), "")
    return rows


def render(tally: Tally, now: float, width: int, *, workers: int = 1) -> RenderableType:
    """The live area: bar with done/total, counts, rate and ETA, then the running jobs."""
    counter = f"{tally.done}/{tally.total}"
    bar_width = max(width - len(counter) - 1, 10)
    bar = ProgressBar(tally.total, tally.done, bar_width, complete_style="green")
    header = Table.grid(padding=(0, 1))
    header.add_row(bar, counter)
    status = Text(" · ").join(
        Text(words, style) for words, style in progress_parts(tally, now, workers)
    )
    parts: list[RenderableType] = [header, status]
    if tally.running:
        parts.append(_running_rows(tally, now))
    return Group(*parts)


# ---- displays ----


class LiveDisplay(Display):
    """A rich Live area redrawn by rich's own thread; events only update the Tally."""

    @classmethod
    def on(cls, file: TextIO, clock: Clock, no_color: bool = False,
           width: int | None = None) -> LiveDisplay:
        console = Console(file=file, force_terminal=True, no_color=no_color, width=width,
                          highlight=False)
        return cls(console, clock)

    def __init__(self, console: Console, clock: Clock = time.monotonic):
        self._console, self._clock = console, clock
        self._tally, self._workers = Tally(), 1
        self._lock = threading.Lock()  # the refresh thread reads the Tally the main thread writes
        # Live renders once as it is built: everything _snapshot reads must exist by now.
        self._live = Live(
            console=console,
            get_renderable=self._snapshot,
            refresh_per_second=4,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def _snapshot(self) -> RenderableType:
        with self._lock:
            return render(self._tally, self._clock(), self._console.width, workers=self._workers)

    def handle(self, event: Event) -> None:
        with self._lock:
            self._tally.add(event)
        if isinstance(event, RunStarted):
            self._workers = event.workers
            self._live.start(refresh=True)  # Live's first frame predates RunStarted
        elif isinstance(event, JobFinished) and not event.result.ok:
            self._print_failure(event.result)
        elif isinstance(event, Notice):
            self._console.print(
                Text(notice_line(event), "yellow" if event.level == "warning" else "")
            )
        elif isinstance(event, RunFinished):
            self.close()
            self._print_summary(event.summary)

    def _print_failure(self, result: JobResult) -> None:
        headline, *rest = failure_lines(result)
        self._console.print(
            Text(headline, "bold red"), *(Text(line, "dim") for line in rest), sep="\n"
        )

    def _print_summary(self, summary: Summary) -> None:
        headline, *failures = summary_lines(summary)
        self._console.print(Text(headline, "bold green" if summary.ok else "bold red"))
        for line in failures:
            self._console.print(Text(line, "red"))

    def close(self) -> None:
        self._live.stop()  # rich ignores a second stop

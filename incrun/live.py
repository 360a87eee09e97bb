"""The live area on a terminal, with rich: a bar, counts, rate, ETA and the running jobs,
redrawn by rich's own thread at a bounded rate; `render` is a pure function of the tally."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .display import clean, format_seconds, progress_parts, rule_parts, total_text
from .events import Tally

MAX_RUNNING_ROWS = 8


def _running_rows(tally: Tally, now: float) -> Table:
    rows = Table.grid(padding=(0, 2))
    rows.add_column(no_wrap=True, overflow="ellipsis")
    rows.add_column(justify="right", no_wrap=True)
    rows.add_column(no_wrap=True, overflow="ellipsis")
    # Longest-running first; nsmallest stays linear however many workers run.
    oldest = heapq.nsmallest(MAX_RUNNING_ROWS, tally.running.items(), key=lambda item: item[1])
    for name, started in oldest:
        where = tally.where.get(name)
        rows.add_row(Text("  " + clean(tally.label(name))),
                     Text(format_seconds(now - started), "cyan"),
                     Text(f"on {clean(where)}", "dim") if where else "")
    hidden = len(tally.running) - len(oldest)
    if hidden > 0:
        rows.add_row(Text(f"  … and {hidden} more", "dim"), "")
    return rows


def _rule_rows(rules) -> Table:
    """A line per rule: its name, done/total, and its counts."""
    rows = Table.grid(padding=(0, 2))
    rows.add_column(no_wrap=True, overflow="ellipsis")
    rows.add_column(justify="right", no_wrap=True)
    rows.add_column(no_wrap=True, overflow="ellipsis")
    for rule in rules:
        counts = Text(" · ").join(Text(words, style) for words, style in rule_parts(rule))
        rows.add_row(Text("  " + clean(rule.name), "bold"), f"{rule.done}/{rule.total}", counts)
    return rows


def render(tally: Tally, now: float, width: int, *, workers: int = 1) -> RenderableType:
    """The live area: bar with done/total, counts, rate and ETA, then the running jobs."""
    counter = f"{tally.done}/{total_text(tally)}"
    bar_width = max(width - len(counter) - 1, 10)
    bar = ProgressBar(tally.total, tally.done, bar_width, complete_style="green")
    header = Table.grid(padding=(0, 1))
    header.add_row(bar, counter)
    status = Text(" · ").join(
        Text(words, style) for words, style in progress_parts(tally, now, workers)
    )
    parts: list[RenderableType] = [header, status]
    rules = tally.rule_counts()
    if rules:
        parts.append(_rule_rows(rules))
    if tally.running:
        parts.append(_running_rows(tally, now))
    return Group(*parts)


# ---- the area ----


class LiveArea:
    """A rich Live area on a terminal, redrawn by rich's own thread (at most 4 times a second)
    from `view()`, which returns what `render` needs: (tally, now, workers); lines printed
    through it appear above the area."""

    def __init__(self, file: TextIO, view: Callable[[], tuple[Tally, float, int]],
                 no_color: bool = False, width: int | None = None):
        self._console = Console(file=file, force_terminal=True, no_color=no_color, width=width,
                                highlight=False)
        self._view = view
        self._live = Live(console=self._console, get_renderable=self._renderable,
                          refresh_per_second=4, transient=True, redirect_stdout=False,
                          redirect_stderr=False)
        self._live.start(refresh=True)

    def _renderable(self) -> RenderableType:
        tally, now, workers = self._view()
        return render(tally, now, self._console.width, workers=workers)

    def print(self, lines: list[tuple[str, str]]) -> None:
        """(text, style) pairs, one line each."""
        self._console.print(*(Text(text, style) for text, style in lines), sep="\n")

    def stop(self) -> None:
        self._live.stop()  # rich ignores a second stop

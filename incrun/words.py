"""How incrun says a count (`1 job`, `2 jobs`: the one home of singular and plural) and a
moment (`2026-12-05 23:10:02`, local time)."""

from __future__ import annotations

import time


def counted(count: int, noun: str, plural: str = "") -> str:
    """The count and its noun, singular for one: `counted(1, "job")` is `1 job`; `plural` for a
    noun that does not take an s (`counted(2, "process", "processes")`)."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def moment(seconds: float) -> str:
    """A time stamp as a person reads it, in local time."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))

"""The guard: a tiny process that ends the jobs of a run whose incrun was killed (kill -9, OOM).

incrun tells it, one line each, which process groups are running ("+PGID", "-PGID") through a
pipe. When the pipe closes while groups are still listed, incrun died without cleaning up: the
guard sends them SIGTERM, then SIGKILL after the run's grace period (its one argument), so no job
outlives its run.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def end_groups(pgids: set[int], grace: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pgid in pgids:
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + grace
        while any(_alive(pgid) for pgid in pgids) and time.monotonic() < deadline:
            time.sleep(0.05)


def watch(stream) -> set[int]:
    """Follow the running groups until the pipe closes; return those still running then."""
    running: set[int] = set()
    for line in stream:
        sign, pgid = line[:1], line[1:].strip()
        if pgid.isdigit():
            (running.add if sign == "+" else running.discard)(int(pgid))
    return running


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is incrun's to handle, not ours
    grace = float(sys.argv[1])  # the run's, from incrun: this script imports nothing
    left = watch(sys.stdin)
    if left:
        end_groups(left, grace)


if __name__ == "__main__":
    main()

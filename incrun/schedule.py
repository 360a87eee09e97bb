"""Which stale job starts first, and how long the rest should take: each job's last known
duration, from the store. Longest first keeps a long job from starting last, alone."""

from __future__ import annotations


class Expected:
    """The last known duration of the jobs about to run; orders them longest first."""

    def __init__(self, store, longest_first: bool = True):
        self.store = store
        self.longest_first = longest_first
        self.durations: dict[str, float] = {}  # by task, of the jobs ordered so far

    def order(self, jobs: list) -> list:
        """The jobs, longest expected first; one never run counts as the mean of the project's
        jobs. Ties, and every job when nothing is known, keep their order (the inputs')."""
        known = self.store.durations([job.task for job in jobs])
        self.durations.update(known)
        if not self.longest_first or not known:
            return jobs
        mean = 0.0
        if len(known) < len(jobs):  # a scan of every job's record: only when needed
            mean = self.store.mean_duration() or 0.0
        return sorted(jobs, key=lambda job: -known.get(job.task, mean))

"""Executors run jobs and never decide or record anything (see `contract`); `make_executor`
picks the one a run's config asks for."""

from __future__ import annotations

from pathlib import Path


def make_executor(config, logs: Path | None = None):
    """The executor for this run's config: today, this machine's worker processes."""
    from .local import LocalExecutor

    return LocalExecutor(config.jobs, config.root, grace=config.grace, logs=logs)

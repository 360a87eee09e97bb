"""Executors run jobs and never decide or record anything (see `contract`); `make_executor`
picks the one a run's config asks for."""

from __future__ import annotations

from pathlib import Path


def make_executor(config, logs: Path | None = None):
    """The executor for this run's config: this machine's worker processes, or a cluster's."""
    if config.cluster is None:
        from .local import LocalExecutor

        return LocalExecutor(config.jobs, config.root, grace=config.grace, logs=logs)
    if config.cluster.broker or config.cluster.kind == "env":  # Celery, RQ: reached late
        from .broker import BrokerExecutor

        return BrokerExecutor(config.cluster, config.root, config.in_flight, grace=config.grace,
                              stage=config.stage, stage_limit=config.stage_limit,
                              queue_name=config.queue, logs=logs)
    from .dask import DaskExecutor  # Dask itself only once a job needs the cluster

    return DaskExecutor(config.cluster, config.root, config.in_flight, grace=config.grace,
                        stage=config.stage, stage_limit=config.stage_limit, tls=config.dask,
                        slurm=config.slurm, logs=logs)

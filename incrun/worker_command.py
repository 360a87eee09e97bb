"""`incrun worker`: a Celery or RQ worker that runs incrun's jobs on this machine, its broker
and queue from the command line or, run in the project's folder, from the project's settings."""

from __future__ import annotations

import os

from . import broker_urls, config, errors
from .commands_help import command_parser
from .executors.broker import engine_module


def worker(argv: list[str]) -> int:
    args = command_parser("worker").parse_args(argv)
    root = config.find_project(args.directory.resolve()) or args.directory.resolve()
    settings = config.read_settings(root)
    cluster = _broker(args.broker, settings)
    queue_name = args.queue or settings.queue or broker_urls.default_queue(root)
    concurrency = args.concurrency or config.default_jobs()
    engine = "rq" if args.rq or cluster.kind == "rq" else "celery"
    url = f"rq+{cluster.url}" if engine == "rq" and cluster.kind == "celery" else cluster.url
    if engine == "rq" and not broker_urls.redis_url(url).startswith(("redis", "unix")):
        raise errors.IncrunError(f"--rq needs a Redis broker, not {cluster}",
                                 exit_code=errors.USAGE, hint="rq+redis://HOST:6379/0")
    serve = engine_module(engine, "incrun worker").serve
    if cluster.env:  # read: the jobs run here need not see it (one may print its env)
        os.environ.pop(cluster.env, None)
    os.chdir(root)  # what a job's relative paths start from, should a message not say
    return serve(url, queue_name, concurrency, args.name)


def _broker(given: str | None, settings: config.FileSettings) -> config.Cluster:
    """The broker from --broker, else the project's `cluster` if that is a broker."""
    if given is None:
        if settings.cluster is not None and settings.cluster.kind in ("celery", "rq", "env"):
            return settings.cluster.resolved()
        raise errors.IncrunError("incrun worker needs a broker", exit_code=errors.USAGE,
                                 hint="--broker amqp://USER:PASS@HOST// (or redis://, "
                                      "rq+redis://), or `cluster` in the project's settings")
    try:
        cluster = config.parse_cluster(given, "--broker").resolved("--broker")
    except errors.BadConfig as error:
        raise errors.IncrunError(error.message, error.hint, errors.USAGE) from None
    if not cluster.broker:
        raise errors.IncrunError(f"--broker {cluster} is not a broker's URL",
                                 exit_code=errors.USAGE, hint=broker_urls.FORMS)
    return cluster


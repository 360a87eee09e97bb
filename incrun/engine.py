"""One invocation: lock, store, loader, display and executor chosen once; returns the exit code."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import replace

from . import errors
from .artifacts import make_artifacts
from .config import Config
from .context import RunContext
from .display import make_display
from .errors import NoRule
from .events import DEFERRED, JobSkipped, Notice, RunFinished, Tally
from .executors import make_executor
from .plan import Plan, build
from .schedule import Expected
from .store import Store
from .uptodate import Signatures, UpToDate
from .words import counted

# Python's cycle collector, in a process that holds a million small objects for as long as it
# runs: young objects are collected this many at a time, not every 700 allocations, and what
# planning made is frozen, never scanned again. With the defaults, collections took a quarter
# of the coordinator's CPU in a run of 20,000 stale jobs.
COLLECT_AFTER = 20_000


def run(config: Config) -> int:
    os.chdir(config.root)
    with _few_collections():
        return _command(config)


@contextmanager
def _few_collections():
    """The collector as COLLECT_AFTER says, for one invocation; as it was after (`incrun
    watch` runs one after another in the same process)."""
    previous = gc.get_threshold()
    gc.set_threshold(COLLECT_AFTER, 50, 20)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*previous)


def _command(config: Config) -> int:
    if not config.rules and config.dodo is None:
        raise NoRule(f"nothing to run in {config.root}: no runner.py, no incrun.toml, "
                     "no [tool.incrun] in pyproject.toml and no dodo.py",
                     hint="add a runner.py that turns one X.inp into X.out, "
                          "or set 'command' in [tool.incrun]")
    if config.command == "run" and not config.dry_run:
        return _run(config)
    if config.command in ("run", "status", "explain"):
        return _status(config)
    if config.command == "info":
        return _info(config)
    if config.command == "list":
        return _list(config)
    if config.command == "graph":
        return _graph(config)
    if config.command == "report":
        return _report(config)
    if config.command == "dumpdb":
        return _dumpdb(config)
    return _doit_command(config)


def _invoke(*args, **kwargs):
    """A doit command; doit is imported here, when needed: a no-op run of a rule never is."""
    from .commands import invoke

    return invoke(*args, **kwargs)


def _doit_command(config: Config) -> int:
    store = Store(config.state_dir)
    writes = config.command in ("clean", "forget", "ignore", "reset-dep")
    if writes:
        store.lock()
    store.open(writable=writes)
    try:
        _warn(store)
        result = _invoke(config, store, store=store)
        if config.command == "forget":
            store.forget(sorted(store.backend.removed))
    finally:
        store.close()
    return result or errors.OK


def _dumpdb(config: Config) -> int:
    """`dumpdb`: what the store holds, for a person (or, --json, a script)."""
    from . import dumpdb

    store = Store(config.state_dir).open(writable=False)
    try:
        _warn(store)
        records = store.records(list(config.targets) or None)
    finally:
        store.close()
    print(json.dumps(records, indent=2) if config.as_json else "\n".join(dumpdb.lines(records)))
    return errors.OK


def _warn(store: Store) -> None:
    for warning in store.warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _report(config: Config) -> int:
    """`report`: the last run of the history as an HTML page."""
    from . import report
    from .executors.jobfiles import log_tail

    store = Store(config.state_dir).open(writable=False)
    try:
        runs = store.runs()
        jobs = store.history(runs[0]["id"]) if runs else []
    finally:
        store.close()
    if not jobs:
        raise errors.IncrunError("no run in the history yet: nothing to report",
                                 hint="run incrun first", exit_code=errors.NO_RULE)
    last = runs[0]
    tails = {job["task"]: log_tail(config.root / job["log"])
             for job in jobs if job["status"] != "ok" and job["log"]}
    record = report.RunRecord(last["id"], last["started"], last["ended"], last["workers"], jobs,
                              tails, graph=_graph_drawing(config))
    page = report.render(record, config.root.name)
    path = config.out or config.state_dir / "report.html"
    try:
        temporary = path.with_name(path.name + ".incomplete")
        temporary.write_text(page, encoding="utf-8")
        temporary.replace(path)
    except OSError as error:
        raise errors.StateError(f"cannot write the report {path}: {error.strerror}") from None
    print(f"report of run {last['id']} ({counted(len(jobs), 'job')}): {path}")
    return errors.OK


def _graph_drawing(config: Config) -> str:
    """The rule graph as SVG; empty when the project cannot be planned now (the report is of
    a past run, and still worth having)."""
    from . import graph

    try:
        return graph.to_svg(_states(replace(config, targets=()), "rule-graph"))
    except errors.IncrunError:
        return ""


def _status(config: Config) -> int:
    """`status`, `explain` and `run --dry-run`: every selected job's state, nothing written."""
    from . import status

    found = _states(config, "explain" if config.command == "explain" else "states")
    if config.command == "explain":
        from .describe import explain_lines

        if config.as_json:
            print(json.dumps({"jobs": found}, indent=2))
        else:
            print("\n".join(line for job in found for line in explain_lines(job)))
    elif config.command == "run":
        report = status.dry_run_json(found) if config.as_json else status.dry_run_lines(found)
        print(json.dumps(report, indent=2) if config.as_json else "\n".join(report))
    elif config.as_json:
        print(json.dumps(status.as_json(found), indent=2))
    else:
        print("\n".join(status.as_lines(found)))
    return errors.OK


def _info(config: Config) -> int:
    """`info`: each named task, its command, files, state and last run."""
    from .describe import info_lines

    found = _states(config, "info")
    if config.as_json:
        print(json.dumps({"tasks": found}, indent=2))
    else:
        print("\n\n".join("\n".join(info_lines(task)) for task in found))
    return errors.OK


def _list(config: Config) -> int:
    """`list`: the tasks, as `doit list` chooses them; their state with `-s`, or on a
    terminal unless `-q`."""
    from .describe import list_lines

    shown = config.list_status
    if shown is None:
        shown = sys.stdout.isatty() and not config.quiet
    rows = _states(config, "list", list_status=shown)
    if rows:
        print("\n".join(list_lines(rows, config.quiet)))
    return errors.OK


def _states(config: Config, answer: str, **options):
    """Every selected job's state (or `answer`, see status.Status), from the store as it is."""
    store = Store(config.state_dir).open(writable=False)
    try:
        _warn(store)
        if answer == "states" and not config.always and _plain_rules(config):
            return _states_by_signature(config, store)
        return _invoke(replace(config, command="status"), store, store=store,
                       forced=config.always, answer=answer, explain_deps=config.explain_deps,
                       list_all=config.list_all, list_private=config.list_private, **options)
    finally:
        store.close()


def _states_by_signature(config: Config, store: Store) -> list:
    """`status` and `--dry-run` of a project of rules alone, as a no-op run decides: the jobs
    whose signature is recorded are up to date, one stat per file; doit looks at the others."""
    from . import status

    plan = build(config.rules, config.root, config.shard, check_files=False)
    clean = UpToDate(store, Signatures(), keep_names=True, cores=config.jobs)
    pending = plan.pending(clean)
    others = []
    if any(jobs for _, jobs in pending):
        others = _invoke(replace(config, command="status"), store, clean, pending, store=store,
                         answer="states")
    return status.with_up_to_date(clean.names, others, store.ignored() if clean.names else set())


def project_files(config: Config):
    """What the selected jobs read and write, from the project as it is now (status.Files):
    `incrun watch` reruns when one of those changes."""
    return _states(config, "files")


def _graph(config: Config) -> int:
    """`graph`: the rules (or, --jobs, the jobs) and what each reads, as DOT or Mermaid."""
    from . import graph

    found = _states(config, "job-graph" if config.graph_jobs else "rule-graph")
    print(graph.to_mermaid(found) if config.graph_format == "mermaid" else graph.to_dot(found))
    return errors.OK


# Jobs doit holds at once, at least, in a run of rules that do not feed each other; and per
# slot, so that the last jobs of a part, while no other starts, are a small share of it.
PART_JOBS = 10_000
PART_JOBS_PER_SLOT = 50


def _run(config: Config) -> int:
    with _stops_at_once():
        return _planned_run(config)


@contextmanager
def _stops_at_once():
    """Outside the part of a run where jobs run (see _signals_stop), as while a million jobs
    are planned: the first Ctrl-C, SIGTERM or SIGHUP ends incrun at once, in one line."""
    def handle(signum, frame) -> None:
        raise errors.IncrunError(f"stopped by {signal.Signals(signum).name}",
                                 exit_code=128 + signum)

    with _stops_handled_by(handle):
        yield


@contextmanager
def _stops_handled_by(handle):
    """Ctrl-C, SIGTERM and SIGHUP go to `handle`, then back to what they went to before."""
    stopping = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, handle) for signum in stopping}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _planned_run(config: Config) -> int:
    started = time.time()
    plan = _checked_plan(config)  # a bad plan is refused before anything is written
    gc.freeze()  # the plan lives as long as the run
    store = Store(config.state_dir)
    store.lock()
    store.open()
    tally = Tally()
    display = make_display(config.display, quiet=config.quiet, no_color=config.no_color,
                           clock=time.time)
    artifacts = make_artifacts(config.junit, config.step_summary, config.annotations,
                               sys.stdout)
    executor = make_executor(config, logs=store.logs_dir)
    store.begin_run(started, config.jobs)
    try:
        with display:
            def emit(event) -> None:
                tally.add(event)
                display.handle(event)
                for artifact in artifacts:
                    artifact.handle(event)

            for warning in store.warnings:
                emit(Notice(warning, "warning"))
            context = RunContext(store, executor, emit, config.fail_fast, config.always,
                                 config.retries, config.timeout, config.limit, started=started,
                                 stage=config.stage, job_env=_job_env(config.env),
                                 own_tasks=config.in_flight, warm=config.warm)
            if not config.always:
                context.up_to_date = UpToDate(store, context.signatures,
                                              keep_names=config.junit is not None,
                                              cores=config.jobs)
            context.expected = Expected(store, longest_first=not config.in_order)
            pending = None
            if plan is not None:
                pending = plan.pending(context.up_to_date, context.expected)
            jobs = None if pending is None else [job for _, jobs in pending for job in jobs]
            try:
                with _signals_stop(context, display):
                    if jobs:  # workers start while doit loads
                        executor.warm_up(len(jobs), calls=plan.calls)
                    if jobs == []:
                        context.start([])  # every job is up to date: doit has nothing to do
                        doit_code = 0
                    elif pending is None:
                        doit_code = _invoke(config, store, context.up_to_date, None,
                                            order=context.expected, context=context)
                    else:
                        doit_code = _run_parts(config, store, context, plan, pending)
            except BaseException:
                executor.close(kill=True)
                raise
            executor.close()
            if config.limit is not None and tally.total > tally.done:
                emit(JobSkipped("", DEFERRED, count=tally.total - tally.done))
            summary = tally.summary(time.time())
            store.end_run(time.time(), summary.succeeded + summary.failed, summary.failed,
                          executor.slots if config.cluster is not None else None)
            if summary.adopted:
                emit(Notice(f"adopted {counted(summary.adopted, 'output')} made before incrun "
                            "(newer than their inputs): recorded as done, not rerun"))
            if context.interrupted is not None:
                emit(Notice(f"stopped by {signal.Signals(context.interrupted).name}: "
                            "finished jobs are recorded, the rest run next time", "warning"))
            elif context.lost:
                emit(Notice(f"{context.lost}: finished jobs are recorded, the rest run next "
                            "time", "warning"))
            emit(RunFinished(summary))
    finally:
        store.close()
    if context.interrupted is not None:
        return 128 + context.interrupted
    if context.lost:
        return errors.CLUSTER
    return errors.OK if doit_code == 0 and summary.ok else errors.JOBS_FAILED


def _run_parts(config: Config, store: Store, context: RunContext, plan: Plan,
               pending: list) -> int:
    """doit's run of the plan's stale jobs, a part at a time where no job of one part needs
    another's (Plan.parts): doit holds one part's tasks, not a million, and the run stops
    between two parts as soon as it must."""
    parts = plan.parts(pending, max(PART_JOBS, PART_JOBS_PER_SLOT * config.jobs))
    if len(parts) > 1:
        context.start([job.task for _, jobs in pending for job in jobs])
    code = 0
    for part in parts:
        if context.ending:
            break
        store.prefetch([job.task for _, jobs in part for job in jobs])
        code = _invoke(config, store, context.up_to_date, part, order=context.expected,
                       context=context) or code
        store.release()
    return code


def _job_env(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """`env`: the variables, of those named, that incrun has; they travel with each job."""
    return tuple((name, os.environ[name]) for name in names if name in os.environ)


def _plain_rules(config: Config) -> bool:
    """Whether the project's rules alone make its jobs: no dodo.py, no names selected."""
    return bool(config.rules) and config.dodo is None and not config.targets


def _checked_plan(config: Config) -> Plan | None:
    """The project's plan, its jobs checked before the store or doit is touched, when nothing
    else can add or select jobs (no dodo.py, no names on the command line)."""
    if not _plain_rules(config):
        return None
    return build(config.rules, config.root, config.shard)


@contextmanager
def _signals_stop(context: RunContext, display):
    """Ctrl-C, SIGTERM, SIGHUP: the first stops the run cleanly, a second one ends it at once."""
    def handle(signum, frame) -> None:
        if context.interrupted is None:
            context.interrupt(signum)
            return
        context.executor.kill()
        if context.idle:  # what ended is recorded: the store is between two changes
            with contextlib.suppress(Exception):
                context.store.commit()
        display.close()
        sys.stdout.flush()
        os._exit(128 + signum)

    with _stops_handled_by(handle):
        yield

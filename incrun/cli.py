"""The command line: argv -> `Config` -> `engine.run(config)` -> exit code. No logic of its own."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__, config, errors

EXAMPLES = """\
examples:
  incrun                    run every stale job, one per core
  incrun -n 4               four jobs at a time
  incrun data/a.inp         only the job of this input (or output, or task name)
  incrun data/batch2/       only the jobs of inputs under this folder
  incrun -x                 stop launching jobs after the first failure
  incrun --dry-run          what would run, and why; nothing is run or changed
  incrun status             what is up to date, stale or failed, and why
  incrun explain data/a.out why this output's job is stale or up to date
  incrun report             an HTML page of the last run: timeline, slowest, failures
  incrun graph | dot -Tsvg  the rules, their job and stale counts, as a picture
  incrun list --all         every task, the jobs included
  incrun clean              delete the declared outputs
  incrun forget data/a.inp  forget that a job succeeded: it reruns next time

zero config: in a folder with runner.py, `incrun` runs `python runner.py X.inp`
for every X.inp below it and expects X.out beside it. [tool.incrun] in
pyproject.toml (or incrun.toml) sets inputs, exclude, command, outputs, deps
and jobs; a dodo.py adds doit tasks of its own.

exit codes: 0 all succeeded, 1 a job failed, 2 usage, 3 nothing to run,
4 no input matched, 5 bad config, 6 unknown placeholder, 7 bad dodo.py,
8 unknown task, 9 state not writable, 10 another run holds the project,
11 cluster unreachable or lost, 12 an optional part (incrun[dask]) missing,
130 interrupted (Ctrl-C), 141 the output's reader went (| head), 143 terminated (SIGTERM).
"""

SUBCOMMANDS = {
    "run": "run the stale jobs (the default)",
    "status": "counts of up-to-date, stale and failed jobs, and why each is stale",
    "explain": "why the job of one input or output (or task) is stale or up to date",
    "report": "an HTML page of the last run: timeline, slowest jobs, failures (--out PATH)",
    "graph": "the rules and what each reads, as Graphviz DOT (--format mermaid, --jobs)",
    "list": "list the tasks (--all: the jobs too)",
    "info": "show one task: its command, dependencies, outputs and state",
    "clean": "delete the declared outputs of the selected jobs (all by default)",
    "forget": "forget the recorded success of the selected jobs",
}


PER_JOB = 0  # `graph --jobs`, given without a number (never a count of jobs)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="incrun", description="Run a command for every input file, incrementally, "
        "in parallel. make -j for a folder of input files.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", metavar="TASK|FILE",
                        help="tasks, inputs, outputs or folders to run (default: all); "
                             "a first word of " + ", ".join(SUBCOMMANDS) + " picks a command")
    parser.add_argument("-n", "--jobs", type=_positive, metavar="N", nargs="?", const=PER_JOB,
                        help="jobs at once (default: the number of cores); with `graph` and "
                             "no N: a node per job, not per rule")
    parser.add_argument("-x", "--fail-fast", action="store_true",
                        help="stop launching jobs after the first failure")
    parser.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                        help="end a job (and everything it started) after this long")
    parser.add_argument("--grace", type=_seconds, metavar="SECONDS",
                        help="how long a job being stopped (Ctrl-C, --timeout) has to exit "
                             "after SIGTERM before it gets SIGKILL (default 5)")
    parser.add_argument("--retries", type=_count, metavar="N",
                        help="try a failed or timed-out job up to N more times")
    parser.add_argument("-B", "--always", action="store_true",
                        help="run the selected jobs even if they are up to date")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the jobs that would run and why; run and change nothing")
    parser.add_argument("--shard", type=_shard, metavar="I/N",
                        help="only the jobs of shard I of N (for a CI matrix); a job's "
                             "shard depends on its name alone")
    parser.add_argument("--limit", type=_positive, metavar="K",
                        help="run at most K stale jobs (a smoke run); the rest wait")
    parser.add_argument("--in-order", action="store_true",
                        help="start the jobs in input order (default: longest expected "
                             "first, from the last run of each)")
    parser.add_argument("--cluster", metavar="WHERE",
                        help="run the jobs on a Dask cluster: tcp://HOST:PORT or tls://HOST:PORT "
                             "(a running scheduler), local:N (N worker processes here) or "
                             "slurm ([tool.incrun.slurm]); -n then caps the jobs in flight "
                             "(default: every worker thread)")
    parser.add_argument("--stage", action="store_true",
                        help="with --cluster, when the workers do not share the project "
                             "folder: send each job's files with it, bring its outputs back")
    parser.add_argument("--junit", type=Path, metavar="PATH",
                        help="write a JUnit XML report there: a testcase per job, for CI")
    parser.add_argument("--out", type=Path, metavar="PATH",
                        help="with `report`: where to write the page "
                             "(default: .incrun/report.html)")
    parser.add_argument("-C", "--directory", type=Path, default=Path("."), metavar="DIR",
                        help="the project folder (default: the current one)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print only failures and, if any, the summary")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per event (for status, explain and "
                             "--dry-run: one JSON document)")
    parser.add_argument("--format", choices=("dot", "mermaid"), default="dot",
                        help="with `graph`: Graphviz DOT (default) or a Mermaid flowchart")
    parser.add_argument("-a", "--all", action="store_true", help="with `list`: the jobs too")
    parser.add_argument("-s", "--status", action="store_true",
                        help="with `list`: the status column, U up to date or R would run "
                             "(default: on a terminal, unless -q)")
    parser.add_argument("-p", "--private", action="store_true",
                        help="with `list`: tasks whose names start with _ too")
    parser.add_argument("--deps", action="store_true",
                        help="with `explain`: the jobs it needs, explained too")
    parser.add_argument("--version", action="version", version=f"incrun {__version__}")
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(text)


def _shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
        raise argparse.ArgumentTypeError(f"expected I/N with 1 <= I <= N, such as 2/4, "
                                         f"got {text!r}")
    return int(index), int(count)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of jobs, got {text!r}")
    return value


def parse(argv: list[str], env=os.environ, stdout=sys.stdout) -> config.Config:
    args = _parser().parse_args(argv)
    command, targets = "run", args.targets
    if targets and targets[0] in SUBCOMMANDS:
        command, targets = targets[0], targets[1:]
    graph_jobs = args.jobs == PER_JOB
    if graph_jobs and command != "graph":
        raise errors.IncrunError("-n/--jobs needs a number of jobs at once",
                                 exit_code=errors.USAGE, hint="for example: incrun -n 4")
    if graph_jobs:
        args.jobs = None
    if command in ("info", "explain") and len(targets) != 1:
        raise errors.IncrunError(f"{command} takes exactly one TASK or FILE",
                                 exit_code=errors.USAGE,
                                 hint=f"for example: incrun {command} data/a.inp")
    if args.dry_run and command != "run":
        raise errors.IncrunError(f"--dry-run is for running, not for {command}",
                                 exit_code=errors.USAGE, hint="incrun --dry-run [TASK|FILE ...]")
    if command == "forget" and not (targets or args.all):
        raise errors.IncrunError("forget needs the jobs to forget", exit_code=errors.USAGE,
                                 hint="name tasks, inputs or folders, or pass --all")
    if args.junit is not None and not args.junit.absolute().parent.is_dir():
        raise errors.IncrunError(f"no such folder for the JUnit report: {args.junit.parent}",
                                 exit_code=errors.USAGE, hint="create it first")
    if not args.directory.is_dir():
        raise errors.IncrunError(f"no such folder: {args.directory}", exit_code=errors.USAGE,
                                 hint="-C takes the project folder")
    args.directory, targets = _project_above(args.directory, targets)
    cluster = None
    if args.cluster is not None:
        try:
            cluster = config.parse_cluster(args.cluster)
        except errors.BadConfig as error:
            raise errors.IncrunError(error.message, error.hint, errors.USAGE) from None
    if args.stage and cluster is None and not _configured_cluster(args.directory):
        raise errors.IncrunError("--stage is for jobs run on a cluster", exit_code=errors.USAGE,
                                 hint="add --cluster, or set 'cluster' in [tool.incrun]")
    return config.build(
        args.directory, command=command, targets=tuple(targets), jobs=args.jobs,
        cluster=cluster, stage=args.stage,
        fail_fast=args.fail_fast, always=args.always, quiet=args.quiet,
        timeout=args.timeout, retries=args.retries, grace=args.grace,
        display=config.choose_display(stdout, env, as_json=args.json and command == "run"),
        no_color=bool(env.get("NO_COLOR")), as_json=args.json, list_all=args.all,
        list_private=args.private, list_status=True if args.status else None,
        explain_deps=args.deps,
        dry_run=args.dry_run, junit=_absolute(args.junit), shard=args.shard, limit=args.limit,
        in_order=args.in_order, out=_absolute(args.out), graph_format=args.format,
        graph_jobs=graph_jobs,
        step_summary=_absolute(env.get("GITHUB_STEP_SUMMARY")),
        annotations=env.get("GITHUB_ACTIONS") == "true" and not args.json)  # JSON stays JSON


def _project_above(directory: Path, targets: list[str]) -> tuple[Path, list[str]]:
    """Run from a folder inside a project (`cd data/a && incrun status`): the project above,
    said on stderr, and the targets named from here made the project's."""
    here = directory.resolve()
    root = config.find_project(here)
    if root is None or root == here:
        return directory, targets
    print(f"incrun: project {root}", file=sys.stderr)
    moved = []
    for target in targets:
        path = here / target
        if target in (".", "./") or path.exists():
            relative = os.path.relpath(path, root)
            moved.append(relative + "/" if path.is_dir() else relative)
        else:
            moved.append(target)  # a task's name, or a file yet to be made
    return root, moved


def _configured_cluster(directory: Path) -> bool:
    return config.read_settings(directory.resolve()).cluster is not None


def _absolute(path) -> Path | None:
    """A path given from the folder incrun was started in, which -C does not change."""
    return Path(path).absolute() if path else None


def main(argv: list[str] | None = None) -> int:
    from . import engine  # after parsing: `--help` stays fast

    try:
        return engine.run(parse(sys.argv[1:] if argv is None else argv))
    except errors.IncrunError as error:
        hint = f" (hint: {error.hint})" if error.hint else ""
        print(f"incrun: error: {error.message}{hint}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("incrun: interrupted", file=sys.stderr)
        return errors.INTERRUPTED
    except BrokenPipeError:  # `incrun list --all | head`: the reader has what it wanted
        return _reader_gone()


def _reader_gone() -> int:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # what is left to write goes nowhere, quietly
    return errors.BROKEN_PIPE


def run() -> None:
    code = main()
    try:
        sys.stdout.flush()  # the last of the output, while a closed pipe can still be told
    except BrokenPipeError:
        code = _reader_gone()
    sys.exit(code)

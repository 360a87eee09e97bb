"""Every command's parser, usage, words and examples: what `incrun help COMMAND` prints, and
the option table the command line is split by. Spelled as doit and make users type them."""

from __future__ import annotations

import argparse
from functools import cache
from pathlib import Path

from .config import KNOWN_KEYS

SELECTION = "[TASK|FILE|DIR [TASK-OPTIONS] ...] [NAME=VALUE ...]"

# name: (what it does, usage after the name, examples)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("run the stale jobs (the default command)", f"[OPTIONS] {SELECTION}", """\
  incrun                    run every stale job, one per core
  incrun -n 4               four jobs at a time (-j 4 as well)
  incrun data/a.inp         only the job of this input (or output, or task name)
  incrun data/batch2/       only the jobs of inputs under this folder
  incrun -x                 stop launching jobs after the first failure
  incrun --dry-run          what would run, and why; nothing is run or changed
  incrun -a data/a.out      run it even if it is up to date (-B as well)
  incrun plot --size 4      a dodo.py task with its own option (its `params`)
  incrun test -- -k fast    a dodo.py task's positional arguments (its `pos_arg`)
  incrun EUD=True           a variable for the dodo.py's get_var("EUD")"""),
    "watch": ("run the stale jobs, then again whenever an input, a dependency, the dodo.py "
              "or the config changes (doit's `auto`); Ctrl-C stops", f"[OPTIONS] {SELECTION}",
              """\
  incrun watch              keep every output up to date while you edit
  incrun watch -n 2 post    only the `post` rule's jobs (and what they need)"""),
    "status": ("counts of up-to-date, stale and failed jobs, and why each stale job is stale",
               "[--json] [-B] [TASK|FILE|DIR ...]", """\
  incrun status             every job
  incrun status --json      the same, for a script
  incrun status data/b/     the jobs of the inputs under data/b/"""),
    "explain": ("why the job of one input or output (or task) is stale or up to date",
                "[--json] [--deps] TASK|FILE", """\
  incrun explain data/a.out      why this output's job would run, or not
  incrun explain report --deps   a dodo.py task, and every task it needs"""),
    "list": ("the tasks, by name (doit's `list`)",
             "[--all] [-q] [-s] [-p] [TASK ...]", """\
  incrun list               the tasks and what they do
  incrun list --all -q      every task and job, names only (for scripts)
  incrun list -s            each marked up to date (U), to run (R) or ignored (I)"""),
    "info": ("one task: its command, what it reads and writes, its state and last run",
             "TASK|FILE", """\
  incrun info data/a.inp    the job of this input
  incrun info summary       a rule, or a dodo.py task"""),
    "report": ("an HTML page of the last run: the rule graph, a timeline, the slowest jobs, "
               "the failures", "[--out PATH]", """\
  incrun report                   .incrun/report.html
  incrun report --out run.html    elsewhere"""),
    "graph": ("the rules (or jobs) and what each reads, with job and stale counts, as "
              "Graphviz DOT or a Mermaid flowchart", "[--format dot|mermaid] [--jobs]", """\
  incrun graph | dot -Tsvg > plan.svg
  incrun graph --format mermaid
  incrun graph --jobs       a node per job"""),
    "clean": ("delete the declared outputs of the selected jobs (all by default)",
              "[--dry-run] [TASK|FILE|DIR ...]", """\
  incrun clean              every declared output
  incrun clean data/b/      the outputs of the jobs of data/b/*
  incrun clean --dry-run    what would be deleted"""),
    "forget": ("forget the recorded success of the selected jobs: they run next time",
               "--all | TASK|FILE|DIR ...", """\
  incrun forget data/a.inp
  incrun forget --all"""),
    "ignore": ("never run the selected tasks until they are forgotten (doit's `ignore`)",
               "TASK|FILE ...", """\
  incrun ignore data/slow.inp       skip this job from now on
  incrun forget data/slow.inp       and take it back"""),
    "reset-dep": ("record the selected jobs as done without running them, when their outputs "
                  "are there (doit's `reset-dep`, Snakemake's --touch)", "[TASK|FILE|DIR ...]",
                  """\
  incrun reset-dep          every job whose outputs exist is done as it is
  incrun reset-dep data/b/  only those of data/b/*"""),
    "dumpdb": ("print what incrun has recorded: each job's state, last run and the files it "
               "depended on", "[--json] [TASK ...]", """\
  incrun dumpdb | less
  incrun dumpdb --json sweep:data/a.inp"""),
    "tabcompletion": ("print a completion script for bash or zsh", "[--shell bash|zsh]", """\
  incrun tabcompletion > ~/.local/share/bash-completion/completions/incrun
  incrun tabcompletion --shell zsh > ~/.zfunc/_incrun   (needs compinit)"""),
    "worker": ("take jobs from a Celery or RQ broker and run them on this machine: start one "
               "on each machine that shares the project folder; Ctrl-C stops it once its "
               "jobs end", "[--broker URL] [-c N] [-Q QUEUE] [--rq] [--name NAME]", """\
  incrun worker --broker amqp://lab:PASS@rabbit// -c 8     Celery, over RabbitMQ
  incrun worker --broker redis://redis:6379/0             Celery, over Redis
  incrun worker --broker rq+redis://redis:6379/0 -c 4     RQ
  incrun worker --broker env:INCRUN_BROKER                the URL from that variable
  incrun worker                                           the project's `cluster` setting"""),
    "help": ("this help, or a command's: incrun help COMMAND", "[COMMAND]", """\
  incrun help status"""),
}
ALIASES = {"auto": "watch"}  # doit's name

EXIT_CODES = """\
exit codes: 0 all succeeded, 1 a job failed, 2 usage, 3 nothing to run,
4 no input matched, 5 bad config, 6 unknown placeholder, 7 bad dodo.py,
8 unknown task, 9 state not writable, 10 another run holds the project,
11 cluster or broker unreachable, lost, or without a worker,
12 an optional part (incrun[dask], [celery], [rq]) missing,
130 interrupted (Ctrl-C), 141 the output's reader went (| head), 143 terminated (SIGTERM)."""

ZERO_CONFIG = f"""\
zero config: in a folder with runner.py, `incrun` runs `python runner.py X.inp`
for every X.inp below it and expects X.out beside it. [tool.incrun] in
pyproject.toml (or incrun.toml) sets {", ".join(KNOWN_KEYS)};
a dodo.py adds doit tasks of its own."""


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


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of jobs, got {text!r}")
    return value


def _shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
        raise argparse.ArgumentTypeError(f"expected I/N with 1 <= I <= N, such as 2/4, "
                                         f"got {text!r}")
    return int(index), int(count)


def _verbosity(text: str) -> int:
    if text not in ("0", "1", "2"):
        raise argparse.ArgumentTypeError(f"expected 0, 1 or 2, got {text!r}")
    return int(text)


def _project_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-C", "--directory", type=Path, default=Path("."), metavar="DIR",
                        help="the project folder (default: this one, or the project above it)")
    parser.add_argument("-f", "--file", type=Path, metavar="DODO",
                        help="the dodo file (default: dodo.py in the project folder); its "
                             "folder is the project's unless -C says otherwise")


def _run_options(parser: argparse.ArgumentParser) -> None:
    """A run's options: incrun's own, and doit's and make's spellings of the same."""
    parser.add_argument("-n", "-j", "--jobs", "--process", type=_positive, metavar="N",
                        help="jobs at once (default: one per core for rules' jobs; a dodo.py's "
                             "own tasks one at a time unless -n or its DOIT_CONFIG says)")
    parser.add_argument("-x", "--fail-fast", action="store_true",
                        help="stop launching jobs after the first failure")
    parser.add_argument("-k", "--keep-going", "--continue", dest="fail_fast",
                        action="store_false",
                        help="go on after a failure with every job that does not need the "
                             "failed one (the default)")
    parser.add_argument("-a", "-B", "--always-execute", "--always", dest="always",
                        action="store_true",
                        help="run the selected jobs even if they are up to date")
    parser.add_argument("-s", "--single", action="store_true",
                        help="run only the named tasks, not the tasks they depend on")
    parser.add_argument("-v", "--verbosity", type=_verbosity, metavar="0|1|2",
                        help="2: show each task's output as it ends, under its name (as "
                             "doit's verbosity 2); the output is always in its log")
    parser.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                        help="end a job (and everything it started) after this long")
    parser.add_argument("--grace", type=_seconds, metavar="SECONDS",
                        help="how long a job being stopped (Ctrl-C, --timeout) has to exit "
                             "after SIGTERM before it gets SIGKILL (default 5)")
    parser.add_argument("--retries", type=_count, metavar="N",
                        help="try a failed or timed-out job up to N more times")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the jobs that would run and why; run and change nothing")
    parser.add_argument("--warm", action="store_true",
                        help="start each `{python} SCRIPT` job from a worker that has "
                             "imported what the script imports (a fork, not a new Python); "
                             "as `warm = true` in every rule")
    parser.add_argument("--in-order", action="store_true",
                        help="start the jobs in input order (default: longest expected "
                             "first, from the last run of each)")
    _ci_options(parser)
    _cluster_options(parser)
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print only failures and, if any, the summary")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per event (with --dry-run: one JSON document)")


def _ci_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shard", type=_shard, metavar="I/N",
                        help="only the jobs of shard I of N (for a CI matrix); a job's "
                             "shard depends on its name alone")
    parser.add_argument("--limit", type=_positive, metavar="K",
                        help="run at most K stale jobs (a smoke run); the rest wait")
    parser.add_argument("--junit", type=Path, metavar="PATH",
                        help="write a JUnit XML report there: a testcase per job, for CI")


def _cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cluster", metavar="WHERE",
                        help="run the jobs on a Dask cluster: tcp://HOST:PORT or tls://HOST:PORT "
                             "(a running scheduler), local:N (N worker processes here) or "
                             "slurm ([tool.incrun.slurm]); or through a broker to `incrun "
                             "worker` processes: amqp://USER:PASS@HOST// or redis://HOST:6379/0 "
                             "(Celery), rq+redis://HOST:6379/0 (RQ), env:NAME (a variable "
                             "holding the URL); -n then caps the jobs in flight (default: "
                             "every worker thread)")
    parser.add_argument("--stage", action="store_true",
                        help="with --cluster, when the workers do not share the project "
                             "folder: send each job's files with it, bring its outputs back")


def _json_option(parser: argparse.ArgumentParser, what: str = "one JSON document") -> None:
    parser.add_argument("--json", action="store_true", help=what)


def add_options(name: str, parser: argparse.ArgumentParser) -> None:
    """The options of command `name`, besides -C and -f."""
    if name in ("run", "watch"):
        _run_options(parser)
    elif name in ("status", "explain"):
        _json_option(parser)
        parser.add_argument("-a", "-B", "--always-execute", "--always", dest="always",
                            action="store_true", help="as a run with -a would: every job runs")
        parser.add_argument("--shard", type=_shard, metavar="I/N",
                            help="only the jobs of shard I of N, as a run with --shard")
        _cluster_options(parser)  # taken, so that a run's line works here: never contacted
        if name == "explain":
            parser.add_argument("--deps", action="store_true",
                                help="the tasks it depends on, too")
    elif name == "list":
        parser.add_argument("--all", action="store_true", help="the sub-tasks (jobs) too")
        parser.add_argument("-q", "--quiet", action="store_true",
                            help="names only, one per line")
        parser.add_argument("-s", "--status", action="store_true",
                            help="each task's state: U up to date, R to run, I ignored "
                                 "(default: only on a terminal)")
        parser.add_argument("-p", "--private", action="store_true",
                            help="tasks whose names start with '_' too")
    elif name == "info":
        _json_option(parser)
    elif name == "report":
        parser.add_argument("--out", type=Path, metavar="PATH",
                            help="where to write the page (default: .incrun/report.html)")
    elif name == "graph":
        parser.add_argument("--format", choices=("dot", "mermaid"), default="dot",
                            help="Graphviz DOT (default) or a Mermaid flowchart")
        parser.add_argument("--jobs", dest="graph_jobs", action="store_true",
                            help="a node per job, not per rule")
    elif name == "clean":
        parser.add_argument("--dry-run", action="store_true",
                            help="say what would be deleted; delete nothing")
    elif name == "forget":
        parser.add_argument("--all", action="store_true", help="every job")
    elif name == "dumpdb":
        _json_option(parser)
    elif name == "worker":
        parser.add_argument("--broker", metavar="URL",
                            help="the broker: amqp://USER:PASS@HOST// or redis://HOST:6379/0 "
                                 "(Celery), rq+redis://HOST:6379/0 (RQ), or env:NAME for a "
                                 "variable holding it (default: the project's `cluster`)")
        parser.add_argument("-c", "--concurrency", type=_positive, metavar="N",
                            help="jobs at once on this machine (default: one per core)")
        parser.add_argument("-Q", "--queue", metavar="QUEUE",
                            help="the queue to take jobs from (default: the project's "
                                 "`queue`, else a name made from the project's folder)")
        parser.add_argument("--rq", action="store_true",
                            help="an RQ worker (implied by an rq+redis:// URL)")
        parser.add_argument("--name", metavar="NAME",
                            help="this worker's name in the display and the history "
                                 "(default: incrun-PID@HOST)")
    elif name == "tabcompletion":
        parser.add_argument("--shell", choices=("bash", "zsh"), default="bash",
                            help="the shell the script is for (default: bash)")


@cache
def command_parser(name: str) -> argparse.ArgumentParser:
    """Command `name`'s own parser; names and options are split out before it sees them."""
    what, usage, examples = COMMANDS[name]
    prog = "incrun" if name == "run" else f"incrun {name}"
    parser = argparse.ArgumentParser(
        prog=prog, usage=f"{prog} {usage}", description=what[0].upper() + what[1:] + ".",
        epilog="examples:\n" + examples + ("\n\n" + EXIT_CODES if name == "run" else ""),
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    if name not in ("help", "tabcompletion"):
        _project_options(parser)
    add_options(name, parser)
    return parser


@cache
def option_table(name: str) -> dict[str, bool]:
    """Each option of command `name`, and whether it takes a value: what its line is split by
    (see `argv`)."""
    return {option: action.nargs != 0 for action in command_parser(name)._actions
            for option in action.option_strings}


def every_option() -> dict[str, bool]:
    """The options of every command, to find the command's word after options given first
    (`incrun -C sub status`)."""
    found: dict[str, bool] = {}
    for name in COMMANDS:
        found.update(option_table(name))
    return found


def overview() -> str:
    """`incrun --help`: what incrun is, its commands, a run's options, examples."""
    width = max(len(name) for name in COMMANDS)
    commands = "\n".join(f"  {name:<{width}}  {what}" for name, (what, _, _) in
                         COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="incrun", usage=f"incrun [COMMAND] [OPTIONS] {SELECTION}",
        description="Run a command for every input file, incrementally, in parallel: make -j "
                    "for a folder of input files.\n\ncommands (incrun help COMMAND for "
                    f"one's options; the default is run):\n{commands}",
        epilog=f"examples:\n{COMMANDS['run'][2]}\n\n{ZERO_CONFIG}\n\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter, add_help=False)
    parser.add_argument("-h", "--help", action="store_true", help="this help")
    parser.add_argument("--version", action="store_true", help="incrun's version")
    _project_options(parser)
    _run_options(parser)
    return parser.format_help()

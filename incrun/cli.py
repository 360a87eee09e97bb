"""The command line: argv -> `Config` -> `engine.run(config)` -> exit code. Each command has its
own parser, usage and examples (`commands_help`); doit's spelling of options and its task
selection (`argv`) are understood. No logic of its own."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from . import __version__, config, errors
from .argv import first_word, split
from .commands_help import ALIASES, COMMANDS, command_parser, every_option, option_table, overview


def command_of(argv: list[str]) -> tuple[str, list[str]]:
    """The command (`run` unless a first word names another) and the rest of the line."""
    if not any(word in COMMANDS or word in ALIASES for word in argv):
        return "run", argv  # the common case, told without building every parser
    index = first_word(argv, every_option())
    if index is None or argv[index] not in (*COMMANDS, *ALIASES):
        return "run", argv
    word = argv[index]
    return ALIASES.get(word, word), argv[:index] + argv[index + 1:]


def parse(argv: list[str], env=os.environ, stdout=sys.stdout) -> config.Config:
    directory, options = parse_options(argv, env, stdout)
    return config.build(directory, **options)


def parse_options(argv: list[str], env=os.environ, stdout=sys.stdout) -> tuple[Path, dict]:
    """The project folder and the command line's options, for `config.build` (which `watch`
    calls again before each run: the project's files may have changed meanwhile)."""
    command, rest = command_of(argv)
    parser = command_parser(command)
    found = split(rest, option_table(command))
    args = parser.parse_args(found.options)
    _check(command, args, found.selection)
    directory, targets = _project(args, found.selection)
    cluster = _cluster(args, directory)
    as_json = getattr(args, "json", False)
    run_like = command in ("run", "watch")
    return directory, dict(
        command=command, targets=tuple(targets), jobs=getattr(args, "jobs", None),
        cluster=cluster, stage=getattr(args, "stage", False),
        fail_fast=getattr(args, "fail_fast", False), always=getattr(args, "always", False),
        quiet=getattr(args, "quiet", False), timeout=getattr(args, "timeout", None),
        retries=getattr(args, "retries", None), grace=getattr(args, "grace", None),
        display=config.choose_display(stdout, env, as_json=as_json and run_like),
        no_color=bool(env.get("NO_COLOR")), as_json=as_json,
        list_all=getattr(args, "all", False), list_status=_list_status(args),
        list_private=getattr(args, "private", False),
        dry_run=getattr(args, "dry_run", False), junit=_absolute(getattr(args, "junit", None)),
        shard=getattr(args, "shard", None), limit=getattr(args, "limit", None),
        in_order=getattr(args, "in_order", False), warm=getattr(args, "warm", False),
        out=_absolute(getattr(args, "out", None)),
        graph_format=getattr(args, "format", "dot"), graph_jobs=getattr(args, "graph_jobs", False),
        explain_deps=getattr(args, "deps", False), verbosity=getattr(args, "verbosity", None),
        single=getattr(args, "single", False), variables=tuple(found.variables.items()),
        dodo_file=args.file.resolve() if args.file is not None else None,
        step_summary=_absolute(env.get("GITHUB_STEP_SUMMARY")),
        annotations=env.get("GITHUB_ACTIONS") == "true" and not as_json)  # JSON stays JSON


def _check(command: str, args, names: list[str]) -> None:
    """What argparse cannot say: how many names a command takes, files that must exist."""
    def usage(message: str, hint: str) -> errors.IncrunError:
        return errors.IncrunError(message, hint=hint, exit_code=errors.USAGE)

    if command in ("info", "explain") and len(names) != 1:
        raise usage(f"{command} takes exactly one TASK or FILE",
                    f"for example: incrun {command} data/a.inp")
    if command == "forget" and not (names or args.all):
        raise usage("forget needs the jobs to forget", "name tasks, inputs or folders, or "
                    "pass --all")
    junit = getattr(args, "junit", None)
    if junit is not None and not junit.absolute().parent.is_dir():
        raise usage(f"no such folder for the JUnit report: {junit.parent}", "create it first")
    if not args.directory.is_dir():
        raise usage(f"no such folder: {args.directory}", "-C takes the project folder")
    if args.file is not None and not args.file.is_file():
        raise usage(f"no such dodo file: {args.file}", "-f takes a dodo.py (or another name)")


def _project(args, names: list[str]) -> tuple[Path, list[str]]:
    """The project folder: -C's, else the folder of -f's dodo file, else the one above this
    folder that is a project (as git finds its repository)."""
    if args.file is not None:
        return (args.file.absolute().parent if args.directory == Path(".") else args.directory,
                names)
    return _project_above(args.directory, names)


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
        if target in (".", "./") or (not target.startswith("-") and path.exists()):
            relative = os.path.relpath(path, root)
            moved.append(relative + "/" if path.is_dir() else relative)
        else:
            moved.append(target)  # a task's name or option, or a file yet to be made
    return root, moved


def _cluster(args, directory: Path) -> config.Cluster | None:
    cluster = None
    if getattr(args, "cluster", None) is not None:
        try:
            cluster = config.parse_cluster(args.cluster)
        except errors.BadConfig as error:
            raise errors.IncrunError(error.message, error.hint, errors.USAGE) from None
    if getattr(args, "stage", False) and cluster is None and \
            config.read_settings(directory.resolve()).cluster is None:
        raise errors.IncrunError("--stage is for jobs run on a cluster", exit_code=errors.USAGE,
                                 hint="add --cluster, or set 'cluster' in [tool.incrun]")
    return cluster


def _list_status(args) -> bool | None:
    """`list -s`: each task's state; None: a person at a terminal gets it, a script names."""
    return True if getattr(args, "status", False) else None


def _absolute(path) -> Path | None:
    """A path given from the folder incrun was started in, which -C does not change."""
    return Path(path).absolute() if path else None


def _help(argv: list[str]) -> int | None:
    """`incrun help [COMMAND]`, `incrun --help`, `incrun --version` and `incrun tabcompletion`:
    answered without a project. None for anything else."""
    if argv[:1] in (["-h"], ["--help"]) or argv == ["help"]:
        print(overview(), end="")
        return errors.OK
    if argv[:1] == ["--version"]:
        print(f"incrun {__version__}")
        return errors.OK
    if argv[:1] == ["help"]:
        topic = "help" if argv[1] in ("-h", "--help") else ALIASES.get(argv[1], argv[1])
        if topic not in COMMANDS or len(argv) > 2:
            raise errors.IncrunError(f"no command {argv[1]!r}", exit_code=errors.USAGE,
                                     hint="commands: " + ", ".join(COMMANDS))
        command_parser(topic).print_help()
        return errors.OK
    if argv[:1] == ["tabcompletion"]:
        from .completion import script

        args = command_parser("tabcompletion").parse_args(argv[1:])
        print(script(args.shell), end="")
        return errors.OK
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        answered = _help(argv)
        if answered is not None:
            return answered
        command, rest = command_of(argv)
        if command == "worker":
            from .worker_command import worker

            return worker(rest)
        directory, options = parse_options(argv)
        if options["command"] == "watch":
            from . import watch

            return watch.watch(functools.partial(config.build, directory.resolve(), **options))
        from . import engine  # after parsing: `--help` stays fast

        return engine.run(config.build(directory, **options))
    except errors.IncrunError as error:
        print(f"incrun: {errors.one_line(error)}", file=sys.stderr)
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


"""One invocation: lock, store, loader, display and executor chosen once; returns the exit code."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from contextlib import contextmanager

from doit.cmd_clean import Clean
from doit.cmd_forget import Forget
from doit.cmd_info import Info
from doit.cmd_list import List
from doit.cmdparse import CmdParseError
from doit.dependency import Dependency
from doit.doit_cmd import DoitConfig
from doit.exceptions import InvalidCommand, InvalidDodoFile, InvalidTask

from . import errors, status
from .checker import ContentChecker
from .config import Config
from .display import make_display
from .errors import BadDodo, IncrunError, NoRule, UnknownTask
from .events import Notice, RunFinished, Tally
from .executors.local import LocalExecutor
from .executors.run import IncrunRun, RunContext
from .loader import IncrunLoader, UpToDate
from .store import DB_NAME, Store

COMMANDS = {"run": IncrunRun, "list": List, "info": Info, "clean": Clean,
            "forget": Forget, "status": status.Status}


def run(config: Config) -> int:
    os.chdir(config.root)
    if config.rule is None and config.dodo is None:
        raise NoRule(f"nothing to run in {config.root}: no runner.py, no incrun.toml, "
                     "no [tool.incrun] in pyproject.toml and no dodo.py",
                     hint="add a runner.py that turns one X.inp into X.out, "
                          "or set 'command' in [tool.incrun]")
    if config.command == "run":
        return _run(config)
    if config.command == "status":
        return _status(config)
    return _doit_command(config)


def _doit_args(config: Config) -> list[str]:
    args = list(config.targets)
    if config.command in ("list", "forget") and config.list_all:
        args.insert(0, "--all")
    if config.command == "list":
        args.insert(0, "--status")  # show which tasks are up to date, as `status` would
    return args


def _invoke(config: Config, state: Store, up_to_date=None, **attributes):
    """Run one doit command with incrun's loader, state and checker; map doit's errors to ours."""
    command_cls = COMMANDS[config.command]
    doit_config = DoitConfig()
    doit_config.loads([name for name in ("pyproject.toml", "doit.cfg") if os.path.exists(name)])
    loader = IncrunLoader(config, up_to_date)
    command = command_cls(task_loader=loader, config=doit_config.as_dict(), bin_name="incrun",
                          cmds=COMMANDS, opt_vals={})
    loader.cmd_names = sorted(COMMANDS)
    loader.config = doit_config.as_dict()
    command.dep_manager = Dependency(lambda *_, **__: state.backend, DB_NAME,
                                     checker_cls=ContentChecker)
    for name, value in attributes.items():
        setattr(command, name, value)
    try:
        return command.parse_execute(_doit_args(config))
    except InvalidCommand as error:
        raise UnknownTask(str(error).strip().splitlines()[0],
                          hint="'incrun list --all' shows every task") from None
    except (InvalidTask, InvalidDodoFile) as error:
        raise BadDodo(f"dodo.py: {str(error).strip().splitlines()[0]}") from None
    except CmdParseError as error:
        raise IncrunError(str(error), exit_code=errors.USAGE) from None


def _doit_command(config: Config) -> int:
    store = Store(config.state_dir)
    writes = config.command in ("clean", "forget")
    if writes:
        store.lock()
    store.open(writable=writes)
    try:
        _warn(store)
        result = _invoke(config, store)
        if config.command == "forget":
            store.forget(sorted(store.backend.removed))
    finally:
        store.close()
    return result or errors.OK


def _warn(store: Store) -> None:
    for warning in store.warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _status(config: Config) -> int:
    store = Store(config.state_dir).open(writable=False)
    try:
        _warn(store)
        states = _invoke(config, store, store=store)
    finally:
        store.close()
    if config.as_json:
        print(json.dumps(status.as_json(states), indent=2))
    else:
        print("\n".join(status.as_lines(states)))
    return errors.OK


def _run(config: Config) -> int:
    store = Store(config.state_dir)
    store.lock()
    store.open()
    tally = Tally()
    display = make_display(config.display, quiet=config.quiet, no_color=config.no_color,
                           clock=time.time)
    executor = LocalExecutor(config.jobs, config.root)
    try:
        with display:
            def emit(event) -> None:
                tally.add(event)
                display.handle(event)

            for warning in store.warnings:
                emit(Notice(warning, "warning"))
            context = RunContext(store, executor, emit, config.fail_fast, config.always,
                                 config.retries, config.timeout)
            if not config.always:
                context.up_to_date = UpToDate(store, context.signatures)
            try:
                with _signals_stop(context, display):
                    doit_code = _invoke(config, store, context.up_to_date, context=context)
            except BaseException:
                executor.shutdown(kill=True)
                raise
            executor.shutdown()
            summary = tally.summary(time.time())
            if summary.adopted:
                emit(Notice(f"adopted {summary.adopted} outputs made before incrun "
                            "(newer than their inputs): recorded as done, not rerun"))
            if context.interrupted is not None:
                emit(Notice(f"stopped by {signal.Signals(context.interrupted).name}: "
                            "finished jobs are recorded, the rest run next time", "warning"))
            emit(RunFinished(summary))
    finally:
        store.close()
    if context.interrupted is not None:
        return 128 + context.interrupted
    return errors.OK if doit_code == 0 and summary.ok else errors.JOBS_FAILED


@contextmanager
def _signals_stop(context: RunContext, display):
    """Ctrl-C, SIGTERM, SIGHUP: the first stops the run cleanly, a second one ends it at once."""
    def handle(signum, frame) -> None:
        if context.interrupted is None:
            context.interrupt(signum)
            return
        context.executor.groups.kill_all()
        display.close()
        sys.stdout.flush()
        os._exit(128 + signum)  # every finished job is already committed

    stopping = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, handle) for signum in stopping}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

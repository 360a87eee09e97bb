"""The doit commands incrun runs (doit's run, clean, forget and ignore; incrun's reset-dep,
and its status, which answers status, explain, info, list and graph) with incrun's loader,
state and checker; doit's errors mapped to incrun's."""

from __future__ import annotations

import os
import time

from doit.cmd_base import check_tasks_exist, subtasks_iter
from doit.cmd_clean import Clean
from doit.cmd_forget import Forget
from doit.cmd_ignore import Ignore
from doit.cmdparse import CmdParseError
from doit.dependency import Dependency
from doit.doit_cmd import DoitConfig
from doit.exceptions import InvalidCommand, InvalidDodoFile, InvalidTask

from . import errors, status
from .checker import ContentChecker
from .config import Config
from .coordinator import IncrunRun
from .errors import BadDodo, IncrunError, UnknownTask
from .events import OK, JobResult
from .loader import IncrunLoader, has_actions, is_job
from .rules import META_KEY
from .store import DB_NAME, Store
from .uptodate import Signatures

MARKED_DONE = "marked done (reset-dep)"


class ResetDep(status.StoreCommand):
    """`incrun reset-dep`: the selected jobs whose files are all there are recorded as done,
    as if they had just run (doit's reset-dep, and in incrun's own records too)."""

    name = "reset-dep"
    doc_purpose = "record jobs as done without running them"
    doc_usage = "[TASK ...]"

    def _execute(self, pos_args=None):
        tasks = {task.name: task for task in self.task_list}
        chosen = self.task_list
        if pos_args:
            check_tasks_exist(tasks, pos_args)
            chosen = [found for name in pos_args
                      for found in (tasks[name], *subtasks_iter(tasks, tasks[name]))]
        signatures = Signatures()
        for task in chosen:
            if has_actions(task):
                print(self._reset(task, tasks, signatures))

    def _reset(self, task, tasks: dict, signatures: Signatures) -> str:
        missing = [path for path in (*task.file_dep, *task.targets) if not os.path.exists(path)]
        if missing:
            return f"not done: {task.name} ({missing[0]} is missing)"
        if self.dep_manager.get_status(task, tasks).status == "up-to-date":
            return f"up to date: {task.name}"
        task.save_extra_values()  # what its uptodate checks computed (its command, for a job)
        self.dep_manager.save_success(task)
        now = time.time()
        signature = signatures.of(task.meta[META_KEY]) if is_job(task) else None
        self.store.job_finished(JobResult(task.name, OK, now, now, detail=MARKED_DONE),
                                signature)
        self.store.commit()
        return f"done: {task.name}"


# Every command's name, which no dodo.py task may take; those that only read the state are
# answered by status.Status, the one home of the state.
COMMANDS = {"run": IncrunRun, "list": status.Status, "info": status.Status, "clean": Clean,
            "forget": Forget, "status": status.Status, "ignore": Ignore, "reset-dep": ResetDep}


def _doit_args(config: Config) -> list[str]:
    """The command line doit's command parses: its own options, then the selection."""
    args = []
    if config.command == "forget" and config.list_all:
        args.append("--all")
    if config.command == "clean" and config.dry_run:
        args.append("--dry-run")
    if config.command == "run":
        if config.verbosity is not None:
            args += ["--verbosity", str(config.verbosity)]  # wins over DOIT_CONFIG, as in doit
        if config.single:
            args.append("--single")
    if config.targets and config.targets[0].startswith("-"):
        args.append("--")  # a file named `-x.inp` is a name, not an option
    return args + list(config.targets)


def invoke(config: Config, state: Store, up_to_date=None, pending=None, order=None,
           **attributes):
    """Run one doit command with incrun's loader, state and checker; map doit's errors to ours.

    `up_to_date` leaves the jobs it vouches for out of doit's tasks; `pending` is each rule's
    jobs to run when the engine worked them out already, `order` orders each rule's stale jobs.
    `attributes` are set on the command object.
    """
    command_cls = COMMANDS[config.command]
    doit_config = DoitConfig()
    doit_config.loads([name for name in ("pyproject.toml", "doit.cfg") if os.path.exists(name)])
    loader = IncrunLoader(config, up_to_date, pending, order)
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

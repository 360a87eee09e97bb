"""The doit commands incrun runs (doit's run, clean and forget; incrun's status, which answers
status, explain, info, list and graph) with incrun's loader, state and checker; doit's errors
mapped to incrun's."""

from __future__ import annotations

import os

from doit.cmd_clean import Clean
from doit.cmd_forget import Forget
from doit.cmdparse import CmdParseError
from doit.dependency import Dependency
from doit.doit_cmd import DoitConfig
from doit.exceptions import InvalidCommand, InvalidDodoFile, InvalidTask

from . import errors, status
from .checker import ContentChecker
from .config import Config
from .coordinator import IncrunRun
from .errors import BadDodo, IncrunError, UnknownTask
from .loader import IncrunLoader
from .store import DB_NAME, Store

# Every command's name, which no dodo.py task may take; those that only read the state are
# answered by status.Status, the one home of the state.
COMMANDS = {"run": IncrunRun, "list": status.Status, "info": status.Status, "clean": Clean,
            "forget": Forget, "status": status.Status}


def _doit_args(config: Config) -> list[str]:
    args = list(config.targets)
    if config.command == "forget" and config.list_all:
        args.insert(0, "--all")
    return args


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

"""doit's `TaskLoader2` for incrun: the project's rule as tasks, merged with dodo.py's own tasks."""

from __future__ import annotations

import importlib.util
import os
import posixpath
import sys
from pathlib import Path

from doit.cmd_base import TaskLoader2
from doit.cmdparse import CmdOption, CmdParseError, TaskParse
from doit.doit_cmd import reset_vars, set_var
from doit.exceptions import InvalidDodoFile, InvalidTask
from doit.loader import generate_tasks, load_doit_config, load_tasks
from doit.task import Task

from . import plan as plans
from .config import Config
from .dodo_api import RUN_KEY, RunSettings
from .errors import BadDodo, IncrunError, UnknownTask
from .rules import META_KEY, inside


def import_dodo(path: Path):
    """Import dodo.py as doit does (its folder on sys.path, module `dodo`), failing politely."""
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # any error in the user's file is theirs to fix
        sys.modules.pop(path.stem, None)
        raise BadDodo(f"{path.name} failed to import: {_describe(error, path)}",
                      hint=f"run 'python {path.name}' to see the whole traceback") from None
    return module


def _describe(error: BaseException, path: Path) -> str:
    """The error and where it is, said once: `(line 3)` in dodo.py, `(helper.py, line 3)` in a
    file it imports."""
    if isinstance(error, SyntaxError):  # its own text names the file and line: said here
        elsewhere = error.filename and not _same_file(error.filename, path)
        where = [Path(error.filename).name] if elsewhere else []
        if error.lineno:
            where.append(f"line {error.lineno}")
        place = f" ({', '.join(where)})" if where else ""
        return f"{type(error).__name__}: {error.msg}{place}"
    frames = [f for f in _frames(error) if Path(f.tb_frame.f_code.co_filename) == path]
    line = frames[-1].tb_lineno if frames else None
    where = f" (line {line})" if line else ""
    return f"{type(error).__name__}: {error}{where}"


def _same_file(name: str, path: Path) -> bool:
    try:
        return Path(name).resolve() == path.resolve()
    except OSError:
        return False


def _frames(error: BaseException):
    tb = error.__traceback__
    while tb is not None:
        yield tb
        tb = tb.tb_next


def has_actions(task) -> bool:
    """Whether the task runs anything (a group runs nothing). Asked of doit's `actions`, doit
    would build an object for each action, pointing back at its task: a cycle per job for
    the collector, a part's worth at a time in a big run, for actions incrun never runs."""
    return bool(task._actions)


def is_job(task) -> bool:
    """A task incrun runs itself (a rule's job), as opposed to a hand-written doit task."""
    return bool(task.meta) and META_KEY in task.meta


def selected_tasks(tasks: dict, selection, with_groups: bool = False) -> list:
    """The tasks a selection runs, with their dependencies; group tasks (no actions) left out
    unless asked for.

    Like doit's `tasks_and_deps_iter`, in linear time: a sweep's group task has 100,000 deps.
    """
    seen, order, pending = set(), [], list(selection or ())
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        task = tasks[name]
        order.append(task)
        pending.extend(dep for dep in (*task.task_dep, *task.setup_tasks) if dep not in seen)
    return order if with_groups else [task for task in order if has_actions(task)]


class IncrunLoader(TaskLoader2):
    """Tasks of one project: its rule's jobs and its dodo.py, with doit's own semantics."""

    def __init__(self, config: Config, up_to_date=None, pending: list | None = None,
                 order=None):
        super().__init__()
        self.config_obj = config
        self.namespace: dict | None = None
        self.up_to_date = up_to_date  # uptodate.UpToDate: its up-to-date jobs are left out
        self.pending = pending  # plan.Plan.pending, if the engine worked it out already
        self.order = order  # schedule.Expected: the order of each rule's stale jobs

    def setup(self, opt_values) -> None:
        if self.config_obj.dodo is not None and self.namespace is None:
            reset_vars()  # doit's NAME=value, which the dodo.py may read as it is imported
            for name, value in self.config_obj.variables:
                set_var(name, value)
            self.namespace = vars(import_dodo(self.config_obj.dodo))

    def load_doit_config(self) -> dict:
        if self.namespace is None:
            return {}
        try:
            return load_doit_config(self.namespace)
        except InvalidDodoFile as error:
            raise BadDodo(f"dodo.py: {error}") from None

    @property
    def _runs(self) -> bool:
        """Whether jobs are about to run: then a file they need and nobody makes is refused
        first; `status`, `list` and the like show it missing."""
        return self.config_obj.command == "run"

    def load_tasks(self, cmd, pos_args) -> list:
        # With names on the command line, doit selects among every job: none is left out.
        up_to_date = None if pos_args else self.up_to_date
        run = RunSettings(up_to_date, self.order, self.config_obj.shard, self._runs)
        namespace = self.namespace if self.namespace is not None else {}
        namespace[RUN_KEY] = run  # for the dodo.py's rules, wherever they are made in it
        try:
            tasks = self._dodo_tasks(cmd, pos_args)
        finally:
            namespace.pop(RUN_KEY, None)
        if not run.asked:  # the dodo.py asked for no rule's tasks: the project's rules run
            tasks = self._rule_tasks(up_to_date) + tasks
        if not pos_args:  # a job has no parameters, nor arguments to pass: nothing to parse
            for task in tasks:
                if is_job(task):
                    task.options = {}
        if self.config_obj.shard:
            tasks = _jobs_only(tasks, run.asked or {spec.name for spec in self.config_obj.rules})
        _refuse_outside_targets(tasks, self.config_obj.root)
        _translate_selection(cmd, pos_args, tasks, self.config_obj.root)
        return tasks

    def _dodo_tasks(self, cmd, pos_args) -> list:
        if self.namespace is None:
            return []
        try:
            tasks = load_tasks(self.namespace, self.cmd_names, allow_delayed=cmd.execute_tasks,
                               args=pos_args, config=self.config, task_opts=self.task_opts)
        except IncrunError:  # a Rule's own mistake (a missing script): said as it is
            raise
        except (InvalidTask, InvalidDodoFile) as error:
            raise BadDodo(f"dodo.py: {error}") from None
        except Exception as error:  # a task_* function raised
            raise BadDodo(f"dodo.py: creating tasks failed: {type(error).__name__}: {error}",
                          hint="run 'incrun list' after fixing the task function") from None
        for task in tasks:  # [tool.doit.tasks.NAME] in pyproject.toml, [task:NAME] in doit.cfg
            task.cfg_values = (self.config or {}).get("task:" + task.name, task.cfg_values)
        return tasks

    def _rule_tasks(self, up_to_date) -> list:
        """The tasks of the project's rules: those `up_to_date` cannot vouch for, each rule's
        under a group task named as the rule."""
        if not self.config_obj.rules:
            return []
        pending = self.pending
        if pending is None:
            plan = plans.build(self.config_obj.rules, self.config_obj.root,
                               self.config_obj.shard, require_inputs=self.namespace is None,
                               check_files=self._runs)
            pending = plan.pending(up_to_date, self.order)
        tasks = []
        for sweep, jobs in pending:
            spec = sweep.spec
            doc = f"run {' '.join(spec.command)} for " + ("all of " if spec.gather else "each ")
            doc += " ".join(spec.inputs)
            if spec.gather and jobs:
                tasks += generate_tasks(spec.name, jobs[0].task_dict(), doc)
            elif spec.gather:
                tasks.append(Task(spec.name, None, doc=doc))  # up to date: a name to depend on
            else:
                tasks += generate_tasks(spec.name, (job.task_dict() for job in jobs), doc)
        return tasks


def _jobs_only(tasks: list, rules: set[str]) -> list:
    """A shard runs its share of the rules' jobs, not the hand-written tasks: those may need
    the outputs of every shard."""
    return [task for task in tasks if is_job(task) or task.name in rules]


def _refuse_outside_targets(tasks: list, root: Path) -> None:
    """No task may write, or `clean` delete, outside the project: checked before anything runs."""
    for task in tasks:
        if is_job(task):
            continue  # its rule checked its outputs already
        for target in task.targets:
            rel = os.path.relpath(target, root) if os.path.isabs(target) else target
            if not inside(root, posixpath.normpath(Path(rel).as_posix())):
                raise BadDodo(f"task {task.name} declares an output outside the project: "
                              f"{target}", hint="targets must stay inside the project folder")


def _translate_selection(cmd, pos_args: list, tasks: list, root: Path) -> None:
    """Let the command line name inputs and folders as well as tasks and outputs.

    doit's commands read the selection from this very list (`pos_args` is `cmd.sel_tasks`),
    so it is rewritten in place. A task's own options and positional arguments after its name
    are left for doit to parse, as are sub-tasks of a task made after others (`create_after`),
    which do not exist yet.
    """
    if not pos_args or getattr(cmd, "sel_default_tasks", False):
        return
    by_name = {task.name: task for task in tasks}
    targets = {target for task in tasks for target in task.targets}
    inputs = {task.meta[META_KEY]["input"]: task.name for task in tasks if is_job(task)}
    translated, pending = [], list(pos_args)
    while pending:
        arg = pending.pop(0)
        if arg in by_name:
            translated.append(arg)
            own = _own_arguments(by_name[arg], pending)
            translated += pending[:own]
            del pending[:own]
        elif arg in targets or arg.startswith("-") or "*" in arg or _delayed(arg, by_name):
            translated.append(arg)
        else:
            translated.extend(_named_by_path(arg, root, inputs, targets))
    pos_args[:] = translated


def _own_arguments(task, following: list[str]) -> int:
    """How many of the words after a task's name are its own: its options (`params`), as
    doit parses them, or every one for a task with `pos_arg`."""
    if task.pos_arg is not None:
        return len(following)
    options = list(task.params) + list(task.creator_params)
    if not options or not following:
        return 0
    try:
        _, rest = TaskParse([CmdOption(option) for option in options]).parse_only(following)
    except CmdParseError:
        return 0  # doit says what is wrong with them
    return len(following) - len(rest)


def _delayed(arg: str, by_name: dict) -> bool:
    """A sub-task of a task whose sub-tasks are made once others ran (`@create_after`)."""
    base = arg.split(":", 1)[0]
    return ":" in arg and base in by_name and bool(by_name[base].loader)


def _named_by_path(arg: str, root: Path, inputs: dict[str, str], targets: set[str]) -> list:
    """The jobs a path names: an input's, an output's, or those of every input in a folder."""
    rel = _relative(arg, root)
    if rel in inputs:
        return [inputs[rel]]
    if rel in targets:
        return [rel]
    under = [name for path, name in inputs.items() if _is_under(path, rel)]
    if under:
        return under
    raise UnknownTask(f"{arg!r} is neither a task, an input nor an output",
                      hint="'incrun list --all' shows every task")


def _relative(arg: str, root: Path) -> str:
    path = Path(arg)
    if path.is_absolute():
        try:
            path = path.relative_to(root)
        except ValueError:
            return arg
    return posixpath.normpath(path.as_posix())


def _is_under(path: str, folder: str) -> bool:
    return folder == "." or path.startswith(folder.rstrip("/") + "/")

"""Why a job is up to date, stale, failed or running, and a rule's (or any group task's) state
from its jobs: the one state `incrun status`, `explain`, `info`, `list` and `--dry-run` read,
its reasons in plain words and as a kind for tools."""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from typing import NamedTuple

from doit.cmd_base import DoitCmdBase
from doit.control import TaskControl

from .loader import has_actions, is_job, selected_tasks
from .store import FAILED, FORGOTTEN, RUNNING
from .words import counted

UP_TO_DATE, STALE, FAILED_STATE, RUNNING_STATE = "up-to-date", "stale", "failed", "running"
IGNORED_STATE = "ignored"  # by `incrun ignore`: never run, whatever its files say
# Kinds of reason, for tools reading `--json`; the reason's text says the details.
NEVER_RUN, OUTPUT_MISSING, INPUT_CHANGED, DEP_CHANGED, DEP_MISSING, COMMAND_CHANGED = (
    "never-run", "output-missing", "input-changed", "dep-changed", "dep-missing",
    "command-changed")
FAILED_LAST_TIME, INTERRUPTED, FORGOTTEN_KIND, FORCED, UPSTREAM, OTHER = (
    "failed-last-time", "interrupted", "forgotten", "forced", "upstream", "other")
RUNNING_KIND = "running"  # in a run that holds the project now
IGNORED_KIND = "ignored"
UPSTREAM_SHOWN = 3  # upstream jobs named in why a job would rerun


class Why(NamedTuple):
    kind: str
    text: str


@dataclass(frozen=True)
class JobState:
    task: str
    state: str  # up-to-date, stale, failed or running
    reason: str = ""
    kind: str = ""  # of the reason; empty when up to date

    @classmethod
    def of(cls, task: str, state: str, why: Why) -> JobState:
        return cls(task, state, why.text, why.kind)

    @property
    def would_run(self) -> bool:
        return self.state not in (UP_TO_DATE, IGNORED_STATE) or self.kind == FORCED


@dataclass(frozen=True)
class Files:
    """What the selected jobs read and write, as their tasks name them (`incrun watch`)."""

    reads: frozenset[str]
    writes: frozenset[str]

    @classmethod
    def of(cls, tasks) -> Files:
        return cls(frozenset(path for task in tasks for path in task.file_dep),
                   frozenset(path for task in tasks for path in task.targets))


def named_files(paths) -> str:
    """A few paths, and how many more: `a, b, c and 4 more`."""
    paths = list(paths)
    shown = ", ".join(paths[:3])
    return shown + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def _changed_deps(task, changed) -> Why:
    if is_job(task) and task.meta["incrun"]["input"] in changed:
        return Why(INPUT_CHANGED, "input changed")
    return Why(DEP_CHANGED, "dependency changed: " + named_files(changed))


def why_from_doit(task, reasons: dict) -> Why:
    """The first reason doit found, phrased for the user."""
    # A dep that vanished may have left the list (a file named in the command is one only
    # while it exists): it is missing all the same, not a change of the list.
    missing = reasons.get("missing_file_dep") or [
        dep for dep in reasons.get("removed_file_dep") or () if not os.path.exists(dep)]
    if missing:
        return Why(DEP_MISSING, "dependency missing: " + named_files(missing))
    if reasons.get("missing_target"):
        return Why(OUTPUT_MISSING, "output missing: " + named_files(reasons["missing_target"]))
    if reasons.get("checker_changed"):
        return Why(OTHER, "state recorded by another checker")
    if reasons.get("changed_file_dep"):
        return _changed_deps(task, reasons["changed_file_dep"])
    if reasons.get("added_file_dep") or reasons.get("removed_file_dep"):
        return Why(DEP_CHANGED, "list of dependencies changed")
    if reasons.get("uptodate_false"):
        if is_job(task):
            return Why(COMMAND_CHANGED, "command changed")
        return Why(OTHER, "an uptodate check is false")
    if reasons.get("has_no_dependencies"):
        return Why(OTHER, "always runs (no file_dep)")
    return Why(OTHER, "stale")


IGNORED_WHY = Why(IGNORED_KIND, "ignored (incrun forget brings it back)")


def job_state(task, tasks: dict, dep_manager, store, forced: bool = False) -> JobState:
    """The job's state; `forced` (-B): an up-to-date job would run all the same (an ignored
    one would not, as under doit)."""
    if dep_manager.status_is_ignore(task):
        return JobState.of(task.name, IGNORED_STATE, IGNORED_WHY)
    recorded = store.job_row(task.name)
    if recorded and recorded["status"] == FAILED:
        detail = f" ({recorded['detail']})" if recorded.get("detail") else ""
        return JobState.of(task.name, FAILED_STATE,
                           Why(FAILED_LAST_TIME, "failed last time" + detail))
    if recorded and (run := store.running_in(recorded)) is not None:
        where = "" if run.host == socket.gethostname() else f" on {run.host}"
        return JobState.of(task.name, RUNNING_STATE,
                           Why(RUNNING_KIND, f"running (pid {run.pid}{where})"))
    if not dep_manager._in(task.name) and task.file_dep:
        return JobState.of(task.name, STALE, _unrecorded(task, recorded))
    status = dep_manager.get_status(task, tasks, get_log=True)
    if status.status != "up-to-date":
        return JobState.of(task.name, STALE, why_from_doit(task, status.reasons))
    if forced:
        return JobState.of(task.name, UP_TO_DATE, Why(FORCED, "forced (-B)"))
    return JobState(task.name, UP_TO_DATE)


def with_up_to_date(names: list[str], others: list[JobState],
                    ignored: set[str]) -> list[JobState]:
    """Every job's state: first those whose signature says they are up to date (`names`, an
    ignored one said so), then the `others`, as doit found them."""
    return [JobState.of(name, IGNORED_STATE, IGNORED_WHY) if name in ignored
            else JobState(name, UP_TO_DATE) for name in names] + others


def _unrecorded(task, recorded: dict | None) -> Why:
    """Why a job whose files' state is not recorded is stale: what its record says of its last
    run. A success whose files' state was dropped since (`clean --forget`) is missing its
    outputs, or forgotten; never "never run" beside a last run that succeeded."""
    last = recorded["status"] if recorded else None
    if last is None:
        return Why(NEVER_RUN, "never run")
    if last == RUNNING:
        return Why(INTERRUPTED, "interrupted last time")
    missing = [target for target in task.targets if not os.path.exists(target)]
    if last != FORGOTTEN and missing:
        return Why(OUTPUT_MISSING, "output missing: " + named_files(missing))
    return Why(FORGOTTEN_KIND, "forgotten")


def members(tasks: dict, names) -> set[str]:
    """The jobs (tasks with actions) that names stand for: a task with actions stands for
    itself; a group task (a rule's name, a task of sub-tasks) for the jobs of its task_dep."""
    found, seen, pending = set(), set(), list(names)
    while pending:
        name = pending.pop()
        if name in seen or name not in tasks:
            continue
        seen.add(name)
        if has_actions(tasks[name]):
            found.add(name)
        else:
            pending.extend(tasks[name].task_dep)
    return found


def group_state(name: str, jobs: list[JobState]) -> JobState:
    """A group task's state from its jobs': up to date only when every one is; otherwise how
    many would run (and how many of them failed or run now), the kind of the first's reason."""
    would_run = [state for state in jobs if state.would_run]
    if not would_run:
        return JobState(name, UP_TO_DATE)
    failed = sum(state.state == FAILED_STATE for state in would_run)
    now = sum(state.state == RUNNING_STATE for state in would_run)
    words = [f"{len(would_run)} of {counted(len(jobs), 'job')} would run"]
    if failed:
        words.append(f"{failed} failed last time")
    if now:
        words.append(f"{now} running")
    state = FAILED_STATE if failed else RUNNING_STATE if now else STALE
    return JobState(name, state, ", ".join(words), would_run[0].kind)


def makers_of(tasks: dict) -> dict[str, str]:
    """Each declared target's task, by name."""
    return {target: task.name for task in tasks.values() for target in task.targets}


def in_run_order(chosen: list, tasks: dict, makers: dict[str, str]) -> list:
    """The tasks in an order they could run in: each after the tasks that make its files or
    that it names in task_dep; by name among those of one depth, so stages come in turn."""
    depth: dict[str, int] = {}

    def depth_of(name: str) -> int:
        pending = [name]
        while pending:  # iterative: a chain of 100,000 must not overflow the stack
            current = pending[-1]
            task = tasks[current]
            before = [makers[dep] for dep in task.file_dep if dep in makers] + \
                [dep for dep in task.task_dep if dep in tasks]
            missing = [dep for dep in before if dep not in depth and dep != current]
            if missing and not any(dep in pending for dep in missing):
                pending.extend(missing)
                continue
            depth[current] = 1 + max((depth.get(dep, 0) for dep in before), default=0)
            pending.pop()
        return depth[name]

    return sorted(chosen, key=lambda task: (depth_of(task.name), task.name))


def upstream_states(chosen: list, states: list[JobState],
                    makers: dict[str, str]) -> list[JobState]:
    """The states with the jobs downstream of one that would run marked as would run too,
    as the run reruns them (unless the upstream job's new outputs are byte-identical)."""
    remade: set[str] = set()
    found = []
    for task, state in zip(chosen, states):
        upstream = sorted({makers[dep] for dep in task.file_dep if dep in remade})
        if upstream and state.kind in ("", FORCED, DEP_MISSING):
            shown = ", ".join(upstream[:UPSTREAM_SHOWN])
            if len(upstream) > UPSTREAM_SHOWN:
                shown += f" and {len(upstream) - UPSTREAM_SHOWN} more"
            state = JobState.of(task.name, STALE, Why(UPSTREAM, "upstream will rerun: " + shown))
        if state.would_run:
            remade.update(task.targets)
        found.append(state)
    return found


def counts(states: list[JobState]) -> dict[str, int]:
    tally = {UP_TO_DATE: 0, STALE: 0, FAILED_STATE: 0, RUNNING_STATE: 0, IGNORED_STATE: 0}
    for state in states:
        tally[state.state] += 1
    return tally


def as_json(states: list[JobState]) -> dict:
    return {
        "counts": {key.replace("-", "_"): value for key, value in counts(states).items()},
        "jobs": [asdict(state) for state in states],
    }


def dry_run_lines(states: list[JobState]) -> list[str]:
    """What `incrun --dry-run` prints: the jobs that would run, in order, and why."""
    running = [state for state in states if state.would_run]
    ignored = sum(state.state == IGNORED_STATE for state in states)
    left = f"{len(states) - len(running) - ignored} up to date"
    left += f", {ignored} ignored" if ignored else ""
    lines = [f"would run {len(running)} of {counted(len(states), 'job')} ({left}); "
             "nothing was run or changed"]
    width = max((len(state.task) for state in running), default=0)
    lines += [f"  {state.task:<{width}}  {state.reason}" for state in running]
    return lines


def dry_run_json(states: list[JobState]) -> dict:
    report = as_json(states)
    report["would_run"] = [asdict(state) for state in states if state.would_run]
    return report


def as_lines(states: list[JobState]) -> list[str]:
    tally = counts(states)
    line = f"{tally[UP_TO_DATE]} up to date, {tally[STALE]} stale, {tally[FAILED_STATE]} failed"
    for state in (RUNNING_STATE, IGNORED_STATE):
        if tally[state]:
            line += f", {tally[state]} {state}"
    shown = [state for state in states if state.state != UP_TO_DATE]
    width = max((len(state.task) for state in shown), default=0)
    column = max((len(state.state) for state in shown), default=0)
    column = max(column, len(FAILED_STATE))  # as wide as ever, unless a job runs now
    return [line] + [f"  {state.state:<{column}}  {state.task:<{width}}  {state.reason}"
                     for state in shown]


class StoreCommand(DoitCmdBase):
    """A command of incrun's own, run as doit runs its commands, on the store the engine gives
    it (incrun's parser has read its options already)."""

    doc_description = None
    cmd_options = ()
    store = None  # set by the engine


class Status(StoreCommand):
    """`incrun status`, `explain`, `info`, `list`, `graph` and `--dry-run`: the state of the
    selected tasks, computed once here, nothing run or written."""

    name = "status"
    doc_purpose = "show which jobs are up to date, stale or failed, and why"
    doc_usage = "[TASK|FILE ...]"
    forced = False  # -B: up-to-date jobs would run too
    # What to return: each job's state ("states"); an explanation of each selected job
    # ("explain"; with `explain_deps`, of the jobs they need too); what `info` says of each
    # selected task ("info"); the rows of `list` ("list"); what the selected jobs read and
    # write ("files", as Files, for `incrun watch`); or the graph of the rules ("rule-graph")
    # or of the jobs ("job-graph"), a graph.Graph.
    answer = "states"
    explain_deps = False
    list_all = False  # `list --all`: sub-tasks too
    list_private = False  # `list --private`: tasks named _... too
    list_status = False  # `list` with its status column

    def _execute(self, pos_args=None):
        control = TaskControl(self.task_list)
        control.process(self.sel_tasks)
        tasks = control.tasks
        if self.answer == "list":
            return self._list(tasks, None if self.sel_default_tasks else control.selected_tasks)
        if self.answer == "files":
            return Files.of(selected_tasks(tasks, control.selected_tasks))
        makers = makers_of(tasks)
        chosen, states = self._states(tasks, control.selected_tasks, makers)
        if self.answer == "explain":
            return self._explain(tasks, control.selected_tasks, chosen, states)
        if self.answer == "info":
            return self._info(tasks, control.selected_tasks, states)
        if self.answer.endswith("graph"):
            from . import graph

            return graph.build(chosen, states, tasks, makers,
                               per_job=self.answer == "job-graph")
        return states

    def _states(self, tasks: dict, selection, makers: dict[str, str]) -> tuple[list, list]:
        """The jobs a selection runs, the jobs they need included, in an order they could run
        in, and the state of each."""
        chosen = in_run_order(selected_tasks(tasks, selection), tasks, makers)
        states = [job_state(task, tasks, self.dep_manager, self.store, self.forced)
                  for task in chosen]
        return chosen, upstream_states(chosen, states, makers)

    def _explain(self, tasks: dict, selection: list[str], chosen: list, states: list) -> list:
        from .describe import explanation

        named = members(tasks, selection)
        return [explanation(task, state, self.store.job_row(task.name))
                for task, state in zip(chosen, states)
                if self.explain_deps or task.name in named]

    def _info(self, tasks: dict, selection: list[str], states: list[JobState]) -> list:
        from .describe import group_info, info

        by_name = {state.task: state for state in states}
        found = []
        for name in selection:
            state, jobs = _state_of(tasks, name, states, by_name)
            found.append(info(tasks[name], state, self.store.job_row(name)) if jobs is None
                         else group_info(tasks[name], state, jobs))
        return found

    def _list(self, tasks: dict, names: list[str] | None) -> list:
        from .describe import Row, listed

        shown = listed(self.task_list, tasks, names, self.list_all, self.list_private)
        if not self.list_status:
            return [Row(task.name, task.doc or "") for task in shown]
        _, states = self._states(tasks, [task.name for task in shown], makers_of(tasks))
        by_name = {state.task: state for state in states}
        rows = []
        for task in shown:
            state, jobs = _state_of(tasks, task.name, states, by_name)
            rows.append(Row(task.name, task.doc or "", state, jobs is not None))
        return rows


def _state_of(tasks: dict, name: str, states: list[JobState],
              by_name: dict[str, JobState]) -> tuple[JobState, list[JobState] | None]:
    """A task's state: a job's own (and None), or a group's from its jobs' (and those, in the
    order of `states`, the order they could run in)."""
    if has_actions(tasks[name]):
        return by_name[name], None
    of_group = members(tasks, [name])
    jobs = [state for state in states if state.task in of_group]
    return group_state(name, jobs), jobs

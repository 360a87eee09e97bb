"""What `incrun explain`, `info` and `list` say of a task: its command, what it reads and
writes, its state and reason (from status.py, the one home of the state) and its last run;
as dicts for `--json` and as the lines printed."""

from __future__ import annotations

import os
import shlex
from dataclasses import asdict
from typing import NamedTuple

from .loader import is_job
from .rules import META_KEY
from .status import IGNORED_STATE, RUNNING_STATE, UP_TO_DATE, JobState, named_files
from .store import FAILED, FORGOTTEN, RUNNING, SUCCEEDED
from .words import moment

GROUP_SHOWN = 10  # jobs `info` names, of a group's jobs that would run
LABEL = 10  # width of the labels `info` prints before each fact
_LETTERS = {UP_TO_DATE: "U", IGNORED_STATE: "I"}  # `list -s`, as doit's; any other: R


def explanation(task, state: JobState, recorded: dict | None) -> dict:
    """What `incrun explain` says of one job: its state and why, what it reads and writes,
    and how it last ran (None if never; empty if its record keeps no times)."""
    last_run = None if recorded is None else {}
    if recorded and recorded.get("started"):
        last_run = {key: recorded.get(key) for key in
                    ("status", "started", "ended", "exit_code", "detail", "attempts")}
        running = state.state == RUNNING_STATE  # its log is being written, or an old one
        if recorded.get("log") and not running and os.path.exists(recorded["log"]):
            last_run["log"] = recorded["log"]  # silent successes keep none
    return {**asdict(state), "reads": sorted(task.file_dep), "writes": list(task.targets),
            "last_run": last_run}


def explain_lines(job: dict) -> list[str]:
    """An explanation, as `incrun explain` prints it."""
    if job["state"] == UP_TO_DATE:
        verdict = "up to date: its files and command are unchanged since it succeeded, and " \
                  "its outputs are there"
    else:
        verdict = state_text(job)
    lines = [f"{job['task']}: {verdict}"]
    if job["reads"]:
        lines.append(f"  reads   {named_files(job['reads'])}")
    if job["writes"]:
        lines.append(f"  writes  {named_files(job['writes'])}")
    if job["last_run"] != {}:  # {}: a record that keeps no times
        lines.append(f"  last run  {last_run_text(job)}")
    return lines


def state_text(job: dict) -> str:
    """A task's state and its reason, in words."""
    if job["state"] == UP_TO_DATE:
        return "up to date"
    if job["state"] == RUNNING_STATE:
        return job["reason"]  # running (pid N)
    return f"{job['state']}: {job['reason']}"


def last_run_text(job: dict) -> str:
    """How the task last ran: when, how it ended, its log; `never` if it never ran."""
    recorded = job["last_run"]
    if recorded is None:
        return "never"
    started = moment(recorded["started"])
    outcome = {SUCCEEDED: "succeeded", FAILED: "failed", FORGOTTEN: "forgotten",
               RUNNING: "running now" if job["state"] == RUNNING_STATE else "did not finish"}
    text = f"{started}, {outcome.get(recorded['status'], recorded['status'])}"
    if recorded.get("ended"):
        text += f" after {recorded['ended'] - recorded['started']:.2f}s"
    if recorded.get("detail"):
        text += f" ({recorded['detail']})"
    if recorded.get("log"):
        text += f"; log {recorded['log']}"
    return text


# -- info -------------------------------------------------------------------------------------


def command_of(task) -> list[str]:
    """What the task runs, a line per action: a rule's job's argv, shell-quoted for reading
    (no shell ever runs it); a hand-written task's commands as written, its Python named."""
    if is_job(task):
        return [shlex.join(task.meta[META_KEY]["argv"])]
    return [_action_text(action) for action in task.actions]


def _action_text(action) -> str:
    written = getattr(action, "_action", None)  # doit 0.37's CmdAction: the command as written
    if isinstance(written, str):
        return written
    if isinstance(written, (list, tuple)):
        return shlex.join(str(word) for word in written)
    return str(action)  # doit's own words: "Python: function build"


def info(task, state: JobState, recorded: dict | None) -> dict:
    """What `incrun info` says of a job or a hand-written task: its explanation, its doc (a
    rule's job has its command as doc: not repeated) and its command."""
    return {**explanation(task, state, recorded), "doc": "" if is_job(task) else task.doc or "",
            "command": command_of(task)}


def group_info(task, state: JobState, jobs: list[JobState]) -> dict:
    """What `incrun info` says of a group task (a rule's name): its state from its jobs', and
    the jobs that would run, with their reasons."""
    return {**asdict(state), "doc": task.doc or "", "jobs": len(jobs),
            "would_run": [asdict(job) for job in jobs if job.would_run]}


def info_lines(described: dict) -> list[str]:
    """What `incrun info` prints of one task."""
    lines = [described["task"]]
    if described["doc"]:
        lines.append(f"  {described['doc']}")
    if "jobs" in described:
        return lines + _group_lines(described)
    lines += _facts("command", described["command"])
    lines += _facts("reads", described["reads"])
    lines += _facts("writes", described["writes"])
    lines += _facts("state", [state_text(described)])
    if described["last_run"] != {}:
        lines += _facts("last run", [last_run_text(described)])
    return lines


def _group_lines(described: dict) -> list[str]:
    lines = _facts("jobs", [str(described["jobs"])]) + _facts("state", [state_text(described)])
    waiting = described["would_run"]
    width = max((len(job["task"]) for job in waiting[:GROUP_SHOWN]), default=0)
    lines += [f"{'':{LABEL + 2}}{job['task']:<{width}}  {state_text(job)}"
              for job in waiting[:GROUP_SHOWN]]
    if len(waiting) > GROUP_SHOWN:
        lines.append(f"{'':{LABEL + 2}}and {len(waiting) - GROUP_SHOWN} more")
    return lines


def _facts(label: str, values: list[str]) -> list[str]:
    """A labelled fact of `info`, one value a line, the values aligned."""
    return [f"  {label if index == 0 else '':<{LABEL}}{value}"
            for index, value in enumerate(values)]


# -- list -------------------------------------------------------------------------------------


def listed(task_list: list, tasks: dict, names: list[str] | None, subtasks: bool,
           private: bool) -> list:
    """The tasks `incrun list` shows, as `doit list` chooses them: those named (with
    `subtasks`, their sub-tasks too), or every task but sub-tasks (unless `subtasks`); a name
    starting with `_` only if `private`; sorted by name."""
    if names:
        shown = []
        for name in names:
            shown.append(tasks[name])
            if subtasks:
                shown += [tasks[dep] for dep in tasks[name].task_dep
                          if tasks[dep].subtask_of == name]
    else:
        shown = [task for task in task_list if subtasks or not task.subtask_of]
    if not private:
        shown = [task for task in shown if not task.name.startswith("_")]
    return sorted({task.name: task for task in shown}.values(), key=lambda task: task.name)


class Row(NamedTuple):
    """A task as `incrun list` shows it; `state` None when the status column is not shown."""

    name: str
    doc: str
    state: JobState | None = None
    group: bool = False  # a rule's name, or any task of sub-tasks: its state is its jobs'


def list_lines(rows: list[Row], quiet: bool) -> list[str]:
    """What `incrun list` prints: a line per task, its name (with `quiet`, only that) and its
    doc; with states, `U` (up to date), `I` (ignored) or `R` (would run) first, as `doit list
    -s` has it, and for a group that would run, how many of its jobs would."""
    width = max((len(row.name) for row in rows), default=0) + 3
    lines = []
    for row in rows:
        line = row.name if quiet else f"{row.name:<{width}}{row.doc}"
        if row.state is not None:
            line = f"{_LETTERS.get(row.state.state, 'R')} {line}"
            if row.group and row.state.reason and not quiet:
                line = f"{line.rstrip()}  ({row.state.reason})"
        lines.append(line.rstrip())
    return lines

"""Why a job is up to date, stale or failed: the reasons `incrun status` gives, in plain words."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from doit.cmd_base import DoitCmdBase
from doit.control import TaskControl

from .loader import is_job, selected_tasks
from .store import FAILED, FORGOTTEN, RUNNING

UP_TO_DATE, STALE, FAILED_STATE = "up-to-date", "stale", "failed"


@dataclass(frozen=True)
class JobState:
    task: str
    state: str  # up-to-date, stale or failed
    reason: str = ""


def _files(paths) -> str:
    paths = list(paths)
    shown = ", ".join(paths[:3])
    return shown + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def _changed_deps(task, changed) -> str:
    if is_job(task) and task.meta["incrun"]["input"] in changed:
        return "input changed"
    return "dependency changed: " + _files(changed)


def reason_from_doit(task, reasons: dict) -> str:
    """The first reason doit found, phrased for the user."""
    if reasons.get("missing_file_dep"):
        return "dependency missing: " + _files(reasons["missing_file_dep"])
    if reasons.get("missing_target"):
        return "output missing: " + _files(reasons["missing_target"])
    if reasons.get("checker_changed"):
        return "state recorded by another checker"
    if reasons.get("changed_file_dep"):
        return _changed_deps(task, reasons["changed_file_dep"])
    if reasons.get("added_file_dep") or reasons.get("removed_file_dep"):
        return "list of dependencies changed"
    if reasons.get("uptodate_false"):
        return "command changed" if is_job(task) else "an uptodate check is false"
    if reasons.get("has_no_dependencies"):
        return "always runs (no file_dep)"
    return "stale"


def job_state(task, tasks: dict, dep_manager, store) -> JobState:
    recorded = store.job_row(task.name)
    if recorded and recorded["status"] == FAILED:
        detail = f" ({recorded['detail']})" if recorded.get("detail") else ""
        return JobState(task.name, FAILED_STATE, "failed last time" + detail)
    if not dep_manager._in(task.name) and task.file_dep:
        last = recorded["status"] if recorded else None
        reason = {RUNNING: "interrupted last time", FORGOTTEN: "forgotten"}.get(last, "never run")
        return JobState(task.name, STALE, reason)
    status = dep_manager.get_status(task, tasks, get_log=True)
    if status.status == "up-to-date":
        return JobState(task.name, UP_TO_DATE)
    return JobState(task.name, STALE, reason_from_doit(task, status.reasons))


def counts(states: list[JobState]) -> dict[str, int]:
    tally = {UP_TO_DATE: 0, STALE: 0, FAILED_STATE: 0}
    for state in states:
        tally[state.state] += 1
    return tally


def as_json(states: list[JobState]) -> dict:
    return {
        "counts": {key.replace("-", "_"): value for key, value in counts(states).items()},
        "jobs": [asdict(state) for state in states],
    }


def as_lines(states: list[JobState]) -> list[str]:
    tally = counts(states)
    lines = [f"{tally[UP_TO_DATE]} up to date, {tally[STALE]} stale, "
             f"{tally[FAILED_STATE]} failed"]
    width = max((len(s.task) for s in states if s.state != UP_TO_DATE), default=0)
    for state in states:
        if state.state != UP_TO_DATE:
            lines.append(f"  {state.state:<6}  {state.task:<{width}}  {state.reason}")
    return lines


class Status(DoitCmdBase):
    """`incrun status`: the state of every selected job, computed, nothing run or written."""

    name = "status"
    doc_purpose = "show which jobs are up to date, stale or failed, and why"
    doc_usage = "[TASK|FILE ...]"
    doc_description = None
    cmd_options = ()
    store = None  # set by the engine

    def _execute(self, pos_args=None):
        control = TaskControl(self.task_list)
        control.process(self.sel_tasks)
        tasks = control.tasks
        chosen = sorted(selected_tasks(tasks, control.selected_tasks), key=lambda t: t.name)
        return [job_state(task, tasks, self.dep_manager, self.store) for task in chosen]

"""Why a job is up to date, stale, failed or running: the reasons `incrun status`, `explain` and
`--dry-run` give, in plain words and as a kind for tools."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict, dataclass
from typing import NamedTuple

from doit.cmd_base import DoitCmdBase
from doit.control import TaskControl

from .loader import is_job, selected_tasks
from .store import FAILED, FORGOTTEN, RUNNING, SUCCEEDED

UP_TO_DATE, STALE, FAILED_STATE, RUNNING_STATE = "up-to-date", "stale", "failed", "running"
# Kinds of reason, for tools reading `--json`; the reason's text says the details.
NEVER_RUN, OUTPUT_MISSING, INPUT_CHANGED, DEP_CHANGED, DEP_MISSING, COMMAND_CHANGED = (
    "never-run", "output-missing", "input-changed", "dep-changed", "dep-missing",
    "command-changed")
FAILED_LAST_TIME, INTERRUPTED, FORGOTTEN_KIND, FORCED, UPSTREAM, OTHER = (
    "failed-last-time", "interrupted", "forgotten", "forced", "upstream", "other")
RUNNING_KIND = "running"  # in a run that holds the project now
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
        return self.state != UP_TO_DATE or self.kind == FORCED


def _files(paths) -> str:
    paths = list(paths)
    shown = ", ".join(paths[:3])
    return shown + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def _changed_deps(task, changed) -> Why:
    if is_job(task) and task.meta["incrun"]["input"] in changed:
        return Why(INPUT_CHANGED, "input changed")
    return Why(DEP_CHANGED, "dependency changed: " + _files(changed))


def why_from_doit(task, reasons: dict) -> Why:
    """The first reason doit found, phrased for the user."""
    if reasons.get("missing_file_dep"):
        return Why(DEP_MISSING, "dependency missing: " + _files(reasons["missing_file_dep"]))
    if reasons.get("missing_target"):
        return Why(OUTPUT_MISSING, "output missing: " + _files(reasons["missing_target"]))
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


def job_state(task, tasks: dict, dep_manager, store, forced: bool = False) -> JobState:
    """The job's state; `forced` (-B): an up-to-date job would run all the same."""
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
        last = recorded["status"] if recorded else None
        why = {RUNNING: Why(INTERRUPTED, "interrupted last time"),
               FORGOTTEN: Why(FORGOTTEN_KIND, "forgotten")}.get(last, Why(NEVER_RUN, "never run"))
        return JobState.of(task.name, STALE, why)
    status = dep_manager.get_status(task, tasks, get_log=True)
    if status.status != "up-to-date":
        return JobState.of(task.name, STALE, why_from_doit(task, status.reasons))
    if forced:
        return JobState.of(task.name, UP_TO_DATE, Why(FORCED, "forced (-B)"))
    return JobState(task.name, UP_TO_DATE)


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
    tally = {UP_TO_DATE: 0, STALE: 0, FAILED_STATE: 0, RUNNING_STATE: 0}
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
    lines = [f"would run {len(running)} of {len(states)} jobs "
             f"({len(states) - len(running)} up to date); nothing was run or changed"]
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
    if tally[RUNNING_STATE]:
        line += f", {tally[RUNNING_STATE]} running"
    shown = [state for state in states if state.state != UP_TO_DATE]
    width = max((len(state.task) for state in shown), default=0)
    column = max((len(state.state) for state in shown), default=0)
    column = max(column, len(FAILED_STATE))  # as wide as ever, unless a job runs now
    return [line] + [f"  {state.state:<{column}}  {state.task:<{width}}  {state.reason}"
                     for state in shown]


def explanation(task, state: JobState, recorded: dict | None) -> dict:
    """What `incrun explain PATH` says of one job: its state and why, what it reads and
    writes, and how it last ran (None if never; empty if its record keeps no times)."""
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
    elif job["state"] == RUNNING_STATE:
        verdict = job["reason"]  # running (pid N)
    else:
        verdict = f"{job['state']}: {job['reason']}"
    lines = [f"{job['task']}: {verdict}"]
    if job["reads"]:
        lines.append(f"  reads   {_files(job['reads'])}")
    if job["writes"]:
        lines.append(f"  writes  {_files(job['writes'])}")
    if job["last_run"] is None:
        lines.append("  last run  never")
    elif job["last_run"]:
        lines.append(f"  last run  {_last_run(job['last_run'], job['state'] == RUNNING_STATE)}")
    return lines


def _last_run(recorded: dict, running: bool) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(recorded["started"]))
    outcome = {SUCCEEDED: "succeeded", FAILED: "failed", FORGOTTEN: "forgotten",
               RUNNING: "running now" if running else "did not finish"
               }.get(recorded["status"], recorded["status"])
    text = f"{started}, {outcome}"
    if recorded.get("ended"):
        text += f" after {recorded['ended'] - recorded['started']:.2f}s"
    if recorded.get("detail"):
        text += f" ({recorded['detail']})"
    if recorded.get("log"):
        text += f"; log {recorded['log']}"
    return text


class Status(DoitCmdBase):
    """`incrun status`: the state of every selected job, computed, nothing run or written."""

    name = "status"
    doc_purpose = "show which jobs are up to date, stale or failed, and why"
    doc_usage = "[TASK|FILE ...]"
    doc_description = None
    cmd_options = ()
    store = None  # set by the engine
    forced = False  # -B: up-to-date jobs would run too
    # What to return: each job's state, its explanation (a dict), or the graph of the rules
    # ("rule-graph") or of the jobs ("job-graph"), a graph.Graph.
    answer = "states"

    def _execute(self, pos_args=None):
        control = TaskControl(self.task_list)
        control.process(self.sel_tasks)
        tasks = control.tasks
        makers = makers_of(tasks)
        chosen = in_run_order(selected_tasks(tasks, control.selected_tasks), tasks, makers)
        states = [job_state(task, tasks, self.dep_manager, self.store, self.forced)
                  for task in chosen]
        states = upstream_states(chosen, states, makers)
        if self.answer == "explain":
            return [explanation(task, state, self.store.job_row(task.name))
                    for task, state in zip(chosen, states)]
        if self.answer.endswith("graph"):
            from . import graph

            return graph.build(chosen, states, tasks, makers,
                               per_job=self.answer == "job-graph")
        return states

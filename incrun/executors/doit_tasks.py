"""Hand-written dodo.py tasks: doit's own actions, output to the task's log; with a timeout,
in a forked child of its own process group, so that a hang ends as a failure. As under doit, a
task whose actions succeed has succeeded, whether it made its targets or not (doit then runs it
again next time); only a rule's job must make its outputs (see jobfiles.job_result)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

from doit.exceptions import TaskFailed
from doit.task import Stream

from ..events import ERROR, FAILED, OK, TIMEOUT, JobResult, fail_detail
from .groups import ChildProcess, ProcessGroups, end_group
from .jobfiles import log_tail, remove_outputs


def run_doit_task(task, log_path: Path, root: Path, clock=time.time) -> JobResult:
    """Run the task's actions here; a failure is a value, never an exception."""
    started = clock()
    try:
        fail = task.execute(Stream(0, force_global=True))  # captured, whatever its verbosity
    except Exception as error:  # an invalid action: the task's failure, not the run's
        fail = TaskFailed(f"{type(error).__name__}: {error}")
    _write_log(task, fail, log_path)
    if fail is None:
        return JobResult(task.name, OK, started, clock(), 0, str(log_path))
    remove_outputs(task.targets, root)
    status = FAILED if isinstance(fail, TaskFailed) else ERROR
    return JobResult(task.name, status, started, clock(), None, str(log_path), fail_detail(fail),
                     log_tail(log_path))


def _write_log(task, fail, log_path: Path) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8", errors="replace") as log:
        for action in task.actions:
            log.write(action.out or "")
            log.write(action.err or "")
        if fail is not None:
            log.write(fail.get_msg())


def _child_main(task, log_path: Path, root: Path, sender) -> None:
    os.setpgid(0, 0)  # its own group: a timeout ends whatever its actions started
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)  # not the run's handlers, inherited by fork
    result = run_doit_task(task, log_path, root)
    try:
        sender.send((result, task.values, task.result))
    except Exception as error:  # values that cannot cross back
        sender.send((JobResult(task.name, ERROR, result.started, result.ended, None,
                               str(log_path), f"returned a value that cannot be sent: {error}"),
                     {}, None))


def run_doit_task_in_child(task, log_path: Path, root: Path, timeout: float,
                           groups: ProcessGroups, clock=time.time) -> JobResult:
    """Run the task in a forked child; past `timeout`, end its whole process group."""
    started = clock()
    context = multiprocessing.get_context("fork")  # the task's closures need no pickling
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(task, log_path, root, sender))
    process.start()
    sender.close()
    child = ChildProcess(process)
    try:
        os.setpgid(process.pid, process.pid)  # before the child does it: no race with kill
    except OSError:
        pass
    groups.add(child)
    try:
        outcome = receiver.recv() if receiver.poll(timeout) else None
    except EOFError:
        outcome = "died"
    finally:
        if outcome is None:
            end_group(child, groups.grace)
        process.join()
        groups.discard(child)
    return _outcome(task, outcome, started, clock(), log_path, root, timeout, process.exitcode)


def _outcome(task, outcome, started, ended, log_path, root, timeout, exitcode) -> JobResult:
    if isinstance(outcome, tuple):
        result, task.values, task.result = outcome
        return result
    remove_outputs(task.targets, root)
    if outcome is None:
        return JobResult(task.name, TIMEOUT, started, ended, None, str(log_path),
                         f"timed out after {timeout:g}s")
    return JobResult(task.name, ERROR, started, ended, exitcode, str(log_path),
                     f"the task's process died (exit {exitcode})")

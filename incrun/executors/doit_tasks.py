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
from typing import NamedTuple

from doit.exceptions import TaskFailed
from doit.task import Stream

from ..events import ERROR, FAILED, OK, TIMEOUT, JobResult, fail_detail
from .groups import ChildProcess, ProcessGroups, end_group
from .jobfiles import log_tail, open_log, remove_outputs


class Log(NamedTuple):
    """Where a task's output goes: its log, from the project root (as results show it), and
    the attempt writing to it, of how many (a retry's output goes after the attempts before)."""

    path: str
    attempt: int = 1
    tries: int = 1


def run_doit_task(task, log: Log, root: Path, clock=time.time) -> JobResult:
    """Run the task's actions here; a failure is a value, never an exception."""
    started = clock()
    try:
        fail = task.execute(Stream(0, force_global=True))  # captured, whatever its verbosity
    except Exception as error:  # an invalid action: the task's failure, not the run's
        fail = TaskFailed(f"{type(error).__name__}: {error}")
    log_path = Path(root) / log.path
    _write_log(task, fail, log_path, log)
    if fail is None:
        return JobResult(task.name, OK, started, clock(), 0, log.path)
    remove_outputs(task.targets, root)
    status = FAILED if isinstance(fail, TaskFailed) else ERROR
    return JobResult(task.name, status, started, clock(), None, log.path, fail_detail(fail),
                     log_tail(log_path))


def actions_output(actions) -> str:
    """What doit's actions printed, as they captured it: each one's stdout, then its stderr."""
    return "".join((action.out or "") + (action.err or "") for action in actions)


def _write_log(task, fail, log_path: Path, log: Log) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    text = actions_output(task.actions)
    if fail is not None:
        text += fail.get_msg()
    with open_log(log_path, log.attempt, log.tries) as stream:
        stream.write(text.encode("utf-8", "replace"))


def _child_main(task, log: Log, root: Path, sender) -> None:
    os.setpgid(0, 0)  # its own group: a timeout ends whatever its actions started
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)  # not the run's handlers, inherited by fork
    result = run_doit_task(task, log, root)
    try:
        sender.send((result, task.values, task.result))
    except Exception as error:  # values that cannot cross back
        sender.send((JobResult(task.name, ERROR, result.started, result.ended, None,
                               log.path, f"returned a value that cannot be sent: {error}"),
                     {}, None))


def run_doit_task_in_child(task, log: Log, root: Path, timeout: float,
                           groups: ProcessGroups, clock=time.time) -> JobResult:
    """Run the task in a forked child; past `timeout`, end its whole process group."""
    started = clock()
    context = multiprocessing.get_context("fork")  # the task's closures need no pickling
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(task, log, root, sender))
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
    return _outcome(task, outcome, started, clock(), log.path, root, timeout, process.exitcode)


def _outcome(task, outcome, started, ended, log_path: str, root, timeout,
             exitcode) -> JobResult:
    if isinstance(outcome, tuple):
        result, task.values, task.result = outcome
        return result
    remove_outputs(task.targets, root)
    if outcome is None:
        return JobResult(task.name, TIMEOUT, started, ended, None, log_path,
                         f"timed out after {timeout:g}s")
    return JobResult(task.name, ERROR, started, ended, exitcode, log_path,
                     f"the task's process died (exit {exitcode})")

"""The coordinator: doit's `run` with incrun's runner, which decides what runs (doit's
up-to-date checks, adoption, retries, rule limits) and records it in the store, while jobs run
on an executor. Executors only run; nothing under `executors/` writes state."""

from __future__ import annotations

import json
import os
import stat
from collections import Counter, deque
from dataclasses import replace

from doit.cmd_run import Run
from doit.control import TaskControl
from doit.exceptions import SetupError, UnmetDependency
from doit.runner import ERROR as DOIT_ERROR
from doit.runner import FAILURE, Runner
from doit.task import Stream

from .context import RunContext
from .events import (
    ADOPTED,
    ERROR,
    FAILED,
    INTERRUPTED,
    NOT_RUN,
    OK,
    TIMEOUT,
    EventReporter,
    JobAdded,
    JobFinished,
    JobOutput,
    JobResult,
    JobSkipped,
    JobStarted,
    Notice,
)
from .executors.contract import Cancelled, JobSpec, Lost, Note, Started
from .executors.doit_tasks import actions_output
from .executors.jobfiles import append_log, read_log, remove_outputs
from .loader import has_actions, is_job, selected_tasks
from .rules import META_KEY
from .words import counted

NEEDS_SHOWN = 3  # failed jobs named in why a job is not run
MARK_AHEAD = 64  # jobs marked running in one commit, beyond those the executor takes now
COMMIT_EVERY = 0.05  # seconds an ended job's record may wait for the next commit, at most


def _mtime(path: str, follow: bool = True) -> float | None:
    """A file's mtime; None if it is missing or, unless followed, a symlink (never adopted)."""
    try:
        info = os.stat(path, follow_symlinks=follow)
    except OSError:
        return None
    return None if stat.S_ISLNK(info.st_mode) else info.st_mtime


OWN_TASKS = ""  # the limit of a dodo.py's own tasks, kept beside the rules' in RuleLimits


class RuleLimits:
    """Rules that allow only so many of their jobs at once (`jobs` in a rule), and a dodo.py's
    own tasks (one at a time unless told otherwise, as doit runs them): how many are submitted
    now, and the selected jobs waiting for a place, while other rules' jobs run."""

    def __init__(self, own_tasks: int | None = None):
        self.own_tasks = own_tasks  # a dodo.py's tasks at once; None: no limit
        self.submitted: Counter = Counter()  # by rule
        self.waiting: dict[str, deque] = {}  # by rule: nodes selected, not yet started

    def _limit(self, node) -> tuple[str, int] | None:
        task = node.task
        if is_job(task):
            return task.meta[META_KEY].get("limit")
        if self.own_tasks is None or not has_actions(task):  # a group task runs nothing
            return None
        return OWN_TASKS, self.own_tasks

    def admit(self, node) -> bool:
        """Whether the job may start now; if not, it waits for one of its rule to end."""
        limit = self._limit(node)
        if limit is None:
            return True
        rule, most = limit
        if self.submitted[rule] < most:
            self.submitted[rule] += 1
            return True
        self.waiting.setdefault(rule, deque()).append(node)
        return False

    def release(self, node, successor: bool = True):
        """A job has ended: the next of its rule that waits (now holding its place), if any."""
        limit = self._limit(node)
        if limit is None:
            return None
        rule = limit[0]
        waiting = self.waiting.get(rule)
        if successor and waiting:
            return waiting.popleft()
        self.submitted[rule] -= 1
        return None


class JobRunner(Runner):
    """doit's Runner, keeping its up-to-date checks and its bookkeeping in this process, while
    up to N jobs run on the executor; every finished job is committed to the store at once."""

    def __init__(self, dep_manager, reporter, context: RunContext, shown: Stream | None = None,
                 own_tasks: int | None = None):
        # Output is always captured (into each job's log); `shown` is the verbosity asked
        # for, by which a task's output is also shown once it ends.
        super().__init__(dep_manager, reporter, continue_=not context.fail_fast,
                         always_execute=context.always, stream=Stream(0, force_global=True))
        self.ctx = context
        self.store = context.store
        self.root = context.executor.root
        self.shown = shown or Stream(None)
        self.own_tasks = own_tasks  # a dodo.py's own tasks at once
        self._showing: set[str] = set()  # the tasks whose output is shown as they end
        self._attempts: dict[str, int] = {}
        self._blocked_by: dict[str, tuple[str, ...]] = {}  # not run: the failed jobs it needs

    # -- selection -----------------------------------------------------------

    def run_all(self, task_dispatcher):
        tasks = task_dispatcher.tasks
        selected = selected_tasks(tasks, task_dispatcher.selected_tasks, with_groups=True)
        chosen = {task.name for task in selected if has_actions(task)}
        growing = any(task.loader and not has_actions(task) for task in selected)  # create_after
        if not self.ctx.announced:  # the engine announces a run it hands over in parts
            self.ctx.start([name for name in tasks if name in chosen], growing)  # in order
        try:
            return super().run_all(task_dispatcher)
        finally:
            if self._stop_running:  # doit stopped after a failure (--fail-fast): so does
                self.ctx.halted = True  # the run, and no later part of it starts

    def select_task(self, node, tasks_dict):
        task = node.task
        # Decided when doit first looks at the task, before it overwrites its verbosity.
        if node.run_status is None and self.shown.effective_verbosity(task.verbosity) == 2:
            self._showing.add(task.name)
        if has_actions(task) and task.name not in self.reporter.counted:  # made by create_after
            self.reporter.counted.add(task.name)
            self.ctx.emit(JobAdded(task.name))
        if node.run_status is None and is_job(node.task) and self._adopt(node, tasks_dict):
            return False
        selected = super().select_task(node, tasks_dict)
        if not selected and node.run_status == "up-to-date":
            self._save_refreshed_states(node.task)
            if is_job(node.task):  # the next run can tell without doit
                self.store.set_signature(node.task.name, self._signature(node.task))
        return selected

    def _handle_task_error(self, node, base_fail):
        if isinstance(base_fail, UnmetDependency):
            base_fail = UnmetDependency(self._needs(node))
        super()._handle_task_error(node, base_fail)

    def _needs(self, node) -> str:
        """Why a task is not run: the failed jobs it needs, through those not run between."""
        roots = dict.fromkeys(name for dep in node.bad_deps
                              for name in self._blocked_by.get(dep.task.name, (dep.task.name,)))
        self._blocked_by[node.task.name] = names = tuple(roots)
        shown = ", ".join(names[:NEEDS_SHOWN])
        if len(names) > NEEDS_SHOWN:
            shown += f" and {len(names) - NEEDS_SHOWN} more"
        return f"needs {shown}, which failed"

    def _signature(self, task) -> str | None:
        return self.ctx.signatures.of(task.meta[META_KEY]) if is_job(task) else None

    def _save_refreshed_states(self, task) -> None:
        """A dep touched but unchanged: record its new mtime so the next run need not hash it."""
        refreshed = self.dep_manager.checker.refreshed
        for dep in task.file_dep:
            if dep in refreshed:
                self.dep_manager._set(task.name, dep, refreshed[dep])

    def _adopt(self, node, tasks_dict) -> bool:
        """Outputs made before incrun (by make, by hand) count as done if newer than every dep."""
        task = node.task
        if not self.store.may_adopt or self.always_execute:
            return False
        out_times = [_mtime(target, follow=False) for target in task.targets]
        if not out_times or None in out_times:  # the usual case, and the cheapest to tell
            return False
        if self.dep_manager._in(task.name) or self.store.job_status(task.name) is not None:
            return False
        dep_times = [_mtime(dep) for dep in task.file_dep]
        if None in dep_times:
            return False
        if min(out_times) < max(dep_times, default=0):
            return False
        self.dep_manager.get_status(task, tasks_dict)  # lets uptodate checks compute their values
        task.save_extra_values()
        self.dep_manager.save_success(task)
        node.run_status = "up-to-date"
        now = self.ctx.clock()
        self.store.job_finished(JobResult(task.name, OK, now, now, detail=ADOPTED),
                                self._signature(task))
        self.ctx.emit(JobSkipped(task.name, ADOPTED))
        return True

    # -- execution -----------------------------------------------------------

    def run_tasks(self, task_dispatcher):
        """Keep the executor supplied with selected jobs (one queued for each worker, besides
        those running, so a worker starts its next job at once) and feed each result back to
        doit.

        Commits come in groups: jobs doit selects wait, unmarked, until the executor runs
        low; then they are marked running all at once (a batch of about MARK_AHEAD), in one
        commit, before any of them starts. What ended is committed with the next batch or
        within COMMIT_EVERY seconds. A job killed before its success was committed is still
        marked running: it runs again, and what it left is never adopted."""
        generator, tasks = task_dispatcher.generator, task_dispatcher.tasks
        inflight: dict[str, object] = {}  # by task name: submitted, running or queued
        ready: deque = deque()  # marked running (committed), not yet submitted
        selected: deque = deque()  # to run, not yet marked
        ended: list = []  # nodes to hand back to doit
        limits = RuleLimits(self.own_tasks)
        released: list = []  # jobs that waited for their rule's limit, now free to start
        exhausted = False
        committed = self.ctx.clock()
        while True:
            if (ready or selected) and self._stopping():
                self._unmark(ready, limits)
                self._let_go(selected, limits)
            marked = self._mark_released(released, ready, selected, limits)
            released = []
            capacity = self._capacity()
            waiting = len(inflight) + len(ready)
            while not exhausted and not self._stopping() and not self._limit_met(selected) and (
                    ended or (waiting < capacity
                              and waiting + len(selected) < capacity + MARK_AHEAD)):
                try:
                    node = generator.send(ended.pop() if ended else None)
                except StopIteration:
                    exhausted = True
                    break
                if node == "hold on":  # nothing is ready until a running job ends
                    if ended:
                        continue
                    break
                if not self.select_task(node, tasks):
                    ended.append(node)
                elif not limits.admit(node):
                    continue  # waits for a job of its rule to end
                elif self._runs_nothing(node):
                    ended.append(node)
                else:
                    selected.append(node)
            if selected and waiting < capacity and not self._stopping():  # a batch, marked
                self._mark_selected(selected, ready)
                marked = True
            now = self.ctx.clock()
            if marked or self._stopping() or now - committed >= COMMIT_EVERY:
                self.store.commit()
                committed = now
            while ready and len(inflight) < capacity:
                node = ready.popleft()
                inflight[node.task.name] = node
                self._submit(node.task)
            if not inflight:
                if ended and not exhausted and not self._stopping() and not self.ctx.limit_reached:
                    continue
                break
            wait = None if not self.store.uncommitted else \
                max(0.0, committed + COMMIT_EVERY - self.ctx.clock())
            for message in self._messages(wait):
                if isinstance(message, Started):
                    title = _title(inflight[message.task].task)
                    self.ctx.emit(JobStarted(message.task, message.at, message.worker, title))
                elif isinstance(message, Note):
                    self.ctx.emit(Notice(message.text, "warning" if message.warning else "info"))
                elif isinstance(message, Lost):
                    self.ctx.lose(message.reason)
                elif isinstance(message, Cancelled):  # stopped before it started: as it was
                    limits.release(inflight.pop(message.task), successor=False)
                    self.store.jobs_not_started([message.task])
                elif self._finish(inflight[message.task], message.result):
                    node = inflight.pop(message.task)
                    ended.append(node)
                    successor = limits.release(node, successor=not self._stopping())
                    if successor is not None:
                        released.append(successor)
        self._unmark(ready, limits)
        self._let_go(selected, limits)
        self.store.commit()

    def _messages(self, wait: float | None) -> list:
        """The executor's next messages; meanwhile the store is idle, and a second Ctrl-C may
        commit what waits before it ends incrun (see engine._signals_stop)."""
        self.ctx.idle = True
        try:
            return self.ctx.executor.messages(wait)
        finally:
            self.ctx.idle = False

    def _mark_released(self, released: list, ready: deque, selected: deque,
                       limits: RuleLimits) -> bool:
        """Jobs that waited for their rule's limit: marked running, ready to submit (or let go
        if the run stops or reached --limit, the selected jobs counted). Whether any was
        marked."""
        marked = False
        for node in released:
            if self._stopping() or self._limit_met(selected):
                limits.release(node, successor=False)
            else:
                self._mark_started(node)
                ready.append(node)
                marked = True
        return marked

    def _limit_met(self, selected: deque) -> bool:
        """--limit K: K jobs have started or are selected to start."""
        return self.ctx.limit is not None and self.ctx.launched + len(selected) >= self.ctx.limit

    def _mark_selected(self, selected: deque, ready: deque) -> None:
        """Selected jobs marked running, ready to submit."""
        while selected:
            self._mark_started(node := selected.popleft())
            ready.append(node)

    def _let_go(self, selected: deque, limits: RuleLimits) -> None:
        """Selected jobs that will not start now (the run stops): never marked, nothing to undo
        but their place in their rule's limit."""
        for node in selected:
            limits.release(node, successor=False)
        selected.clear()

    def _unmark(self, ready: deque, limits: RuleLimits) -> None:
        """Jobs marked running that will not start now (the run stops): as they were."""
        for node in ready:
            limits.release(node, successor=False)
        self.store.jobs_not_started([node.task.name for node in ready])
        ready.clear()

    def _capacity(self) -> int:
        """Jobs submitted at once: those running and as many ready to start as the executor
        wants; with --fail-fast, none waits queued, ready to start after a failure. An
        executor whose slots are known only once it has its cluster says 0 until then: one
        job, to start."""
        executor = self.ctx.executor
        return max(executor.slots + (0 if self.ctx.fail_fast else executor.ahead), 1)

    def _stopping(self) -> bool:
        return self._stop_running or self.ctx.interrupted is not None or self.ctx.lost

    def _runs_nothing(self, node) -> bool:
        """A group task, which has nothing to run, succeeds when selected."""
        if has_actions(node.task):
            return False
        if node.task.teardown:
            self.teardown_list.append(node.task)
        node.run_status = "successful"
        return True

    def _mark_started(self, node) -> None:
        """A job about to start is marked running (committed before it starts)."""
        task = node.task
        if task.teardown:
            self.teardown_list.append(task)
        self.store.job_started(task.name, self.ctx.clock())
        self.ctx.launched += 1

    def _submit(self, task) -> None:
        log_path = self.store.log_name(task.name)
        attempt = self._attempts[task.name] = self._attempts.get(task.name, 0) + 1
        tries = self._retries(task) + 1
        if is_job(task):
            self.ctx.executor.submit(self._spec(task, log_path, attempt, tries))
        else:
            self.ctx.executor.submit_task(task.name, task, log_path, self.ctx.timeout,
                                          attempt, tries)

    def _spec(self, task, log_path: str, attempt: int, tries: int) -> JobSpec:
        """What the executor is told of a rule's job (named as doit knows it: a dodo.py may
        rename the rule)."""
        meta = task.meta[META_KEY]
        timeout = self.ctx.timeout if self.ctx.timeout is not None else meta["timeout"]
        listed = "inputs_file" in meta
        return JobSpec(task.name, tuple(meta["argv"]), tuple(meta["outputs"]), log_path,
                       timeout, attempt, meta["call"],
                       tuple(meta["inputs"]) if listed else (), meta.get("inputs_file"),
                       tuple(task.file_dep) if self.ctx.stage else (),
                       self._to_hash(task, meta["shared"]), self.ctx.job_env, tries=tries,
                       warm=self.ctx.warm or meta.get("warm", False))

    def _to_hash(self, task, shared: list) -> tuple[str, ...]:
        """The job's own inputs with no recorded state (all of a new job's): hashed by the
        worker that runs it, in parallel with the other jobs. A recorded one is hashed here,
        and only if it changed; the shared ones (the runner script) once for every job; a
        staged job's are copies, whose mtimes are not the project's."""
        if self.ctx.stage:
            return ()
        return tuple(dep for dep in task.file_dep
                     if dep not in shared and self.dep_manager._get(task.name, dep) is None)

    def _finish(self, node, result: JobResult) -> bool:
        """Record a finished job; False if it was submitted again, to retry."""
        task = node.task
        if not result.ok and (self.ctx.interrupted is not None or self.ctx.lost):
            self._interrupted(node, result)
            return True
        if result.ok:
            self.dep_manager.checker.learn(result.hashes)
            result = self._save_success(task, result)
        attempts = self._attempts.get(task.name, 1)
        retries = self._retries(task)
        if not result.ok and self._may_retry(result, attempts, retries):
            self.ctx.emit(Notice(f"retrying {task.name} (attempt {attempts + 1} of "
                                 f"{retries + 1}): {result.detail}"))
            self._submit(task)
            return False
        result = self._with_attempts(result, attempts)
        if result.ok:
            node.run_status = "successful"
        else:
            self._record_failure(node, result)
        self.store.job_finished(result, self._signature(task) if result.ok else None)
        self.store.job_ran(result)
        if task.name in self._showing and result.log_path:
            self._show(task, "output", read_log(self.root / result.log_path))
        self.ctx.emit(JobFinished(result))
        if result.ok and not is_job(task):
            self._warn_of_missing_targets(task)
        return True

    def _show(self, task, part: str, text: str) -> None:
        if text.strip():
            self.ctx.emit(JobOutput(task.name, tuple(text.rstrip("\n").splitlines()), part,
                                    _title(task)))

    def teardown(self):
        """doit's teardown, its output kept in the task's log (and shown at verbosity 2)."""
        for task in reversed(self.teardown_list):
            self.reporter.teardown_task(task)
            failure = task.execute_teardown(self.stream)
            text = actions_output(task.teardown)
            if text:
                append_log(self.root / self.store.log_name(task.name), "teardown", text)
                if task.name in self._showing:
                    self._show(task, "teardown", text)
            if failure:
                self.reporter.cleanup_error(SetupError(f"task {task.name}'s teardown action",
                                                       failure))

    def _warn_of_missing_targets(self, task) -> None:
        """A hand-written task that succeeded without making a declared target has succeeded,
        as under doit, which runs it again next time: said once, in one line."""
        missing = [target for target in task.targets if not os.path.exists(self.root / target)]
        if missing:
            targets, were = ("target", "was") if len(missing) == 1 else ("targets", "were")
            self.ctx.emit(Notice(f"{task.name}: declared {targets} {', '.join(missing)} {were} "
                                 "not created; it will run again next time", "warning"))

    def _retries(self, task) -> int:
        """The job's rule's own retries, else the run's (--retries, `retries`)."""
        own = task.meta[META_KEY].get("retries") if is_job(task) else None
        return self.ctx.retries if own is None else own

    def _may_retry(self, result: JobResult, attempts: int, retries: int) -> bool:
        return (result.status in (FAILED, TIMEOUT) and attempts <= retries
                and not self._stopping())

    def _with_attempts(self, result: JobResult, attempts: int) -> JobResult:
        if attempts == 1:
            return result
        if result.ok:
            self.ctx.emit(Notice(f"{result.name} succeeded on attempt {attempts}"))
            return replace(result, attempts=attempts)
        return replace(result, attempts=attempts,
                       detail=f"{result.detail}, {counted(attempts, 'attempt')}")

    def _interrupted(self, node, result: JobResult) -> None:
        """Stopped by a signal, or its cluster lost: neither done nor failed; its RUNNING mark
        makes it rerun (and keeps whatever it left from being adopted)."""
        self.store.job_ran(replace(result, status=INTERRUPTED))
        node.run_status = "failure"
        self.dep_manager.remove_success(node.task)
        self.ctx.emit(JobSkipped(node.task.name, NOT_RUN, INTERRUPTED))

    def _save_success(self, task, result: JobResult) -> JobResult:
        task.save_extra_values()
        try:
            if not is_job(task):  # a job's values are its command, as text
                json.dumps([task.values, task.result])  # the store keeps them as JSON
        except (TypeError, ValueError) as error:
            return self._unrecordable(task, result, f"returned a value that cannot be stored: "
                                                    f"{error}")
        try:
            self.dep_manager.save_success(task)
        except (OSError, TypeError, ValueError) as error:
            return self._unrecordable(task, result, f"cannot record success: "
                                                    f"{type(error).__name__}: {error}")
        return result

    def _unrecordable(self, task, result: JobResult, detail: str) -> JobResult:
        """A success that cannot be recorded is a failure, and failures leave no outputs."""
        remove_outputs(task.targets, self.root)
        return replace(result, status=ERROR, detail=detail)

    def _record_failure(self, node, result: JobResult) -> None:
        node.run_status = "failure"
        self.dep_manager.remove_success(node.task)
        if result.status == FAILED and self.final_result != DOIT_ERROR:
            self.final_result = FAILURE
        else:
            self.final_result = DOIT_ERROR
        if not self.continue_:
            self._stop_running = True
            self.ctx.executor.hold()


class IncrunRun(Run):
    """`run`, as doit parses it, with the one runner incrun has; the engine sets `context`."""

    context: RunContext | None = None

    def get_backends(self) -> dict:
        """The store is the only backend: no scan of installed packages for doit plugins."""
        return {}

    def get_reporters(self) -> dict:
        """Events are the only reporter: no scan of installed packages for doit plugins."""
        return {}

    def _execute(self, outfile, verbosity=None, always=False, continue_=False,
                 reporter="console", num_process=0, par_type="process", single=False,
                 auto_delayed_regex=False, force_verbosity=False, failure_verbosity=0,
                 pdb=False):
        """doit's settings (DOIT_CONFIG, then doit's options on incrun's command line) reach
        here: verbosity, num_process (a dodo.py's own tasks at once) and single."""
        self.control = TaskControl(self.task_list, auto_delayed_regex=auto_delayed_regex)
        self.control.process(self.sel_tasks)
        if single:
            _without_task_deps(self.control)
        counted = {name for name, task in self.control.tasks.items() if has_actions(task)}
        reporter_obj = EventReporter(self.context.emit, counted)
        own_tasks = self.context.own_tasks or num_process or 1
        runner = JobRunner(self.dep_manager, reporter_obj, self.context,
                           Stream(verbosity, force_verbosity), own_tasks)
        return runner.run_all(self.control.task_dispatcher())


def _without_task_deps(control: TaskControl) -> None:
    """-s/--single: the named tasks run without the tasks they depend on (doit's own rule)."""
    for name in control.selected_tasks:
        task = control.tasks[name]
        if task.has_subtask:
            for sub in task.task_dep:
                control.tasks[sub].task_dep = []
        else:
            task.task_dep = []


def _title(task) -> str:
    """The task's own `title`, which the display shows in place of its name; "" if none."""
    return task.title() if task.custom_title else ""

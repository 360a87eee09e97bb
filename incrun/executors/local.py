"""The local executor: jobs on this machine, N at a time. A rule's jobs go to N long-lived worker
processes (see `workers`), each kept one job ahead; hand-written dodo.py tasks run in N threads.
The coordinator hears of every start, end and cancellation through one queue of messages
(`contract`). Process groups and the guard that ends them are this executor's own business."""

from __future__ import annotations

import queue
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path

from ..events import ERROR, FAILED, TIMEOUT, JobResult, rule_of
from .contract import Cancelled, Finished, JobSpec, Message, Note, Started, take_messages
from .groups import DEFAULT_GRACE, GroupLeader, ProcessGroups, end_group, kill_group
from .jobfiles import Lookups, Scratch, job_result
from .workers import BOOT, CLOSE, COLD, FINISHED, STARTED, run_job

# The folder holding the incrun package, so a worker imports this very incrun.
_HOME = str(Path(__file__).resolve().parent.parent.parent)


class WorkerHandle:
    """incrun's side of one worker process: started when first needed, sent jobs, its messages
    read by a thread of its own and passed on; replaced when it dies, its running job failed and
    its queued jobs sent to the new one."""

    def __init__(self, executor: LocalExecutor, label: str):
        self.executor = executor
        self.label = label  # the slot's name in the run history: its lane in the report
        self.process: subprocess.Popen | None = None
        self.connection: Connection | None = None
        self.outstanding: dict[str, JobSpec] = {}  # by task: sent, not finished, in order
        self.running: tuple[str, float, int] | None = None  # name, when it started, its pid
        self._deadline: float | None = None  # when a running call times out
        self._timed_out = False
        self._heard = False  # from the current process: one that says nothing never started
        self._closing = False
        self._lock = threading.Lock()  # the runner's thread and the reader both send and count

    @property
    def load(self) -> int:
        return len(self.outstanding)

    def start(self) -> None:
        """Start the worker now, if it is not running, ahead of its first job."""
        with self._lock:
            if self.process is None:
                self._start()

    def send(self, spec: JobSpec) -> None:
        with self._lock:
            if self.process is None:
                self._start()
            self._deliver(spec)

    def _deliver(self, spec: JobSpec) -> None:
        """Hand a job to the current process (the lock held). It stays outstanding until it
        finishes: should the worker have just died, its reader passes it on to the next one."""
        self.outstanding[spec.task] = spec
        try:
            self.connection.send_bytes(spec.to_json(whole=False).encode())
        except OSError:
            pass  # a broken pipe: the reader hears the end next and hands the job on

    def _start(self) -> None:
        executor = self.executor
        ours, theirs = socket.socketpair()
        boot = BOOT.format(home=_HOME, fd=theirs.fileno(), root=str(executor.root),
                           logs=None if executor.logs is None else str(executor.logs),
                           grace=executor.groups.grace)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", boot], pass_fds=[theirs.fileno()], cwd=executor.root,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)
        finally:
            theirs.close()
        self.connection = Connection(ours.detach())
        self._heard = False
        executor.groups.add(self.process)
        threading.Thread(target=self._read, args=(self.process, self.connection),
                         name="incrun-worker-reader", daemon=True).start()

    def _read(self, process: subprocess.Popen, connection: Connection) -> None:
        while True:
            try:
                timeout = None if self._deadline is None else self._deadline - time.monotonic()
                if timeout is not None and not connection.poll(max(timeout, 0)):
                    self._timed_out = True
                    end_group(process, self.executor.groups.grace)  # the call never returns
                    continue
                kind, name, value = connection.recv()
            except (EOFError, OSError):
                self._ended(process)
                return
            self._heard = True
            if kind == STARTED:
                self._started(name, *value)
            elif kind == FINISHED:
                self._finished(name, value)
            elif kind == COLD:
                self.executor.say_once(f"{rule_of(name)}: its jobs start cold: {value}")

    def _started(self, name: str, at: float, pid: int) -> None:
        self.running = (name, at, pid)
        spec = self.outstanding[name]
        if pid != self.process.pid:
            # A command's own group, for Ctrl-C; were incrun killed, its worker would end it.
            self.executor.groups.add(GroupLeader(pid), guarded=False)
        elif spec.timeout is not None:  # a call: only ending the worker stops it
            self._deadline = time.monotonic() + spec.timeout
        self.executor.tell(Started(name, at))

    def _finished(self, name: str, result: JobResult) -> None:
        with self._lock:
            self.outstanding.pop(name, None)
        if self.running is not None and self.running[2] != self.process.pid:
            self.executor.groups.discard(GroupLeader(self.running[2]), guarded=False)
        self.running, self._deadline = None, None
        self.executor.tell(Finished(replace(result, worker=self.label)))

    def _ended(self, process: subprocess.Popen) -> None:
        """The worker is gone: closed on purpose, or it died (a crash, a timeout, a stop)."""
        code = process.wait()
        self.executor.groups.discard(process)
        with self._lock:
            self.process = None
            if self._closing:
                return
            if self.running is not None:
                self._fail_running(code, process.pid)
            queued, self.outstanding = list(self.outstanding.items()), {}
            self._timed_out = False
            heard = self._heard  # of the process that ended (a new one starts unheard)
            for name, spec in queued:
                if self.executor.stopped:
                    self.executor.tell(Cancelled(name))
                elif not heard:  # it could not even start: another would fail the same
                    self.executor.tell(Finished(JobResult(
                        name, ERROR, time.time(), time.time(),
                        detail=f"the worker process could not start (exit code {code})")))
                else:  # to a new worker, in the same order
                    if self.process is None:
                        self._start()
                    self._deliver(spec)

    def _fail_running(self, code: int, worker: int) -> None:
        name, started, pid = self.running
        if pid != worker:  # the dead worker's command runs on, orphaned: it goes
            kill_group(pid)  # first, so that nothing it writes outlives its failure
            self.executor.groups.discard(GroupLeader(pid), guarded=False)
        spec = self.outstanding.pop(name)
        self.running, self._deadline = None, None
        if self._timed_out:
            status, detail = TIMEOUT, f"timed out after {spec.timeout:g}s"
        elif code < 0:
            status, detail = FAILED, f"the worker process was killed by signal {-code}"
        else:
            status, detail = FAILED, f"the worker process exited (code {code})"
        result = job_result(spec, str(self.executor.root), started, time.time(), status, detail)
        self.executor.tell(Finished(replace(result, worker=self.label)))

    def ask_to_close(self) -> None:
        """Tell the worker to stop (it ends a running job first)."""
        with self._lock:
            self._closing = True
            if self.process is None:
                return
            try:
                self.connection.send_bytes(CLOSE)
            except OSError:
                pass

    def wait_closed(self) -> None:
        process = self.process
        if process is None:
            return
        try:
            process.wait(self.executor.groups.grace)
        except subprocess.TimeoutExpired:
            end_group(process, self.executor.groups.grace)


class LocalExecutor:
    """At most `slots` jobs at once. Rule jobs go to worker processes, each kept one job ahead
    so that it starts its next job the moment its last one ends; hand-written dodo.py tasks run
    in threads of this process."""

    def __init__(self, slots: int, root: Path, grace: float = DEFAULT_GRACE, guard: bool = True,
                 logs: Path | None = None, messages: queue.SimpleQueue | None = None):
        self.slots = slots
        self.root = root
        self.logs = logs  # where workers keep their scratch files (see jobfiles.Scratch)
        self.groups = ProcessGroups(grace, guard)
        self.stopped = False
        self._direct = False  # commands run from threads here, not from worker processes
        self._handles = [WorkerHandle(self, f"w{slot}") for slot in range(slots)]
        self._lookups = Lookups()
        self._own = threading.local()  # each thread's scratch file
        self._todo: queue.SimpleQueue = queue.SimpleQueue()  # (name, function, args) or None
        # Another executor may pass on its hand-written tasks, and hear of them on its queue.
        self._messages = messages if messages is not None else queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._said: set[str] = set()
        self._said_lock = threading.Lock()

    @property
    def ahead(self) -> int:
        """One job queued in each worker, to start the moment its last one ends."""
        return self.slots

    def tell(self, message: Message) -> None:
        """A message for the coordinator (from any thread)."""
        self._messages.put(message)

    def say_once(self, text: str) -> None:
        """A warning the coordinator shows once, however many workers find it."""
        with self._said_lock:
            if text in self._said:
                return
            self._said.add(text)
        self.tell(Note(text, warning=True))

    def warm_up(self, jobs: int, calls: bool = False) -> None:
        """No more commands than slots run from threads here: a worker process costs a Python
        start-up, more than a few jobs gain from it. Otherwise the worker processes start now,
        while the rest of the run is set up."""
        self._direct = not calls and jobs <= self.slots
        if not self._direct:
            for handle in self._handles[:jobs]:
                handle.start()

    def submit(self, spec: JobSpec) -> None:
        """Send a job spec to the least busy worker process; it starts when that one is free."""
        if self._direct and not spec.call and not spec.warm:
            self._queue(spec.task, self._run_here, spec)
            return
        min(self._handles, key=lambda handle: handle.load).send(spec)

    def submit_task(self, name: str, task, log_path: str, timeout: float | None,
                    attempt: int = 1, tries: int = 1) -> None:
        """A hand-written doit task: in a forked child when it has a timeout; Python actions
        swap sys.stdout to capture output, so they are only safe in this very thread; the
        others run in a thread here."""
        from doit.action import PythonAction  # doit is loaded when a run needs it

        from .doit_tasks import Log, run_doit_task, run_doit_task_in_child

        log = Log(log_path, attempt, tries)
        if timeout is not None:
            self._queue(name, run_doit_task_in_child, task, log, self.root, timeout,
                        self.groups)
        elif any(isinstance(action, PythonAction) for action in task.actions):
            result = run_doit_task(task, log, self.root)
            self.tell(Started(name, result.started))
            self.tell(Finished(replace(result, worker="main")))
        else:
            self._queue(name, run_doit_task, task, log, self.root)

    def _queue(self, name: str, function, *args) -> None:
        """A call in a thread of this process that returns the job's JobResult."""
        if len(self._threads) < self.slots:  # started as needed: most runs need none
            label = f"t{len(self._threads)}"
            thread = threading.Thread(target=self._work, args=(label,),
                                      name=f"incrun-task-{label}", daemon=True)
            self._threads.append(thread)
            thread.start()
        self._todo.put((name, function, args))

    def _run_here(self, spec: JobSpec) -> JobResult:
        """A command run from this thread, its output into the thread's scratch file."""
        if getattr(self._own, "scratch", None) is None and self.logs is not None:
            self._own.scratch = Scratch(self.logs)
        return run_job(spec, str(self.root), time.time, self.groups, self._lookups,
                       getattr(self._own, "scratch", None))

    def _work(self, label: str) -> None:
        try:
            self._serve(label)
        finally:
            if getattr(self._own, "scratch", None) is not None:
                self._own.scratch.close()

    def _serve(self, label: str) -> None:
        while (item := self._todo.get()) is not None:
            name, function, args = item
            if self.stopped:  # taken from the queue as the run stopped: never started
                self.tell(Cancelled(name))
                continue
            started = time.time()
            self.tell(Started(name, started))
            try:
                result = function(*args)
            except Exception as error:  # a bug here must not leave the coordinator waiting
                result = JobResult(name, ERROR, started, time.time(),
                                   detail=f"{type(error).__name__}: {error}")
            self.tell(Finished(replace(result, worker=label)))

    def messages(self, timeout: float | None = None) -> list[Message]:
        return take_messages(self._messages, timeout)

    def _cancel_queued_calls(self) -> None:
        while not self._todo.empty():
            item = self._todo.get()
            if item is not None:
                self.tell(Cancelled(item[0]))

    def hold(self) -> None:
        """Nothing waits here to start under --fail-fast: the coordinator submits no more
        jobs than there are workers, so each one submitted runs at once."""

    def stop(self) -> None:
        """Start nothing more: queued jobs are cancelled, running ones ended (TERM to their
        whole group, KILL after the grace period), in the background."""
        self.stopped = True
        self._cancel_queued_calls()
        threading.Thread(target=self.groups.end_all, daemon=True).start()

    def kill(self) -> None:
        """Every running job's group killed at once."""
        self.groups.kill_all()

    def close(self, kill: bool = False) -> None:
        """Wait for running jobs and close the workers; with `kill`, end the running jobs."""
        self.stopped = True
        self._cancel_queued_calls()
        if kill:
            self.groups.end_all()
        for handle in self._handles:  # all told first: they end at the same time
            handle.ask_to_close()
        for handle in self._handles:
            handle.wait_closed()
        for _ in self._threads:
            self._todo.put(None)
        for thread in self._threads:
            thread.join()
        self.groups.close()


class TasksHere:
    """A remote executor's hand-written dodo.py tasks: Python of the user's, never sent, they
    run on this machine, in a LocalExecutor made when the first one comes, telling the remote
    executor's queue of messages."""

    def __init__(self, root: Path, grace: float, logs: Path | None,
                 messages: queue.SimpleQueue):
        self.root, self.grace, self.logs, self.messages = root, grace, logs, messages
        self.executor: LocalExecutor | None = None

    def submit(self, slots: int, name: str, task, log_path: str, timeout: float | None,
               attempt: int = 1, tries: int = 1) -> None:
        if self.executor is None:
            self.executor = LocalExecutor(max(slots, 1), self.root, self.grace, logs=self.logs,
                                          messages=self.messages)
        self.executor.submit_task(name, task, log_path, timeout, attempt, tries)

    def stop(self) -> None:
        if self.executor is not None:
            self.executor.stop()

    def kill(self) -> None:
        if self.executor is not None:
            self.executor.kill()

    def close(self, kill: bool = False) -> None:
        if self.executor is not None:
            self.executor.close(kill)

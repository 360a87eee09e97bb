"""The Dask executor: jobs on a Dask cluster, an existing scheduler (`tcp://`, `tls://`), a
LocalCluster of worker processes here (`local:N`) or SLURM jobs through dask-jobqueue (`slurm`).

Only a job spec as JSON (and, with --stage, the bytes of its files) crosses to a worker, to be
run by installed incrun code (`dask_worker.run_on_worker`); nothing of the user's is ever
pickled. A guard process on each worker ends the jobs of a worker that dies, which Dask then
runs elsewhere. Dask itself is imported when the cluster is first needed: a run with nothing to
do never loads it."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__, errors
from ..config import DEFAULT_STAGE_LIMIT, Cluster
from ..events import ERROR, FAILED
from ..words import counted
from .contract import Cancelled, Finished, JobSpec, Lost, Note, Started, take_messages
from .groups import DEFAULT_GRACE
from .jobfiles import remove_outputs
from .local import TasksHere
from .remote import result_of
from .staging import bring_back, files_to_send, not_shared, probe_file

if TYPE_CHECKING:
    from distributed import Future


PROBE_TIMEOUT = 60.0  # seconds a worker has to read the probe file
CHECK_EVERY = 0.2  # seconds between looks for tasks that ended without a word
BATCH = 64  # jobs sent in one go, once those sent run low: one round trip, not 64
_REPLACE_LOST = "replace lost workers"  # a message to itself, once a lost worker is gone


@dataclass(frozen=True)
class _Answer:
    """A job's result, as its worker sent it (by the Dask key of its task)."""

    key: str
    values: dict


class DaskExecutor:
    """Runs the coordinator's jobs as Dask tasks, at most `slots` at once: -n if given, else
    every thread of the cluster's workers. The cluster is reached (or started) only when the
    first job comes, so a run with nothing to do never touches it."""

    def __init__(self, cluster: Cluster, root: Path, in_flight: int | None = None,
                 grace: float = DEFAULT_GRACE, stage: bool = False,
                 stage_limit: int = DEFAULT_STAGE_LIMIT, tls: dict | None = None,
                 slurm: dict | None = None, logs: Path | None = None):
        self.cluster = cluster
        self.root = root
        self.slots = in_flight or 0  # known once connected, when not asked for
        self.stopped = False
        self._stop_asked = False  # by a signal: done at the next `messages`
        self._held = False  # --fail-fast, after a failure: nothing more is sent
        self._asked = in_flight
        self._grace = grace
        self._stage, self._limit = stage, stage_limit
        self._logs = logs
        self._settings = tls or {}, slurm or {}
        self._connection = None  # dask_clusters.Connection, once the first job comes
        self._client = None
        self._topic = f"incrun-started-{uuid.uuid4().hex}"
        self._topics: list[str] = []  # of the scheduler's events, those heard
        self._messages: queue.SimpleQueue = queue.SimpleQueue()
        self._todo: list[JobSpec] = []  # submitted, not yet sent
        self._sent: dict[str, tuple[JobSpec, Future]] = {}  # by Dask key
        self._where: dict[str, str] = {}  # the worker running a job, by task
        self._names: dict[str, str] = {}  # workers' names by address (Dask's event thread's)
        self._here = TasksHere(root, grace, logs, self._messages)  # hand-written dodo.py tasks

    # -- the cluster ----------------------------------------------------------------------

    def warm_up(self, jobs: int, calls: bool = False) -> None:
        self._connect(jobs)

    def _connect(self, jobs: int = 0) -> None:
        if self._client is not None or self.stopped:
            return
        try:
            from .dask_clusters import Connection
            from .dask_worker import JobGroups
        except ImportError as error:
            if error.name not in ("dask", "distributed"):
                raise
            raise errors.MissingExtra("dask", "dask", f"--cluster {self.cluster}") from None
        self._connection = Connection(self.cluster, self.root, *self._settings)
        client = self._client = self._connection.open(jobs)
        try:
            if not self._connection.wait_for_a_worker(lambda: self.stopped):
                return
            workers = client.scheduler_info(n_workers=-1)["workers"]
            self._names = {address: str(worker["name"]) for address, worker in workers.items()}
            self.slots = self._asked or self._connection.threads(workers)
            client.register_plugin(JobGroups(self._grace), name=JobGroups.name)
            if not self._stage:
                self._probe()
            for topic, heard in ((self._topic, self._heard_job), ("all", self._heard_cluster)):
                client.subscribe_topic(topic, heard)
                self._topics.append(topic)
        except BaseException:
            self.close(kill=True)
            raise
        self._messages.put(Note(f"on the Dask cluster {self.cluster}: "
                                f"{counted(len(workers), 'worker')} now, "
                                f"{counted(self.slots, 'job')} at once"))

    def _probe(self) -> None:
        """Stop before the first job if the workers do not see the project folder."""
        from distributed.client import FutureCancelledError

        from .dask_worker import read_probe

        with probe_file(self.root) as (probe, token):
            try:
                text, host, version = self._client.submit(
                    read_probe, str(probe), pure=False).result(timeout=PROBE_TIMEOUT)
            except (TimeoutError, OSError, FutureCancelledError) as error:
                raise errors.ClusterError(f"no Dask worker answered within {PROBE_TIMEOUT:g}s "
                                          f"({type(error).__name__})") from None
            except Exception as error:  # the worker cannot run incrun's code at all
                raise errors.ClusterError(f"a Dask worker cannot run incrun: "
                                          f"{type(error).__name__}: {errors.first_line(error)}",
                                          hint=f"pip install incrun=={__version__} on the "
                                               "workers and the scheduler, and restart them"
                                          ) from None
        if version != __version__:
            raise errors.ClusterError(f"stale worker: {host} has incrun {version}, this run "
                                      f"needs {__version__}",
                                      hint=f"pip install incrun=={__version__} on the workers "
                                           "and restart them")
        if text != token:
            raise not_shared("the Dask workers", host, probe)

    def _heard_job(self, event) -> None:
        """From Dask's event thread: a worker started a job, or says how one ended."""
        _, message = event
        if "result" in message:
            self._messages.put(_Answer(message["key"], message["result"]))
        else:
            self._names[message["worker"]] = message["name"]
            self._messages.put(Started(message["task"], message["at"], message["name"]))

    def _heard_cluster(self, event) -> None:
        """From Dask's event thread: a worker joined or left the cluster."""
        _, message = event
        action, address = message.get("action"), message.get("worker", "")
        if action == "add-worker":
            self._names.setdefault(address, "a worker")
            self._messages.put(Note(f"a worker joined: {len(self._names)} now"))
        elif action == "remove-worker":
            busy = bool(self._sent)
            again = " (its jobs run again elsewhere)" if busy else ""
            if self._connection is not None and self._connection.replaces_workers:
                again = " (it is asked for again)"
                threading.Timer(2.0, self._messages.put, (_REPLACE_LOST,)).start()
            name = self._names.pop(address, "a worker")
            self._messages.put(Note(f"{name} left{again}: {len(self._names)} now",
                                    warning=busy))

    # -- jobs -----------------------------------------------------------------------------

    def submit(self, spec: JobSpec) -> None:
        """Queued here, sent with the others of its turn (at the next `messages`)."""
        self._connect()
        if self.stopped:  # stopped while the cluster was being reached
            self._messages.put(Cancelled(spec.task))
            return
        self._todo.append(spec)

    def submit_task(self, name: str, task, log_path: str, timeout: float | None,
                    attempt: int = 1, tries: int = 1) -> None:
        """A hand-written dodo.py task is Python of the user's, never sent: it runs here."""
        self._here.submit(self.slots, name, task, log_path, timeout, attempt, tries)

    @property
    def ahead(self) -> int:
        """A batch, held here and sent in one go (without -n, which caps what is in flight)."""
        return self.slots if self._asked else self.slots + BATCH

    def _send(self) -> None:
        """Send what waits: with -n, as many as keep -n jobs in flight; otherwise all of it,
        for the scheduler to queue, once fewer than two per slot are left: in batches."""
        if self.stopped or self._held or (self._asked is None and self._sent
                                          and len(self._sent) >= 2 * self.slots):
            return
        self._connection.grow(len(self._todo) + len(self._sent))
        room = len(self._todo) if self._asked is None else self._asked - len(self._sent)
        todo, self._todo = self._todo[:room], self._todo[room:]
        sendable, staged = [], []
        for spec in todo:
            files, why = files_to_send(self.root, spec, self._limit) if self._stage else (None, "")
            if why:
                self._messages.put(Finished.unanswered(spec, ERROR, why))
                continue
            sendable.append(spec)
            staged.append(files)
        if not sendable:
            return
        keys = [f"incrun-{spec.task}-{spec.attempt}-{uuid.uuid4().hex[:8]}" for spec in sendable]
        staging = [staged] if self._stage else []
        from .dask_worker import run_on_worker

        futures = self._client.map(run_on_worker, [spec.to_json() for spec in sendable],
                                   *staging, root=str(self.root), topic=self._topic,
                                   limit=self._limit, key=keys, pure=False)
        for spec, future in zip(sendable, futures):
            self._sent[future.key] = (spec, future)

    def messages(self, timeout: float | None = None) -> list:
        if self._todo:
            self._send()
        found = self._take(timeout)
        if self._stop_asked:
            self._stop_asked = False
            self._cancel_all()
            found += take_messages(self._messages, 0)
        if _REPLACE_LOST in found and not self.stopped:
            self._connection.replace_lost_workers()
        messages = []
        for item in found:
            if isinstance(item, _Answer):
                if item.key in self._sent:
                    messages.append(self._answered(item))
            elif isinstance(item, Started):
                self._where[item.task] = item.worker
                messages.append(item)
            elif not isinstance(item, str):
                messages.append(item)
        done = [future for _, future in self._sent.values() if self._ended_unheard(future)]
        if done:
            messages.extend(self._results(done))
        for message in messages:
            if isinstance(message, Finished):
                self._where.pop(message.task, None)
        if self._todo and not self.stopped:  # places freed: the next jobs go
            self._send()
        return messages

    def _take(self, timeout: float | None) -> list:
        """What the workers and the cluster said, waiting at most `timeout`; a task that ends
        without a word (staged, failed, its worker or the scheduler lost) is found by looking
        at the futures every CHECK_EVERY seconds: no callback per job."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = CHECK_EVERY if deadline is None else min(CHECK_EVERY,
                                                            deadline - time.monotonic())
            found = take_messages(self._messages, max(step, 0))
            if found or self._stop_asked or (
                    deadline is not None and time.monotonic() >= deadline):
                return found
            if any(self._ended_unheard(future) for _, future in self._sent.values()):
                return found

    def _ended_unheard(self, future: Future) -> bool:
        """A task that ended, and will send no answer of its own (see run_on_worker)."""
        return future.status in ("error", "cancelled", "lost") or (
            self._stage and future.status == "finished")

    def _answered(self, answer: _Answer) -> Finished:
        self._sent.pop(answer.key)
        return Finished(result_of(answer.values))

    def _results(self, done: list[Future]) -> list:
        """Tasks that ended without an answer of their own yet: staged ones (their result is
        fetched, with the outputs), failed or cancelled ones."""
        from distributed.client import FutureCancelledError

        done = [future for future in done if future.key in self._sent]
        finished = [future for future in done if future.status == "finished" and self._stage]
        try:
            values = self._client.gather({future.key: future for future in finished},
                                         errors="skip") if finished else {}
        except (OSError, FutureCancelledError):
            values = {}  # the scheduler went: the futures below say so
        messages = []
        if not self.stopped and any(future.status == "cancelled" for future in done):
            # Nothing of this run cancels a task but a stop: the scheduler is gone.
            messages.append(Lost(f"lost the Dask scheduler at {self.cluster}"))
            self.stopped = True
        for key, (answer, made) in values.items():
            spec, _ = self._sent.pop(key)
            messages.append(Finished(bring_back(self.root, spec, result_of(answer), made)))
        for future in done:  # failed, or a staged result that could not be fetched
            if future.key in self._sent and future.key not in values:
                spec, _ = self._sent.pop(future.key)
                failed = self._failed(spec, future)
                if failed is not None:
                    messages.append(failed)
        return messages

    def _failed(self, spec: JobSpec, future: Future) -> Finished | None:
        """A task that did not return: its worker kept dying, or the cluster is gone; None
        if its worker was lost before the job started, and it goes again."""
        if future.status == "cancelled" or self.stopped:
            return Finished.unanswered(spec, FAILED, "stopped")
        from distributed import KilledWorker

        error = future.exception()
        if isinstance(error, KilledWorker) and spec.task not in self._where:
            self._todo.insert(0, spec)  # queued on a worker that went: it never started
            return None
        remove_outputs(spec.outputs, self.root)  # what its dead process left: a failure's
        if isinstance(error, KilledWorker):  # Dask gave up running it elsewhere
            why = self._connection.why_lost(self._where.get(spec.task, ""))
            return Finished.unanswered(spec, FAILED, why or "the worker process was killed, "
                                                            "each time Dask ran it")
        return Finished.unanswered(spec, ERROR,
                                   f"{type(error).__name__}: {errors.first_line(error)}")

    # -- the end ----------------------------------------------------------------------------

    def _cancel_all(self) -> None:
        """Every task sent is cancelled: its worker ends the job's group (see run_on_worker)."""
        sent, self._sent = list(self._sent.values()), {}
        if self._client is not None and self._client.status == "running" and sent:
            try:
                self._client.cancel([future for _, future in sent])
            except (OSError, RuntimeError):
                pass  # the scheduler is gone: so is every task
        for spec, _ in sent:  # none is known not to have started: none may be adopted
            self._messages.put(Finished.unanswered(spec, FAILED, "stopped"))
        for spec in self._todo:
            self._messages.put(Cancelled(spec.task))
        self._todo = []

    def stop(self) -> None:
        """Asked from a signal handler, maybe in the middle of `messages`: the tasks are
        cancelled by the next `messages`, at a point where nothing else is counting them."""
        self.stopped = self._stop_asked = True
        self._here.stop()

    def kill(self) -> None:
        """A second Ctrl-C: incrun exits at once; what runs is cancelled now, and SLURM jobs
        are given back, not left to start idle."""
        self.stopped = True
        self._cancel_all()
        if self._connection is not None:
            self._connection.kill()
        self._here.kill()

    def hold(self) -> None:
        """--fail-fast after a failure: the jobs sent that have not started are taken back
        (Cancelled); those running finish."""
        self._held = True
        for key, (spec, future) in list(self._sent.items()):
            if spec.task not in self._where:
                future.cancel()
                del self._sent[key]
                self._messages.put(Cancelled(spec.task))
        for spec in self._todo:
            self._messages.put(Cancelled(spec.task))
        self._todo = []

    def close(self, kill: bool = False) -> None:
        self.stopped = True
        if kill:
            self._cancel_all()
        self._here.close(kill)
        client, self._client = self._client, None
        if client is not None:
            for topic in self._topics:
                try:
                    client.unsubscribe_topic(topic)
                except (ValueError, OSError, RuntimeError):
                    pass
        if self._connection is not None:
            self._connection.close()

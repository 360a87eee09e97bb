"""The broker executors' coordinator side: jobs sent through a broker a lab already runs (Celery
over RabbitMQ or Redis, RQ over Redis) to `incrun worker` processes, which answer through a
reply queue (see `broker_worker`). What differs between Celery and RQ is a `Link`; what a
job's life is (sent, started, alive, finished, lost and sent again, dropped) lives here once.

The broker's own redelivery is not relied on (Redis takes its visibility timeout, an hour by
default, to hand back a dead worker's job): a running job says it is alive every few seconds;
one silent for LOST_AFTER seconds was lost with its worker, and is sent again under a new
attempt, its lost attempt superseded (its result, should it come, is ignored; its worker, should
it be cut off only, ends it as its lease lapses). The coordinator renews its run's lease every
RENEW seconds: a stop ends it at once, a killed incrun lets it lapse, and either way the
workers end the run's jobs and drop its queued ones."""

from __future__ import annotations

import base64
import queue
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from .. import __version__, broker_urls, errors
from ..config import DEFAULT_STAGE_LIMIT, Cluster
from ..events import ERROR, FAILED, JobResult
from ..words import counted
from .broker_worker import HEARTBEAT
from .contract import Cancelled, Finished, JobSpec, Lost, Note, Started, take_messages
from .groups import DEFAULT_GRACE
from .jobfiles import remove_outputs
from .local import TasksHere
from .remote import result_of
from .staging import bring_back, files_to_send, not_shared, probe_file

RENEW = 2.0  # seconds between renewals of the run's lease
LEASE_TTL = 10.0  # seconds a worker keeps a run's lease after it last heard it renewed
# A running job unheard for LEASE_TTL + its grace + a heartbeat counts as lost: by then a worker
# only cut off has ended it itself (TERM, KILL after the grace), so it never runs twice at once.
MOST_LOSSES = 2  # times a job may lose its worker; then it fails (it may be what kills them)
FIND_WORKERS = 10.0  # seconds to wait for a worker on the queue before saying there is none
LOOK_AGAIN = 15.0  # seconds between looks for workers joining, leaving, or stale
PROBE_TIMEOUT = 30.0  # seconds a worker has to answer the shared-folder probe
CHECK_EVERY = 1.0  # seconds between looks for jobs gone silent
STOP_WAIT = 10.0  # seconds past the grace period to wait for stopped jobs to say they ended


@dataclass(frozen=True)
class Listener:
    """A worker taking jobs from one of the project's queues."""

    name: str
    host: str
    version: str  # of incrun, told by the queue it listens on
    slots: int


class Link(Protocol):
    """One broker engine (Celery, RQ), as the coordinator uses it."""

    engine: str  # "celery", "rq": the extra that installs it
    queue: str  # the base queue; the workers of this incrun listen on its versioned name

    def open(self, inbox: queue.SimpleQueue) -> None:
        """Connect (or raise ClusterError); replies go to `inbox` as dicts from now on, and
        Lost if the broker is lost."""

    def listeners(self) -> list[Listener]:
        """The workers listening on any version of the queue."""

    def send(self, message: dict, spec: JobSpec) -> None:
        """Queue the message for a worker of this incrun version."""

    def renew(self, alive: bool, ended: list[str]) -> None:
        """The run's lease: renewed (alive), or ended now; `ended` are message ids whose jobs
        must not run (superseded, or taken back)."""

    def take_back(self, ids: list[str]) -> None:
        """Remove these messages from the queue, if still there."""

    def close(self) -> None:
        """Leave nothing of this run in the broker; disconnect."""


@dataclass
class _Sent:
    """A message on its way: its job, and what was heard of it."""

    spec: JobSpec
    heard: float | None = None  # monotonic time a worker last spoke of it; None: none has
    started: bool = False  # its process runs (a worker may have taken it, and not started it)
    worker: str = ""
    losses: int = 0


ENGINE_LIBRARIES = ("celery", "kombu", "amqp", "billiard", "rq", "redis")


def engine_module(kind: str, needed_for: str):
    """The module of a broker engine, "celery" or "rq" (`celery_broker`, `rq_broker`); if
    its library is not installed, one line naming the extra that brings it."""
    try:
        if kind == "celery":
            from . import celery_broker as module
        else:
            from . import rq_broker as module
    except ImportError as error:
        if error.name is not None and error.name.split(".")[0] not in ENGINE_LIBRARIES:
            raise
        raise errors.MissingExtra(kind, kind, needed_for) from None
    return module


def make_link(cluster: Cluster, root: Path, queue_name: str | None, run: str) -> Link:
    own = broker_urls.default_queue(root)
    module = engine_module(cluster.kind, f"--cluster {cluster}")
    if cluster.kind == "celery":
        return module.CeleryLink(cluster.url, queue_name or own, run, own)
    return module.RQLink(cluster.url, queue_name or own, run)


class BrokerExecutor:
    """Runs the coordinator's jobs on `incrun worker` processes through a broker, at most
    `slots` at once: -n if given, else every worker's. The broker is reached only when the
    first job comes: a run with nothing to do, or --dry-run, never contacts it."""

    def __init__(self, cluster: Cluster, root: Path, in_flight: int | None = None,
                 grace: float = DEFAULT_GRACE, stage: bool = False,
                 stage_limit: int = DEFAULT_STAGE_LIMIT, queue_name: str | None = None,
                 logs: Path | None = None):
        self.cluster = cluster
        self.root = root
        self.slots = in_flight or 0
        self.stopped = False
        self._asked = in_flight
        self._grace = grace
        self._lost_after = LEASE_TTL + grace + HEARTBEAT
        self._stage, self._limit = stage, stage_limit
        self._queue_name = queue_name
        self._logs = logs
        self._run = uuid.uuid4().hex[:12]
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._link: Link | None = None
        self._linked = False  # the link opened: there is a lease to end, a queue to clean
        self._gone = False  # the broker was lost: nothing more is asked of it
        self._sent: dict[str, _Sent] = {}  # by message id
        self._todo: list[JobSpec] = []  # with -n: submitted, sent once fewer than -n are out
        self._count = 0  # messages sent: the next id
        self._ended: list[str] = []  # ids whose jobs must not run
        self._stop_asked = False  # by a signal: done at the next `messages`
        self._stop_deadline: float | None = None
        self._held = False
        self._known: dict[str, Listener] = {}  # workers heard of, by name
        self._renewer: threading.Thread | None = None
        self._quit = threading.Event()
        self._here = TasksHere(root, grace, logs, self._inbox)  # hand-written dodo.py tasks

    # -- the broker -----------------------------------------------------------------------

    def warm_up(self, jobs: int, calls: bool = False) -> None:
        self._connect()

    def _connect(self) -> None:
        if self._link is not None or self.stopped:
            return
        self.cluster = self.cluster.resolved()
        self._link = make_link(self.cluster, self.root, self._queue_name, self._run)
        try:
            self._link.open(self._inbox)
            self._linked = True
            self._link.renew(True, [])
            listeners = self._wait_for_workers()
            if self.stopped:  # Ctrl-C while waiting: what was submitted is Cancelled
                return
            self.slots = self._asked or sum(listener.slots for listener in listeners)
            if not self._stage:
                self._probe()
        except BaseException:
            self.close(kill=True)
            raise
        self._renewer = threading.Thread(target=self._renew, daemon=True,
                                         name="incrun-lease")
        self._renewer.start()
        self._inbox.put(Note(f"on the {self._link.engine} broker {self.cluster}, queue "
                             f"{self._link.queue}: {counted(len(listeners), 'worker')}, "
                             f"{counted(self.slots, 'job')} at once"))

    def _wait_for_workers(self) -> list[Listener]:
        """The workers of this incrun on the queue, once one is there; stale ones are named."""
        deadline = time.monotonic() + FIND_WORKERS
        while True:
            current = self._look_for_workers()
            if current or time.monotonic() > deadline or self.stopped:
                break
            time.sleep(0.5)
        if current or self.stopped:
            return current
        link = self._link
        stale = [listener for listener in self._known.values()
                 if listener.version != __version__]
        hint = (f"start one: incrun worker --broker URL -Q {link.queue}"
                + (" --rq" if link.engine == "rq" else ""))
        if stale:
            raise errors.ClusterError(f"no worker with incrun {__version__} listens on queue "
                                      f"{link.queue}: only stale ones "
                                      f"({_stale_words(stale[0])})",
                                      hint=f"pip install incrun=={__version__} on the workers "
                                           "and restart them")
        raise errors.ClusterError(f"no worker listens on queue {link.queue} at "
                                  f"{self.cluster} (waited {FIND_WORKERS:g}s)", hint=hint)

    def _look_for_workers(self) -> list[Listener]:
        """The workers of this incrun on the queue; a Note for each one new or stale."""
        listeners = self._link.listeners()
        for listener in listeners:
            if listener.name in self._known:
                continue
            self._known[listener.name] = listener
            if listener.version != __version__:
                self._inbox.put(Note(_stale_words(listener) + " — restart it", warning=True))
            elif self._renewer is not None:
                self._inbox.put(Note(f"a worker joined: {listener.name}"))
        return [listener for listener in listeners if listener.version == __version__]

    def _probe(self) -> None:
        """Stop before the first job if the workers do not see the project folder."""
        message_id = self._next_id()
        with probe_file(self.root) as (probe, token):
            self._link.send({"run": self._run, "id": message_id, "probe": str(probe)},
                            JobSpec("probe", ("probe",), (), ""))
            answer = self._await_probe(message_id)
        if answer is None:
            raise errors.ClusterError(f"no worker answered within {PROBE_TIMEOUT:g}s on queue "
                                      f"{self._link.queue}")
        if answer.get("text") != token:
            raise not_shared("the workers", str(answer.get("host")), probe)

    def _await_probe(self, message_id: str) -> dict | None:
        deadline = time.monotonic() + PROBE_TIMEOUT
        others = []
        try:
            while (left := deadline - time.monotonic()) > 0:
                for item in take_messages(self._inbox, left):
                    if isinstance(item, dict) and item.get("id") == message_id:
                        return item
                    others.append(item)
            return None
        finally:
            for item in others:
                self._inbox.put(item)

    def _renew(self) -> None:
        """The lease thread: renews the run's lease, and looks for workers now and then."""
        looked, told, failing = time.monotonic(), False, False
        while not self._quit.wait(RENEW) and not self._gone:
            try:
                self._link.renew(True, list(self._ended))
                failing = False
                if time.monotonic() - looked > LOOK_AGAIN:
                    looked = time.monotonic()
                    listening = bool(self._look_for_workers())
                    waiting = sum(not sent.started for sent in list(self._sent.values()))
                    if not listening and waiting and not told:
                        self._inbox.put(Note(f"no worker listens on queue {self._link.queue} "
                                             f"now: {counted(waiting, 'job')} wait for one",
                                             warning=True))
                    told = not listening
            except Exception as error:  # noqa: BLE001 - the broker went: the reader says so
                if not failing:
                    self._inbox.put(Note(f"cannot renew the run's lease: "
                                         f"{broker_urls.said(error, self.cluster.url)}",
                                         warning=True))
                failing = True

    def _next_id(self) -> str:
        self._count += 1
        return f"{self._run}-{self._count}"

    # -- jobs -----------------------------------------------------------------------------

    @property
    def ahead(self) -> int:
        """Jobs queued in the broker beyond those running: one per slot, so that a worker
        that ends a job finds the next at once; none with -n, which caps those sent."""
        return 0 if self._asked else self.slots

    def submit(self, spec: JobSpec) -> None:
        self._connect()
        if self.stopped or self._held:
            self._inbox.put(Cancelled(spec.task))
            return
        self._todo.append(spec)
        self._send_waiting()

    def _send_waiting(self) -> None:
        """What waits, sent: all of it, or with -n as many as keep -n jobs out."""
        while self._todo and not (self.stopped or self._held) and (
                self._asked is None or len(self._sent) < self._asked):
            self._send(self._todo.pop(0))

    def _send(self, spec: JobSpec, losses: int = 0) -> None:
        """One message for the job (`losses`: the workers it lost before this one)."""
        message = {"run": self._run, "id": self._next_id(), "spec": spec.to_json(),
                   "root": str(self.root), "grace": self._grace}
        if self._stage:
            files, why = files_to_send(self.root, spec, self._limit)
            if why:
                self._inbox.put(Finished.unanswered(spec, ERROR, why))
                return
            message.update(files={path: base64.b64encode(data).decode()
                                  for path, data in files.items()}, limit=self._limit)
        try:
            self._link.send(message, spec)
        except Exception as error:  # noqa: BLE001 - the broker went: the run ends, as it is
            self._lose(error)
            self._inbox.put(Cancelled(spec.task))
            return
        self._sent[message["id"]] = _Sent(spec, losses=losses)

    def _lose(self, error: BaseException) -> None:
        """The broker is gone: one line, and nothing more is asked of it."""
        if not self._gone:
            self._gone = True
            self._inbox.put(Lost(broker_urls.lost(self.cluster.url, error)))

    def submit_task(self, name: str, task, log_path: str, timeout: float | None,
                    attempt: int = 1, tries: int = 1) -> None:
        """A hand-written dodo.py task is Python of the user's, never sent: it runs here."""
        self._here.submit(self.slots, name, task, log_path, timeout, attempt, tries)

    def messages(self, timeout: float | None = None) -> list:
        if self._stop_asked:
            self._stop_asked = False
            self._stop_now()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = CHECK_EVERY if deadline is None else min(CHECK_EVERY,
                                                            max(deadline - time.monotonic(), 0))
            messages = []
            for item in take_messages(self._inbox, wait):
                if isinstance(item, Lost):
                    self._gone = True
                messages.extend(self._heard(item) if isinstance(item, dict) else [item])
            messages.extend(self._silent())
            self._send_waiting()
            if messages or self._stop_asked or (
                    deadline is not None and time.monotonic() >= deadline):
                return messages

    def _heard(self, reply: dict) -> list:
        """What one reply from a worker means to the coordinator (often nothing)."""
        sent = self._sent.get(reply.get("id", ""))
        if sent is None:
            return []  # superseded, stopped, or another run's: its result is not this run's
        kind, worker = reply.get("kind"), str(reply.get("worker", ""))
        if kind == "started":
            sent.heard, sent.worker, sent.started = time.monotonic(), worker, True
            return [Started(sent.spec.task, float(reply.get("at", time.time())), worker)]
        if kind in ("taken", "alive"):  # a worker holds it: silence from now on is a loss
            sent.heard = time.monotonic()
            sent.worker = sent.worker or worker
            return []
        if kind == "finished":
            del self._sent[reply["id"]]
            return [Finished(self._result(sent.spec, reply))]
        if kind == "dropped" and not self.stopped and (  # it never ran: it goes again
                not sent.started or time.monotonic() - sent.heard > self._lost_after):
            return self._again(reply["id"], sent, lost=False)
        return []

    def _result(self, spec: JobSpec, reply: dict) -> JobResult:
        """The job's result as its worker told it; a reply that is not one is the job's error
        (anyone who may write to the broker can send one)."""
        try:
            values = {**reply["result"], "worker": str(reply.get("worker", "")) or None}
            result = result_of(values)
            if result.name != spec.task:
                raise ValueError(f"a result for {result.name}")
            made = {path: base64.b64decode(data) for path, data in reply.get("made", {}).items()}
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            remove_outputs(spec.outputs, self.root)
            return Finished.unanswered(spec, ERROR, f"its worker's answer made no sense: "
                                                    f"{errors.first_line(error)}").result
        if "made" not in reply:
            return result
        return bring_back(self.root, spec, result, made)

    def _silent(self) -> list:
        """Jobs that started and went silent: lost with their worker."""
        now = time.monotonic()
        lost = [(message_id, sent) for message_id, sent in self._sent.items()
                if sent.heard is not None and now - sent.heard > self._lost_after]
        messages = []
        for message_id, sent in lost:
            messages.extend(self._again(message_id, sent, lost=True))
        if self._stop_deadline is not None and now > self._stop_deadline:
            for message_id in list(self._sent):  # stopped, and never said it ended
                spec = self._sent.pop(message_id).spec
                messages.append(Finished.unanswered(spec, FAILED, "stopped"))
        return messages

    def _again(self, message_id: str, sent: _Sent, lost: bool) -> list:
        """Send the job once more under a new id (and, if it ran, a new attempt); the old
        message is superseded: its worker ends it, and its result is ignored."""
        del self._sent[message_id]
        self._ended.append(message_id)
        spec = sent.spec
        if self.stopped or self._gone:  # not sent again: the run is ending
            remove_outputs(spec.outputs, self.root)
            return [Finished.unanswered(spec, FAILED, "stopped", sent.worker)]
        if not lost:
            self._send(spec, sent.losses)
            return []
        remove_outputs(spec.outputs, self.root)
        losses = sent.losses + 1
        worker = sent.worker or "its worker"
        if losses >= MOST_LOSSES:
            return [Finished.unanswered(spec, FAILED, f"its worker was lost while it ran, "
                                        f"{losses} times (last {worker}): killed, or cut off",
                                        sent.worker)]
        again = replace(spec, attempt=spec.attempt + 1, tries=max(spec.tries, spec.attempt + 1))
        self._send(again, losses)
        return [Note(f"{worker} went silent while running {spec.task}: sent again as attempt "
                     f"{again.attempt}", warning=True)]

    # -- the end --------------------------------------------------------------------------

    def _take_back_queued(self) -> None:
        """Jobs sent that have not started: taken from the queue, dropped by any worker that
        holds one already, and Cancelled."""
        for spec in self._todo:
            self._inbox.put(Cancelled(spec.task))
        self._todo = []
        queued = [message_id for message_id, sent in self._sent.items() if not sent.started]
        self._ended.extend(queued)
        if self._linked and queued and not self._gone:
            try:
                self._link.renew(not self.stopped, list(self._ended))
                self._link.take_back(queued)
            except Exception:  # noqa: BLE001 - the broker is gone: so is what it held
                pass
        for message_id in queued:
            self._inbox.put(Cancelled(self._sent.pop(message_id).spec.task))

    def _stop_now(self) -> None:
        """The lease ends: workers end this run's running jobs (each then says it finished)
        and drop its queued ones."""
        self._take_back_queued()
        self._stop_deadline = time.monotonic() + self._grace + STOP_WAIT
        self._end_lease()

    def stop(self) -> None:
        """Asked from a signal handler: done at the next `messages`."""
        self.stopped = self._stop_asked = True
        self._here.stop()

    def hold(self) -> None:
        """--fail-fast after a failure: what has not started is taken back; what runs ends."""
        self._held = True
        self._take_back_queued()

    def kill(self) -> None:
        """A second Ctrl-C, from the signal handler: incrun exits now. Nothing is asked of the
        broker (it may not answer): the lease, no longer renewed, lapses within LEASE_TTL, and
        the workers then end this run's jobs and drop its queued ones."""
        self.stopped = True
        self._quit.set()
        for spec in self._todo:
            self._inbox.put(Cancelled(spec.task))
        self._todo = []
        for message_id in list(self._sent):
            spec = self._sent.pop(message_id).spec
            self._inbox.put(Finished.unanswered(spec, FAILED, "stopped"))
        self._here.kill()

    def _end_lease(self) -> None:
        self._quit.set()
        if self._linked and not self._gone:
            try:
                self._link.renew(False, list(self._ended))
            except Exception:  # noqa: BLE001 - the broker is gone: the lease lapses itself
                pass

    def close(self, kill: bool = False) -> None:
        self.stopped = True
        if kill:
            self._take_back_queued()
            self.kill()
        self._here.close(kill)
        self._end_lease()
        if self._renewer is not None:
            self._renewer.join()
        link, self._link = self._link, None
        if link is not None:
            link.close()


def _stale_words(listener: Listener) -> str:
    return (f"stale worker {listener.host}: incrun {listener.version}, this run needs "
            f"{__version__}")

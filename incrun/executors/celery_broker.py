"""Celery, over the RabbitMQ or Redis a lab already runs: incrun's installed task `incrun.job`
(the worker side, `serve`) and the coordinator's `CeleryLink`.

Messages are JSON only (Celery accepts nothing else here, so nothing read from the broker can
run code), acknowledged late, rejected if their worker is lost, one prefetched per thread. The
worker runs a pool of threads: each job is a process of its own, and the threads share what the
coordinator broadcasts (its run's lease) with the jobs they watch. Task events are on, so
flower shows every job as `incrun.job` with its name."""

from __future__ import annotations

import json
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass, field

import kombu
from celery import Celery
from celery.worker.control import control_command, inspect_command

from .. import __version__, broker_urls, errors
from .broker import LEASE_TTL, Listener
from .broker_worker import ALIVE, ENDED, UNKNOWN, hello, run_message
from .contract import JobSpec, Lost
from .groups import DEFAULT_GRACE, ProcessGroups

TASK = "incrun.job"
PROBE = "incrun.probe"  # is the project folder shared? (flower lists it apart from the jobs)
HELLO_TIMEOUT = 0.5  # seconds workers have to answer who they are (all of it is waited)
REPLY_EXPIRES = 120_000  # ms: RabbitMQ deletes a reply queue unused this long (incrun killed)
SETTINGS = {
    "task_serializer": "json", "result_serializer": "json", "event_serializer": "json",
    "accept_content": ["json"], "result_accept_content": ["json"],
    "task_acks_late": True, "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1, "task_ignore_result": True,
    # Task events for flower; not a "sent" event per job, a second publish in incrun's loop.
    "worker_send_task_events": True,
    "broker_connection_retry_on_startup": False, "broker_connection_max_retries": 3,
    "broker_connection_timeout": broker_urls.CONNECT_TIMEOUT,
    # incrun finds a lost job itself, in seconds: Redis must not hand it out again after its
    # visibility timeout (an hour by default), when it may still run elsewhere.
    "broker_transport_options": {"visibility_timeout": 30 * 24 * 3600},
    "worker_hijack_root_logger": False,
    # Broadcasts (the lease, the hello) go to incrun's workers only: a lab's other Celery
    # workers on the same broker would log an unknown command at each one.
    "control_exchange": "incrun",
}


@dataclass
class WorkerState:
    """What a worker's threads share: the leases heard, and its jobs' process groups."""

    groups: ProcessGroups | None = None
    name: str = "a worker"  # as the user named it (--name), shown in the display and history
    _leases: dict = field(default_factory=dict)  # run: (alive, monotonic deadline)
    _ended: dict = field(default_factory=dict)  # run: ids whose jobs must not run
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def heard(self, run: str, alive: bool, ttl: float, ended: list[str]) -> None:
        with self._lock:
            now = time.monotonic()
            self._leases = {key: value for key, value in self._leases.items()
                            if value[1] > now - 3600}  # runs long over are forgotten
            self._ended = {key: value for key, value in self._ended.items()
                           if key in self._leases}
            was = self._leases.get(run)
            if was is not None and not was[0]:
                alive = False  # ended stays ended: a late renewal must not revive it
            self._leases[run] = (alive, now + ttl)
            self._ended.setdefault(run, set()).update(ended)

    def state(self, run: str, message_id: str) -> str:
        with self._lock:
            lease = self._leases.get(run)
            if lease is None:
                return UNKNOWN
            if message_id in self._ended.get(run, ()):
                return ENDED
            alive, deadline = lease
            return ALIVE if alive and time.monotonic() < deadline else ENDED


def make_app(url: str) -> Celery:
    app = Celery("incrun", broker=url, set_as_current=False)
    app.conf.update(SETTINGS)
    app.incrun = WorkerState()

    def job(self, name: str, message: dict) -> None:
        """One job: `name` is there for people (flower shows it); `message` says it all."""
        delivery, holder = self.request.delivery_info or {}, self.app.incrun
        run_message(message, lambda reply: _publish(self.app, message["reply"], reply),
                    holder, holder.name, holder.groups,
                    redelivered=bool(delivery.get("redelivered")))

    app.task(name=TASK, bind=True)(job)
    app.task(name=PROBE, bind=True)(job)
    return app


def _publish(app: Celery, reply_queue: str, body: dict) -> None:
    with app.producer_pool.acquire(block=True) as producer:
        producer.publish(body, exchange="", routing_key=reply_queue, serializer="json",
                         retry=True, retry_policy={"max_retries": 3})


@control_command(args=[("run", str), ("alive", bool), ("ttl", float), ("ended", list)])
def incrun_lease(state, run: str, alive: bool, ttl: float, ended: list) -> None:
    """The coordinator's broadcast: its run's lease, renewed (or ended), and the messages of
    that run that must not run."""
    holder = getattr(state.consumer.app, "incrun", None)
    if holder is not None:
        holder.heard(run, alive, ttl, ended)


@inspect_command()
def incrun_hello(state) -> dict:
    """Who this worker is: its incrun, its queues and threads."""
    consumer = state.consumer
    queues = [q.name for q in consumer.task_consumer.queues] if consumer.task_consumer else []
    holder = getattr(consumer.app, "incrun", None)
    return hello(queues, consumer.pool.limit if consumer.pool else 0,
                 holder.name if holder is not None else state.hostname)


# -- the worker -------------------------------------------------------------------------------


def _reached(connection):
    """The connection, made: tried once more at once if it fails, not in Celery's loop."""
    connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2,
                                 interval_max=0.2, timeout=broker_urls.CONNECT_TIMEOUT)
    return connection


def check_broker(app: Celery, url: str) -> None:
    """One line, not a retry loop, when the broker cannot be reached or refuses us."""
    try:
        with app.connection_for_write() as connection:
            _reached(connection)
    except Exception as error:  # noqa: BLE001 - socket, AMQP and Redis errors alike
        raise broker_urls.unreachable(url, error) from None


def serve(url: str, queue_name: str, concurrency: int, name: str | None = None) -> int:
    """`incrun worker --broker URL`: a Celery worker taking this incrun's jobs from the queue,
    until stopped (Ctrl-C or SIGTERM: it finishes its jobs first, as Celery's workers do)."""
    app = make_app(url)
    check_broker(app, url)
    app.incrun.groups = ProcessGroups(DEFAULT_GRACE)
    name = app.incrun.name = name or f"incrun-{os.getpid()}@{socket.gethostname()}"
    node = name if "@" in name else f"{name}@{socket.gethostname()}"  # Celery's form
    listen = broker_urls.versioned(queue_name, __version__)
    print(f"incrun worker {name}: {concurrency} at once, queue {queue_name}, broker "
          f"{broker_urls.masked(url)}", flush=True)
    try:
        app.worker_main(["worker", "-P", "threads", "-c", str(concurrency), "-Q", listen,
                         "-E", "--without-gossip", "--without-mingle", "-n", node,
                         "-l", "INFO"])
    finally:
        app.incrun.groups.end_all()
        app.incrun.groups.close()
    return errors.OK


# -- the coordinator --------------------------------------------------------------------------


class CeleryLink:
    """The coordinator's side of Celery: jobs sent as `incrun.job` tasks, replies read from a
    queue of this run's own, the lease broadcast to the workers."""

    engine = "celery"

    def __init__(self, url: str, queue_name: str, run: str, own_queue: str = ""):
        self.url, self.queue, self.run = url, queue_name, run
        self._own_queue = own_queue  # the project's default queue
        self._listen = broker_urls.versioned(queue_name, __version__)
        self._app = make_app(url)
        self._reply = f"incrun.reply.{run}"
        self._reader: threading.Thread | None = None
        self._quit = threading.Event()
        self._ended_sent = 0

    def _reply_queue(self) -> kombu.Queue:
        arguments = {"x-expires": REPLY_EXPIRES} if self.url.startswith(("amqp", "pyamqp")) \
            else None
        return kombu.Queue(self._reply, exchange=kombu.Exchange(""), routing_key=self._reply,
                           durable=False, auto_delete=False, queue_arguments=arguments)

    def open(self, inbox: queue.SimpleQueue) -> None:
        check_broker(self._app, self.url)
        connection = self._app.connection_for_read()
        try:
            self._reply_queue()(connection.default_channel).declare()
        except Exception as error:  # noqa: BLE001
            connection.release()
            raise errors.ClusterError(f"cannot make a reply queue at "
                                      f"{broker_urls.masked(self.url)}: "
                                      f"{broker_urls.said(error, self.url)}"
                                      ) from None
        self._reader = threading.Thread(target=self._read, args=(connection, inbox),
                                        daemon=True, name="incrun-replies")
        self._reader.start()

    def _read(self, connection, inbox: queue.SimpleQueue) -> None:
        """The reader thread: every reply, as a dict, into the inbox."""

        def heard(body, message) -> None:
            inbox.put(body if isinstance(body, dict) else json.loads(body))

        try:
            with connection, kombu.Consumer(connection.default_channel, [self._reply_queue()],
                                            callbacks=[heard], accept=["json"], no_ack=True):
                while not self._quit.is_set():
                    try:
                        connection.drain_events(timeout=0.5)
                    except TimeoutError:
                        continue
        except Exception as error:  # noqa: BLE001 - the broker went
            if not self._quit.is_set():
                inbox.put(Lost(broker_urls.lost(self.url, error)))

    def listeners(self) -> list[Listener]:
        found = []
        answers = self._app.control.broadcast("incrun_hello", reply=True,
                                              timeout=HELLO_TIMEOUT) or []
        for answer in answers:
            for name, about in answer.items():
                if not isinstance(about, dict):
                    continue
                for queue_name in about.get("queues", ()):
                    version = broker_urls.version_of(queue_name, self.queue)
                    if version is not None:
                        found.append(Listener(name, str(about.get("host", name)), version,
                                              int(about.get("slots", 1))))
        return found

    def send(self, message: dict, spec: JobSpec) -> None:
        self._app.send_task(PROBE if "probe" in message else TASK,
                            args=[spec.task, {**message, "reply": self._reply}],
                            queue=self._listen, task_id=message["id"],
                            argsrepr=repr([spec.task]), kwargsrepr="{}")

    def renew(self, alive: bool, ended: list[str]) -> None:
        self._app.control.broadcast("incrun_lease", reply=False, arguments={
            "run": self.run, "alive": alive, "ttl": LEASE_TTL, "ended": ended})

    def take_back(self, ids: list[str]) -> None:
        """AMQP cannot take single messages back: a queue of this project's own (the default)
        is emptied; a shared one (`queue`) is left to the workers, who drop these messages
        unrun, as the ended ids tell them."""
        if self.queue != self._own_queue:
            return
        with self._app.connection_for_write() as connection:
            kombu.Queue(self._listen, channel=_reached(connection).default_channel).purge()

    def close(self) -> None:
        self._quit.set()  # the reader sees it at its next wait (Redis' is a second): not waited
        if self._reader is None:  # never reached the broker: nothing of this run is there
            self._app.close()
            return
        try:
            with self._app.connection_for_write() as connection:
                channel = _reached(connection).default_channel
                self._reply_queue()(channel).delete()
                _forget_unacked(channel, self.run)
        except Exception:  # noqa: BLE001 - the broker is gone: so is what this run left there
            pass
        self._app.close()


def _forget_unacked(channel, run: str) -> None:
    """Redis keeps the messages a dead worker held, unacknowledged, to hand them out again
    after the visibility timeout: this run's are removed (incrun sent them again itself)."""
    client = getattr(channel, "client", None)
    if client is None or not hasattr(channel, "unacked_key"):
        return
    for tag, payload in client.hscan_iter(channel.unacked_key):
        try:
            message = json.loads(payload)[0]
            task_id = message["headers"]["id"]
        except (ValueError, KeyError, IndexError, TypeError):
            continue
        if str(task_id).startswith(f"{run}-"):
            client.hdel(channel.unacked_key, tag)
            client.zrem(channel.unacked_index_key, tag)

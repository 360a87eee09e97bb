"""RQ, over the Redis a lab already runs: incrun's installed job function (`job`, run by `incrun
worker --rq`, see `serve`) and the coordinator's `RQLink`.

Jobs are enqueued with RQ's JSON serializer and the function named as text, so nothing is
pickled and nothing read from Redis can run code; `job_timeout` follows incrun's timeout (RQ's
default of 180 s would kill long simulations). Each worker is an RQ SimpleWorker: the job runs
in the worker's own process (no work horse of its own session that a killed worker would leave
running), its command in a process group a guard ends if the worker dies. The run's lease and
the replies are plain Redis keys beside RQ's."""

from __future__ import annotations

import contextvars
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

import redis
from rq import Queue, SimpleWorker, get_current_job
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker import WorkerStatus

from .. import __version__, broker_urls, errors
from .broker import LEASE_TTL, Listener
from .broker_worker import ALIVE, ENDED, hello, run_message
from .contract import JobSpec, Lost
from .groups import DEFAULT_GRACE, ProcessGroups

FUNCTION = "incrun.executors.rq_broker.job"
KEEP = 24 * 3600  # seconds a reply list or ended set outlives a run killed before its end
FAILURE_TTL = 3600  # seconds RQ keeps a job its worker abandoned (incrun removes it at the end)
RENEW_UNLESS_ENDED = ("if redis.call('GET', KEYS[1]) ~= 'ended' then "
                      "return redis.call('SET', KEYS[1], 'alive', 'EX', ARGV[1]) end")
PRESENT_EVERY = 5.0  # seconds between a worker's renewals of its presence key
PRESENT_TTL = 15  # seconds a worker's presence key outlives its last renewal
# A worker's job process groups, set once by `serve_one` in the worker's own process (a
# SimpleWorker runs each job there): RQ gives its job function nothing but its arguments.
WORKER_GROUPS: contextvars.ContextVar[ProcessGroups | None] = contextvars.ContextVar(
    "incrun_worker_groups", default=None)


def _keys(run: str) -> tuple[str, str, str]:
    """The run's lease, its ended messages, its replies."""
    return f"incrun:lease:{run}", f"incrun:ended:{run}", f"incrun:reply:{run}"


def _presence(name: str) -> str:
    """A worker's key while it lives: RQ's own registration outlives a killed worker by
    minutes, busy or not, so who listens is told by these."""
    return f"incrun:worker:{name}"


def connect(url: str, wait: float = broker_urls.CONNECT_TIMEOUT) -> redis.Redis:
    """A Redis client for an `rq+redis://` URL, checked: one line if it cannot be used. No
    call waits longer than `wait` (a Redis cut off must not hold a job's watch forever); a
    blocking read asks for more itself."""
    try:
        client = redis.Redis.from_url(broker_urls.redis_url(url),
                                      socket_connect_timeout=broker_urls.CONNECT_TIMEOUT,
                                      socket_timeout=wait, socket_keepalive=True,
                                      health_check_interval=30)
        client.ping()
    except Exception as error:  # noqa: BLE001 - refused, a bad password, not Redis at all
        raise broker_urls.unreachable(url, error) from None
    return client


class RedisLease:
    """A run's lease as a worker reads it from Redis: set by the coordinator before it sends
    anything, so a missing one means the run has ended. A Redis that does not answer keeps
    the lease as it was last read, until it would have lapsed."""

    def __init__(self, client: redis.Redis):
        self.client = client
        self._holds_until = 0.0  # monotonic: the last lease read alive, plus its time to live

    def state(self, run: str, message_id: str) -> str:
        lease, ended, _ = _keys(run)
        try:
            with self.client.pipeline() as pipe:
                alive, superseded = pipe.get(lease).sismember(ended, message_id).execute()
        except redis.RedisError:
            return ALIVE if time.monotonic() < self._holds_until else ENDED
        if alive == b"alive" and not superseded:
            self._holds_until = time.monotonic() + LEASE_TTL
            return ALIVE
        return ENDED


def job(name: str, message: dict) -> None:
    """One job, as RQ calls it by name: `name` is there for people (`rq info`)."""
    current = get_current_job()
    client = current.connection
    reply_key = message["reply"]

    def post(reply: dict) -> None:
        with client.pipeline() as pipe:
            pipe.rpush(reply_key, json.dumps(reply)).expire(reply_key, KEEP).execute()

    run_message(message, post, RedisLease(client), current.worker_name or "a worker",
                WORKER_GROUPS.get())


# -- the worker -------------------------------------------------------------------------------


def serve(url: str, queue_name: str, concurrency: int, name: str | None = None) -> int:
    """`incrun worker --rq`: `concurrency` RQ workers taking this incrun's jobs from the queue,
    each a process of its own; Ctrl-C or SIGTERM stops them once their jobs end."""
    connect(url).close()
    host = socket.gethostname()
    print(f"incrun worker: {concurrency} RQ {'worker' if concurrency == 1 else 'workers'}, "
          f"queue {queue_name}, broker {broker_urls.masked(url)}", flush=True)
    if concurrency == 1:
        return serve_one(url, queue_name, name or f"incrun-{os.getpid()}@{host}")
    # The URL goes to the workers in their environment, never on a command line (`ps` shows
    # those to every user of the machine).
    env = {**os.environ, "INCRUN_WORKER_BROKER": url}
    base = name or f"incrun-{os.getpid()}"
    workers = [subprocess.Popen([sys.executable, "-c", ONE_WORKER, queue_name,
                                 f"{base}-{index}@{host}"], env=env)
               for index in range(concurrency)]

    def forward(signum, frame) -> None:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [worker.wait() for worker in workers]
    return max(codes, key=abs)


ONE_WORKER = ("import os, sys; from incrun.executors.rq_broker import serve_child; "
              "sys.exit(serve_child(os.environ.pop('INCRUN_WORKER_BROKER'), *sys.argv[1:]))")


def serve_child(url: str, queue_name: str, name: str) -> int:
    """One of `incrun worker --rq -c N`'s workers: a mistake is one line, as in the parent."""
    try:
        return serve_one(url, queue_name, name)
    except errors.IncrunError as error:
        print(f"incrun worker {name}: {errors.one_line(error)}", file=sys.stderr)
        return error.exit_code


def serve_one(url: str, queue_name: str, name: str) -> int:
    client = connect(url)
    _claim(client, name)
    groups = ProcessGroups(DEFAULT_GRACE)
    WORKER_GROUPS.set(groups)
    listen = broker_urls.versioned(queue_name, __version__)
    worker = OnlyIncrunJobs([Queue(listen, connection=client, serializer=JSONSerializer)],
                            connection=client, serializer=JSONSerializer, name=name)
    present = threading.Event()
    about = json.dumps({**hello([listen], 1, name), "pid": os.getpid()})
    threading.Thread(target=_stay_present, args=(client, name, about, present),
                     daemon=True).start()
    try:
        worker.work(with_scheduler=False)
    except KeyboardInterrupt:
        pass
    finally:
        present.set()
        client.delete(_presence(name))
        groups.end_all()
        groups.close()
    return errors.OK


class OnlyIncrunJobs(SimpleWorker):
    """An RQ worker that runs incrun's job function and nothing else: whoever can write to the
    Redis can enqueue a job naming any importable function, which RQ would run."""

    def execute_job(self, job: Job, queue: Queue) -> None:
        try:
            name = job.func_name
        except Exception:  # noqa: BLE001 - not JSON (a pickle, say): never loaded
            name = None
        if name == FUNCTION:
            super().execute_job(job, queue)
            return
        execution = self.prepare_execution(job)
        self.handle_job_failure(job, queue, exc_string=f"refused: an incrun worker runs "
                                f"{FUNCTION} only, not {name or 'a job it cannot read'}",
                                execution=execution)
        self.set_state(WorkerStatus.IDLE)


def _claim(client: redis.Redis, name: str) -> None:
    """The name is this worker's: refused if a live worker has it; taken over from a dead one
    (killed: RQ would refuse the name for minutes)."""
    holder = client.get(_presence(name))
    if holder is not None and not _dead_here(json.loads(holder)):
        raise errors.IncrunError(f"a worker named {name} is already running on this broker",
                                 exit_code=errors.USAGE, hint="--name another")
    from rq import Worker

    dead = Worker.find_by_key(Worker.redis_worker_namespace_prefix + name, connection=client)
    if dead is not None:
        dead.register_death()


def _dead_here(about: dict) -> bool:
    """A worker of this machine whose process is gone (its key outlives it a few seconds)."""
    if about.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(about.get("pid", 0)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, OverflowError):
        return False
    return False


def _stay_present(client: redis.Redis, name: str, about: str, done: threading.Event) -> None:
    while True:
        try:
            client.set(_presence(name), about, ex=PRESENT_TTL)
        except redis.RedisError:
            pass  # Redis is away: the worker itself will say so
        if done.wait(PRESENT_EVERY):
            return


# -- the coordinator --------------------------------------------------------------------------


class RQLink:
    """The coordinator's side of RQ: jobs enqueued by name with JSON arguments, replies read
    from a Redis list of this run's own, the lease a key with a time to live."""

    engine = "rq"

    def __init__(self, url: str, queue_name: str, run: str):
        self.url, self.queue, self.run = url, queue_name, run
        self._lease, self._ended, self._reply = _keys(run)
        self._client: redis.Redis | None = None
        self._queue: Queue | None = None
        self._ids: list[str] = []  # every job enqueued: removed from Redis at the end
        self._reader: threading.Thread | None = None
        self._quit = threading.Event()

    def open(self, inbox: queue.SimpleQueue) -> None:
        self._client = connect(self.url)
        self._queue = Queue(broker_urls.versioned(self.queue, __version__),
                            connection=self._client, serializer=JSONSerializer)
        self._reader = threading.Thread(target=self._read, args=(inbox,), daemon=True,
                                        name="incrun-replies")
        self._reader.start()

    def _read(self, inbox: queue.SimpleQueue) -> None:
        client = None
        try:
            client = connect(self.url)
            while not self._quit.is_set():
                found = client.blpop([self._reply], timeout=0.5)
                if found is not None:
                    inbox.put(json.loads(found[1]))
        except Exception as error:  # noqa: BLE001 - Redis went
            if not self._quit.is_set():
                inbox.put(Lost(broker_urls.lost(self.url, error)))
        finally:
            if client is not None:
                client.close()

    def listeners(self) -> list[Listener]:
        found = []
        keys = list(self._client.scan_iter(match=_presence("*"), count=1000))
        for about in self._client.mget(keys) if keys else []:
            try:
                about = json.loads(about)
            except (TypeError, ValueError):
                continue  # gone meanwhile
            for queue_name in about.get("queues", ()):
                version = broker_urls.version_of(queue_name, self.queue)
                if version is not None:
                    found.append(Listener(str(about.get("worker")), str(about.get("host")),
                                          version, int(about.get("slots", 1))))
        return found

    def send(self, message: dict, spec: JobSpec) -> None:
        # RQ ends a job past its job_timeout itself; incrun ends it first, at its own timeout.
        timeout = -1 if spec.timeout is None else int(spec.timeout + 2 * DEFAULT_GRACE + 30)
        self._queue.enqueue(FUNCTION, spec.task, {**message, "reply": self._reply},
                            job_id=message["id"], job_timeout=timeout, result_ttl=0,
                            failure_ttl=FAILURE_TTL, description=f"incrun.job {spec.task}")
        self._ids.append(message["id"])

    def renew(self, alive: bool, ended: list[str]) -> None:
        with self._client.pipeline() as pipe:
            if alive:  # unless ended already: a late renewal must not revive it
                pipe.eval(RENEW_UNLESS_ENDED, 1, self._lease, int(LEASE_TTL))
            else:
                pipe.set(self._lease, "ended", ex=KEEP)
            if ended:
                pipe.sadd(self._ended, *ended).expire(self._ended, KEEP)
            pipe.execute()

    def take_back(self, ids: list[str]) -> None:
        with self._client.pipeline() as pipe:
            for message_id in ids:
                self._queue.remove(message_id, pipeline=pipe)
            pipe.execute()

    def close(self) -> None:
        self._quit.set()
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._client is None:
            return
        try:
            self._client.delete(self._lease, self._ended, self._reply)
            self._forget_jobs()
        except redis.RedisError:
            pass  # Redis is gone: so is what this run left there
        self._client.close()

    def _forget_jobs(self) -> None:
        """RQ keeps a job its worker abandoned, and one taken back: this run's are removed."""
        left = []
        for start in range(0, len(self._ids), 1000):
            part = self._ids[start:start + 1000]
            with self._client.pipeline() as pipe:
                for message_id in part:
                    pipe.exists(Job.key_for(message_id))
                left += [message_id for message_id, there in zip(part, pipe.execute())
                         if there]
        for message_id in left:
            try:
                Job.fetch(message_id, connection=self._client,
                          serializer=JSONSerializer).delete(remove_from_queue=True)
            except Exception:  # noqa: BLE001 - gone meanwhile
                pass

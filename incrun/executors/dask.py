"""The Dask executor: jobs on a Dask cluster, an existing scheduler (`tcp://`, `tls://`), a
LocalCluster of worker processes here (`local:N`) or SLURM jobs through dask-jobqueue (`slurm`).

Only a job spec as JSON (and, with --stage, the bytes of its files) crosses to a worker, to be
run by installed incrun code (`run_on_worker`); nothing of the user's is ever pickled. Dask
cannot stop a task that runs, so the worker side watches its own task: once it is cancelled (the
run stopped, or incrun's client is gone, killed even) the job's process group is ended. A guard
process on each worker ends the jobs of a worker that dies, which Dask then runs elsewhere."""

from __future__ import annotations

import logging
import os
import queue
import socket
import time
import uuid
from dataclasses import replace
from pathlib import Path

import distributed
from distributed import Future, WorkerPlugin

from .. import __version__, errors
from ..config import Cluster
from ..events import ERROR, FAILED, JobResult
from .contract import Cancelled, Finished, JobSpec, Lost, Note, Started, take_messages
from .groups import DEFAULT_GRACE, ProcessGroups, end_group
from .remote import result_of, run_remote, run_staged

POLL = 0.2  # seconds between a worker's looks at whether its job was cancelled
CONNECT_TIMEOUT = 10.0  # seconds to reach a scheduler
WORKER_TIMEOUT = 60.0  # seconds to wait for a first worker (a SLURM job may queue)
PROBE_TIMEOUT = 60.0

# ---- the worker side: installed incrun code, called by name ----


class JobGroups(WorkerPlugin):
    """On each worker: the process groups of the jobs it runs, and the guard that ends them
    should the worker die (SIGKILL, out of memory) before it can."""

    name = "incrun-job-groups"

    def __init__(self, grace: float = DEFAULT_GRACE):
        self.grace = grace
        self.groups: ProcessGroups | None = None

    def setup(self, worker) -> None:
        self.groups = ProcessGroups(self.grace)

    def teardown(self, worker) -> None:
        if self.groups is not None:
            self.groups.end_all()
            self.groups.close()


def _cancelled(worker, key) -> bool:
    """Whether the scheduler gave up this task: cancelled, or its client gone."""
    task = worker.state.tasks.get(key)
    return task is None or task.state in ("cancelled", "released", "forgotten")


def run_on_worker(spec_json: str, files: dict[str, bytes] | None = None, *, root: str,
                  topic: str, limit: int = 0):
    """What a Dask worker runs for one job: the job, to its end or until its task is cancelled;
    its result as plain values (and with `files`, staged: the outputs' bytes)."""
    worker = distributed.get_worker()
    key = worker.get_current_task()
    name = str(worker.name)
    plugin = worker.plugins.get(JobGroups.name)
    task = JobSpec.from_json(spec_json).task

    def started(process) -> None:
        worker.log_event(topic, {"task": task, "at": time.time()})

    def wait(process, timeout: float | None, grace: float) -> tuple[int, bool]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return process.wait(POLL), False
            except Exception:  # subprocess.TimeoutExpired: still running
                pass
            if deadline is not None and time.monotonic() > deadline:
                end_group(process, grace)
                return process.wait(), True
            if _cancelled(worker, key):
                end_group(process, grace)
                return process.wait(), False

    hooks = {"groups": plugin.groups if plugin is not None else None, "on_start": started,
             "wait": wait}
    if files is None:
        values, made = run_remote(spec_json, root, **hooks), None
    else:
        values, made = run_staged(spec_json, files, worker.local_directory, limit, **hooks)
    values["worker"] = name
    return values, made


def read_probe(path: str) -> tuple[str, str, str]:
    """The probe file as a worker sees it: its text (empty if it cannot), the host, incrun."""
    try:
        text = Path(path).read_text()
    except OSError:
        text = ""
    return text, socket.gethostname(), __version__


# ---- the coordinator side ----


class DaskExecutor:
    """Runs the coordinator's jobs as Dask tasks, at most `slots` at once: -n if given, else
    every thread of the cluster's workers. The cluster is reached (or started) only when the
    first job comes, so a run with nothing to do never touches it."""

    def __init__(self, cluster: Cluster, root: Path, in_flight: int | None = None,
                 grace: float = DEFAULT_GRACE, stage: bool = False,
                 stage_limit: int = 64 * 2**20, tls: dict | None = None,
                 slurm: dict | None = None, logs: Path | None = None):
        self.cluster = cluster
        self.root = root
        self.slots = in_flight or 0  # known once connected, when not asked for
        self.stopped = False
        self._asked = in_flight
        self._grace = grace
        self._stage, self._limit = stage, stage_limit
        self._tls, self._slurm = tls or {}, slurm or {}
        self._logs = logs
        self._client = None
        self._owned = None  # the LocalCluster or SLURMCluster this run started
        self._topic = f"incrun-started-{uuid.uuid4().hex}"
        self._messages: queue.SimpleQueue = queue.SimpleQueue()
        self._todo: list[JobSpec] = []  # submitted, not yet sent
        self._sent: dict[str, tuple[JobSpec, Future]] = {}  # by Dask key
        self._names: dict[str, str] = {}  # a worker's name, by address
        self._local = None  # a LocalExecutor for hand-written dodo.py tasks
        self._topics: list[str] = []  # of the scheduler's events, those heard

    # -- the cluster ----------------------------------------------------------------------

    def warm_up(self, jobs: int, calls: bool = False) -> None:
        self._connect(jobs)

    def _connect(self, jobs: int = 0) -> None:
        if self._client is not None:
            return
        _silence_dask()
        self._client = self._start_client(jobs)
        client = self._client
        try:
            if self._owned is None or self.cluster.kind != "slurm":
                client.wait_for_workers(1, timeout=WORKER_TIMEOUT)
            info = client.scheduler_info(n_workers=-1)
        except (TimeoutError, OSError) as error:
            self.close(kill=True)
            raise errors.ClusterError(
                f"no Dask worker joined the scheduler at {self.cluster} within "
                f"{WORKER_TIMEOUT:g}s ({type(error).__name__})",
                hint="start workers: dask worker ADDRESS") from None
        self._names = {address: str(worker["name"])
                       for address, worker in info["workers"].items()}
        threads = sum(worker["nthreads"] for worker in info["workers"].values())
        if self.cluster.kind == "slurm":
            threads = max(threads, self._slurm_threads(jobs))
        self.slots = self._asked or max(threads, 1)
        client.register_plugin(JobGroups(self._grace), name=JobGroups.name)
        if not self._stage:
            self._probe()
        for topic, handler in ((self._topic, self._heard_start), ("all", self._heard_cluster)):
            client.subscribe_topic(topic, handler)
            self._topics.append(topic)
        self._messages.put(Note(f"on the Dask cluster {self.cluster}: {len(self._names)} "
                                f"workers, {self.slots} jobs at once"))

    def _start_client(self, jobs: int):
        kind = self.cluster.kind
        if kind == "local":
            self._owned = distributed.LocalCluster(
                n_workers=self.cluster.workers, threads_per_worker=1, processes=True,
                host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR)
            return distributed.Client(self._owned)
        if kind == "slurm":
            self._owned = _slurm_cluster(self._slurm)
            self._owned.scale(jobs=self._slurm_jobs(jobs))
            return distributed.Client(self._owned)
        try:
            return distributed.Client(self.cluster.address, timeout=CONNECT_TIMEOUT,
                                      security=self._security(), set_as_default=False)
        except (OSError, TimeoutError) as error:
            raise errors.ClusterError(
                f"cannot reach the Dask scheduler at {self.cluster.address}: "
                f"{_first_line(error)}",
                hint="is `dask scheduler` running there, and the port open to this host?") \
                from None

    def _security(self):
        if self.cluster.address.startswith("tls://"):
            missing = [key for key in ("ca", "cert", "key") if not self._tls.get(key)]
            if missing:
                raise errors.BadConfig(f"a tls:// scheduler needs {', '.join(missing)} in "
                                       "[tool.incrun.dask]",
                                       hint='ca = "ca.pem", cert = "me.pem", key = "me.key"')
            files = {key: str(self.root / self._tls[key]) for key in ("ca", "cert", "key")}
            for key, path in files.items():
                if not os.path.isfile(path):
                    raise errors.BadConfig(f"[tool.incrun.dask] {key}: no such file "
                                           f"{self._tls[key]}")
            return distributed.security.Security(
                tls_ca_file=files["ca"], tls_client_cert=files["cert"],
                tls_client_key=files["key"], require_encryption=True)
        return None

    def _slurm_threads(self, jobs: int) -> int:
        return int(self._slurm.get("cores", 1)) * self._slurm_jobs(jobs)

    def _slurm_jobs(self, jobs: int) -> int:
        """SLURM jobs to ask for: enough for the stale jobs, at most `max_workers`."""
        cores = int(self._slurm.get("cores", 1))
        wanted = max(1, -(-max(jobs, 1) // cores))
        return min(wanted, int(self._slurm.get("max_workers", wanted)))

    def _probe(self) -> None:
        """Stop before the first job if the workers do not see the project folder."""
        probes = self.root / ".incrun"
        probes.mkdir(exist_ok=True)
        token = uuid.uuid4().hex
        probe = probes / f"probe-{token}"
        probe.write_text(token)
        try:
            text, host, version = self._client.submit(
                read_probe, str(probe), pure=False).result(timeout=PROBE_TIMEOUT)
        except (TimeoutError, OSError, distributed.client.FutureCancelledError) as error:
            raise errors.ClusterError(f"no Dask worker answered within {PROBE_TIMEOUT:g}s "
                                      f"({type(error).__name__})") from None
        finally:
            probe.unlink()
        if version != __version__:
            raise errors.ClusterError(f"stale worker: {host} has incrun {version}, this run "
                                      f"needs {__version__}",
                                      hint=f"pip install incrun=={__version__} on the workers "
                                           "and restart them")
        if text != token:
            raise errors.ClusterError(f"the Dask workers cannot read the project folder: {host} "
                                      f"finds no {probe}",
                                      hint="mount the project at the same path on the workers, "
                                           "or use --stage")

    def _heard_start(self, event) -> None:
        _, message = event
        worker = self._names.get(message.get("worker", ""), message.get("worker", ""))
        self._messages.put(Started(message["task"], message["at"], worker))

    def _heard_cluster(self, event) -> None:
        _, message = event
        action, address = message.get("action"), message.get("worker", "")
        if action == "add-worker":
            self._names.setdefault(address, address)
            self._messages.put(Note(f"worker {address} joined"))
        elif action == "remove-worker":
            name = self._names.pop(address, address)
            busy = " (its jobs run again elsewhere)" if self._sent else ""
            self._messages.put(Note(f"worker {name} left{busy}", warning=bool(self._sent)))

    # -- jobs -----------------------------------------------------------------------------

    def submit(self, spec: JobSpec) -> None:
        """Queued here, sent with the others of its turn (at the next `messages`)."""
        self._connect()
        self._todo.append(spec)

    def submit_task(self, name: str, task, log_path: str, timeout: float | None) -> None:
        """A hand-written dodo.py task is Python of the user's, never sent: it runs here."""
        if self._local is None:
            from .local import LocalExecutor

            self._local = LocalExecutor(max(self.slots, 1), self.root, self._grace,
                                        logs=self._logs, messages=self._messages)
        self._local.submit_task(name, task, log_path, timeout)

    def _send(self) -> None:
        """Send what waits: all of it, for Dask to queue on the workers; with -n, only as many
        as keep -n jobs in flight."""
        room = len(self._todo) if self._asked is None else self._asked - len(self._sent)
        todo, self._todo = self._todo[:room], self._todo[room:]
        sendable, staged = [], []
        for spec in todo:
            files, why = self._files(spec) if self._stage else (None, "")
            if why:
                now = time.time()
                self._messages.put(Finished(JobResult(spec.task, ERROR, now, now,
                                                      log_path=spec.log, detail=why)))
                continue
            sendable.append(spec)
            staged.append(files)
        if not sendable:
            return
        keys = [f"incrun-{spec.task}-{spec.attempt}-{uuid.uuid4().hex[:8]}" for spec in sendable]
        staging = [staged] if self._stage else []
        futures = self._client.map(run_on_worker, [spec.to_json() for spec in sendable],
                                   *staging, root=str(self.root), topic=self._topic,
                                   limit=self._limit, key=keys, pure=False)
        for spec, future in zip(sendable, futures):
            self._sent[future.key] = (spec, future)
            future.add_done_callback(self._messages.put)

    def _files(self, spec: JobSpec) -> tuple[dict[str, bytes] | None, str]:
        """With --stage: the files the job reads, or why they are too much to send."""
        files, total = {}, 0
        for path in spec.reads:
            try:
                data = (self.root / path).read_bytes()
            except OSError as error:
                return None, f"cannot read {path} to send it: {error.strerror}"
            total += len(data)
            if total > self._limit:
                return None, (f"{path} takes the job's files past the --stage limit of "
                              f"{self._limit:,} bytes")
            files[path] = data
        return files, ""

    def messages(self, timeout: float | None = None) -> list:
        if self._todo:
            self._send()
        found = take_messages(self._messages, timeout)
        done = [item for item in found if isinstance(item, Future)]
        messages = [item for item in found if not isinstance(item, Future)]
        if done:
            messages.extend(self._results(done))
            if self._todo and not self.stopped:
                self._send()
        return messages

    def _results(self, done: list[Future]) -> list:
        finished = [future for future in done
                    if future.status == "finished" and future.key in self._sent]
        try:
            values = self._client.gather(finished, errors="skip") if finished else []
        except (OSError, distributed.client.FutureCancelledError):
            values = []  # the scheduler went: the futures below say so
        messages = []
        if not self.stopped and any(future.status == "cancelled" for future in done):
            # Nothing of this run cancels a task but a stop: the scheduler is gone.
            messages.append(Lost(f"lost the Dask scheduler at {self.cluster}"))
            self.stopped = True
        for future, (answer, made) in zip(finished, values):
            spec, _ = self._sent.pop(future.key)
            result = result_of(answer)
            if made is not None:
                result = self._bring_back(spec, result, made)
            messages.append(Finished(result))
        for future in done:
            if future.key not in self._sent:
                continue
            spec, _ = self._sent.pop(future.key)
            messages.append(self._failed(spec, future))
        return messages

    def _failed(self, spec: JobSpec, future: Future):
        """A task that did not return: its worker kept dying, or the cluster is gone."""
        now = time.time()
        if future.status == "cancelled" or self.stopped:
            return Finished(JobResult(spec.task, FAILED, now, now, log_path=spec.log,
                                      detail="stopped"))
        error = future.exception()
        if isinstance(error, distributed.KilledWorker):  # Dask gave up running it elsewhere
            return Finished(JobResult(spec.task, FAILED, now, now, log_path=spec.log,
                                      detail="the worker process was killed, each time Dask "
                                             "ran it"))
        return Finished(JobResult(spec.task, ERROR, now, now, log_path=spec.log,
                                  detail=f"{type(error).__name__}: {_first_line(error)}"))

    def _bring_back(self, spec: JobSpec, result: JobResult, made: dict[str, bytes]):
        """A staged job's outputs and log, written into the project whole or not at all."""
        try:
            for path, data in made.items():
                place = self.root / path
                place.parent.mkdir(parents=True, exist_ok=True)
                temporary = place.with_name(f"{place.name}.{os.getpid()}.incomplete")
                temporary.write_bytes(data)
                temporary.replace(place)
        except OSError as error:
            for path in spec.outputs:
                (self.root / path).unlink(missing_ok=True)
            return replace(result, status=ERROR,
                           detail=f"cannot write what the job made: {error}")
        return result

    # -- the end ----------------------------------------------------------------------------

    def _cancel_all(self) -> None:
        """Every task sent is cancelled: its worker ends the job's group (see run_on_worker)."""
        sent, self._sent = list(self._sent.values()), {}
        if self._client is not None and self._client.status == "running" and sent:
            try:
                self._client.cancel([future for _, future in sent])
            except (OSError, RuntimeError):
                pass  # the scheduler is gone: so is every task
        now = time.time()
        for spec, _ in sent:  # none is known not to have started: none may be adopted
            self._messages.put(Finished(JobResult(spec.task, FAILED, now, now,
                                                  log_path=spec.log, detail="stopped")))
        for spec in self._todo:
            self._messages.put(Cancelled(spec.task))
        self._todo = []

    def stop(self) -> None:
        self.stopped = True
        self._cancel_all()
        if self._local is not None:
            self._local.stop()

    def kill(self) -> None:
        self.stop()
        if self._local is not None:
            self._local.kill()

    def close(self, kill: bool = False) -> None:
        self.stopped = True
        if kill:
            self._cancel_all()
        if self._local is not None:
            self._local.close(kill)
        client, self._client = self._client, None
        if client is not None:
            try:
                for topic in self._topics:
                    client.unsubscribe_topic(topic)
                client.close(timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError, RuntimeError):
                pass
        owned, self._owned = self._owned, None
        if owned is not None:
            owned.close()


def _slurm_cluster(settings: dict):
    """A dask-jobqueue SLURMCluster from [tool.incrun.slurm]; no job is asked for yet."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise errors.MissingExtra("dask-jobqueue", "slurm", "--cluster slurm") from None
    options = {"cores": int(settings.get("cores", 1)), "memory": settings.get("memory", "1GB"),
               "processes": int(settings.get("processes", 1)),
               "job_extra_directives": list(settings.get("extra", [])),
               "scheduler_options": {"dashboard_address": None},
               "silence_logs": "error"}
    for key, name in (("partition", "queue"), ("account", "account"), ("walltime", "walltime"),
                      ("python", "python"), ("local_directory", "local_directory")):
        if key in settings:
            options[name] = settings[key]
    return SLURMCluster(**options)


def _silence_dask() -> None:
    """Dask's own log lines would garble the display; incrun says what went wrong itself."""
    for name in ["distributed", *logging.root.manager.loggerDict]:
        if name.startswith("distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__

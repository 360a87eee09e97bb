"""`incrun worker` processes for the tests, as a user starts them, each in a session of its own
so that a test can kill exactly one (and only what it started); and the three brokers they may
run on: Celery over Redis, Celery over RabbitMQ, RQ over Redis."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from brokers import RabbitServer, RedisServer, why_not
from conftest import incrun_env, poll

ENGINES = ("celery-redis", "celery-amqp", "rq")
READY = {"celery": "ready.", "rq": "Listening on"}  # what a worker logs once it takes jobs


def needs(engine: str) -> None:
    """Skip, saying why, where the engine's broker or library is missing."""
    pytest.importorskip("rq" if engine == "rq" else "celery")
    reason = why_not("rabbitmq" if engine == "celery-amqp" else "redis")
    if reason:
        pytest.skip(reason)


@contextlib.contextmanager
def broker_server(engine: str, folder: Path, password: str | None = None):
    """A broker server for `engine`, in `folder` (a RedisServer or a RabbitServer)."""
    needs(engine)
    folder.mkdir(parents=True, exist_ok=True)
    kind = RabbitServer if engine == "celery-amqp" else RedisServer
    with kind(folder, **({"password": password} if password else {})) as server:
        yield server


def url_for(engine: str, server) -> str:
    """The URL `--cluster` takes for `engine` on this server."""
    return ("rq+" if engine == "rq" else "") + server.url


@contextlib.contextmanager
def broker_for(engine: str, folder: Path, password: str | None = None):
    """A broker server for `engine`, in `folder`: yields the URL `--cluster` takes."""
    with broker_server(engine, folder, password) as server:
        yield url_for(engine, server)


class IncrunWorkers:
    """`incrun worker` processes on one broker, by name: on `queue`, or, with none, on the
    queue of the project at `project` (as a worker started in the project's folder)."""

    def __init__(self, folder: Path, url: str, queue: str | None = None,
                 project: Path | None = None):
        self.folder, self.url, self.queue, self.project = folder, url, queue, project
        self.processes: dict[str, subprocess.Popen] = {}
        self._starts = 0
        self._keeper: threading.Thread | None = None
        self._quit = threading.Event()
        self._lock = threading.Lock()  # the keeper's thread and the test's may both ensure

    @property
    def engine(self) -> str:
        return "rq" if self.url.startswith("rq+") else "celery"

    def start(self, name: str, concurrency: int = 1, env: dict | None = None,
              wait: bool = True, wrap: list[str] = ()) -> subprocess.Popen:
        """Worker `name`; started again, it takes a name of its own (`name.2`): RQ refuses a
        name a dead worker still holds in Redis."""
        self._starts += 1
        shown = name if name not in self.processes else f"{name}.{self._starts}"
        log = self.log_path(name)
        with open(log, "w") as stream:
            process = subprocess.Popen(
                [*wrap, sys.executable, "-m", "incrun", "worker", "--broker", "env:TEST_BROKER",
                 *(["-Q", self.queue] if self.queue else ["-C", str(self.project)]),
                 "-c", str(concurrency), "--name", shown],
                cwd=self.folder, stdout=stream, stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**incrun_env(), "TEST_BROKER": self.url, **(env or {})})
        self.processes[name] = process
        if wait:
            poll(lambda: READY[self.engine] in log.read_text() or process.poll() is not None,
                 timeout=60, what=f"worker {name} to take jobs")
            assert process.poll() is None, log.read_text()
        return process

    def log_path(self, name: str) -> Path:
        return self.folder / f"worker-{name}.log"

    def ensure(self, *names: str) -> None:
        """These workers run: those that died (a test killed them) are started again."""
        with self._lock:
            self._ensure(names)

    def _ensure(self, names) -> None:
        for name in names:
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                self.start(name)

    def keep_alive(self, *names: str) -> None:
        """From now on, a worker that dies is started again, as a service manager would."""
        if self._keeper is None:
            self._keeper = threading.Thread(target=self._keep, args=(names,), daemon=True)
            self._keeper.start()

    def _keep(self, names) -> None:
        while not self._quit.wait(0.5):
            self.ensure(*names)

    def pids(self) -> dict[int, str]:
        return {process.pid: name for name, process in self.processes.items()}

    def kill(self, name: str) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.processes[name].pid, signal.SIGKILL)
        self.processes[name].wait(30)

    def stop_all(self) -> None:
        self._quit.set()
        if self._keeper is not None:
            self._keeper.join()
        for name in list(self.processes):
            self.kill(name)

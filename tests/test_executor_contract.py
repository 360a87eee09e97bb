"""The executor contract: the same scenarios over every executor. Each runs real jobs (Python
subprocesses) in a temp project and checks what the coordinator would hear: Started, then
Finished with the job's result, or Cancelled; outputs kept on success and removed on failure;
the log holding the job's output.

`local` is incrun's worker processes; `threads` is the smallest executor that keeps the
contract (run_job in threads of this process), the reference the scenarios are checked
against."""

from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from test_executors import alive

from incrun.events import FAILED, OK, TIMEOUT
from incrun.executors.contract import (
    Cancelled,
    Finished,
    JobSpec,
    Note,
    Started,
    take_messages,
)
from incrun.executors.groups import ProcessGroups
from incrun.executors.local import LocalExecutor
from incrun.executors.workers import run_job


class ThreadExecutor:
    """Jobs run by run_job, each in a thread of its own, at most `slots` at once."""

    def __init__(self, slots: int, root: Path, grace: float = 2.0):
        self.slots, self.root = slots, root
        self.groups = ProcessGroups(grace, guard=False)
        self._todo: queue.SimpleQueue = queue.SimpleQueue()
        self._messages: queue.SimpleQueue = queue.SimpleQueue()
        self._stopped = False
        self._threads = [threading.Thread(target=self._serve, daemon=True) for _ in range(slots)]
        for thread in self._threads:
            thread.start()

    @property
    def ahead(self) -> int:
        return self.slots

    def warm_up(self, jobs: int, calls: bool = False) -> None:
        pass

    def submit(self, spec: JobSpec) -> None:
        self._todo.put(spec)

    def _serve(self) -> None:
        while (spec := self._todo.get()) is not None:
            if self._stopped:
                self._messages.put(Cancelled(spec.task))
                continue
            result = run_job(spec, self.root, groups=self.groups,
                             on_start=lambda process, task=spec.task: self._started(task))
            self._messages.put(Finished(replace(result, worker="thread")))

    def _started(self, task: str) -> None:
        """Told once the process runs, so that a stop from then on ends it."""
        self._messages.put(Started(task, time.time()))
        if self._stopped:
            self.groups.end_all()

    def messages(self, timeout: float | None = None) -> list:
        return take_messages(self._messages, timeout)

    def hold(self) -> None:
        pass  # under --fail-fast nothing is submitted beyond the slots: each runs at once

    def stop(self) -> None:
        self._stopped = True
        threading.Thread(target=self.groups.end_all, daemon=True).start()

    def kill(self) -> None:
        self.groups.kill_all()

    def close(self, kill: bool = False) -> None:
        self._stopped = True
        if kill:
            self.groups.end_all()
        for _ in self._threads:
            self._todo.put(None)
        for thread in self._threads:
            thread.join()
        self.groups.close()


def _dask(slots: int, root: Path, address: str):
    from incrun.config import Cluster
    from incrun.executors.dask import DaskExecutor

    return DaskExecutor(Cluster("scheduler", address=address), root, slots, grace=2)


def _broker(slots: int, root: Path, url: str):
    from incrun.config import parse_cluster
    from incrun.executors.broker import BrokerExecutor

    return BrokerExecutor(parse_cluster(url), root, slots, grace=2, queue_name=CONTRACT_QUEUE)


EXECUTORS = {
    "local": lambda slots, root, _: LocalExecutor(slots, root, grace=2, guard=False,
                                                  logs=root / ".incrun" / "logs"),
    "threads": lambda slots, root, _: ThreadExecutor(slots, root),
    "dask": _dask,  # on a LocalCluster of two worker processes, shared by the tests
    "celery": _broker,  # through a Redis, to two `incrun worker` processes, shared
    "rq": _broker,  # the same, as RQ workers
}
CONTRACT_QUEUE = "contract"


@pytest.fixture(scope="module")
def dask_address():
    """A real Dask scheduler and two worker processes on 127.0.0.1, for this module."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def broker_workers(tmp_path_factory):
    """A Redis, and for each engine two `incrun worker` processes on it, for this module;
    started again for a test if an earlier one killed them."""
    from broker_workers import IncrunWorkers, broker_for

    folder = tmp_path_factory.mktemp("brokers")
    with broker_for("celery-redis", folder / "redis") as url:
        workers = {"celery": IncrunWorkers(folder, url, CONTRACT_QUEUE),
                   "rq": IncrunWorkers(folder, "rq+" + url, CONTRACT_QUEUE)}
        try:
            yield workers
        finally:
            for each in workers.values():
                each.stop_all()


def _address(request) -> str | None:
    if request.param == "dask":
        return request.getfixturevalue("dask_address")
    if request.param in ("celery", "rq"):
        from broker_workers import needs

        needs("rq" if request.param == "rq" else "celery-redis")
        workers = request.getfixturevalue("broker_workers")[request.param]
        workers.ensure(f"{request.param}1", f"{request.param}2")
        workers.keep_alive(f"{request.param}1", f"{request.param}2")
        return workers.url
    return None


@pytest.fixture(params=sorted(EXECUTORS))
def make(request, tmp_path):
    """A function making the executor under test with N slots; each is closed after."""
    made = []
    address = _address(request)

    def make(slots: int = 1):
        executor = EXECUTORS[request.param](slots, tmp_path, address)
        made.append(executor)
        return executor

    make.kind = request.param
    yield make
    for executor in made:
        executor.close(kill=True)


def job(name: str, code: str, outputs=(), timeout=None) -> JobSpec:
    return JobSpec(f"sweep:{name}", (sys.executable, "-c", code), tuple(outputs),
                   f".incrun/logs/{name}.log", timeout)


def heard(executor, count: int, seconds: float = 60) -> dict[str, list]:
    """The messages about `count` jobs, until each has ended (Finished or Cancelled), by job."""
    by_job: dict[str, list] = {}
    deadline = time.monotonic() + seconds
    while sum(isinstance(told[-1], (Finished, Cancelled)) for told in by_job.values()) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"only heard {by_job} in {seconds}s"
        for message in executor.messages(timeout=remaining):
            if not isinstance(message, Note):  # for the user: a worker joined, say
                by_job.setdefault(message.task, []).append(message)
    return by_job


def first_start(executor, seconds: float = 30) -> Started:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for message in executor.messages(timeout=deadline - time.monotonic()):
            if not isinstance(message, Note):
                return message
    raise AssertionError(f"no job started in {seconds}s")


def test_a_job_that_succeeds_keeps_its_output_and_logs_what_it_printed(make, tmp_path):
    executor = make()
    code = ("import sys; print('to stdout'); print('to stderr', file=sys.stderr); "
            "open('a.out', 'w').write('x')")
    executor.submit(job("a", code, ["a.out"]))
    told = heard(executor, 1)["sweep:a"]
    assert [type(message) for message in told] == [Started, Finished]
    result = told[1].result
    assert result.status == OK and result.exit_code == 0 and result.worker
    assert told[0].at <= result.ended
    assert (tmp_path / "a.out").read_text() == "x"
    log = (tmp_path / ".incrun/logs/a.log").read_text()
    assert "to stdout" in log and "to stderr" in log


def test_a_failed_job_leaves_no_output_and_carries_its_log_tail(make, tmp_path):
    executor = make()
    code = ("import sys; open('a.out', 'w').write('half'); "
            "print('diverged', file=sys.stderr); sys.exit(2)")
    executor.submit(job("a", code, ["a.out"]))
    result = heard(executor, 1)["sweep:a"][-1].result
    assert (result.status, result.exit_code, result.detail) == (FAILED, 2, "exit code 2")
    assert result.log_tail == ("diverged",)
    assert not (tmp_path / "a.out").exists()


def test_exit_zero_without_the_output_is_a_failure(make):
    executor = make()
    executor.submit(job("a", "pass", ["a.out"]))
    result = heard(executor, 1)["sweep:a"][-1].result
    assert result.status == FAILED and "no output a.out" in result.detail


def test_a_job_past_its_timeout_is_ended_with_its_children(make, tmp_path):
    executor = make()
    pidfile = tmp_path / "child.pid"
    code = ("import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            f"open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    executor.submit(job("a", code, timeout=1.0))
    result = heard(executor, 1)["sweep:a"][-1].result
    assert result.status == TIMEOUT and "timed out after 1s" in result.detail
    assert result.ended - result.started < 30
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


def test_stop_ends_the_running_job_and_cancels_those_queued(make, tmp_path):
    executor = make(1)
    executor.submit(job("slow", "import time; time.sleep(60)"))
    for i in range(3):
        executor.submit(job(f"q{i}", f"open('q{i}.out', 'w')", [f"q{i}.out"]))
    first = first_start(executor)
    assert isinstance(first, Started) and first.task == "sweep:slow"
    executor.stop()
    told = heard(executor, 4)
    assert not told["sweep:slow"][-1].result.ok
    assert all(told[f"sweep:q{i}"] == [Cancelled(f"sweep:q{i}")] for i in range(3))
    assert not any((tmp_path / f"q{i}.out").exists() for i in range(3))  # none of them ran


def test_at_most_slots_jobs_run_at_once(make):
    executor = make(2)
    for i in range(4):
        executor.submit(job(f"s{i}", f"import time; time.sleep(0.3); open('s{i}', 'w')",
                            [f"s{i}"]))
    results = [told[-1].result for told in heard(executor, 4).values()]
    assert all(result.ok for result in results)
    starts = sorted(result.started for result in results)
    ends = sorted(result.ended for result in results)
    assert starts[2] >= ends[0]  # the third job waited for a free slot


def test_a_worker_that_dies_mid_job_fails_that_job_and_runs_the_next(make, tmp_path):
    if make.kind == "threads":
        pytest.skip("its jobs run in this very process: it has no worker to lose")
    executor = make(1)
    pidfile = tmp_path / "dies.pid"
    # The job's parent is the process running it: the worker. It dies as the job runs.
    executor.submit(job("dies", f"import os, signal, time; open({str(pidfile)!r}, 'w')"
                                ".write(str(os.getpid())); "
                                "os.kill(os.getppid(), signal.SIGKILL); time.sleep(30)",
                        ["dies.out"]))
    executor.submit(job("next", "open('next.out', 'w')", ["next.out"]))
    told = heard(executor, 2)
    assert told["sweep:dies"][-1].result.status == FAILED
    assert ("killed" in told["sweep:dies"][-1].result.detail)
    assert told["sweep:next"][-1].result.ok and (tmp_path / "next.out").exists()
    orphan = int(pidfile.read_text())  # the dead worker's command: it must not run on
    deadline = time.monotonic() + 10
    while alive(orphan) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(orphan)


def test_messages_wait_at_most_their_timeout(make):
    executor = make()
    started = time.monotonic()
    assert executor.messages(timeout=0.2) == []  # nothing submitted: nothing to tell
    assert 0.2 <= time.monotonic() - started < 10


def test_the_job_spec_crosses_as_json_unchanged():
    spec = JobSpec("gather", ("python", "g.py", "{inputs_file}"), ("all.csv",), "l.log", 5.0,
                   2, False, ("a.sum", "b.sum"), ".incrun/inputs/gather.txt")
    assert JobSpec.from_json(spec.to_json()) == spec
    assert isinstance(spec.to_json(), str) and spec.version


def test_a_retry_writes_its_output_after_the_earlier_attempts_under_a_line_naming_it(
        make, tmp_path):
    executor = make()
    first = job("a", "import sys; print('first try: no licence'); sys.exit(1)", ["a.out"])
    executor.submit(first)
    assert not heard(executor, 1)["sweep:a"][-1].result.ok
    executor.submit(replace(first, argv=(sys.executable, "-c", "open('a.out', 'w')"),
                            attempt=2, tries=3))  # a silent success: its log is kept all the same
    assert heard(executor, 1)["sweep:a"][-1].result.ok
    log = (tmp_path / ".incrun/logs/a.log").read_text()
    assert log == "first try: no licence\n--- attempt 2 of 3 ---\n"

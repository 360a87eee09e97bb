"""The local executor: a result is a value, output goes to the log, the group dies with the job."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from incrun.events import ERROR, FAILED, OK
from incrun.executors.groups import ProcessGroups
from incrun.executors.jobfiles import log_tail
from incrun.executors.local import CANCELLED, FINISHED, STARTED, LocalExecutor
from incrun.executors.workers import run_job


def spec(code: str, outputs=("a.out",)) -> dict:
    return {"task": "sweep:a.inp", "argv": [sys.executable, "-c", code], "outputs": list(outputs)}


def test_run_job_success_writes_the_log_and_keeps_the_output(tmp_path):
    log = tmp_path / "logs" / "a.log"
    result = run_job(spec("print('hello'); open('a.out', 'w').write('x')"), tmp_path, log)
    assert result.status == OK and result.exit_code == 0
    assert log.read_text() == "hello\n"
    assert (tmp_path / "a.out").read_text() == "x"


def test_run_job_failure_removes_outputs_and_carries_the_log_tail(tmp_path):
    code = ("import sys; open('a.out', 'w').write('half'); "
            "print('oops', file=sys.stderr); sys.exit(2)")
    result = run_job(spec(code), tmp_path, tmp_path / "a.log")
    assert result.status == FAILED and result.exit_code == 2
    assert result.detail == "exit code 2"
    assert result.log_tail == ("oops",)
    assert not (tmp_path / "a.out").exists()


def test_run_job_exit_zero_without_output_fails(tmp_path):
    result = run_job(spec("pass"), tmp_path, tmp_path / "a.log")
    assert result.status == FAILED
    assert "no output a.out" in result.detail


def test_run_job_removes_a_stale_output_before_starting(tmp_path):
    (tmp_path / "a.out").write_text("from an earlier attempt")
    result = run_job(spec("import os; print(os.path.exists('a.out'))"), tmp_path, tmp_path / "l")
    assert (tmp_path / "l").read_text() == "False\n"
    assert result.status == FAILED  # and nothing old is counted as its output


def test_run_job_creates_output_folders(tmp_path):
    code = "open('out/deep/a.out', 'w').write('x')"
    assert run_job(spec(code, ["out/deep/a.out"]), tmp_path, tmp_path / "l").ok


def test_run_job_missing_program_is_an_error_value(tmp_path):
    job = {"task": "t", "argv": ["/no/such/program"], "outputs": []}
    result = run_job(job, tmp_path, tmp_path / "l")
    assert result.status == ERROR and "cannot start" in result.detail


def test_log_tail_keeps_the_last_lines(tmp_path):
    log = tmp_path / "log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert log_tail(log, 3) == ("line 97", "line 98", "line 99")
    assert log_tail(tmp_path / "missing") == ()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_terminate_all_ends_a_job_and_its_grandchild(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    code = (f"import subprocess, sys, time\n"
            f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
            f"time.sleep(60)\n")
    groups = ProcessGroups(guard=False)
    results = []
    worker = threading.Thread(target=lambda: results.append(
        run_job(spec(code, []), tmp_path, tmp_path / "l", groups=groups)))
    worker.start()
    deadline = time.monotonic() + 20
    while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
        time.sleep(0.02)
    grandchild = int(pidfile.read_text())
    groups.end_all(grace=5)
    worker.join(20)
    assert results and results[0].status == FAILED and "signal" in results[0].detail
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:  # init reaps it
        time.sleep(0.02)
    assert not _alive(grandchild)


def next_messages(executor: LocalExecutor, timeout: float = 30) -> list:
    """The executor's next messages; the test fails if none comes in time."""
    found = executor.messages(timeout=timeout)
    assert found, f"no message from the executor in {timeout}s"
    return found


def test_executor_runs_at_most_workers_at_once(tmp_path):
    executor = LocalExecutor(2, Path(tmp_path))
    code = "import time; open('{}', 'w').write(str(time.time())); time.sleep(0.2)"
    for i in range(4):
        executor.submit(f"s{i}", spec(code.format(f"s{i}"), [f"s{i}"]), f"l{i}")
    results, started = {}, {}
    while len(results) < 4:
        for kind, name, value in next_messages(executor):
            (started if kind == STARTED else results)[name] = value
    executor.shutdown()
    assert all(result.ok for result in results.values())
    assert set(started) == set(results) == {"s0", "s1", "s2", "s3"}
    starts = sorted(result.started for result in results.values())
    ends = sorted(result.ended for result in results.values())
    assert starts[2] >= ends[0]  # the third job waited for a free worker


def test_executor_stop_ends_the_running_job_and_cancels_the_queued_ones(tmp_path):
    executor = LocalExecutor(1, Path(tmp_path), grace=2, guard=False)
    executor.submit("slow", spec("import time; time.sleep(30)", []), "l0")
    for i in range(3):
        executor.submit(f"q{i}", spec("pass", []), f"l{i + 1}")
    assert next_messages(executor)[0][:2] == (STARTED, "slow")  # the worker is busy with it
    executor.stop()
    told = {}
    while len(told) < 4:
        for kind, name, value in next_messages(executor):
            told[name] = (kind, value)
    executor.shutdown()
    assert told["slow"][0] == FINISHED and not told["slow"][1].ok
    assert {told[f"q{i}"][0] for i in range(3)} == {CANCELLED}
    assert not any((tmp_path / f"l{i + 1}").exists() for i in range(3))  # none of them ran


def test_executor_messages_wait_at_most_the_timeout(tmp_path):
    executor = LocalExecutor(1, Path(tmp_path), guard=False)
    started = time.monotonic()
    assert executor.messages(timeout=0.2) == []  # nothing submitted: nothing to tell
    assert 0.2 <= time.monotonic() - started < 10
    executor.shutdown()

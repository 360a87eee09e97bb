"""Running one job: a result is a value, output goes to the log, the group dies with the job.
What every executor must do with many is in test_executor_contract."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import threading
import time
from dataclasses import replace

import incrun
from incrun.events import ERROR, FAILED, OK
from incrun.executors.contract import PYTHON, JobSpec
from incrun.executors.groups import ProcessGroups
from incrun.executors.jobfiles import log_tail
from incrun.executors.remote import refusal, result_of, run_remote
from incrun.executors.workers import run_job


def spec(code: str, outputs=("a.out",), log: str = "a.log") -> JobSpec:
    return JobSpec("sweep:a.inp", (sys.executable, "-c", code), tuple(outputs), log)


def test_run_job_success_writes_the_log_and_keeps_the_output(tmp_path):
    log = tmp_path / "logs" / "a.log"
    result = run_job(spec("print('hello'); open('a.out', 'w').write('x')", log="logs/a.log"),
                     tmp_path)
    assert result.status == OK and result.exit_code == 0
    assert log.read_text() == "hello\n"
    assert (tmp_path / "a.out").read_text() == "x"


def test_a_succeeded_job_brings_the_hash_of_its_own_inputs_as_a_remote_one_does(tmp_path):
    (tmp_path / "a.inp").write_bytes(b"input a")
    hashed = replace(spec("open('a.out', 'w').write('x')"), hashed=("a.inp", "gone.inp"))
    [(path, mtime, size, digest)] = run_job(hashed, tmp_path).hashes
    info = os.stat(tmp_path / "a.inp")
    assert (path, mtime, size) == ("a.inp", info.st_mtime, info.st_size)
    assert digest == hashlib.md5(b"input a").hexdigest()
    answer = run_remote(hashed.to_json(), str(tmp_path))  # the same, through JSON
    assert result_of(answer).hashes == ((path, mtime, size, digest),)
    failed = run_job(replace(hashed, argv=(sys.executable, "-c", "raise SystemExit(1)")),
                     tmp_path)
    assert failed.status == FAILED and failed.hashes == ()  # nothing of a failure is kept


def test_run_job_failure_removes_outputs_and_carries_the_log_tail(tmp_path):
    code = ("import sys; open('a.out', 'w').write('half'); "
            "print('oops', file=sys.stderr); sys.exit(2)")
    result = run_job(spec(code), tmp_path)
    assert result.status == FAILED and result.exit_code == 2
    assert result.detail == "exit code 2"
    assert result.log_tail == ("oops",)
    assert not (tmp_path / "a.out").exists()


def test_run_job_exit_zero_without_output_fails(tmp_path):
    result = run_job(spec("pass"), tmp_path)
    assert result.status == FAILED
    assert "no output a.out" in result.detail


def test_run_job_removes_a_stale_output_before_starting(tmp_path):
    (tmp_path / "a.out").write_text("from an earlier attempt")
    result = run_job(spec("import os; print(os.path.exists('a.out'))", log="l"), tmp_path)
    assert (tmp_path / "l").read_text() == "False\n"
    assert result.status == FAILED  # and nothing old is counted as its output


def test_run_job_creates_output_folders(tmp_path):
    code = "open('out/deep/a.out', 'w').write('x')"
    assert run_job(spec(code, ["out/deep/a.out"]), tmp_path).ok


def test_run_job_missing_program_is_an_error_value(tmp_path):
    result = run_job(JobSpec("t", ("/no/such/program",), (), "l"), tmp_path)
    assert result.status == ERROR and "cannot start" in result.detail


def test_log_tail_keeps_the_last_lines(tmp_path):
    log = tmp_path / "log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert log_tail(log, 3) == ("line 97", "line 98", "line 99")
    assert log_tail(tmp_path / "missing") == ()


def alive(pid: int) -> bool:
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
        run_job(spec(code, []), tmp_path, groups=groups)))
    worker.start()
    deadline = time.monotonic() + 20
    while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
        time.sleep(0.02)
    grandchild = int(pidfile.read_text())
    groups.end_all(grace=5)
    worker.join(20)
    assert results and results[0].status == FAILED and "signal" in results[0].detail
    deadline = time.monotonic() + 5
    while alive(grandchild) and time.monotonic() < deadline:  # init reaps it
        time.sleep(0.02)
    assert not alive(grandchild)


# -- the worker side of a remote executor --------------------------------------------------


def test_a_remote_worker_runs_a_spec_from_json_and_answers_with_plain_values(tmp_path):
    answer = run_remote(spec("open('a.out', 'w').write('x')").to_json(), str(tmp_path))
    assert answer["status"] == OK and answer["name"] == "sweep:a.inp"
    assert (tmp_path / "a.out").read_text() == "x"
    assert json.loads(json.dumps(answer)) == answer  # nothing but plain data
    assert result_of(answer).ok and result_of(answer).name == "sweep:a.inp"


def test_a_worker_with_another_incrun_refuses_the_job_and_names_both_versions(tmp_path):
    old = replace(spec("open('a.out', 'w').write('x')"), version="0.0.1")
    answer = run_remote(old.to_json(), str(tmp_path))
    assert answer["status"] == ERROR
    assert answer["detail"] == (f"stale worker: {socket.gethostname()} has incrun "
                                f"{incrun.__version__}, this run needs 0.0.1")
    assert not (tmp_path / "a.out").exists()  # refused, not run


def test_a_call_needs_the_same_python_on_the_worker_a_command_does_not(tmp_path):
    call = JobSpec("sweep:a.inp", ("pkg.sim:run", "a.inp"), (), "a.log", call=True,
                   python="2.7")
    assert refusal(call, "node7") == (f"stale worker: node7 has Python {PYTHON}, this run "
                                      "needs Python 2.7")
    assert refusal(replace(call, call=False), "node7") is None

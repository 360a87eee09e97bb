"""incrun --cluster slurm on a real single-node Slurm the tests start (see slurm_node): the
workers are SLURM jobs of dask-jobqueue's, asked for as the stale jobs need and given back at
the end; a SLURM job cancelled or past its walltime fails the incrun job it ran, with why."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from conftest import alive, poll, start
from slurm_node import SlurmNode, why_not
from test_e2e_dask import SLOW_RUNNER, history, job_pids

pytest.importorskip("dask_jobqueue")
if why_not():
    pytest.skip(why_not(), allow_module_level=True)

SETTINGS = """\
[slurm]
cores = 1
memory = "200MB"
walltime = "{walltime}"
max_workers = 2
interface = "lo"
"""


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    node = SlurmNode(tmp_path_factory.mktemp("slurm")).start()
    yield node
    node.stop()


@pytest.fixture
def on_slurm(project, slurm, monkeypatch):
    """The slow runner's project, set up for the test Slurm (SLURM_CONF for its commands)."""
    project.write("runner.py", SLOW_RUNNER)
    project.write("incrun.toml", SETTINGS.format(walltime="00:05:00"))
    for key, value in slurm.env.items():
        monkeypatch.setenv(key, value)
    yield project
    poll(lambda: not slurm.jobs(), timeout=30, what="the run's SLURM jobs to be given back")


def slurm_job_of(pid: int) -> str:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return next(item.split(b"=", 1)[1].decode() for item in environ
                if item.startswith(b"SLURM_JOB_ID="))


def test_stale_jobs_run_as_slurm_jobs_which_are_given_back_after(on_slurm, slurm):
    on_slurm.inputs(*(f"data/j{i}.inp" for i in range(4)), text="0.2")
    done = on_slurm.run("--cluster", "slurm")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 jobs at once" in done.stdout
    assert all(path.read_text() == "half done " for path in (on_slurm.root / "data").glob("*.out"))
    workers = {worker for _, _, worker in history(on_slurm)}
    assert workers and all(worker.startswith("SLURMCluster-") for worker in workers)
    poll(lambda: not slurm.jobs(), timeout=30, what="the SLURM jobs to end with the run")
    assert not list(on_slurm.root.glob("slurm-*.out"))  # their logs are incrun's, not the user's
    assert list((on_slurm.root / ".incrun/slurm").glob("*.err"))
    again = on_slurm.run("--cluster", "slurm")  # up to date: no SLURM job is asked for
    assert again.returncode == 0 and "all 4 jobs up to date" in again.stdout
    assert not slurm.jobs()


def test_a_scancelled_slurm_job_fails_its_job_with_why_and_is_replaced(on_slurm, slurm):
    on_slurm.write("incrun.toml", SETTINGS.format(walltime="00:05:00").replace(
        "max_workers = 2", "max_workers = 1"))
    on_slurm.inputs("data/a-long.inp", text="60")
    on_slurm.inputs("data/b-short.inp", text="0")
    run = start(on_slurm, "--cluster", "slurm", "--in-order")
    poll(lambda: job_pids(on_slurm), timeout=60, what="the job to start on a SLURM worker")
    pid = job_pids(on_slurm)[0]
    job_id = slurm_job_of(pid)
    os.system(f"scancel {job_id}")  # noqa: S605 (a fixed command with a number)
    out, err = run.communicate(timeout=90)
    assert run.returncode == 1, out + err
    assert f"its SLURM job {job_id} ended: CANCELLED" in out
    assert not alive(pid) and not (on_slurm.root / "data/a-long.out").exists()
    assert (on_slurm.root / "data/b-short.out").exists()  # on the SLURM job asked for again
    status = on_slurm.run("status")
    assert "1 failed" in status.stdout  # and so it runs again next time


@pytest.mark.timeout(240)
def test_a_job_past_its_slurm_walltime_fails_with_why(on_slurm, slurm):
    on_slurm.write("incrun.toml", SETTINGS.format(walltime="00:01:00"))
    on_slurm.inputs("data/long.inp", text="300")
    started = time.monotonic()
    done = on_slurm.run("--cluster", "slurm", timeout=200)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "passed its walltime of 00:01:00" in done.stdout
    assert time.monotonic() - started < 180
    assert not (on_slurm.root / "data/long.out").exists()


def test_a_partition_slurm_refuses_is_one_line(on_slurm):
    on_slurm.write("incrun.toml", SETTINGS.format(walltime="00:05:00") + 'partition = "nope"\n')
    on_slurm.inputs("data/a.inp", text="0")
    done = on_slurm.run("--cluster", "slurm")
    assert done.returncode == 11
    assert "Invalid partition name" in done.stderr and len(done.stderr.splitlines()) == 1
    assert on_slurm.run("status").stdout.startswith("0 up to date, 1 stale")


def test_ctrl_c_gives_the_slurm_jobs_back(on_slurm, slurm):
    on_slurm.inputs("data/a.inp", "data/b.inp", text="60")
    run = start(on_slurm, "--cluster", "slurm", "--grace", "2")
    poll(lambda: len(job_pids(on_slurm)) == 2, timeout=60, what="both jobs to start")
    pids = job_pids(on_slurm)
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130, out + err
    poll(lambda: not any(alive(pid) for pid in pids), timeout=15, what="the jobs to end")
    poll(lambda: not slurm.jobs(), timeout=30, what="the SLURM jobs to be given back")

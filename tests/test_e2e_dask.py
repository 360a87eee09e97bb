"""incrun on a real Dask cluster: a `dask scheduler` and `dask worker` processes started by the
test on 127.0.0.1, or a LocalCluster incrun starts itself (`--cluster local:N`). Faults are
real: workers and schedulers killed with SIGKILL, incrun stopped by Ctrl-C and killed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import alive, incrun_env, poll, start

distributed = pytest.importorskip("distributed")

BIN = Path(sys.executable).parent

# A job that says where it runs (its pid, in pids/), takes a while, and writes its output in
# two steps: a half-written output would show.
SLOW_RUNNER = r'''
import os, sys, time
inp = sys.argv[1]
seconds = float(open(inp).read() or 0)
os.makedirs("pids", exist_ok=True)
open(os.path.join("pids", os.path.basename(inp) + "." + str(os.getpid())), "w").close()
with open(inp[:-4] + ".out", "w") as out:
    out.write("half ")
    out.flush()
    time.sleep(seconds)
    out.write("done " + os.environ.get("FROM_INCRUN", ""))
'''


class DaskProcesses:
    """A scheduler and workers as a user starts them, each in a session of its own."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.scheduler_file = folder / "scheduler.json"
        self.processes: dict[str, subprocess.Popen] = {}

    def _spawn(self, name: str, argv: list[str], cwd: Path | None = None,
               env: dict | None = None, wrap: list[str] = ()) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "w")
        process = subprocess.Popen([*wrap, *argv], cwd=cwd or self.folder, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**incrun_env(), **(env or {})})
        log.close()
        self.processes[name] = process
        return process

    def scheduler(self, *tls: str) -> str:
        self.scheduler_file.unlink(missing_ok=True)
        self._spawn("scheduler", [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1",
                                  "--port", "0", "--no-dashboard", "--scheduler-file",
                                  str(self.scheduler_file), *tls])
        poll(lambda: self.scheduler_file.exists() and self.scheduler_file.stat().st_size,
             what="the scheduler to start")
        return json.loads(self.scheduler_file.read_text())["address"]

    def worker(self, name: str, cwd: Path | None = None, env: dict | None = None,
               wrap: list[str] = (), tls: tuple[str, ...] = ()) -> subprocess.Popen:
        """One worker process (a nanny and its worker) of one thread, named `name`."""
        folder = cwd or self.folder / f"cwd-{name}"
        folder.mkdir(exist_ok=True)
        return self._spawn(name, [str(BIN / "dask"), "worker", "--scheduler-file",
                                  str(self.scheduler_file), "--nthreads", "1", "--name", name,
                                  "--no-dashboard", "--local-directory", str(folder), *tls],
                           cwd=folder, env=env, wrap=wrap)

    def wait_for_workers(self, count: int, address: str, security=None) -> None:
        with distributed.Client(address, timeout=30, security=security) as client:
            client.wait_for_workers(count, timeout=60)

    def kill(self, name: str) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.processes[name].pid, signal.SIGKILL)
        self.processes[name].wait(30)

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.kill(name)


@pytest.fixture
def dask_processes(tmp_path):
    processes = DaskProcesses(tmp_path)
    yield processes
    processes.stop_all()


@pytest.fixture
def cluster(dask_processes):
    """A scheduler and two workers, w1 and w2, on 127.0.0.1: its address."""
    address = dask_processes.scheduler()
    dask_processes.worker("w1")
    dask_processes.worker("w2")
    dask_processes.wait_for_workers(2, address)
    return address


@pytest.fixture
def slow(project):
    project.write("runner.py", SLOW_RUNNER)
    return project


def history(project) -> list[tuple]:
    with sqlite3.connect(project.root / ".incrun" / "state.db") as db:
        return db.execute("SELECT task, status, worker FROM history ORDER BY task").fetchall()


def job_pids(project) -> list[int]:
    folder = project.root / "pids"
    return [int(path.suffix[1:]) for path in folder.iterdir()] if folder.exists() else []


def test_stale_jobs_run_on_the_workers_and_a_rerun_contacts_no_one(slow, cluster,
                                                                   dask_processes):
    slow.inputs(*(f"data/j{i}.inp" for i in range(6)), text="0.2")
    done = slow.run("--cluster", cluster)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded" in done.stdout and "2 jobs at once" in done.stdout
    outputs = sorted((slow.root / "data").glob("*.out"))
    assert [path.read_text() for path in outputs] == ["half done "] * 6
    assert {worker for _, _, worker in history(slow)} == {"w1", "w2"}  # the slots' names
    dask_processes.stop_all()  # nothing is stale: the next run needs no cluster
    again = slow.run("--cluster", cluster)
    assert again.returncode == 0 and "all 6 jobs up to date" in again.stdout
    for command in (["status"], ["--dry-run"], ["explain", "data/j0.inp"]):
        assert slow.run(*command, "--cluster", cluster).returncode == 0


def test_a_worker_killed_mid_job_its_job_finishes_on_the_other_once(slow, cluster,
                                                                    dask_processes):
    slow.inputs("data/long.inp", text="4")
    slow.inputs(*(f"data/s{i}.inp" for i in range(4)), text="0.1")
    run = start(slow, "--cluster", cluster, "-n", "2")
    poll(lambda: any(path.name.startswith("long.inp") for path in (slow.root / "pids").glob("*"))
         if (slow.root / "pids").exists() else False, what="the long job to start")
    first = job_pids(slow)
    long_pid = next(int(p.suffix[1:]) for p in (slow.root / "pids").glob("long.inp.*"))
    # The worker running it: its job's parent's nanny, w1 or w2.
    parent = int(Path(f"/proc/{long_pid}/stat").read_text().split(")")[1].split()[1])
    victim = next(name for name, process in dask_processes.processes.items()
                  if name.startswith("w") and os.getpgid(parent) == process.pid)
    dask_processes.kill(victim)
    out, err = run.communicate(timeout=90)
    assert run.returncode == 0, out + err
    assert "left (its jobs run again elsewhere)" in out  # the display says so
    assert (slow.root / "data/long.out").read_text() == "half done "  # not half-written
    rows = history(slow)
    assert sorted(task for task, _, _ in rows) == sorted(
        f"sweep:data/{name}.inp" for name in ["long", "s0", "s1", "s2", "s3"])  # once each
    survivor = {"w1": "w2", "w2": "w1"}[victim]
    assert ("sweep:data/long.inp", "ok", survivor) in rows
    assert not alive(long_pid)  # the dead worker's job did not run on
    assert len([p for p in job_pids(slow) if p not in first]) >= 1  # it ran again


def test_ctrl_c_ends_the_jobs_on_the_workers_within_the_grace_period(slow, cluster):
    slow.inputs("data/a.inp", "data/b.inp", text="60")
    run = start(slow, "--cluster", cluster, "--grace", "2")
    poll(lambda: len(job_pids(slow)) == 2, what="both jobs to start")
    pids = job_pids(slow)
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130, out + err
    poll(lambda: not any(alive(pid) for pid in pids), timeout=10,
         what="the remote jobs to end")
    # A stopped job leaves no output: its worker removes it once the job has ended, which
    # may be just after incrun has exited.
    poll(lambda: not (slow.root / "data/a.out").exists(), timeout=10,
         what="the stopped job's output to be removed")
    status = slow.run("status")
    assert "2 stale" in status.stdout and "interrupted" in status.stdout


def test_a_timeout_ends_the_remote_job(slow, cluster):
    slow.inputs("data/a.inp", text="60")
    done = slow.run("--cluster", cluster, "--timeout", "1", "--grace", "1")
    assert done.returncode == 1 and "timed out after 1s" in done.stdout
    assert job_pids(slow) and not any(alive(pid) for pid in job_pids(slow))


def test_incrun_killed_its_remote_jobs_end_within_the_grace_period(slow, cluster):
    slow.inputs("data/a.inp", "data/b.inp", text="60")
    run = start(slow, "--cluster", cluster, "--grace", "2")
    poll(lambda: len(job_pids(slow)) == 2, what="both jobs to start")
    pids = job_pids(slow)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(10)
    poll(lambda: not any(alive(pid) for pid in pids), timeout=15,
         what="the remote jobs to end after incrun died")
    again = slow.run("status")
    assert "2 stale" in again.stdout


def test_the_scheduler_lost_mid_run_keeps_what_finished(slow, dask_processes):
    address = dask_processes.scheduler()
    dask_processes.worker("w1")
    dask_processes.worker("w2")
    dask_processes.wait_for_workers(2, address)
    slow.inputs(*(f"data/q{i}.inp" for i in range(4)), text="0.1")
    slow.inputs("data/x.inp", "data/y.inp", text="60")
    run = start(slow, "--cluster", address, "--in-order")
    poll(lambda: len(list((slow.root / "data").glob("q*.out"))) == 4 and len(job_pids(slow)) == 6,
         what="the short jobs to finish and the long ones to start")
    poll(lambda: "ok" in [row[1] for row in history(slow)] if (
        slow.root / ".incrun/state.db").exists() else False, what="a recorded job")
    dask_processes.kill("scheduler")
    out, err = run.communicate(timeout=90)
    assert run.returncode == 11, out + err
    lost = [line for line in (out + err).splitlines() if "lost the Dask scheduler" in line]
    assert len(lost) == 1 and address in lost[0]
    assert "Traceback" not in out + err
    address = dask_processes.scheduler()  # a new cluster: only the two lost jobs run
    dask_processes.worker("w3")
    dask_processes.wait_for_workers(1, address)
    for name in ("x", "y"):
        slow.write(f"data/{name}.inp", "0.1")
    again = slow.run("--cluster", address)
    assert again.returncode == 0 and "2 ran, 4 up to date" in again.stdout, again.stdout


def test_a_worker_with_another_incrun_is_refused_by_name(slow, dask_processes, tmp_path):
    import incrun

    old = tmp_path / "old-incrun"
    shutil.copytree(Path(incrun.__file__).parent, old / "incrun")
    init = old / "incrun" / "__init__.py"
    init.write_text(init.read_text().replace(f'"{incrun.__version__}"', '"0.0.1"'))
    address = dask_processes.scheduler()
    dask_processes.worker("old", env={"PYTHONPATH": str(old)})
    dask_processes.wait_for_workers(1, address)
    slow.inputs("data/a.inp", text="0")
    done = slow.run("--cluster", address)
    assert done.returncode == 11, done.stdout + done.stderr
    assert f"stale worker: {os.uname().nodename} has incrun 0.0.1, this run needs " \
           f"{incrun.__version__}" in done.stderr
    staged = slow.run("--cluster", address, "--stage")  # no probe: each job is refused
    assert staged.returncode == 1
    assert "stale worker:" in staged.stdout and "has incrun 0.0.1" in staged.stdout
    assert not (slow.root / "data/a.out").exists()


def test_env_names_travel_with_the_job(slow, cluster):
    slow.write("incrun.toml", 'env = ["FROM_INCRUN"]\n')
    slow.inputs("data/a.inp", text="0")
    done = slow.run("--cluster", cluster, env={"FROM_INCRUN": "hello"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert (slow.root / "data/a.out").read_text() == "half done hello"


def _hidden_project_worker(dask_processes, project) -> list[str]:
    """A wrapper whose worker sees an empty folder where the project is: no shared files."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) to hide the project from a worker")
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'mount -t tmpfs none "{project.root}" && exec "$0" "$@"']


def test_workers_that_cannot_see_the_project_stop_the_run_with_a_hint(slow, dask_processes):
    wrap = _hidden_project_worker(dask_processes, slow)
    address = dask_processes.scheduler()
    dask_processes.worker("blind", wrap=wrap)
    dask_processes.wait_for_workers(1, address)
    slow.inputs("data/a.inp", text="0")
    done = slow.run("--cluster", address)
    assert done.returncode == 11
    assert "cannot read the project folder" in done.stderr and "--stage" in done.stderr
    assert slow.run("status").stdout.startswith("0 up to date, 1 stale")


def test_stage_sends_the_files_and_brings_the_outputs_back(slow, dask_processes):
    wrap = _hidden_project_worker(dask_processes, slow)
    address = dask_processes.scheduler()
    dask_processes.worker("blind", wrap=wrap)
    dask_processes.wait_for_workers(1, address)
    slow.inputs("data/a.inp", "data/b.inp", text="0")
    done = slow.run("--cluster", address, "--stage")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (slow.root / "data/a.out").read_text() == "half done "
    assert not (slow.root / "pids").exists()  # the jobs ran elsewhere: what they left stays
    slow.write("incrun.toml", "stage_limit = 10\n")  # runner.py alone is more
    (slow.root / "data/a.inp").write_text("0.0")
    too_big = slow.run("--cluster", address, "--stage")
    assert too_big.returncode == 1
    assert "runner.py takes the job's files past the --stage limit of 10 bytes" in too_big.stdout


# Fails its first attempt, saying why; keeps count outside the project (TRIES, a folder).
FLAKY_ONCE = r'''
import os, sys
tries = os.environ["TRIES"]
attempt = len(os.listdir(tries)) + 1
open(os.path.join(tries, str(attempt)), "w").close()
print(f"attempt {attempt} on a worker")
if attempt == 1:
    sys.exit("scratch disk full")
open(sys.argv[1][:-4] + ".out", "w").write("ok")
'''


@pytest.mark.parametrize("stage", [[], ["--stage"]])
def test_a_retry_on_the_cluster_keeps_the_first_attempts_log(project, dask_processes, tmp_path,
                                                             stage):
    wrap = _hidden_project_worker(dask_processes, project) if stage else ()
    address = dask_processes.scheduler()
    dask_processes.worker("w1", wrap=wrap)
    dask_processes.wait_for_workers(1, address)
    project.write("runner.py", FLAKY_ONCE)
    project.write("incrun.toml", 'env = ["TRIES"]\n')
    project.inputs("a.inp")
    (tmp_path / "tries").mkdir()
    done = project.run("--cluster", address, "--retries", "1", *stage,
                       env={"TRIES": str(tmp_path / "tries")})
    assert done.returncode == 0, done.stdout + done.stderr
    log = (project.root / ".incrun/logs/sweep/a.inp.log").read_text().splitlines()
    assert log == ["attempt 1 on a worker", "scratch disk full", "--- attempt 2 of 2 ---",
                   "attempt 2 on a worker"]


def test_local_n_starts_workers_here_bound_to_loopback(slow):
    slow.inputs(*(f"data/j{i}.inp" for i in range(4)), text="1")
    slow.write("listening.py", "")
    run = start(slow, "--cluster", "local:2")
    poll(lambda: len(job_pids(slow)) >= 2, what="jobs on both workers")
    psutil = pytest.importorskip("psutil")
    me = psutil.Process(run.pid)
    listening = [conn.laddr.ip for process in [me, *me.children(recursive=True)]
                 for conn in process.net_connections(kind="inet") if conn.status == "LISTEN"]
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, out + err
    assert listening and set(listening) == {"127.0.0.1"}
    assert "on the Dask cluster local:2: 2 workers" in out


def test_bad_cluster_values_are_one_line_with_an_exit_code(slow, tmp_path):
    slow.inputs("data/a.inp", text="0")
    bad = slow.run("--cluster", "localhost:8786")
    assert bad.returncode == 2 and "tcp://HOST:PORT" in bad.stderr
    unreachable = slow.run("--cluster", "tcp://127.0.0.1:9")
    assert unreachable.returncode == 11 and len(unreachable.stderr.splitlines()) == 1
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in unreachable.stderr
    slow.write("incrun.toml", "[slurm]\nqueue = 'short'\n")
    unknown = slow.run("--cluster", "slurm")
    assert unknown.returncode == 5 and "unknown setting 'queue'" in unknown.stderr
    (slow.root / "incrun.toml").unlink()
    fake = tmp_path / "no-dask"  # an environment where distributed is not installed
    (fake / "distributed").mkdir(parents=True)
    (fake / "distributed" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'distributed'\", name='distributed')\n")
    missing = slow.run("--cluster", "local:1", env={"PYTHONPATH": str(fake)})
    assert missing.returncode == 12
    assert "pip install 'incrun[dask]'" in missing.stderr
    assert slow.run("status").stdout.startswith("0 up to date, 1 stale")


def _certificates(folder: Path) -> dict[str, Path]:
    """A CA, and a certificate it signs for 127.0.0.1, made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl to make certificates")
    ca_key, ca, key, csr, cert = (folder / name for name in
                                  ("ca.key", "ca.pem", "me.key", "me.csr", "me.pem"))
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName = IP:127.0.0.1\n")

    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out",
            str(ca), "-days", "2", "-subj", "/CN=incrun test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
            "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return {"ca": ca, "cert": cert, "key": key}


def test_a_tls_scheduler_with_the_certificates_named_in_config(slow, dask_processes, tmp_path):
    files = _certificates(tmp_path)
    tls = ("--tls-ca-file", str(files["ca"]), "--tls-cert", str(files["cert"]),
           "--tls-key", str(files["key"]))
    address = dask_processes.scheduler("--protocol", "tls", *tls)
    assert address.startswith("tls://127.0.0.1:")
    dask_processes.worker("w1", tls=tls)
    security = distributed.security.Security(
        tls_ca_file=str(files["ca"]), tls_client_cert=str(files["cert"]),
        tls_client_key=str(files["key"]), require_encryption=True)
    dask_processes.wait_for_workers(1, address, security)
    slow.inputs("data/a.inp", text="0")
    refused = slow.run("--cluster", address)
    assert refused.returncode == 5 and "needs ca, cert, key" in refused.stderr
    slow.write("incrun.toml", "[dask]\n" + "".join(f'{key} = "{path}"\n'
                                                   for key, path in files.items()))
    done = slow.run("--cluster", address)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (slow.root / "data/a.out").read_text() == "half done "
    assert str(files["key"]) not in done.stdout + done.stderr


def test_the_same_experience_json_junit_report_and_the_slots_of_n(slow, cluster, tmp_path):
    slow.inputs(*(f"data/j{i}.inp" for i in range(4)), text="0.3")
    junit = tmp_path / "junit.xml"
    done = slow.run("--cluster", cluster, "-n", "1", "--json", "--junit", str(junit))
    assert done.returncode == 0, done.stdout + done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    started = [event for event in events if event["event"] == "job_started"]
    assert len(started) == 4 and {event["worker"] for event in started} <= {"w1", "w2"}
    assert any(event["event"] == "notice" and "1 job at once" in event["text"]
               for event in events)
    assert junit.read_text().count("<testcase") == 4
    with sqlite3.connect(slow.root / ".incrun" / "state.db") as db:
        spans = sorted(db.execute("SELECT started, ended FROM history").fetchall())
        workers = db.execute("SELECT workers FROM runs").fetchone()[0]
    assert workers == 1
    assert all(later[0] >= earlier[1] - 0.05 for earlier, later in zip(spans, spans[1:]))
    report = slow.run("report")
    assert report.returncode == 0
    page = (slow.root / ".incrun" / "report.html").read_text()
    assert all(f">{name}<" in page for name in {w for _, _, w in history(slow)})


CALLED = '''
import os

def simulate(inp, out):
    open(out, "w").write(open(inp).read() + " by " + str(os.getpid()))
'''

DODO = '''
from incrun import Rule

sim = Rule(name="sim", inputs=["data/*.inp"], command=["sims:simulate", "{input}", "{stem}.out"])


def task_sim():
    yield from sim.tasks()


def task_notes():
    """A hand-written task: Python of the user's, which never leaves this machine."""
    def write():
        open("notes.txt", "w").write("written here")
    return {"actions": [write], "targets": ["notes.txt"], "file_dep": ["data/a.inp"]}
'''


def test_calls_run_on_the_workers_and_hand_written_tasks_here(project, cluster):
    (project.root / "runner.py").unlink()
    project.write("sims.py", CALLED)
    project.write("dodo.py", DODO)
    project.inputs("data/a.inp", "data/b.inp", text="x")
    done = project.run("--cluster", cluster)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (project.root / "data/a.out").read_text().startswith("x by ")
    assert (project.root / "notes.txt").read_text() == "written here"
    pids = {(project.root / f"data/{name}.out").read_text().split()[-1] for name in "ab"}
    assert str(os.getpid()) not in pids
    workers = dict((task, worker) for task, _, worker in history(project))
    assert workers["notes"] not in ("w1", "w2") and workers["sim:data/a.inp"] in ("w1", "w2")


def test_fail_fast_starts_nothing_on_the_cluster_after_a_failure(slow, cluster):
    slow.inputs("a.inp", text="fail")  # not a number: fails at once
    slow.inputs(*(f"q{i}.inp" for i in range(6)), text="1")
    done = slow.run("--cluster", cluster, "-x", "--in-order")
    assert done.returncode == 1, done.stdout + done.stderr
    started = {path.name.split(".")[0] for path in (slow.root / "pids").iterdir()}
    assert started <= {"a", "q0"}  # at most the one running beside the failure
    assert "not run" in done.stdout


def test_a_run_with_nothing_to_do_never_loads_dask(slow, tmp_path):
    slow.inputs("data/a.inp", text="0")
    assert slow.run("--cluster", "local:1").returncode == 0
    fake = tmp_path / "no-dask"  # importing distributed now fails: it must not be imported
    (fake / "distributed").mkdir(parents=True)
    (fake / "distributed" / "__init__.py").write_text("raise SystemExit('distributed loaded')\n")
    again = slow.run("--cluster", "local:1", env={"PYTHONPATH": str(fake)})
    assert again.returncode == 0 and "up to date" in again.stdout, again.stderr


def test_two_runs_on_one_scheduler_leave_each_other_alone(slow, cluster, tmp_path):
    slow.inputs("data/a.inp", "data/b.inp", text="3")
    first = start(slow, "--cluster", cluster)
    poll(lambda: len(job_pids(slow)) == 2, what="the first run's jobs to start")
    other = tmp_path / "other"
    other.mkdir()
    (other / "runner.py").write_text(SLOW_RUNNER)
    (other / "c.inp").write_text("0")
    second = subprocess.run([str(BIN / "incrun"), "--cluster", cluster], cwd=other,
                            env=incrun_env(), capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stdout + second.stderr
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, out + err  # its jobs were not ended by the second run
    assert (slow.root / "data/a.out").read_text() == "half done "


def test_stage_refuses_to_send_a_file_outside_the_project(slow, cluster, tmp_path):
    (slow.root.parent / "shared.txt").write_text("parameters")
    slow.write("incrun.toml", 'deps = ["../shared.txt"]\n')
    slow.inputs("data/a.inp", text="0")
    done = slow.run("--cluster", cluster, "--stage")
    assert done.returncode == 1
    assert "cannot send ../shared.txt with --stage: it is outside the project" in done.stdout

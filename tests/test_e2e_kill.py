"""End to end: kill -9, Ctrl-C, SIGTERM, timeouts, retries and the run lock, with real signals;
each guarantee for jobs started cold (a new Python each) and warm (forked from a worker that
imported what the script imports).

Every process signalled here was started by the test itself (incrun in a session of its own).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket

import pytest
from conftest import alive, poll, processes_in, start

from incrun.store import Store

# Writes its output in two halves. The job of the input named by VICTIM stops between them,
# says so with a file in midwrite/, and waits there (bounded) for the kill the test sends then.
SLOW_WRITER = r'''
import json, os, sys, time, uuid
inp = sys.argv[1]

def started_as():
    with open("/proc/self/cmdline", "rb") as cmdline:
        return cmdline.read().split(b"\0")[1].decode()

victim = os.environ.get("VICTIM", "")
if victim and inp != victim and os.path.exists(os.path.join("midwrite", victim[:-4])):
    time.sleep(60)  # no job ends once the victim is cut off: none passes it before the kill
with open(inp[:-4] + ".out", "w") as out:
    out.write("first half|")
    out.flush()
    if inp == victim:
        os.makedirs("midwrite", exist_ok=True)
        open(os.path.join("midwrite", inp[:-4]), "w").close()
        time.sleep(60)
    out.write("second half\n")
os.makedirs("records", exist_ok=True)
name = os.path.join("records", uuid.uuid4().hex)
with open(name + ".tmp", "w") as f:  # with how it started: its command line's second word
    json.dump({"input": inp, "started": started_as()}, f)
os.replace(name + ".tmp", name + ".json")  # a record is whole or absent, even after kill -9
'''

# Starts a grandchild, writes half an output and its pids, then waits (for a signal or a file).
HANGER = r'''
import os, signal, subprocess, sys, time
inp = sys.argv[1]
if "fast" in inp:
    open(inp[:-4] + ".out", "w").write("done\n")
    sys.exit(0)
if os.environ.get("IGNORE_TERM"):  # note the TERM, and carry on
    signal.signal(signal.SIGTERM, lambda *_: open(inp + ".got-term", "w").close())
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
open(inp[:-4] + ".out", "w").write("half")
os.makedirs("pids", exist_ok=True)
with open(inp + ".pid-part", "w") as f:  # whole, then moved: a reader never sees half of it
    f.write(f"{os.getpid()} {child.pid} {os.getppid()}")
os.replace(inp + ".pid-part", os.path.join("pids", os.path.basename(inp) + ".pid"))
deadline = time.time() + 120
while not os.path.exists("release") and time.time() < deadline:
    time.sleep(0.02)
child.kill()  # released: nothing of the job outlives it
child.wait()
open(inp[:-4] + ".out", "w").write("done\n")
'''


@pytest.fixture(params=["cold", "warm"])
def mode(request, project) -> str:
    """How the project's jobs start: cold, or warm (`warm = true`)."""
    if request.param == "warm":
        project.write("incrun.toml", "warm = true\n")
    return request.param


def started_as(pid: int) -> str:
    """How a running job started: "cold" (a new Python) or "warm" (a fork of a worker)."""
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        words = cmdline.read().split(b"\0")
    return "warm" if b"incrun.executors.workers" in words[2] else "cold"


def recorded_ok(project) -> set[str]:
    store = Store(project.root / ".incrun").open(writable=False)
    done = {name.split(":", 1)[1] for name in store.signatures()}  # a success has one
    store.close()
    return done


def test_kill_9_mid_write_loses_only_the_running_jobs(project, mode):
    project.write("runner.py", SLOW_WRITER)
    names = [f"in{i:02d}.inp" for i in range(60)]
    project.inputs(*names)
    done, victims = set(), ("in05.inp", "in30.inp", "in55.inp")
    for victim in victims:  # each run is killed while this job is half-way through its output
        run = start(project, "-n", "4", env={"VICTIM": victim})
        poll(lambda v=victim[:-4]: (project.root / "midwrite" / v).exists(),
             what=f"{victim} mid-write")
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(30)
        poll(lambda: not processes_in(project.root), what="the guard to end the jobs")
        assert (project.root / victim.replace(".inp", ".out")).read_text() == "first half|"
        executed = {record["input"] for record in project.records()}
        assert {record["started"] for record in project.records()} == \
            {"runner.py" if mode == "cold" else "-c"}
        assert not executed & done, "a job recorded as done ran again"
        now_done = recorded_ok(project)
        assert victim not in now_done  # cut off mid-write: never counted as done
        assert done <= now_done and now_done <= executed | done  # only jobs that finished
        for name in now_done:  # nothing half-written is counted as done
            assert (project.root / name.replace(".inp", ".out")).read_text() == \
                "first half|second half\n"
        done = now_done
        project.ran()
    final = project.run("-n", "4")
    assert final.returncode == 0, final.stdout
    assert not list((project.root / ".incrun" / "logs").glob(".scratch-*"))  # cleaned up
    rerun = set(project.ran())
    assert rerun == set(names) - done  # exactly the jobs not finished before the kills
    assert victims[-1] in rerun  # the last one cut off runs again, whole this time
    assert all((project.root / n.replace(".inp", ".out")).read_text() ==
               "first half|second half\n" for n in names)


def hanging_pids(project, count: int, mode: str | None = None) -> list[int]:
    """Once `count` hanging jobs have started (each as `mode` says, if given): the pids of each
    and of its grandchild."""
    folder = project.root / "pids"
    poll(lambda: folder.exists() and len(list(folder.glob("*"))) == count,
         what=f"{count} hanging jobs")
    pids = [[int(p) for p in f.read_text().split()[:2]] for f in folder.iterdir()]
    if mode is not None:
        assert {started_as(job) for job, _ in pids} == {mode}
    return [pid for pair in pids for pid in pair]


def start_hanging_jobs(project, mode, *args, env=None):
    project.write("runner.py", HANGER)
    project.inputs("fast1.inp", "fast2.inp", "slow1.inp", "slow2.inp")
    run = start(project, "-n", "2", *args, env=env)
    return run, hanging_pids(project, 2, mode)


def test_ctrl_c_stops_cleanly_and_leaves_nothing_behind(project, mode):
    run, pids = start_hanging_jobs(project, mode)
    os.kill(run.pid, signal.SIGINT)
    out, err = run.communicate(timeout=30)
    assert run.returncode == 130
    assert "Traceback" not in out + err
    assert "stopped by SIGINT" in out and "2 not run" in out
    assert not [pid for pid in pids if alive(pid)]  # jobs and their grandchildren
    assert not (project.root / "slow1.out").exists()  # partial outputs removed
    assert recorded_ok(project) == {"fast1.inp", "fast2.inp"}
    status = project.run("status").stdout
    assert "sweep:slow1.inp  interrupted last time" in status


def job_states(project) -> dict[str, tuple[str, str]]:
    """Each job's state and kind of reason, as `incrun status --json` tells them."""
    status = project.run("status", "--json")
    assert status.returncode == 0, status.stderr
    return {job["task"].removeprefix("sweep:"): (job["state"], job["kind"])
            for job in json.loads(status.stdout)["jobs"]}


QUEUED = ["a-slow.inp", "b-fast.inp", "c-fast.inp", "d-fast.inp"]  # at -n 1: one runs, 3 wait


def stop_with_three_queued(project, mode, *args: str) -> str:
    """Ctrl-C while the first of four jobs hangs at -n 1 and the other three wait."""
    run = start(project, "-n", "1", "--in-order", *args)
    hanging_pids(project, 1, mode)
    os.kill(run.pid, signal.SIGINT)
    out, err = run.communicate(timeout=30)
    assert run.returncode == 130, out + err
    assert "0 ran, 4 not run" in out, out  # the one stopped and the three never started
    return out


def test_ctrl_c_with_jobs_queued_leaves_their_state_as_it_was(project, mode):
    project.write("runner.py", HANGER)
    project.inputs(*QUEUED)
    stop_with_three_queued(project, mode)
    assert recorded_ok(project) == set()
    assert job_states(project) == {"a-slow.inp": ("stale", "interrupted"),
                                   "b-fast.inp": ("stale", "never-run"),
                                   "c-fast.inp": ("stale", "never-run"),
                                   "d-fast.inp": ("stale", "never-run")}


def test_ctrl_c_of_a_forced_run_keeps_the_queued_jobs_up_to_date(project, mode):
    project.write("runner.py", HANGER)
    project.inputs(*QUEUED)
    (project.root / "release").write_text("")
    assert project.run("-n", "1").returncode == 0
    (project.root / "release").unlink()
    shutil.rmtree(project.root / "pids")
    stop_with_three_queued(project, mode, "-B")
    # The three that never started keep their record of success, signature and all.
    assert recorded_ok(project) == {"b-fast.inp", "c-fast.inp", "d-fast.inp"}
    assert job_states(project) == {"a-slow.inp": ("stale", "interrupted"),
                                   "b-fast.inp": ("up-to-date", ""),
                                   "c-fast.inp": ("up-to-date", ""),
                                   "d-fast.inp": ("up-to-date", "")}
    (project.root / "release").write_text("")
    again = project.run("-n", "1", "--json")
    assert again.returncode == 0, again.stdout
    ran = [json.loads(line)["name"] for line in again.stdout.splitlines()
           if json.loads(line)["event"] == "job_finished"]
    assert ran == ["sweep:a-slow.inp"]  # the three that never started were not redone


def test_kill_9_ends_the_jobs_it_ran_from_its_own_threads(project):
    # No more jobs than slots: incrun starts them from threads, without worker processes that
    # would end them, so after a kill -9 only the guard is left to.
    project.write("runner.py", HANGER)
    project.inputs("slow1.inp", "slow2.inp")
    run = start(project, "-n", "2")
    pids = hanging_pids(project, 2)
    parents = {int(f.read_text().split()[2]) for f in (project.root / "pids").iterdir()}
    assert parents == {run.pid}, "the jobs were not started by incrun itself"
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(30)
    poll(lambda: not [pid for pid in pids if alive(pid)], what="the guard to end the jobs")
    poll(lambda: not processes_in(project.root), what="the guard to exit")
    assert not (project.root / "slow1.out").exists() or \
        (project.root / "slow1.out").read_text() == "half"  # cut off, and not recorded
    assert recorded_ok(project) == set()
    (project.root / "release").write_text("")
    assert project.run("-n", "2").returncode == 0
    assert recorded_ok(project) == {"slow1.inp", "slow2.inp"}


def test_sigterm_stops_cleanly_with_its_own_exit_code(project, mode):
    run, pids = start_hanging_jobs(project, mode)
    os.kill(run.pid, signal.SIGTERM)
    out, err = run.communicate(timeout=30)
    assert run.returncode == 143
    assert "stopped by SIGTERM" in out and "Traceback" not in err
    assert not [pid for pid in pids if alive(pid)]
    assert recorded_ok(project) == {"fast1.inp", "fast2.inp"}


def test_a_second_ctrl_c_kills_at_once(project, mode):
    run, pids = start_hanging_jobs(project, mode, "--grace", "600", env={"IGNORE_TERM": "1"})
    os.kill(run.pid, signal.SIGINT)  # jobs ignore the TERM that follows: a grace period starts
    poll(lambda: len(list(project.root.glob("*.got-term"))) == 2,
         what="the first signal handled")
    os.kill(run.pid, signal.SIGINT)
    out, err = run.communicate(timeout=30)  # far inside the grace period the jobs were given
    assert run.returncode == 130
    assert "Traceback" not in err
    poll(lambda: not [pid for pid in pids if alive(pid)], timeout=30, what="jobs killed")
    assert recorded_ok(project) == {"fast1.inp", "fast2.inp"}


def test_timeout_kills_the_whole_tree_and_is_recorded(project, mode):
    project.write("runner.py", HANGER)
    project.inputs("slow1.inp", "fast1.inp")
    result = project.run("--timeout", "1")
    assert result.returncode == 1
    assert "FAILED sweep:slow1.inp (timed out after 1s)" in result.stdout
    pids = [int(p) for p in (project.root / "pids" / "slow1.inp.pid").read_text().split()]
    poll(lambda: not [pid for pid in pids if alive(pid)], timeout=10, what="tree killed")
    assert not (project.root / "slow1.out").exists()
    assert "timed out" in project.run("status").stdout


def test_timeout_from_config_and_from_a_dodo_rule(project, mode):
    project.write("runner.py", HANGER)
    project.inputs("slow1.inp")
    warm = mode == "warm"
    project.write("incrun.toml", f"timeout = 0.5\nwarm = {str(warm).lower()}\n")
    for setting, task in (("incrun.toml", "sweep:slow1.inp"), ("dodo.py", "sim:slow1.inp")):
        if setting == "dodo.py":
            (project.root / "incrun.toml").unlink()
            project.write("dodo.py", "from incrun import Rule\ndef task_sim():\n"
                          f"    yield from Rule(timeout=0.5, warm={warm}).tasks()\n")
        result = project.run()
        assert result.returncode == 1, result.stdout
        assert f"FAILED {task} (timed out after 0.5s)" in result.stdout
        pids = [int(p) for p in (project.root / "pids" / "slow1.inp.pid").read_text().split()]
        poll(lambda p=pids: not [pid for pid in p[:2] if alive(pid)], what="the job's tree ended")
        assert not (project.root / "slow1.out").exists()  # its half-written output is gone
        status = json.loads(project.run("status", "--json").stdout)
        assert [(job["task"], job["state"]) for job in status["jobs"]] == [(task, "failed")]
        assert "timed out" in status["jobs"][0]["reason"]


FLAKY = r'''
import os, sys
inp = sys.argv[1]
marker = inp + ".tried"
if not os.path.exists(marker):
    open(marker, "w").close()
    print("transient failure", file=sys.stderr)
    sys.exit(1)
open(inp[:-4] + ".out", "w").write("ok\n")
'''


def test_retries_turn_a_flaky_job_green_and_record_the_attempts(project, mode):
    project.write("runner.py", FLAKY)
    project.inputs("a.inp")
    result = project.run("--retries", "2")
    assert result.returncode == 0
    assert "retrying sweep:a.inp (attempt 2 of 3): exit code 1" in result.stdout
    assert "sweep:a.inp succeeded on attempt 2" in result.stdout
    store = Store(project.root / ".incrun").open(writable=False)
    assert store.job_row("sweep:a.inp")["attempts"] == 2
    store.close()


def test_without_retries_a_flaky_job_fails(project, mode):
    project.write("runner.py", FLAKY)
    project.inputs("a.inp")
    assert project.run().returncode == 1


def test_one_run_per_directory_and_no_manual_unlock(project):
    run, pids = start_hanging_jobs(project, None)
    second = project.run()
    assert second.returncode == 10
    assert f"pid {run.pid} on {socket.gethostname()}" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert project.run("status").returncode == 0
    assert project.run("list").returncode == 0
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(30)
    poll(lambda: not processes_in(project.root), what="the guard to end the jobs")
    (project.root / "release").write_text("")
    third = project.run()
    assert third.returncode == 0, third.stdout + third.stderr
    assert recorded_ok(project) == {"fast1.inp", "fast2.inp", "slow1.inp", "slow2.inp"}

"""End to end: kill -9, Ctrl-C, SIGTERM, timeouts, retries and the run lock, with real signals.

Every process signalled here was started by the test itself (incrun in a session of its own).
"""

from __future__ import annotations

import os
import signal
import socket

from conftest import alive, poll, processes_in, start

from incrun.store import Store

# Writes its output in two halves with a pause between, so a kill can land mid-write.
SLOW_WRITER = r'''
import json, os, sys, time, uuid
inp = sys.argv[1]
with open(inp[:-4] + ".out", "w") as out:
    out.write("first half|")
    out.flush()
    time.sleep(0.04)
    out.write("second half\n")
os.makedirs("records", exist_ok=True)
name = os.path.join("records", uuid.uuid4().hex)
with open(name + ".tmp", "w") as f:
    json.dump({"input": inp}, f)
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
with open(os.path.join("pids", os.path.basename(inp) + ".pid"), "w") as f:
    f.write(f"{os.getpid()} {child.pid}")
deadline = time.time() + 120
while not os.path.exists("release") and time.time() < deadline:
    time.sleep(0.02)
open(inp[:-4] + ".out", "w").write("done\n")
'''


def recorded_ok(project) -> set[str]:
    store = Store(project.root / ".incrun").open(writable=False)
    done = {name.split(":", 1)[1] for name in store.signatures()}  # a success has one
    store.close()
    return done


def test_kill_9_at_any_moment_loses_only_the_running_jobs(project):
    project.write("runner.py", SLOW_WRITER)
    names = [f"in{i:03d}.inp" for i in range(300)]
    project.inputs(*names)
    everything, done, figures = set(names), set(), []
    for kill_after in (20, 90, 160):
        run = start(project, "-n", "4")
        poll(lambda n=kill_after: len(project.records()) >= n, what=f"{kill_after} jobs")
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(30)
        poll(lambda: not processes_in(project.root), what="the guard to end the jobs")
        executed = {record["input"] for record in project.records()}
        assert not executed & done, "a job recorded as done ran again"
        now_done = recorded_ok(project)
        assert done <= now_done
        for name in now_done:  # nothing half-written is counted as done
            assert (project.root / name.replace(".inp", ".out")).read_text() == \
                "first half|second half\n"
        figures.append((len(now_done - done), len(everything - now_done)))
        done = now_done
        project.ran()
    final = project.run("-n", "4")
    assert final.returncode == 0, final.stdout
    assert not list((project.root / ".incrun" / "logs").glob(".scratch-*"))  # cleaned up
    rerun = set(project.ran())
    assert rerun == everything - done  # exactly the jobs not finished before the kills
    assert all((project.root / n.replace(".inp", ".out")).read_text().endswith("second half\n")
               for n in names)
    print("jobs finished and recorded per killed run, jobs left to run:", figures)


def start_hanging_jobs(project, *args, env=None):
    project.write("runner.py", HANGER)
    project.inputs("fast1.inp", "fast2.inp", "slow1.inp", "slow2.inp")
    run = start(project, "-n", "2", *args, env=env)
    poll(lambda: len(list((project.root / "pids").glob("*"))) == 2
         if (project.root / "pids").exists() else False, what="two hanging jobs")
    pids = [int(p) for f in (project.root / "pids").iterdir() for p in f.read_text().split()]
    return run, pids


def test_ctrl_c_stops_cleanly_and_leaves_nothing_behind(project):
    run, pids = start_hanging_jobs(project)
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


def test_sigterm_stops_cleanly_with_its_own_exit_code(project):
    run, pids = start_hanging_jobs(project)
    os.kill(run.pid, signal.SIGTERM)
    out, err = run.communicate(timeout=30)
    assert run.returncode == 143
    assert "stopped by SIGTERM" in out and "Traceback" not in err
    assert not [pid for pid in pids if alive(pid)]
    assert recorded_ok(project) == {"fast1.inp", "fast2.inp"}


def test_a_second_ctrl_c_kills_at_once(project):
    run, pids = start_hanging_jobs(project, env={"IGNORE_TERM": "1"})
    os.kill(run.pid, signal.SIGINT)  # jobs ignore the TERM that follows: a grace period starts
    poll(lambda: list(project.root.glob("*.got-term")), what="the first signal handled")
    os.kill(run.pid, signal.SIGINT)
    out, err = run.communicate(timeout=4)  # well inside the 5 s grace period
    assert run.returncode == 130
    assert "Traceback" not in err
    poll(lambda: not [pid for pid in pids if alive(pid)], timeout=5, what="jobs killed")
    assert recorded_ok(project) == {"fast1.inp", "fast2.inp"}


def test_timeout_kills_the_whole_tree_and_is_recorded(project):
    project.write("runner.py", HANGER)
    project.inputs("slow1.inp", "fast1.inp")
    result = project.run("--timeout", "1")
    assert result.returncode == 1
    assert "FAILED sweep:slow1.inp (timed out after 1s)" in result.stdout
    pids = [int(p) for p in (project.root / "pids" / "slow1.inp.pid").read_text().split()]
    poll(lambda: not [pid for pid in pids if alive(pid)], timeout=10, what="tree killed")
    assert not (project.root / "slow1.out").exists()
    assert "timed out" in project.run("status").stdout


def test_timeout_from_config_and_from_a_dodo_rule(project):
    project.write("runner.py", HANGER)
    project.inputs("slow1.inp")
    project.write("incrun.toml", "timeout = 0.5\n")
    assert "timed out after 0.5s" in project.run().stdout
    (project.root / "incrun.toml").unlink()
    project.write("dodo.py", "from incrun import Rule\n"
                  "def task_sim():\n    yield from Rule(timeout=0.5).tasks()\n")
    assert "FAILED sim:slow1.inp (timed out after 0.5s)" in project.run().stdout


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


def test_retries_turn_a_flaky_job_green_and_record_the_attempts(project):
    project.write("runner.py", FLAKY)
    project.inputs("a.inp")
    result = project.run("--retries", "2")
    assert result.returncode == 0
    assert "retrying sweep:a.inp (attempt 2 of 3): exit code 1" in result.stdout
    assert "sweep:a.inp succeeded on attempt 2" in result.stdout
    store = Store(project.root / ".incrun").open(writable=False)
    assert store.job_row("sweep:a.inp")["attempts"] == 2
    store.close()


def test_without_retries_a_flaky_job_fails(project):
    project.write("runner.py", FLAKY)
    project.inputs("a.inp")
    assert project.run().returncode == 1


def test_one_run_per_directory_and_no_manual_unlock(project):
    run, pids = start_hanging_jobs(project)
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

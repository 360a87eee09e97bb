"""End to end: `module:function` commands run in long-lived worker processes, incrementally."""

from __future__ import annotations

import json
import os
import signal

from conftest import alive, poll, processes_in, start

# A project module, as a sweep script would have it: one function per job, no Python per job.
SIMS = r'''
import json, os, sys, time, uuid

def simulate(inp, *rest):
    text = open(inp, encoding="utf-8").read()
    os.makedirs("records", exist_ok=True)
    with open(os.path.join("records", uuid.uuid4().hex + ".json"), "w") as f:
        json.dump({"input": inp, "pid": os.getpid(), "args": [inp, *rest]}, f)
    print("simulating", inp)
    if "RAISE" in text:
        raise ValueError("bad parameter in " + inp)
    if "CRASH" in text:
        os.kill(os.getpid(), 9)
    if "HANG" in text:
        open(inp + ".hanging", "w").close()
        time.sleep(60)
    if "NOOUT" not in text:
        out = rest[-1] if rest else inp[:-4] + ".out"
        open(out, "w", encoding="utf-8").write(text.upper())
'''


def call_project(project, command: str = '"sims:simulate"', extra: str = "") -> None:
    """The project's jobs become calls of sims.simulate (incrun.toml takes TOML values)."""
    project.write("sims.py", SIMS)
    project.write("incrun.toml", f"command = {command}\n{extra}")


def calls(project) -> list[dict]:
    records = project.records()
    project.ran()  # clears them
    return records


def test_calls_run_in_a_few_long_lived_workers_and_rerun_nothing(project):
    names = [f"p{i}.inp" for i in range(8)]
    project.inputs(*names)
    call_project(project)
    result = project.run("-n", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    records = calls(project)
    assert sorted(r["input"] for r in records) == names
    assert len({r["pid"] for r in records}) <= 2  # two workers served eight jobs
    assert all((project.root / name.replace(".inp", ".out")).read_text() == "X = 1\n"
               for name in names)
    assert project.run("-n", "2").returncode == 0
    assert calls(project) == []  # up to date, as with runner.py


def test_a_call_gets_its_arguments_and_its_output_goes_to_its_log(project):
    project.inputs("a.inp")
    call_project(project, command='["sims:simulate", "{input}", "extra", "{stem}.res"]',
                 extra='outputs = ["{stem}.res"]\n')
    result = project.run()
    assert result.returncode == 0, result.stdout + result.stderr
    [record] = calls(project)
    assert record["args"] == ["a.inp", "extra", "a.res"]
    assert (project.root / "a.res").exists()
    log = project.root / ".incrun" / "logs" / "sweep" / "a.inp.log"
    assert log.read_text() == "simulating a.inp\n"


def test_editing_the_module_reruns_every_call(project):
    project.inputs("a.inp", "b.inp")
    call_project(project)
    project.run()
    calls(project)
    project.write("sims.py", SIMS + "\n# tuned\n")
    assert project.run().returncode == 0
    assert sorted(r["input"] for r in calls(project)) == ["a.inp", "b.inp"]


def test_a_call_that_raises_fails_alone_with_its_traceback_logged(project):
    project.inputs("a.inp", "b.inp", "c.inp")
    project.write("b.inp", "RAISE\n")
    call_project(project)
    result = project.run("-n", "1")
    assert result.returncode == 1
    assert "FAILED sweep:b.inp (ValueError: bad parameter in b.inp)" in result.stdout
    assert "Traceback" in (project.root / ".incrun/logs/sweep/b.inp.log").read_text()
    assert (project.root / "a.out").exists() and (project.root / "c.out").exists()
    assert not (project.root / "b.out").exists()


def test_a_crashed_worker_is_replaced_and_its_job_reported_failed(project):
    project.inputs("a.inp", "b.inp", "c.inp", "d.inp")
    project.write("b.inp", "CRASH\n")
    call_project(project)
    result = project.run("-n", "1")
    assert result.returncode == 1
    assert "FAILED sweep:b.inp (the worker process was killed by signal 9)" in result.stdout
    records = calls(project)
    assert sorted(r["input"] for r in records) == ["a.inp", "b.inp", "c.inp", "d.inp"]
    assert len({r["pid"] for r in records}) == 2  # the one after the crash is a new process
    assert all((project.root / f"{x}.out").exists() for x in "acd")


def test_a_call_without_its_output_fails(project):
    project.inputs("a.inp")
    project.write("a.inp", "NOOUT\n")
    call_project(project)
    result = project.run()
    assert result.returncode == 1
    assert "returned but no output a.out" in result.stdout


def test_a_hanging_call_times_out_and_its_worker_is_replaced(project):
    project.inputs("a.inp", "b.inp")
    project.write("a.inp", "HANG\n")
    call_project(project)
    result = project.run("-n", "1", "--timeout", "1")
    assert result.returncode == 1
    assert "FAILED sweep:a.inp (timed out after 1s)" in result.stdout
    records = calls(project)
    assert (project.root / "b.out").exists()
    assert not any(alive(r["pid"]) for r in records)


def test_sigterm_ends_running_calls_and_their_workers(project):
    project.inputs("a.inp", "b.inp", "c.inp")
    for name in ("a.inp", "b.inp"):
        project.write(name, "HANG\n")
    call_project(project)
    run = start(project, "-n", "2")
    poll(lambda: len(list(project.root.glob("*.hanging"))) == 2, what="both calls to start")
    workers = {r["pid"] for r in project.records()}
    os.kill(run.pid, signal.SIGTERM)
    assert run.wait(30) == 143
    poll(lambda: not any(alive(pid) for pid in workers), what="the workers to end")
    assert processes_in(project.root) == []


def test_kill_9_of_incrun_leaves_no_worker_behind(project):
    project.inputs("a.inp")
    project.write("a.inp", "HANG\n")
    call_project(project)
    run = start(project)
    poll(lambda: (project.root / "a.inp.hanging").exists(), what="the call to start")
    [worker] = {r["pid"] for r in project.records()}
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(30)
    poll(lambda: not alive(worker), what="the guard to end the worker")
    status = json.loads(project.run("status", "--json").stdout)
    assert status["jobs"][0]["reason"] == "interrupted last time"


def test_a_dodo_rule_may_call_a_function_and_plain_doit_runs_it_too(project):
    from test_e2e_project import plain_doit

    project.inputs("a.inp", "b.inp")
    project.write("sims.py", SIMS)
    project.write("dodo.py", "from incrun import Rule\n"
                             "sweep = Rule(command=['sims:simulate'])\n"
                             "def task_sweep():\n"
                             "    yield from sweep.tasks()\n")
    result = project.run("-n", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(r["input"] for r in calls(project)) == ["a.inp", "b.inp"]
    for output in ("a.out", "b.out"):
        (project.root / output).unlink()
    assert plain_doit(project).returncode == 0  # in doit's own process
    assert sorted(r["input"] for r in calls(project)) == ["a.inp", "b.inp"]
    assert (project.root / "a.out").read_text() == "X = 1\n"

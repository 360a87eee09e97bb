"""End to end: warm starts (`--warm`, `warm = true`). The same sweep run cold and warm must
leave the same outputs, exit codes and logs; a script that cannot start warm runs cold with one
notice. The guarantees every job has (timeouts, Ctrl-C, kill -9, retries, logs) are tested warm
and cold alike in test_e2e_kill."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from conftest import poll, start

# Imported once per worker when warm, once per job when cold: each import leaves a line.
HEAVY = r'''
import os
with open("imports.log", "a") as log:
    log.write(f"{os.getpid()}\n")
VALUE = 1
'''

# Everything a script sees of how it was started, written into its output; the input's name
# chooses how it ends.
SEER = r'''
import atexit, json, os, random, sys, threading
import heavy

name = sys.argv[1]
print("stdout of", name)
print("stderr of", name, file=sys.stderr)
seen = {
    "argv": sys.argv, "file": __file__, "name": __name__, "path0": sys.path[0],
    "cwd": os.getcwd(), "stdin": sys.stdin.read(), "value": heavy.VALUE,
    "project_env": os.environ.get("PROJECT_SETTING"),
    "module": type(sys.modules["__main__"]).__name__,
    "pools": [key for key in os.environ if key.endswith("_NUM_THREADS")],
}
with open(name[:-4] + ".out", "w") as out:
    json.dump(seen, out, sort_keys=True)
atexit.register(lambda: print("exit handler of", name))

def late():
    with open(name[:-4] + ".late", "w") as out:  # a thread the interpreter waits for at exit
        out.write("written at exit\n")

threading.Thread(target=late).start()
if "raise" in name:
    raise ValueError(f"bad input {name}")
if "code" in name:
    sys.exit(3)
if "message" in name:
    sys.exit(f"cannot use {name}")
'''

NAMES = ("a.inp", "b.inp", "c.inp", "d.inp", "e-raise.inp", "f-code.inp", "g-message.inp",
         "h.inp", "i.inp", "j.inp")


def results(project) -> dict:
    """What a run left: every job's state and reason, its outputs and its log."""
    status = json.loads(project.run("status", "--json").stdout)
    found = {}
    for job in status["jobs"]:
        stem = job["task"].removeprefix("sweep:")[:-4]
        files = {suffix: (project.root / f"{stem}{suffix}").read_text()
                 for suffix in (".out", ".late") if (project.root / f"{stem}{suffix}").exists()}
        log = project.root / ".incrun" / "logs" / "sweep" / f"{stem}.inp.log"
        found[stem] = (job["state"], job["reason"], files,
                       log.read_text() if log.exists() else None)
    return found


def clean(project) -> None:
    shutil.rmtree(project.root / ".incrun")
    for pattern in ("*.out", "*.late", "imports.log"):
        for path in project.root.glob(pattern):
            path.unlink()


def imports(project) -> list[str]:
    return (project.root / "imports.log").read_text().split()


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_a_sweep_run_warm_is_the_same_as_cold(project, unbuffered):
    project.write("heavy.py", HEAVY)
    project.write("runner.py", SEER)
    project.write("incrun.toml", 'env = ["PROJECT_SETTING"]\n')
    project.inputs(*NAMES)
    env = {"PROJECT_SETTING": "on", "PYTHONUNBUFFERED": unbuffered}
    cold = project.run("-n", "2", env=env)
    assert cold.returncode == 1, cold.stdout + cold.stderr
    assert len(imports(project)) == len(NAMES)  # a new Python, and its imports, per job
    before = results(project)
    clean(project)
    warm = project.run("-n", "2", "--warm", env=env)
    assert warm.returncode == 1, warm.stdout + warm.stderr
    assert "cold" not in warm.stdout
    assert len(imports(project)) <= 2  # once per worker
    after = results(project)
    assert after == before
    # What the runs had to show, so that the comparison is not of two empty runs.
    assert before["e-raise"][0] == "failed" and "exit code 1" in before["e-raise"][1]
    assert "ValueError: bad input e-raise.inp" in before["e-raise"][3]
    assert 'File "' + str(project.root / "runner.py") + '", line' in before["e-raise"][3]
    assert "exit code 3" in before["f-code"][1]
    assert "cannot use g-message.inp" in before["g-message"][3]
    assert "exit handler of a.inp" in before["a"][3]
    seen = json.loads(before["a"][2][".out"])
    assert seen["argv"] == ["runner.py", "a.inp"] and seen["project_env"] == "on"
    assert seen["pools"] == [] and seen["stdin"] == ""
    assert before["a"][2][".late"] == "written at exit\n"


def test_warm_jobs_start_from_imports_made_once(project):
    """At -n 1 a single worker imports the heavy module once for all the jobs of a rule."""
    project.write("heavy.py", HEAVY)
    project.write("runner.py", "import sys, heavy\n"
                  "open(sys.argv[1][:-4] + '.out', 'w').write(str(heavy.VALUE))\n")
    names = [f"{i}.inp" for i in range(8)]
    project.inputs(*names)
    result = project.run("-n", "1", "--warm")
    assert result.returncode == 0, result.stdout
    assert len(imports(project)) == 1
    assert all((project.root / n.replace(".inp", ".out")).read_text() == "1" for n in names)
    again = project.run("-n", "1", "--warm")  # warm or cold, a job up to date stays so
    assert "all 8 jobs up to date" in again.stdout


def test_a_changed_module_restarts_the_warm_workers(project):
    """The first job rewrites the module the script imports: every later job sees the new one,
    as a new Python would, from a worker that imported it again."""
    project.write("heavy.py", HEAVY)
    project.write("runner.py", r'''
import sys, heavy
name = sys.argv[1]
if name == "0.inp":  # a new size: a change seen whatever the file system's clock
    text = open("heavy.py").read().replace("VALUE = 1", "VALUE = 2  # changed")
    open("heavy.py", "w").write(text)
open(name[:-4] + ".out", "w").write(str(heavy.VALUE))
''')
    names = [f"{i}.inp" for i in range(5)]
    project.inputs(*names)
    result = project.run("-n", "1", "--in-order", "--warm")
    assert result.returncode == 0, result.stdout
    values = [(project.root / n.replace(".inp", ".out")).read_text() for n in names]
    assert values == ["1", "2", "2", "2", "2"]
    assert len(imports(project)) == 2  # the first worker, then the one after the change


def cold_notices(output: str) -> list[str]:
    return [line for line in output.splitlines() if "start cold" in line]


def test_a_script_that_is_not_python_runs_cold_with_one_notice(project):
    project.write("runner.py", "echo this is a shell script, not python\n")
    project.inputs("a.inp", "b.inp", "c.inp")
    result = project.run("-n", "1", "--warm")
    assert result.returncode == 1
    notices = cold_notices(result.stdout)
    assert len(notices) == 1, result.stdout
    assert "runner.py cannot be read as Python (SyntaxError" in notices[0]
    log = (project.root / ".incrun" / "logs" / "sweep" / "a.inp.log").read_text()
    assert "SyntaxError: invalid syntax" in log  # as `python runner.py` says it


# A module that cannot be imported the way the warm worker imports it (it wants the input on
# the command line), as argparse at import time would: its jobs run cold, and succeed.
WANTS_ARGV = r'''
import sys
if len(sys.argv) < 2:
    raise SystemExit("usage: runner.py INPUT")
NAME = sys.argv[1]
'''


def test_a_failed_preload_runs_the_jobs_cold_with_one_notice(project):
    project.write("args.py", WANTS_ARGV)
    project.write("runner.py", "import args\nopen(args.NAME[:-4] + '.out', 'w').write('ok')\n")
    project.inputs("a.inp", "b.inp", "c.inp", "d.inp")
    result = project.run("-n", "2", "--warm")
    assert result.returncode == 0, result.stdout
    notices = cold_notices(result.stdout)
    assert len(notices) == 1, result.stdout  # two workers found it: said once
    assert "importing args for runner.py failed (SystemExit: usage: runner.py INPUT)" \
        in notices[0]
    assert all((project.root / f"{stem}.out").read_text() == "ok" for stem in "abcd")


# Starts a thread at import that takes a lock now and then. A child forked while that thread
# held the lock would wait for it forever: the thread is not in the child to release it.
POOL = r'''
import threading, time
lock = threading.Lock()

def churn():
    while True:
        with lock:
            time.sleep(0.001)

threading.Thread(target=churn, daemon=True).start()
'''


def test_a_runner_that_would_deadlock_after_a_fork_runs_cold(project):
    project.write("pool.py", POOL)
    project.write("runner.py", "import sys, pool\nwith pool.lock:\n"
                  "    open(sys.argv[1][:-4] + '.out', 'w').write('ok')\n")
    names = [f"{i}.inp" for i in range(6)]
    project.inputs(*names)
    result = project.run("-n", "2", "--warm", "--timeout", "30")
    assert result.returncode == 0, result.stdout
    notices = cold_notices(result.stdout)
    assert len(notices) == 1 and "started 1 thread(s)" in notices[0], result.stdout
    assert all((project.root / n.replace(".inp", ".out")).read_text() == "ok" for n in names)


def test_output_printed_at_import_keeps_the_jobs_cold(project):
    project.write("chatty.py", "print('loading chatty')\n")
    project.write("runner.py", "import sys, chatty\nopen(sys.argv[1][:-4] + '.out', 'w')"
                  ".write('ok')\nraise SystemExit(sys.argv[1] == 'b.inp')\n")
    project.inputs("a.inp", "b.inp", "c.inp")
    result = project.run("-n", "1", "--warm")
    assert result.returncode == 1
    assert "prints output" in cold_notices(result.stdout)[0]
    log = (project.root / ".incrun" / "logs" / "sweep" / "b.inp.log").read_text()
    assert log.startswith("loading chatty")  # in every job's log, as run cold


def test_numpy_jobs_start_warm_with_their_thread_pools_held(project):
    numpy = pytest.importorskip("numpy")
    project.write("runner.py", r'''
import json, os, sys
import numpy as np
name = sys.argv[1]
matrix = np.arange(16.0).reshape(4, 4)
with open(name[:-4] + ".out", "w") as out:
    json.dump({"product": float((matrix @ matrix).sum()), "random": float(np.random.rand()),
               "pid": os.getpid(), "pools": os.environ.get("OPENBLAS_NUM_THREADS")}, out)
''')
    names = [f"{i}.inp" for i in range(6)]
    project.inputs(*names)
    result = project.run("-n", "2", "--warm", env={"OPENBLAS_NUM_THREADS": ""})
    assert result.returncode == 0, result.stdout
    assert not cold_notices(result.stdout), result.stdout  # numpy's pools started no thread
    seen = [json.loads((project.root / n.replace(".inp", ".out")).read_text()) for n in names]
    matrix = numpy.arange(16.0).reshape(4, 4)
    assert {entry["product"] for entry in seen} == {float((matrix @ matrix).sum())}
    assert len({entry["random"] for entry in seen}) == len(names)  # each job its own seed
    assert {entry["pools"] for entry in seen} == {""}  # the job's environment untouched


def test_warm_is_a_rule_setting_for_python_scripts_only(project):
    project.write("incrun.toml", 'command = "bash run.sh {input}"\nwarm = true\n')
    project.inputs("a.inp")
    result = project.run()
    assert result.returncode != 0
    assert "'warm' starts only a command {python} SCRIPT ARGS..." in result.stderr
    project.write("incrun.toml", 'warm = "yes"\n')
    assert "'warm' must be true or false" in project.run().stderr


def test_warm_from_the_rule_setting(project):
    project.write("heavy.py", HEAVY)
    project.write("runner.py", "import sys, heavy\n"
                  "open(sys.argv[1][:-4] + '.out', 'w').write('ok')\n")
    project.write("incrun.toml", "[rules.sim]\ninputs = ['*.inp']\nwarm = true\n")
    project.inputs(*(f"{i}.inp" for i in range(4)))
    result = project.run("-n", "1")
    assert result.returncode == 0, result.stdout
    assert len(imports(project)) == 1


def test_ctrl_c_ends_a_warm_job_and_its_children(project):
    project.write("runner.py", r'''
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with open(sys.argv[1] + ".pids", "w") as out:
    out.write(f"{os.getpid()} {child.pid}")
time.sleep(60)
''')
    project.inputs("a.inp", "b.inp", "c.inp")
    run = start(project, "-n", "1", "--warm")
    pid_file = project.root / "a.inp.pids"
    poll(lambda: pid_file.exists() and len(pid_file.read_text().split()) == 2,
         what="the job and its child")
    pids = [int(pid) for pid in pid_file.read_text().split()]
    cmdline = open(f"/proc/{pids[0]}/cmdline", "rb").read()
    assert b"incrun.executors.workers" in cmdline  # a fork of the worker: no new Python
    os.kill(run.pid, 2)
    out, _ = run.communicate(timeout=30)
    assert run.returncode == 130, out
    for pid in pids:
        poll(lambda p=pid: not os.path.exists(f"/proc/{p}") or
             open(f"/proc/{p}/stat").read().split(")")[-1].split()[0] == "Z",
             what=f"process {pid} ended")

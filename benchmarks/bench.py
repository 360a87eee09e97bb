#!/usr/bin/env python3
"""Benchmark incrun against make -j, GNU parallel and plain doit, in one run, as ratios.

    python benchmarks/bench.py                 # every case (about 15 minutes on 2 cores)
    python benchmarks/bench.py --quick         # every size ~10x smaller: a smoke test
    python benchmarks/bench.py --cases dispatch,noop20k --reps 5

Tables go to stdout (markdown), progress to stderr. Run it with the Python whose incrun you
want to measure: that interpreter (sys.executable) is the one every tool starts for runner.py.
See benchmarks/README.md for what each case measures and how.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import dbm
import fcntl
import hashlib
import importlib.util
import json
import os
import platform
import pty
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PY = sys.executable


def installed(name: str) -> list[str]:
    """A tool's own command, installed beside the Python (what its users type); `python -m`
    only if there is none. `-m` puts the working folder first on sys.path, so that every import
    would list a folder of 100,000 files."""
    script = Path(PY).parent / name
    return [str(script)] if script.exists() else [PY, "-m", name]

CASES = ("dispatch", "noop20k", "noop100k", "changed1", "display", "pipeline100k", "inprocess",
         "warm", "stale100k", "million", "stale1m", "longest", "dask", "broker")
# display runs before changed1: it then measures a tree that no tool but incrun last touched
ORDER = ("dispatch", "noop20k", "noop100k", "display", "changed1", "pipeline100k", "inprocess",
         "warm", "stale100k", "million", "stale1m", "longest", "dask", "broker")
SIZES = {"dispatch": 2_000, "noop20k": 20_000, "noop100k": 100_000, "pipeline100k": 100_000,
         "inprocess": 20_000, "warm": 2_000, "stale100k": 100_000, "million": 1_000_000,
         "stale1m": 1_000_000, "dask": 10_000, "broker": 2_000}
# The cases of a million files put their trees here when it exists (tmpfs: 2,000,000 files of a
# few bytes cost 8 GB of memory there, and a disk would time the disk).
BIG_WORKDIR = "/dev/shm"
WARM_IMPORT_MS = 150  # what the warm case's runner spends importing, numpy included
WARM_WORK_MS = 20  # and then on its job
DASK_SLEEPS = 64  # jobs of one second each, on 1 and on 4 Dask workers
BROKER_SLEEPS = 32  # jobs of one second each, on 1 and on 4 `incrun worker` processes
STAGES = {"pipeline100k": 2}  # the others: one rule, X.inp -> X.out
QUICK_DIVISOR = 10

RUNNER = """\
import sys

src = sys.argv[1]
with open(src) as f:
    data = f.read()
with open(src[:-4] + ".out", "w") as f:
    f.write(data.upper())
"""

MAKEFILE = """\
.SUFFIXES:
.PHONY: all
all: $(patsubst %.inp,%.out,$(wildcard *.inp))
%.out: %.inp runner.py
\t{python} runner.py $<
"""

# Not called dodo.py: incrun loads a dodo.py it finds, and the trees are shared by every tool.
DODO_NAME = "bench_dodo.py"
DODO = """\
import glob

PYTHON = {python!r}


def task_job():
    for inp in sorted(glob.glob("*.inp")):
        yield {{
            "name": inp,
            "file_dep": [inp, "runner.py"],
            "targets": [inp[:-4] + ".out"],
            "actions": [[PYTHON, "runner.py", inp]],
        }}
"""

# The two-stage pipeline: X.inp -> X.out (runner.py) -> X.sum (post.py), in each tool's terms.
POST = """\
import sys

src = sys.argv[1]
with open(src) as f:
    data = f.read()
with open(src[:-4] + ".sum", "w") as f:
    f.write(data.lower())
"""

# .SECONDARY: with no names keeps make from deleting the .out files, intermediate in the chain
PIPELINE_MAKEFILE = """\
.SUFFIXES:
.SECONDARY:
.PHONY: all
all: $(patsubst %.inp,%.sum,$(wildcard *.inp))
%.out: %.inp runner.py
\t{python} runner.py $<
%.sum: %.out post.py
\t{python} post.py $<
"""

PIPELINE_DODO = DODO + """

def task_post():
    for inp in sorted(glob.glob("*.inp")):
        out = inp[:-4] + ".out"
        yield {{
            "name": out,
            "file_dep": [out, "post.py"],
            "targets": [inp[:-4] + ".sum"],
            "actions": [[PYTHON, "post.py", out]],
        }}
"""

PIPELINE_CONFIG = """\
[rules.sim]
inputs = ["*.inp"]
command = "{python} runner.py {input}"
outputs = ["{stem}.out"]

[rules.post]
inputs = ["*.out"]
command = "{python} post.py {input}"
outputs = ["{stem}.sum"]
"""

OUTPUTS = (".out", ".sum")  # of stage 1 and stage 2

STAT_FLOOR = """\
import os
n = 0
for name in os.listdir("."):
    if name.endswith(".inp"):
        os.stat(name)
{stats}        n += 1
print(n)
"""

BENCH_JOBS = """\
LOOPS = {loops}


def work(input_path):
    x = 0
    for i in range(LOOPS):  # about 1 ms of CPU
        x += i * i
    with open(input_path) as f:
        data = f.read()
    with open(input_path[:-4] + ".out", "w") as f:
        f.write(data.upper())
"""

# Mixed durations, the long jobs last in input order: a sweep whose slowest jobs have the
# highest parameter values. Seconds per job; sleeps, so the machine's load does not matter.
MIXED = [0.1] * 38 + [1.5, 3.0]
SLEEP_RUNNER = """\
import sys
import time

src = sys.argv[1]
time.sleep(float(open(src).read()))
with open(src[:-4] + ".out", "w") as f:
    f.write("done")
"""

WORK_RUNNER = """\
import sys

import bench_jobs

bench_jobs.work(sys.argv[1])
"""

# The warm case's runner: a real runner's shape, imports that cost WARM_IMPORT_MS (numpy, if
# the Python has it, and a module doing work at import time, as packages that build tables or
# compile patterns do), then ~WARM_WORK_MS of CPU on its input.
HEAVY_MODEL = """\
LOOPS = {loops}  # iterations of `x += i * i` in about 1 ms


def spin(ms):
    x = 0
    for _ in range(ms):
        for i in range(LOOPS):
            x += i * i
    return x


TABLE = spin({import_ms})  # the work done at import


def work(input_path):
    spin({work_ms})
    with open(input_path) as f:
        data = f.read()
    with open(input_path[:-4] + ".out", "w") as f:
        f.write(data.upper())
"""

HEAVY_RUNNER = """\
import sys

{numpy}import heavy_model

heavy_model.work(sys.argv[1])
"""

# The lean coordinator's cases: jobs of `true`'s cost (touch X.out), in each tool's terms.
TOUCH_MAKEFILE = """\
.SUFFIXES:
.PHONY: all
all: $(patsubst %.inp,%.out,$(wildcard *.inp))
%.out: %.inp
\ttouch $@
"""

TOUCH_DODO = """\
import glob


def task_job():
    for inp in sorted(glob.glob("*.inp")):
        yield {
            "name": inp,
            "file_dep": [inp],
            "targets": [inp[:-4] + ".out"],
            "actions": [["touch", inp[:-4] + ".out"]],
        }
"""

# The broker case's plain Celery, as a user writes it without incrun: a task that runs the
# command incrun runs for a tiny job (`touch X.out` in the project folder), JSON messages, results
# in the same Redis; and a script that submits every input as one group and waits for them all.
CELERY_APP = """\
import os
import subprocess

from celery import Celery

app = Celery("bench_celery", broker={url!r}, backend={url!r})
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                result_accept_content=["json"])


@app.task(name="bench.touch")
def touch(path):
    folder, name = os.path.split(path)
    subprocess.run(["touch", name[:-4] + ".out"], cwd=folder, check=True)
"""

CELERY_SUBMIT = """\
import sys
from pathlib import Path

from celery import group

from bench_celery import touch

inputs = sorted(str(path) for path in Path(sys.argv[1]).glob("*.inp"))
group(touch.s(path) for path in inputs).apply_async().get(timeout=3600)
"""


# ---------------------------------------------------------------- helpers


T0 = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {message}", file=sys.stderr, flush=True)


@dataclass
class Run:
    wall: float  # seconds
    cpu: float  # user + sys seconds of the process and its waited-for children
    rss_mb: float  # peak resident set of the largest process of the tree
    code: int
    other: float = 0.0  # CPU seconds the rest of the machine used meanwhile (noise)


@dataclass
class Row:
    tool: str
    runs: list[Run] = field(default_factory=list)
    note: str = ""  # replaces the figures when there are no runs
    failures: list[str] = field(default_factory=list)  # failed correctness checks

    @property
    def wall(self) -> float | None:
        return statistics.median(r.wall for r in self.runs) if self.runs else None

    @property
    def cpu(self) -> float | None:
        return statistics.median(r.cpu for r in self.runs) if self.runs else None

    @property
    def rss(self) -> float | None:
        return max(r.rss_mb for r in self.runs) if self.runs else None

    def spread(self) -> str:
        if not self.runs:
            return ""
        walls = [r.wall for r in self.runs]
        return f"{fmt(min(walls))}–{fmt(max(walls))}"


def fmt(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds:.2f}" if seconds >= 10 else f"{seconds:.3f}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b <= 0:
        return ""
    return f"{a / b:.2f}×"


def base_env(work: Path) -> dict[str, str]:
    """The tools' environment: plain output, warm bytecode kept outside the repository."""
    env = dict(os.environ)
    for key in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTHONDONTWRITEBYTECODE", "NO_COLOR",
                "COLUMNS", "LINES"):
        env.pop(key, None)
    env["CI"] = "true"
    # Every Python started by any tool caches its bytecode here (a user's normal warm cache),
    # without writing into the repository's __pycache__ folders.
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env


def measure(argv: list[str], cwd: Path, env: dict[str, str], terminal: bool = False) -> Run:
    """Wall time, CPU time and peak RSS of one command, output discarded."""
    os.sync()  # earlier writes must not be flushed during the timed run
    master = None
    if terminal:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        streams = {"stdin": slave, "stdout": slave, "stderr": slave}
        drain = threading.Thread(target=_drain, args=(master,), daemon=True)
        drain.start()
    else:
        streams = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL,
                   "stderr": subprocess.DEVNULL}
    busy = cpu_busy()
    start = time.perf_counter()
    process = subprocess.Popen(argv, cwd=cwd, env=env, **streams)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    busy = cpu_busy() - busy
    process.returncode = os.waitstatus_to_exitcode(status)
    if terminal:
        os.close(slave)
        drain.join(5)
        os.close(master)
    cpu = usage.ru_utime + usage.ru_stime
    return Run(wall, cpu, usage.ru_maxrss / 1024, process.returncode, max(0.0, busy - cpu))


def cpu_busy() -> float:
    """CPU seconds all processors spent busy since boot (/proc/stat), 0 where unknown."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _drain(master: int) -> None:
    """Read and discard what the program writes to its terminal (a full pty would block it)."""
    while True:
        try:
            if not os.read(master, 65536):
                return
        except OSError:
            return


def output_mtimes(tree: Path) -> dict[str, int]:
    return {entry.name: entry.stat().st_mtime_ns
            for entry in os.scandir(tree) if entry.name.endswith(OUTPUTS)}


def changed(before: dict[str, int], after: dict[str, int]) -> list[str]:
    names = set(before) | set(after)
    return sorted(name for name in names if before.get(name) != after.get(name))


def remove_state(tree: Path, outputs: bool = True) -> None:
    shutil.rmtree(tree / ".incrun", ignore_errors=True)
    for entry in os.scandir(tree):
        if entry.name.startswith(".doit.db") or (outputs and entry.name.endswith(OUTPUTS)):
            os.unlink(entry.path)


def floor_row(stages: int) -> str:
    files = "output" if stages == 1 else "of its outputs"
    return f"stat floor (python -c: stat every input and {files})"


def input_name(i: int) -> str:
    return f"job{i:06d}.inp"


def make_tree(tree: Path, n: int, prebuilt: bool, stages: int = 1) -> None:
    """runner.py, n inputs, the Makefile and the doit file; with `prebuilt`, the outputs too,
    each stage's newer than the one before (as a finished earlier build leaves them). Two
    stages add post.py, the .sum files and incrun's two rules."""
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    (tree / "runner.py").write_text(RUNNER)
    makefile, dodo = (MAKEFILE, DODO) if stages == 1 else (PIPELINE_MAKEFILE, PIPELINE_DODO)
    (tree / "Makefile").write_text(makefile.format(python=PY))
    (tree / DODO_NAME).write_text(dodo.format(python=PY))
    scripts = ["runner.py"]
    if stages == 2:
        (tree / "post.py").write_text(POST)
        (tree / "incrun.toml").write_text(PIPELINE_CONFIG)
        scripts.append("post.py")
    for i in range(n):
        (tree / input_name(i)).write_text(f"input {i}\n")
    if prebuilt:
        past = time.time() - 60
        for script in scripts:
            os.utime(tree / script, (past, past))
        for i in range(n):
            name = input_name(i)
            os.utime(tree / name, (past, past))
            out = tree / (name[:-4] + ".out")
            out.write_text(f"input {i}\n".upper())
            if stages == 2:
                os.utime(out, (past + 30, past + 30))
                (tree / (name[:-4] + ".sum")).write_text(f"input {i}\n")


def work_tree(tree: Path, n: int, loops: int, in_process: bool) -> None:
    """n inputs whose job is ~1 ms of CPU: a `module:function` command, or a runner.py that
    calls the same function."""
    make_tree(tree, n, prebuilt=False)
    (tree / "bench_jobs.py").write_text(BENCH_JOBS.format(loops=loops))
    if in_process:
        (tree / "runner.py").unlink()
        (tree / "incrun.toml").write_text('command = "bench_jobs:work"\n')
    else:
        (tree / "runner.py").write_text(WORK_RUNNER)


def heavy_tree(tree: Path, n: int, loops: int, import_ms: int, numpy: bool) -> None:
    """n inputs whose runner imports for about WARM_IMPORT_MS, then works WARM_WORK_MS."""
    make_tree(tree, n, prebuilt=False)
    (tree / "heavy_model.py").write_text(HEAVY_MODEL.format(
        loops=loops, import_ms=import_ms, work_ms=WARM_WORK_MS))
    (tree / "runner.py").write_text(HEAVY_RUNNER.format(numpy="import numpy\n" if numpy else ""))


def import_cost(module: str) -> float:
    """Seconds a new Python spends importing `module` here (0 if it cannot): the median of
    five starts with it, less five without."""
    def start(code: str) -> float:
        times = []
        for _ in range(5):
            began = time.perf_counter()
            if subprocess.run([PY, "-c", code], capture_output=True).returncode != 0:
                return float("nan")
            times.append(time.perf_counter() - began)
        return statistics.median(times)

    cost = start(f"import {module}") - start("pass")
    return cost if cost == cost else 0.0  # NaN: not installed


def touch_jobs_tree(tree: Path, n: int, prebuilt: bool = False) -> None:
    """n inputs whose job is `touch X.out`, with every tool's files; with `prebuilt`, the
    outputs too, newer than the inputs (for incrun to adopt)."""
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    (tree / "incrun.toml").write_text('command = ["touch", "{stem}.out"]\n')
    (tree / "Makefile").write_text(TOUCH_MAKEFILE)
    (tree / DODO_NAME).write_text(TOUCH_DODO)
    past = time.time() - 60
    for i in range(n):
        name = input_name(i)
        (tree / name).write_text(f"input {i}\n")
        if prebuilt:
            os.utime(tree / name, (past, past))
            (tree / (name[:-4] + ".out")).write_text(f"input {i}\n".upper())
    (tree / "inputs.txt").write_text("".join(f"{input_name(i)}\n" for i in range(n)))


@dataclass
class TreeRun:
    """A run of incrun watched from outside: its coordinator's own CPU and peak memory, and the
    peak of the largest other process of its tree (a worker, the guard, a forked check)."""

    wall: float
    code: int
    cpu: float  # of the coordinator alone (not its children), from /proc
    rss_mb: float  # the coordinator's peak (VmHWM)
    others_mb: float  # the largest peak of any other process of the tree
    output: str = ""


def _proc_children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listed:
            return [int(child) for child in listed.read().split()]
    except OSError:
        return []


def _proc_peak_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _proc_cpu(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def watch_tree(argv: list[str], cwd: Path, env: dict[str, str], signal_when=None,
               every: float = 0.1) -> TreeRun:
    """Run incrun, reading /proc every `every` seconds: its coordinator's CPU and peak, every
    other process's peak. `signal_when(output_so_far, seconds)`, if given, returns a signal to
    send it (once), or None."""
    os.sync()
    out = tempfile.TemporaryFile()
    start = time.perf_counter()
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                               stderr=subprocess.STDOUT)
    cpu, peak, others, sent = 0.0, 0.0, {}, False
    while process.poll() is None:
        todo, tree = [process.pid], []
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo += _proc_children(pid)
        peak = max(peak, _proc_peak_mb(process.pid))
        for pid in tree[1:]:
            others[pid] = max(others.get(pid, 0.0), _proc_peak_mb(pid))
        cpu = _proc_cpu(process.pid) or cpu
        if signal_when is not None and not sent:
            out.seek(0)
            wanted = signal_when(out.read().decode(errors="replace"),
                                 time.perf_counter() - start)
            if wanted is not None:
                process.send_signal(wanted)
                sent = True
        time.sleep(every)
    wall = time.perf_counter() - start
    out.seek(0)
    return TreeRun(wall, process.returncode, cpu, peak, max(others.values(), default=0.0),
                   out.read().decode(errors="replace"))


def sleep_tree(tree: Path, n: int) -> None:
    """n inputs whose job (SLEEP_RUNNER) sleeps one second, then writes its output."""
    make_tree(tree, n, prebuilt=False)
    (tree / "runner.py").write_text(SLEEP_RUNNER)
    for i in range(n):
        (tree / input_name(i)).write_text("1\n")


def touch_tree(tree: Path, n: int) -> None:
    """n inputs whose job is `touch X.out`: no Python started per job, so that workers sharing
    the cores with the coordinator do not inflate its CPU time."""
    make_tree(tree, n, prebuilt=False)
    (tree / "incrun.toml").write_text('command = ["touch", "{stem}.out"]\n')


def check_outputs(tree: Path, n: int) -> list[str]:
    missing = [i for i in range(n) if not (tree / (input_name(i)[:-4] + ".out")).exists()]
    return [f"{len(missing)} outputs missing"] if missing else []


def check_one(tree: Path, i: int, stages: int = 1) -> str | None:
    """What is wrong with input i's outputs: its .out holds the input upper-cased, its .sum
    (with two stages) the .out lower-cased. None when nothing is."""
    stem = input_name(i)[:-4]
    try:
        got = (tree / f"{stem}.out").read_text()
        summed = (tree / f"{stem}.sum").read_text() if stages == 2 else None
    except FileNotFoundError as missing:
        return f"{Path(missing.filename).name} missing"
    if got != (tree / input_name(i)).read_text().upper():
        return f"{stem}.out wrong"
    if stages == 2 and summed != got.lower():
        return f"{stem}.sum wrong"
    return None


def check_built(tree: Path, n: int, stages: int = 1) -> list[str]:
    """Every input's outputs are right (check_one)."""
    problems = [problem for i in range(n) if (problem := check_one(tree, i, stages))]
    if problems:
        return [f"{len(problems)} bad outputs, e.g. {problems[0]}"]
    return []


def first_line(text: str, *needles: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if any(needle in line for needle in needles):
            return line
    return lines[0] if lines else "(no output)"


# ---------------------------------------------------------------- the tools


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.jobs = args.jobs
        self.reps = args.reps
        parent = Path(args.workdir) if args.workdir else Path(tempfile.gettempdir())
        self.work = Path(tempfile.mkdtemp(prefix="incrun-bench-", dir=parent))
        self.env = base_env(self.work)
        self.big: Path | None = None  # the noop100k tree, reused by changed1 and display
        self.noop: dict[str, dict[str, Row]] = {}  # case -> tool -> row
        self.failed = False
        self.notes: list[str] = []
        self.targets: list[tuple[str, str, str, bool]] = []  # what, limit, measured, met
        self.load_before = loadavg()
        self.case_runs: list[Run] = []  # every timed run of the current case
        self.big_dirs: list[Path] = []  # the million-file trees' folders, removed at the end

    def size(self, case: str) -> int:
        n = SIZES[case]
        return n // QUICK_DIVISOR if self.args.quick else n

    # argv of each tool, all starting the same Python for runner.py

    def incrun(self, *extra: str, jobs: int | None = None) -> list[str]:
        return [*installed("incrun"), "-n", str(jobs or self.jobs), *extra]

    def make(self) -> list[str]:
        return ["make", "-r", "-j", str(self.jobs)]

    def doit(self, *extra: str) -> list[str]:
        if extra:
            return [*installed("doit"), *extra[:1], "-f", DODO_NAME, *extra[1:]]
        return [*installed("doit"), "-f", DODO_NAME, "-n", str(self.jobs)]

    def parallel(self, tree: Path) -> list[str]:
        inputs = sorted(name for name in os.listdir(tree) if name.endswith(".inp"))
        return ["parallel", "--will-cite", "-j", str(self.jobs), PY, "runner.py", ":::", *inputs]

    def loop(self) -> list[str]:
        return ["bash", "-c", 'for f in *.inp; do "$0" runner.py "$f"; done', PY]

    def stat_floor(self, stages: int = 1) -> list[str]:
        stats = "".join(f'        os.stat(name[:-4] + "{suffix}")\n'
                        for suffix in OUTPUTS[:stages])
        return [PY, "-c", STAT_FLOOR.format(stats=stats)]

    # ------------------------------------------------------------ running

    def timed(self, row: Row, argv: list[str], tree: Path, *, env=None, terminal=False,
              check: Callable[[], list[str]] | None = None) -> Run:
        run = measure(argv, tree, env or self.env, terminal)
        row.runs.append(run)
        self.case_runs.append(run)
        problems = [] if run.code == 0 else [f"exit code {run.code}"]
        if check is not None:
            problems += check()
        if problems:
            row.failures += problems
            self.failed = True
            log(f"  CHECK FAILED {row.tool}: {'; '.join(problems)}")
        log(f"  {row.tool}: {run.wall:.3f}s wall, {run.cpu:.2f}s CPU, {run.rss_mb:.0f} MB")
        return run

    def noop_check(self, tree: Path, before: dict[str, int]) -> Callable[[], list[str]]:
        def check() -> list[str]:
            moved = changed(before, output_mtimes(tree))
            return [f"no-op run changed {len(moved)} outputs, e.g. {moved[0]}"] if moved else []
        return check

    def untimed(self, what: str, argv: list[str], tree: Path) -> float:
        start = time.perf_counter()
        result = subprocess.run(argv, cwd=tree, env=self.env, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            self.failed = True
            raise SystemExit(f"{what} failed (exit {result.returncode}): "
                             f"{first_line(result.stdout + result.stderr, 'error')}")
        log(f"  {what}: {elapsed:.1f}s")
        return elapsed

    def built_tree(self, name: str, n: int, stages: int = 1) -> Path:
        """A tree where every tool's state says: all n × stages jobs are done."""
        tree = self.work / name
        jobs = n * stages
        log(f"{name}: creating {n} inputs")
        if self.args.real_build:
            make_tree(tree, n, prebuilt=False, stages=stages)
            took = self.untimed(f"incrun full build of {jobs}", self.incrun("-q"), tree)
            self.notes.append(f"{name}: incrun full build of {jobs} jobs: {took:.1f}s")
            outputs = output_mtimes(tree)
            for out in outputs:
                os.unlink(tree / out)
            took = self.untimed(f"doit full build of {jobs}", self.doit(), tree)
            self.notes.append(f"{name}: doit full build of {jobs} jobs: {took:.1f}s")
        else:
            make_tree(tree, n, prebuilt=True, stages=stages)
            took = self.untimed("incrun adopting the outputs", self.incrun("-q"), tree)
            self.notes.append(f"{name}: incrun's first run, adopting {jobs} prebuilt outputs: "
                              f"{took:.1f}s")
            took = self.untimed("doit reset-dep", self.doit("reset-dep"), tree)
            self.notes.append(f"{name}: `doit reset-dep` recording {jobs} tasks: {took:.1f}s")
        problems = check_built(tree, n, stages)
        if problems:
            raise SystemExit(f"{name}: the build is wrong: {problems[0]}")
        return tree

    # ------------------------------------------------------------ cases

    def case_dispatch(self) -> None:
        n = self.size("dispatch")
        tree = self.work / "dispatch"
        make_tree(tree, n, prebuilt=False)
        j = self.jobs
        tools = [
            (f"incrun -n {j}", self.incrun()),
            (f"make -r -j {j}", self.make()),
            (f"GNU parallel -j {j}", self.parallel(tree)),
            (f"doit -n {j}", self.doit()),
            ("bash loop (sequential)", self.loop()),
        ]
        rows = {name: Row(name) for name, _ in tools}
        for rep in range(self.reps):
            log(f"dispatch: {n} jobs, repetition {rep + 1}/{self.reps}")
            shift = rep % len(tools)  # a different tool goes first each time
            for name, argv in tools[shift:] + tools[:shift]:
                remove_state(tree)
                self.timed(rows[name], argv, tree, check=lambda: check_built(tree, n))
        remove_state(tree)
        incrun = rows[f"incrun -n {j}"].wall
        loop = rows["bash loop (sequential)"].wall
        lines = [f"### dispatch: full build of {n} tiny jobs at -j {j}", "",
                 "Ratio: incrun's median time ÷ the tool's (above 1: incrun is slower).", "",
                 "| tool | median s | min–max s | CPU s | jobs/s | ms/job | incrun ÷ tool |",
                 "|---|---:|---:|---:|---:|---:|---:|"]
        for row in rows.values():
            lines.append(f"| {row.tool} | {fmt(row.wall)} | {row.spread()} | {fmt(row.cpu)} | "
                         f"{n / row.wall:.0f} | {1000 * row.wall / n:.2f} | "
                         f"{ratio(incrun, row.wall)} |{self.flag(row)}")
        if loop:
            lines.append(f"| floor: bash loop ÷ {j} (derived) | {fmt(loop / j)} | | | "
                         f"{n * j / loop:.0f} | {1000 * loop / j / n:.2f} | "
                         f"{ratio(incrun, loop / j)} |")
        self.table(lines)
        busy = rows[f"incrun -n {j}"].cpu / (incrun * j)
        self.target(f"dispatch {n}: incrun ÷ make -j {j}", "≤ 1.00",
                    incrun / rows[f"make -r -j {j}"].wall)
        self.target(f"dispatch {n}: incrun ÷ GNU parallel -j {j}", "≤ 0.70",
                    incrun / rows[f"GNU parallel -j {j}"].wall)
        self.target(f"dispatch {n}: cores busy, incrun's CPU ÷ ({j} × wall)", "≥ 0.90", busy,
                    busy >= 0.90)

    def case_noop(self, case: str) -> None:
        n, stages = self.size(case), STAGES.get(case, 1)
        tree = self.built_tree(case, n, stages)
        if case == "noop100k":
            self.big = tree
        j = self.jobs
        floor_name = floor_row(stages)
        tools = [
            (f"incrun -n {j}", self.incrun()),
            (f"make -r -j {j}", self.make()),
            (f"doit -n {j}", self.doit()),
            (floor_name, self.stat_floor(stages)),
        ]
        rows = {name: Row(name) for name, _ in tools}
        log(f"{case}: warm-up no-op runs (untimed)")
        for name, argv in tools:
            before = output_mtimes(tree)
            self.timed(Row(name), argv, tree, check=self.noop_check(tree, before))
        for rep in range(self.reps):
            log(f"{case}: {n * stages} jobs up to date, repetition {rep + 1}/{self.reps}")
            for name, argv in tools:
                before = output_mtimes(tree)
                self.timed(rows[name], argv, tree, check=self.noop_check(tree, before))
        self.noop[case] = rows
        incrun = rows[f"incrun -n {j}"].wall
        shape = f" ({n} inputs, {stages} stages: .inp → .out → .sum)" if stages > 1 else ""
        lines = [f"### {case}: no-op rerun, {n * stages} jobs all up to date{shape}", "",
                 "Ratio: incrun's median time ÷ the tool's (above 1: incrun is slower). "
                 "Peak RSS: the largest process of the tool's tree.", "",
                 "| tool | median s | min–max s | CPU s | peak RSS MB | incrun ÷ tool |",
                 "|---|---:|---:|---:|---:|---:|"]
        for row in rows.values():
            lines.append(f"| {row.tool} | {fmt(row.wall)} | {row.spread()} | {fmt(row.cpu)} | "
                         f"{row.rss:.0f} | {ratio(incrun, row.wall)} |{self.flag(row)}")
        lines.append(f"| GNU parallel -j {j} | reruns all | | | | |")
        self.table(lines)
        floor, rss = rows[floor_name].wall, rows[f"incrun -n {j}"].rss
        if case == "noop100k":
            self.target(f"no-op {n}: incrun ÷ stat floor", "≤ 2.00", incrun / floor)
            self.target(f"no-op {n}: incrun ÷ doit", "≤ 0.15",
                        incrun / rows[f"doit -n {j}"].wall)
            self.target(f"no-op {n}: incrun's peak memory", "≤ 250 MB", rss, rss <= 250,
                        f"{rss:.0f} MB")
        elif case == "pipeline100k":
            self.target(f"no-op {n} inputs × 2 stages: incrun ÷ stat floor", "≤ 2.50",
                        incrun / floor)
            self.target(f"no-op {n} inputs × 2 stages: incrun's peak memory", "≤ 300 MB", rss,
                        rss <= 300, f"{rss:.0f} MB")
            self.changed_one(case, tree, n, stages)

    def big_tree(self) -> Path:
        if self.big is None:
            self.big = self.built_tree("noop100k", self.size("noop100k"))
        return self.big

    def case_changed1(self) -> None:
        self.changed_one("changed1", self.big_tree(), self.size("noop100k"))

    def changed_one(self, case: str, tree: Path, n: int, stages: int = 1) -> None:
        """One input changed, each repetition another: only its outputs, one per stage, may
        change. The no-op figures of the same tree are the reference."""
        j = self.jobs
        # make decides by mtime, so it goes first: after another tool rewrote the output, the
        # changed input is older than its output again and make would rightly do nothing.
        tools = [(f"make -r -j {j}", self.make()), (f"incrun -n {j}", self.incrun()),
                 (f"doit -n {j}", self.doit())]
        rows = {name: Row(name) for name, _ in tools}
        noop_case = "noop100k" if stages == 1 else case
        noop_rows = self.noop.get(noop_case, {})
        for rep in range(self.reps):
            i = (rep * 7919 + 12345) % n
            name = input_name(i)
            log(f"{case}: {n} inputs, {name} changed, repetition {rep + 1}/{self.reps}")
            (tree / name).write_text(f"input {i}, changed in repetition {rep} at {time.time()}\n")
            expected = [name[:-4] + suffix for suffix in OUTPUTS[:stages]]
            for tool, argv in tools:
                before = output_mtimes(tree)

                def check(before=before, expected=expected, i=i) -> list[str]:
                    moved = changed(before, output_mtimes(tree))
                    if moved != expected:
                        return [f"expected only {', '.join(expected)} to change, got "
                                f"{len(moved)}: {moved[:3]}"]
                    problem = check_one(tree, i, stages)
                    return [problem] if problem else []

                self.timed(rows[tool], argv, tree, check=check)
        incrun = rows[f"incrun -n {j}"].wall
        job = self.one_job()
        noop = noop_rows.get(f"incrun -n {j}")
        jobs = "the job" if stages == 1 else f"its {stages} jobs"
        if noop is not None:
            allowed = 1.2 * noop.wall + stages * job
            self.target(f"one of {n} inputs changed{' (2 stages)' if stages > 1 else ''}: "
                        f"incrun ÷ (1.2 × its no-op + {jobs}, {fmt(stages * job)} s)", "≤ 1.00",
                        incrun / allowed)
        lines = [f"### {case}: one of {n} inputs changed, {jobs} rerun", "",
                 "Ratio: incrun's median time ÷ the tool's (above 1: incrun is slower). "
                 f"No-op: the same tool's median in {noop_case}.", "",
                 "| tool | median s | min–max s | no-op s | changed − no-op s | "
                 "incrun ÷ tool |", "|---|---:|---:|---:|---:|---:|"]
        for row in rows.values():
            noop = noop_rows.get(row.tool)
            noop_wall = noop.wall if noop else None
            extra = f"{row.wall - noop_wall:+.3f}" if noop_wall is not None else "(not run)"
            lines.append(f"| {row.tool} | {fmt(row.wall)} | {row.spread()} | "
                         f"{fmt(noop_wall) or '(not run)'} | {extra} | "
                         f"{ratio(incrun, row.wall)} |{self.flag(row)}")
        self.table(lines)

    def one_job(self, folder: Path | None = None) -> float:
        """Median wall time of one `python runner.py X.inp`, the job itself, in a copy (or in
        `folder`, its output removed before the timed runs)."""
        if folder is None:
            folder = self.work / "one-job"
            make_tree(folder, 1, prebuilt=False)
        return statistics.median(
            measure([PY, "runner.py", input_name(0)], folder, self.env).wall for _ in range(5))

    def case_display(self) -> None:
        tree = self.big_tree()
        n = self.size("noop100k")
        live_env = dict(self.env, TERM="xterm-256color")
        live_env.pop("CI")
        modes = [
            ("-q: no output (CI=true)", self.incrun("-q"), self.env, False),
            ("plain lines (CI=true, stdout to /dev/null)", self.incrun(), self.env, False),
            ("live display (pseudo-terminal 120x40)", self.incrun(), live_env, True),
        ]
        rows = {name: Row(name) for name, *_ in modes}
        for rep in range(self.reps):
            log(f"display: {n} jobs up to date, repetition {rep + 1}/{self.reps}")
            for name, argv, env, terminal in modes:
                before = output_mtimes(tree)
                self.timed(rows[name], argv, tree, env=env, terminal=terminal,
                           check=self.noop_check(tree, before))
        quiet = rows[modes[0][0]].wall
        lines = [f"### display: incrun -n {self.jobs}, {n} jobs up to date", "",
                 "Ratio: this mode's median time ÷ no output's (above 1: costs more).", "",
                 "| incrun output | median s | min–max s | CPU s | ÷ no output |",
                 "|---|---:|---:|---:|---:|"]
        for row in rows.values():
            lines.append(f"| {row.tool} | {fmt(row.wall)} | {row.spread()} | {fmt(row.cpu)} | "
                         f"{ratio(row.wall, quiet)} |{self.flag(row)}")
        self.table(lines)
        for name, what in ((modes[1][0], "plain lines"), (modes[2][0], "live display")):
            self.target(f"display at {n}: {what} ÷ no output", "≤ 1.05", rows[name].wall / quiet)

    def case_inprocess(self) -> None:
        n = self.size("inprocess")
        loops = calibrate()
        supported, reason = self.probe_inprocess(loops)
        title = f"### inprocess: {n} jobs of ~1 ms CPU each (`command = \"bench_jobs:work\"`)"
        if not supported:
            log(f"inprocess: not supported yet ({reason})")
            self.table([title, "", "| tool | median s | note |", "|---|---:|---|",
                        f"| incrun in-process jobs | not supported yet | {reason} |"])
            return
        j = self.jobs
        runs = [(f"incrun -n {j}, in-process", self.incrun(), True, self.reps),
                ("incrun -n 1, in-process", self.incrun(jobs=1), True, self.reps),
                # the same work as subprocesses takes minutes: measured once
                (f"incrun -n {j}, runner.py subprocess per job", self.incrun(), False, 1)]
        rows = {name: Row(name) for name, *_ in runs}
        tree = self.work / "inprocess"
        for rep in range(self.reps):
            log(f"inprocess: {n} jobs, repetition {rep + 1}/{self.reps}")
            for name, argv, in_process, reps in runs:
                if rep < reps:  # a fresh tree each time: a folder where 20,000 outputs were
                    work_tree(tree, n, loops, in_process)  # deleted is slower to write in
                    self.timed(rows[name], argv, tree, check=lambda: check_built(tree, n))
        shutil.rmtree(tree)
        first = rows[runs[0][0]].wall
        serial, subprocesses = rows[runs[1][0]].wall, rows[runs[2][0]].wall
        self.target(f"in-process {n}: -n 1 ÷ -n {j} (speed-up)", "≥ 1.60", serial / first,
                    serial / first >= 1.60)
        self.target(f"in-process {n}: runner.py subprocesses ÷ in-process, -n {j}", "≥ 20",
                    subprocesses / first, subprocesses / first >= 20)
        lines = [title, "",
                 "Ratio: the first row's median time ÷ the row's (below 1: the first is "
                 "faster).", "", "| tool | median s | min–max s | CPU s | first ÷ row |",
                 "|---|---:|---:|---:|---:|"]
        for row in rows.values():
            lines.append(f"| {row.tool} | {fmt(row.wall)} | {row.spread()} | {fmt(row.cpu)} | "
                         f"{ratio(first, row.wall)} |{self.flag(row)}")
        self.table(lines)

    def case_warm(self) -> None:
        """Jobs of a runner with costly imports, started cold by every tool, and warm by
        incrun --warm. The peers and incrun cold take minutes: measured once."""
        n, j = self.size("warm"), self.jobs
        loops = calibrate()
        numpy_cost = import_cost("numpy")
        import_ms = max(0, round(WARM_IMPORT_MS - 1000 * numpy_cost))
        tree = self.work / "warm"
        heavy_tree(tree, n, loops, import_ms, numpy_cost > 0)
        one = self.one_job(tree)
        remove_state(tree)
        runs = [(f"incrun -n {j} --warm", self.incrun("--warm"), self.reps),
                (f"incrun -n {j} (cold)", self.incrun(), 1),
                (f"make -r -j {j}", self.make(), 1),
                (f"GNU parallel -j {j}", self.parallel(tree), 1),
                (f"doit -n {j}", self.doit(), 1)]
        rows = {name: Row(name) for name, *_ in runs}
        for rep in range(self.reps):
            log(f"warm: {n} jobs, repetition {rep + 1}/{self.reps}")
            for name, argv, reps in runs:
                if rep < reps:
                    remove_state(tree)
                    self.timed(rows[name], argv, tree, check=lambda: check_built(tree, n))
        remove_state(tree)
        warm = rows[runs[0][0]].wall
        what = (f"numpy ({1000 * numpy_cost:.0f} ms here) and " if numpy_cost else "") + \
            f"a module working {import_ms} ms at import"
        lines = [f"### warm: {n} jobs of a runner importing ~{WARM_IMPORT_MS} ms, then "
                 f"~{WARM_WORK_MS} ms of work, at -j {j}", "",
                 f"The runner imports {what}; one `python runner.py X.inp` takes "
                 f"{1000 * one:.0f} ms here. The warm row is the median of {self.reps}, the "
                 "others ran once (minutes each). Ratio: the tool's time ÷ incrun --warm's "
                 "(above 1: --warm is faster).", "",
                 "| tool | median s | min–max s | CPU s | ms/job | tool ÷ --warm |",
                 "|---|---:|---:|---:|---:|---:|"]
        for row in rows.values():
            lines.append(f"| {row.tool} | {fmt(row.wall)} | {row.spread()} | {fmt(row.cpu)} | "
                         f"{1000 * row.wall / n:.2f} | {ratio(row.wall, warm)} |"
                         f"{self.flag(row)}")
        self.table(lines)
        for name in (f"make -r -j {j}", f"GNU parallel -j {j}", f"doit -n {j}"):
            speedup = rows[name].wall / warm
            self.target(f"warm {n}: {name} ÷ incrun --warm", "≥ 5", speedup, speedup >= 5)
        cold = rows[runs[1][0]].wall / rows[f"make -r -j {j}"].wall
        self.target(f"warm {n}: incrun cold ÷ make -j {j}", "≤ 1.05", cold, cold <= 1.05)

    def big_dir(self) -> Path:
        """Where the million-file trees go: tmpfs when there is one."""
        if self.args.workdir is None and Path(BIG_WORKDIR).is_dir():
            folder = Path(tempfile.mkdtemp(prefix="incrun-bench-big-", dir=BIG_WORKDIR))
            self.big_dirs.append(folder)
            return folder
        return self.work

    def watched(self, what: str, argv: list[str], tree: Path, **options) -> TreeRun:
        run = watch_tree(argv, tree, self.env, **options)
        self.case_runs.append(Run(run.wall, run.cpu, run.rss_mb, run.code))
        log(f"  {what}: {run.wall:.2f}s wall, coordinator {run.cpu:.1f}s CPU and "
            f"{run.rss_mb:.0f} MB, other processes at most {run.others_mb:.0f} MB; exit "
            f"{run.code}")
        return run

    def case_stale100k(self) -> None:
        """A first run of 100,000 jobs of `true`'s cost: incrun's coordinator alone, its CPU
        per job and peak memory; the peers' whole time and memory beside it (once each)."""
        n, j = self.size("stale100k"), self.jobs
        tree = self.big_dir() / "stale100k"
        touch_jobs_tree(tree, n)
        remove_state(tree)
        incrun = self.watched(f"incrun -n {j}", self.incrun("-q"), tree)
        problems = ([] if incrun.code == 0 else [f"exit code {incrun.code}"]) + \
            check_outputs(tree, n)
        peers = [(f"make -r -j {j}", self.make()),
                 (f"GNU parallel -j {j}", ["parallel", "--will-cite", "-j", str(j), "touch",
                                          "{.}.out", "::::", "inputs.txt"]),
                 (f"doit -n {j}", self.doit())]
        rows = {name: Row(name) for name, _ in peers}
        for name, argv in peers:
            remove_state(tree)
            self.timed(rows[name], argv, tree)
        remove_state(tree)
        shutil.rmtree(tree)
        per_job = 1000 * incrun.cpu / n
        lines = [f"### stale100k: a first run of {n} jobs of `touch X.out` at -j {j}", "",
                 "incrun: its coordinator's own CPU and peak memory, read from /proc while it "
                 "ran (its workers, the guard and the jobs apart). The peers: their whole tree, "
                 "from wait4, once each.", "",
                 "| tool | wall s | CPU s | CPU ms/job | peak RSS MB |",
                 "|---|---:|---:|---:|---:|",
                 f"| incrun -n {j}: coordinator | {fmt(incrun.wall)} | {fmt(incrun.cpu)} | "
                 f"{per_job:.3f} | {incrun.rss_mb:.0f} |"
                 + (f" **CHECK FAILED: {problems[0]}**" if problems else ""),
                 f"| incrun -n {j}: largest other process | | | | {incrun.others_mb:.0f} |"]
        for row in rows.values():
            lines.append(f"| {row.tool} | {fmt(row.wall)} | {fmt(row.cpu)} | "
                         f"{1000 * row.cpu / n:.3f} | {row.rss:.0f} |{self.flag(row)}")
        self.table(lines)
        if problems:
            self.failed = True
        self.target(f"stale {n}: incrun coordinator's peak memory", "≤ 300 MB", incrun.rss_mb,
                    incrun.rss_mb <= 300, f"{incrun.rss_mb:.0f} MB")
        self.target(f"stale {n}: incrun coordinator's CPU per job", "≤ 0.3 ms", per_job,
                    per_job <= 0.3, f"{per_job:.3f} ms")

    def case_million(self) -> None:
        """A million inputs whose outputs exist: incrun adopts them (its memory, its progress,
        the first SIGTERM ending it, in planning and while it adopts); then the no-op, status,
        --dry-run and one changed input, beside make and the stat floor."""
        n, j = self.size("million"), self.jobs
        tree = self.big_dir() / "million"
        log(f"million: creating {n} inputs and their outputs")
        touch_jobs_tree(tree, n, prebuilt=True)
        stops = []
        for phase, when in (("planning", lambda out, seconds: signal.SIGTERM
                             if seconds > 1.0 else None),
                            ("adopting", lambda out, seconds: signal.SIGTERM
                             if "adopted" in out else None)):
            remove_state(tree, outputs=False)
            run = self.watched(f"incrun, SIGTERM while {phase}", self.incrun(), tree,
                               signal_when=when)
            stops.append((phase, run))
        remove_state(tree, outputs=False)
        adopt = self.watched(f"incrun adopting {n} outputs", self.incrun(), tree)
        progress = [line for line in adopt.output.splitlines() if line.startswith("[")]
        rows = {}
        for name, argv in ((f"incrun -n {j} (no-op)", self.incrun()),
                           ("incrun status", [*installed("incrun"), "status"]),
                           ("incrun --dry-run", self.incrun("--dry-run")),
                           (f"make -r -j {j} (no-op)", self.make()),
                           (floor_row(1), self.stat_floor())):
            rows[name] = Row(name)
            for _ in range(self.reps):
                run = self.watched(name, argv, tree)
                rows[name].runs.append(Run(run.wall, run.cpu, run.rss_mb, run.code))
                if run.code != 0:
                    rows[name].failures.append(f"exit code {run.code}")
                    self.failed = True
        changed = tree / input_name(n // 2)
        changed.write_text("changed\n")
        one = self.watched("incrun, one input changed", self.incrun(), tree)
        remade = (tree / (changed.name[:-4] + ".out")).stat().st_mtime >= changed.stat().st_mtime
        noop = rows[f"incrun -n {j} (no-op)"].wall
        lines = [f"### million: {n} inputs on {filesystem(tree).split()[0]}, at -j {j}", "",
                 "Adoption (the outputs exist, no state yet): incrun's first run records them as "
                 "done. Memory: incrun's coordinator's peak (VmHWM), and the largest of its "
                 "other processes (a forked signature check).", "",
                 "| run | wall s | coordinator CPU s | coordinator peak MB | other peak MB | "
                 "note |", "|---|---:|---:|---:|---:|---|",
                 f"| adoption of {n} outputs | {fmt(adopt.wall)} | {fmt(adopt.cpu)} | "
                 f"{adopt.rss_mb:.0f} | {adopt.others_mb:.0f} | {len(progress)} progress "
                 f"lines, exit {adopt.code} |"]
        for phase, run in stops:
            lines.append(f"| SIGTERM while {phase} | {fmt(run.wall)} | {fmt(run.cpu)} | "
                         f"{run.rss_mb:.0f} | {run.others_mb:.0f} | exit {run.code} |")
        lines.append(f"| one input changed | {fmt(one.wall)} | {fmt(one.cpu)} | "
                     f"{one.rss_mb:.0f} | {one.others_mb:.0f} | its output remade: "
                     f"{'yes' if remade else '**no**'} |")
        lines += ["", "Up to date: medians of " + str(self.reps) + "; ratio to incrun's no-op.",
                  "", "| tool | median s | min–max s | peak RSS MB | ÷ incrun no-op |",
                  "|---|---:|---:|---:|---:|"]
        for row in rows.values():
            lines.append(f"| {row.tool} | {fmt(row.wall)} | {row.spread()} | {row.rss:.0f} | "
                         f"{ratio(row.wall, noop)} |{self.flag(row)}")
        lines.append(f"| doit -n {j} | not run at this size | | | (at 100,000: see noop100k) |")
        self.table(lines)
        shutil.rmtree(tree)
        self.target(f"no-op {n}: incrun", "≤ 10 s", noop, noop <= 10, f"{noop:.1f} s")
        rss = rows[f"incrun -n {j} (no-op)"].rss
        self.target(f"no-op {n}: incrun's peak memory", "≤ 1.5 GB", rss, rss <= 1536,
                    f"{rss:.0f} MB")
        for name in ("incrun status", "incrun --dry-run"):
            share = rows[name].wall / noop
            self.target(f"{name} at {n} ÷ the no-op", "≤ 2", share, share <= 2)
        self.target(f"one of {n} changed: its output remade, in ≤ no-op + 1 s", "yes",
                    one.wall, remade and one.wall <= noop + 1.0,
                    f"{one.wall:.1f} s, {'remade' if remade else 'not remade'}")
        self.target(f"adoption {n}: coordinator's peak memory", "≤ 2 GB", adopt.rss_mb,
                    adopt.rss_mb <= 2048 and adopt.code == 0, f"{adopt.rss_mb:.0f} MB")
        self.target(f"adoption {n}: progress shown while it works", "yes", len(progress),
                    len(progress) >= 2, f"{len(progress)} lines")
        for phase, run in stops:
            self.target(f"first SIGTERM while {phase}: incrun ends, exit 143", "yes", run.wall,
                        run.code == 143, f"exit {run.code} after {run.wall:.1f} s")

    def case_stale1m(self) -> None:
        """A first run of a million jobs of `true`'s cost: the coordinator's peak memory."""
        n, j = self.size("stale1m"), self.jobs
        tree = self.big_dir() / "stale1m"
        log(f"stale1m: creating {n} inputs (the run takes many minutes)")
        touch_jobs_tree(tree, n)
        run = self.watched(f"incrun -n {j}, {n} stale jobs", self.incrun("-q"), tree)
        shutil.rmtree(tree)
        self.table([f"### stale1m: a first run of {n} jobs of `touch X.out` at -j {j}", "",
                    "| run | wall s | coordinator CPU s | CPU ms/job | coordinator peak MB | "
                    "other peak MB |", "|---|---:|---:|---:|---:|---:|",
                    f"| incrun -n {j} | {fmt(run.wall)} | {fmt(run.cpu)} | "
                    f"{1000 * run.cpu / n:.3f} | {run.rss_mb:.0f} | {run.others_mb:.0f} |"])
        self.target(f"stale {n}: incrun coordinator's peak memory", "≤ 2 GB", run.rss_mb,
                    run.rss_mb <= 2048 and run.code == 0, f"{run.rss_mb:.0f} MB")

    def case_longest(self) -> None:
        """The makespan of a sweep with mixed durations, its long jobs last: in input order,
        and longest first (from the history of an earlier run)."""
        tree = self.work / "longest"
        make_tree(tree, len(MIXED), prebuilt=False)
        (tree / "runner.py").write_text(SLEEP_RUNNER)
        for i, seconds in enumerate(MIXED):
            (tree / input_name(i)).write_text(f"{seconds}\n")
        self.untimed("incrun, the run that makes the history", self.incrun("--in-order"), tree)
        modes = [("input order (--in-order)", self.incrun("-B", "--in-order")),
                 ("longest first (the default, with history)", self.incrun("-B"))]
        rows = {name: Row(name) for name, _ in modes}
        for rep in range(self.reps):
            log(f"longest: {len(MIXED)} jobs of mixed durations, repetition {rep + 1}/{self.reps}")
            for name, argv in modes:
                self.timed(rows[name], argv, tree, check=lambda: check_outputs(tree, len(MIXED)))
        work = sum(MIXED)
        ideal = max(work / self.jobs, max(MIXED))
        plain, longest = (rows[name].wall for name, _ in modes)
        lines = [f"### longest: {len(MIXED)} jobs of mixed durations at -n {self.jobs}, the "
                 f"long ones ({', '.join(f'{s:g}s' for s in sorted(set(MIXED))[1:])}) last by "
                 "name", "",
                 f"{work:g} s of work: at best {ideal:.2f} s on {self.jobs} workers. Ratio: the "
                 "row's median makespan ÷ input order's.", "",
                 "| incrun order | median s | min–max s | ÷ input order |", "|---|---:|---:|---:|"]
        for row in rows.values():
            lines.append(f"| {row.tool} | {fmt(row.wall)} | {row.spread()} | "
                         f"{ratio(row.wall, plain)} |{self.flag(row)}")
        self.table(lines)
        self.target(f"longest {len(MIXED)}: longest first ÷ input order (makespan)", "< 1.00",
                    longest / plain, longest < plain)

    def case_dask(self) -> None:
        """incrun --cluster: sleep-bound jobs on 4 Dask workers against 1; the coordinator's
        CPU per tiny job (`touch`, so that two workers starting Pythons on the same two cores
        do not inflate it) with the scheduler and workers in processes of their own (so that
        incrun's CPU is the coordinator's alone); a no-op with --cluster set, which must not
        touch a cluster (its address is one where no scheduler listens)."""
        try:
            import distributed  # noqa: F401
        except ImportError:
            self.table(["### dask", "", "not measured: pip install 'incrun[dask]'"])
            return
        sleeps = DASK_SLEEPS // (4 if self.args.quick else 1)
        tree = self.work / "dask-sleep"
        sleep_tree(tree, sleeps)
        rows = {workers: Row(f"incrun --cluster local:{workers}, {sleeps} jobs of 1 s")
                for workers in (1, 4)}
        for workers, row in rows.items():
            for _ in range(1 if workers == 1 else self.reps):  # one worker: a minute a run
                self.timed(row, [*installed("incrun"), "-B", "--cluster", f"local:{workers}"],
                           tree, check=lambda: check_outputs(tree, sleeps))
        speedup = rows[1].wall / rows[4].wall
        self.target(f"dask: {sleeps} sleeps of 1 s, 1 worker ÷ 4 workers (speed-up)", "≥ 3.5",
                    speedup, speedup >= 3.5)
        n = self.size("dask")
        tiny = self.work / "dask-tiny"
        touch_tree(tiny, n)
        tiny_row = Row(f"incrun --cluster tcp:// (dask scheduler, {self.jobs} workers), {n} "
                       "tiny jobs (`touch`)")
        with dask_processes(self.work / "dask-cluster", self.env, workers=self.jobs) as address:
            for _rep in range(self.reps):
                remove_state(tiny)
                self.timed(tiny_row, [*installed("incrun"), "--cluster", address], tiny,
                           check=lambda: check_outputs(tiny, n))
        per_job = 1000 * tiny_row.cpu / n
        self.target(f"dask: {n} tiny jobs, coordinator CPU per job", "≤ 2.0 ms", per_job,
                    per_job <= 2.0, f"{per_job:.2f} ms")
        noop_rows = {name: Row(name) for name in ("incrun", "incrun --cluster (none listens)")}
        for _rep in range(self.reps):
            for name, row in noop_rows.items():
                extra = ["--cluster", "tcp://127.0.0.1:9"] if "cluster" in name else []
                before = output_mtimes(tiny)
                self.timed(row, self.incrun(*extra), tiny, check=self.noop_check(tiny, before))
        plain, clustered = (row.wall for row in noop_rows.values())
        self.target(f"dask: no-op of {n} with --cluster ÷ without", "≤ 1.05", clustered / plain)
        lines = ["### dask: incrun --cluster on Dask, this machine", "",
                 "| run | median s | min–max s | CPU s (incrun's process) | note |",
                 "|---|---:|---:|---:|---|"]
        for row in rows.values():
            lines.append(f"| {row.tool} | {fmt(row.wall)} | {row.spread()} | {fmt(row.cpu)} | "
                         f"{'speed-up ' + f'{speedup:.2f}×' if row is rows[4] else ''} |"
                         f"{self.flag(row)}")
        lines.append(f"| {tiny_row.tool} | {fmt(tiny_row.wall)} | {tiny_row.spread()} | "
                     f"{fmt(tiny_row.cpu)} | {per_job:.2f} ms of coordinator CPU per job |"
                     f"{self.flag(tiny_row)}")
        for row in noop_rows.values():
            lines.append(f"| no-op, {n} jobs: {row.tool} | {fmt(row.wall)} | {row.spread()} | "
                         f"{fmt(row.cpu)} | |{self.flag(row)}")
        self.table(lines)
        shutil.rmtree(tree)
        shutil.rmtree(tiny)

    def case_broker(self) -> None:
        """incrun --cluster through a Redis of the benchmark's own: sleep-bound jobs on 4
        `incrun worker -c 1` processes against 1 (Celery); tiny `touch` jobs through Celery
        against the same jobs sent as a plain Celery group, by a script as a user writes it
        without incrun, and through RQ. Workers are processes of their own, started before the
        run, so that the CPU time of incrun's process (or of the submitting script) is its own:
        the coordinator's."""
        try:
            import celery  # noqa: F401
            import redis  # noqa: F401
        except ImportError:
            celery = None
        if celery is None or shutil.which("redis-server") is None:
            self.table(["### broker", "", "not measured: pip install 'incrun[celery]' and "
                        "Debian's redis-server"])
            return
        folder = self.work / "broker"
        sleeps = BROKER_SLEEPS // (4 if self.args.quick else 1)
        n = self.size("broker")
        w = self.jobs
        incrun_worker = [*installed("incrun"), "worker", "-c", "1"]
        with redis_server(folder / "redis", self.env) as redis_url:
            celery_url, tiny_url, plain_url, rq_url = (f"{redis_url}/{db}" for db in range(4))

            # scale: one worker against four, the same sleeps, each run from no state
            tree = self.work / "broker-sleep"
            sleep_tree(tree, sleeps)
            scale = {count: Row(f"incrun --cluster redis:// (Celery), {count} × `incrun worker "
                                f"-c 1`, {sleeps} jobs of 1 s") for count in (1, 4)}
            for count, row in scale.items():
                with broker_workers([[*incrun_worker, "--broker", celery_url]] * count, tree,
                                    self.env, folder / f"scale{count}",
                                    celery_ready(celery_url)):
                    for _ in range(1 if count == 1 else self.reps):  # one worker: 35 s a run
                        remove_state(tree)
                        self.timed(row, [*installed("incrun"), "--cluster", celery_url], tree,
                                   check=lambda: check_outputs(tree, sleeps))
            speedup = scale[1].wall / scale[4].wall
            self.target(f"broker: {sleeps} sleeps of 1 s, 1 Celery worker ÷ 4 (speed-up)",
                        "≥ 3.5", speedup, speedup >= 3.5)

            # overhead: n tiny jobs on w workers of one job at a time each
            tiny = self.work / "broker-tiny"
            touch_tree(tiny, n)
            through = {
                "celery": Row(f"incrun --cluster redis:// (Celery), {w} × `incrun worker -c 1`"),
                "plain": Row(f"plain Celery: a script's `group(...).apply_async().get()`, {w} × "
                             "`celery -A app worker -c 1` (prefork), Redis result backend"),
                "rq": Row(f"incrun --cluster rq+redis:// (RQ), {w} × `incrun worker -c 1`"),
            }
            app = folder / "plain-celery"
            app.mkdir(parents=True)
            (app / "bench_celery.py").write_text(CELERY_APP.format(url=plain_url))
            (app / "submit.py").write_text(CELERY_SUBMIT)
            plain_worker = [*installed("celery"), "-A", "bench_celery", "worker", "-c", "1"]
            setups = {
                "celery": ([[*incrun_worker, "--broker", tiny_url]] * w, tiny,
                           celery_ready(tiny_url),
                           [*installed("incrun"), "--cluster", tiny_url], tiny),
                "plain": ([[*plain_worker, "-n", f"bench{i}@%h"] for i in range(w)], app,
                          celery_ready(plain_url), [PY, "submit.py", str(tiny)], app),
                "rq": ([[*incrun_worker, "--broker", f"rq+{rq_url}"]] * w, tiny,
                       rq_ready(rq_url), [*installed("incrun"), "--cluster", f"rq+{rq_url}"],
                       tiny),
            }
            for key, (workers, where, ready, argv, cwd) in setups.items():
                log(f"broker: {n} tiny jobs, {through[key].tool}")
                with broker_workers(workers, where, self.env, folder / f"tiny-{key}", ready):
                    for _rep in range(self.reps):
                        remove_state(tiny)
                        self.timed(through[key], argv, cwd, check=lambda: check_outputs(tiny, n))
        plain = through["plain"]
        lines = ["### broker: incrun --cluster through Redis (Celery, RQ), this machine", "",
                 f"{broker_versions()}; a redis-server of the benchmark's own (nothing saved); "
                 "`incrun worker` logs at INFO, with Celery's task events on (as incrun starts "
                 "it); the plain Celery workers at Celery's defaults.", "",
                 f"Scale: {sleeps} jobs that sleep 1 s each (`python runner.py`), on one worker "
                 f"process, then on four: at best {sleeps} s and {sleeps / 4:g} s. Over that: "
                 "each job's Python start, and the run's fixed cost (incrun's start, finding "
                 "the workers, the end).", "",
                 "| run | median s | min–max s | CPU s (incrun's process) | note |",
                 "|---|---:|---:|---:|---|"]
        for count, row in scale.items():
            note = f"{row.wall - sleeps / count:.2f} s over the best" + (
                f"; speed-up {speedup:.2f}×" if count == 4 else "")
            lines.append(f"| {row.tool} | {fmt(row.wall)} | {row.spread()} | {fmt(row.cpu)} | "
                         f"{note} |{self.flag(row)}")
        lines += ["", f"Overhead: {n} tiny jobs (`touch X.out`) on {w} worker processes of one "
                  "job at a time each. Submitter: incrun's process, or the script's. Rest of "
                  "the machine: the workers, the jobs and Redis (all the CPU time but the "
                  "submitter's, noise included). Ratio: the row's median time ÷ plain Celery's.",
                  "", "| run | median s | min–max s | wall ms/job | submitter CPU s | "
                  "submitter CPU ms/job | rest of the machine, CPU ms/job | ÷ plain Celery |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for row in through.values():
            other = statistics.median(run.other for run in row.runs)
            lines.append(f"| {row.tool} | {fmt(row.wall)} | {row.spread()} | "
                         f"{1000 * row.wall / n:.2f} | {fmt(row.cpu)} | "
                         f"{1000 * row.cpu / n:.2f} | {1000 * other / n:.2f} | "
                         f"{ratio(row.wall, plain.wall)} |{self.flag(row)}")
        self.table(lines)
        for key, what in (("celery", "Celery"), ("rq", "RQ")):
            row = through[key]
            self.notes.append(f"broker: {n} tiny jobs, incrun through {what} ÷ a plain Celery "
                              f"group: {ratio(row.wall, plain.wall)} the wall time, "
                              f"{ratio(row.cpu, plain.cpu)} the submitter's CPU time")
        shutil.rmtree(tree)
        shutil.rmtree(tiny)

    def probe_inprocess(self, loops: int) -> tuple[bool, str]:
        """Whether incrun runs a `module:function` command in-process, on three inputs."""
        tree = self.work / "probe"
        work_tree(tree, 3, loops, in_process=True)
        result = subprocess.run(self.incrun(), cwd=tree, env=self.env, capture_output=True,
                                text=True, stdin=subprocess.DEVNULL, timeout=120)
        text = result.stdout + result.stderr
        if result.returncode != 0:
            line = first_line(text, "bench_jobs", "error", "failed")
            return False, f"incrun exits {result.returncode}: {line}"
        problems = check_built(tree, 3)
        if problems:
            return False, f"incrun exits 0 but {problems[0]}"
        return True, ""

    # ------------------------------------------------------------ output

    def target(self, what: str, limit: str, value: float, met: bool | None = None,
               shown: str | None = None) -> None:
        """One of the figures issue 4 asks for; `met` defaults to value ≤ the limit's number."""
        if met is None:
            met = value <= float(limit.split()[-1])
        self.targets.append((what, limit, shown or f"{value:.2f}", met))

    def flag(self, row: Row) -> str:
        if not row.failures:
            return ""
        return f" **CHECK FAILED: {row.failures[0]}**"

    def table(self, lines: list[str]) -> None:
        runs = self.case_runs
        wall = sum(run.wall for run in runs)
        noise = (f"; CPU used by other processes during the timed runs: "
                 f"{100 * sum(run.other for run in runs) / wall:.0f}% of one core on average"
                 if wall else "")
        lines += ["", f"_load average before this case: {self.load_before}{noise}_"]
        print("\n".join(lines) + "\n", flush=True)


@contextlib.contextmanager
def dask_processes(folder: Path, env: dict[str, str], workers: int):
    """`dask scheduler` and `dask worker --nworkers N` on 127.0.0.1, as a user starts them;
    the scheduler's address."""
    folder.mkdir(parents=True, exist_ok=True)
    scheduler_file = folder / "scheduler.json"
    started = [subprocess.Popen([*installed("dask"), "scheduler", "--host", "127.0.0.1",
                                 "--port", "0", "--no-dashboard", "--scheduler-file",
                                 str(scheduler_file)], cwd=folder, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)]
    try:
        deadline = time.monotonic() + 60
        while not (scheduler_file.exists() and scheduler_file.stat().st_size):
            if time.monotonic() > deadline:
                raise SystemExit("bench: dask scheduler did not start")
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        started.append(subprocess.Popen(
            [*installed("dask"), "worker", address, "--nworkers", str(workers), "--nthreads",
             "1", "--no-dashboard"], cwd=folder, env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True))
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(workers, timeout=60)
        yield address
    finally:
        for process in reversed(started):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def redis_server(folder: Path, env: dict[str, str]):
    """A redis-server of the benchmark's own on a free port of 127.0.0.1, nothing saved; its
    URL without a database. Exactly it is stopped at the end."""
    import redis

    folder.mkdir(parents=True, exist_ok=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port),
                               "--save", "", "--appendonly", "no", "--dir", str(folder),
                               "--logfile", str(folder / "redis.log")],
                              cwd=folder, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"bench: redis-server did not start on port {port} (see "
                                     f"{folder / 'redis.log'})") from None
                time.sleep(0.1)
        client.close()
        log(f"  redis-server on 127.0.0.1:{port} (pid {server.pid})")
        yield f"redis://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def broker_versions() -> str:
    """Celery's, kombu's, RQ's, redis-py's and redis-server's versions, in one line."""
    import celery
    import kombu
    import redis
    import rq

    server = subprocess.run(["redis-server", "--version"], capture_output=True,
                            text=True).stdout.split()
    found = next((word[2:] for word in server if word.startswith("v=")), "?")
    return (f"Celery {celery.__version__}, kombu {kombu.__version__}, RQ {rq.__version__}, "
            f"redis-py {redis.__version__}, redis-server {found}")


def celery_ready(url: str) -> Callable[[], int]:
    """How many Celery workers on this broker answer a ping: plain Celery's on Celery's own
    control exchange, incrun's on incrun's."""
    from celery import Celery

    def count() -> int:
        answered = 0
        for exchange in ("celery", "incrun"):
            app = Celery("bench-ping", broker=url, set_as_current=False)
            app.conf.control_exchange = exchange
            try:
                answered += len(app.control.ping(timeout=0.5) or [])
            finally:
                app.close()
        return answered

    return count


def rq_ready(url: str) -> Callable[[], int]:
    """How many RQ workers are registered in this Redis."""
    import redis
    from rq import Worker

    def count() -> int:
        with redis.Redis.from_url(url) as client:
            return len(Worker.all(connection=client))

    return count


@contextlib.contextmanager
def broker_workers(commands: list[list[str]], cwd: Path, env: dict[str, str], logs: Path,
                   ready: Callable[[], int]):
    """Worker processes started as a user starts them (each in a session of its own, its output
    in a log file), waited for until `ready` counts them all; at the end each is stopped
    (SIGTERM to its own process group: Celery's and RQ's warm shutdown; SIGKILL if it lingers)."""
    logs.mkdir(parents=True, exist_ok=True)
    started: list[subprocess.Popen] = []
    try:
        for index, argv in enumerate(commands):
            with open(logs / f"worker{index}.log", "wb") as out:
                started.append(subprocess.Popen(argv, cwd=cwd, env=env,
                                                stdin=subprocess.DEVNULL, stdout=out,
                                                stderr=subprocess.STDOUT,
                                                start_new_session=True))
        deadline = time.monotonic() + 60
        while (found := ready()) < len(commands):
            gone = [index for index, process in enumerate(started)
                    if process.poll() is not None]
            if gone or time.monotonic() > deadline:
                tail = (logs / f"worker{gone[0] if gone else 0}.log").read_text(
                    errors="replace").strip().splitlines()[-3:]
                raise SystemExit(f"bench: {found} of {len(commands)} workers ready "
                                 f"({' '.join(commands[0][:3])}...): {' / '.join(tail)}")
            time.sleep(0.2)
        log(f"  {len(commands)} workers ready: {Path(commands[0][0]).name} "
            f"{' '.join(commands[0][1:])}")
        yield
    finally:
        for process in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def calibrate() -> int:
    """Loop iterations of `x += i * i` that take about 1 ms here."""
    loops = 10_000
    while True:
        start = time.perf_counter()
        x = 0
        for i in range(loops):
            x += i * i
        took = time.perf_counter() - start
        if took > 0.01:
            return max(1, int(loops * 0.001 / took))
        loops *= 2


# ---------------------------------------------------------------- machine


def machine_line(work: Path) -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return (f"{cpu}, {cores} cores ({usable} usable); Python {platform.python_version()} "
            f"({PY}); {platform.platform()}; work dir on {filesystem(work)}")


def tool_versions(work: Path) -> str:
    def version(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
        except OSError:
            return "missing"
        return out.splitlines()[0].strip() if out else "?"

    incrun = version([*installed("incrun"), "--version"])
    doit = version([*installed("doit"), "--version"])
    return (f"{incrun} (run as `{' '.join(installed('incrun'))}`; {source_fingerprint()}); "
            f"doit {doit} (run as `{' '.join(installed('doit'))}`; its default dbm backend "
            f"here: {doit_dbm(work)}); {version(['make', '--version'])}; "
            f"{version(['parallel', '--version'])}")


def source_fingerprint() -> str:
    """Which incrun code was measured: a hash of its .py files (it changes between commits)."""
    spec = importlib.util.find_spec("incrun")
    if spec is None or spec.origin is None:
        return "source not found"
    files = sorted(Path(spec.origin).parent.rglob("*.py"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    newest = max(path.stat().st_mtime for path in files)
    stamp = datetime.datetime.fromtimestamp(newest).astimezone().strftime("%Y-%m-%d %H:%M")
    return (f"source {Path(spec.origin).parent}, sha256 {digest.hexdigest()[:12]} of its "
            f"{len(files)} .py files, newest changed {stamp}")


def idle_check(seconds: float = 1.0) -> float:
    """Cores' worth of CPU the machine uses while the benchmark is idle."""
    busy = cpu_busy()
    time.sleep(seconds)
    return (cpu_busy() - busy) / seconds


def doit_dbm(work: Path) -> str:
    probe = work / "dbm-probe"
    with dbm.open(str(probe), "c") as db:
        db[b"k"] = b"v"
    kind = dbm.whichdb(str(probe)) or "?"
    for leftover in work.glob("dbm-probe*"):
        leftover.unlink()
    return kind


def filesystem(path: Path) -> str:
    best, kind = "", "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, fstype, *_ = line.split()
            if str(path.resolve()).startswith(mount) and len(mount) >= len(best):
                best, kind = mount, f"{fstype} ({device}, {mount})"
    except OSError:
        pass
    return kind


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every size ~10x smaller")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per measurement")
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated, from: {','.join(CASES)} (default: all)")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="-j/-n of every tool")
    parser.add_argument("--workdir", help="where the temporary trees go (default: the "
                        "system temp dir; a disk, not /dev/shm, is the user's case)")
    parser.add_argument("--real-build", action="store_true",
                        help="no-op trees: build them by running incrun and doit for real "
                             "(slow) instead of prebuilt outputs adopted by incrun and "
                             "recorded by `doit reset-dep`")
    parser.add_argument("--keep", action="store_true", help="keep the temporary trees")
    args = parser.parse_args(argv)
    cases = [case.strip() for case in args.cases.split(",") if case.strip()]
    unknown = [case for case in cases if case not in CASES]
    if unknown or not cases:
        parser.error(f"unknown case {unknown[0] if unknown else '(none)'}: "
                     f"choose from {','.join(CASES)}")
    args.cases = [case for case in ORDER if case in cases]
    if args.reps < 1 or args.jobs < 1:
        parser.error("--reps and --jobs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # the cases of incrun alone need none of the other tools
    others = set(args.cases) - {"inprocess", "longest", "dask", "broker", "stale1m"}
    for program in ("make", "parallel", "bash") if others else ():
        if shutil.which(program) is None:
            raise SystemExit(f"bench: {program} is not installed (apt-get install -y {program})")
    bench = Bench(args)
    log(f"work dir {bench.work}; cases {','.join(args.cases)}; reps {args.reps}"
        + ("; quick" if args.quick else ""))
    if "tmpfs" in filesystem(bench.work):
        log("warning: the work dir is on tmpfs; users' trees are on disk (see --workdir)")
    start_load = loadavg()
    busy = idle_check()
    if busy > 0.1:
        log(f"warning: other processes use {100 * busy:.0f}% of a core: they skew timings")
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    print(f"# incrun benchmark, {now}\n")
    print(f"- machine: {machine_line(bench.work)}")
    print(f"- tools: {tool_versions(bench.work)}")
    print(f"- run: `{' '.join(['bench.py', *(argv if argv is not None else sys.argv[1:])])}`; "
          f"-j/-n {args.jobs}; {args.reps} repetitions, median shown; load average at start "
          f"{start_load}; other processes' CPU at start {100 * busy:.0f}% of a core\n",
          flush=True)
    started = time.perf_counter()
    try:
        for case in args.cases:
            log(f"== {case} (load average {loadavg()})")
            bench.load_before = loadavg()
            bench.case_runs = []
            if case.startswith("noop") or case in STAGES:
                bench.case_noop(case)
            else:
                getattr(bench, f"case_{case}")()
    finally:
        if not args.keep:
            shutil.rmtree(bench.work, ignore_errors=True)
            for folder in bench.big_dirs:
                shutil.rmtree(folder, ignore_errors=True)
    if "noop20k" in bench.noop and "noop100k" in bench.noop:
        low, high = bench.size("noop20k"), bench.size("noop100k")
        per_job = []
        for tool in (f"incrun -n {args.jobs}", f"doit -n {args.jobs}"):
            small, big = bench.noop["noop20k"][tool].rss, bench.noop["noop100k"][tool].rss
            per_job.append(f"{tool} {(big - small) * 1024 / (high - low):.1f} KB")
        bench.notes.append(f"memory per job (growth of peak RSS from {low} to {high} jobs, "
                           "no-op runs): " + ", ".join(per_job))
    if bench.targets:
        print("### targets\n")
        print("| target | limit | measured | met |")
        print("|---|---|---:|---|")
        for what, limit, shown, met in bench.targets:
            print(f"| {what} | {limit} | {shown} | {'yes' if met else '**no**'} |")
        print()
    print("### notes\n")
    for note in bench.notes:
        print(f"- {note}")
    print(f"- total benchmark time {time.perf_counter() - started:.0f}s; load average at end "
          f"{loadavg()}")
    print(f"- correctness checks: {'SOME FAILED (see the rows)' if bench.failed else 'all passed'}")
    return 1 if bench.failed else 0


if __name__ == "__main__":
    sys.exit(main())

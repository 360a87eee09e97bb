"""Tests for incrun.uptodate: the one-stat check that lets a no-op run skip doit.

A job is up to date here only while every file it names is as it was at its recorded success;
anything else (a changed or missing file, a job never recorded) leaves it to doit.
"""

from __future__ import annotations

import os
import signal

import pytest

from incrun.config import RuleSpec
from incrun.events import FAILED, OK, JobResult
from incrun.plan import build
from incrun.rules import Sweep
from incrun.store import Store
from incrun.uptodate import Signatures, UpToDate, in_parallel

INPUTS = ("a.inp", "b.inp", "c.inp")
SPEC = RuleSpec(deps=("params.txt",))  # the default rule: runner.py {input} -> {stem}.out


@pytest.fixture
def root(tmp_path, monkeypatch):
    """A project whose three jobs all succeeded, each recorded with its signature then."""
    monkeypatch.chdir(tmp_path)  # a sweep's paths are relative to the project root
    (tmp_path / "runner.py").write_text("print('run')\n")
    (tmp_path / "params.txt").write_text("alpha = 1\n")
    for name in INPUTS:
        (tmp_path / name).write_text(f"input {name}\n")
        (tmp_path / name.replace(".inp", ".out")).write_text(f"output of {name}\n")
    store = Store(tmp_path / ".incrun").open()
    sweep = Sweep(SPEC, tmp_path)
    signatures = Signatures()
    for index in range(len(sweep)):
        record(store, sweep.job(index).task, OK, signatures.of(sweep.job(index).spec()))
    store.close()
    return tmp_path


def record(store: Store, task: str, status: str, sig: str | None) -> None:
    store.job_started(task, 10.0)
    store.commit()
    store.job_finished(JobResult(task, status, 10.0, 11.0, 0 if status == OK else 1), sig)
    store.commit()


def stale_inputs(root, spec: RuleSpec = SPEC) -> list[str]:
    """The inputs a fresh run's check (new Signatures, store read again) leaves to doit."""
    store = Store(root / ".incrun").open(writable=False)
    try:
        sweep = Sweep(spec, root)
        return [sweep.inputs[index] for index in UpToDate(store, Signatures()).stale(sweep)]
    finally:
        store.close()


def rewrite(path, text: str) -> None:
    """New content of another size, so the change shows even within one mtime tick."""
    before = os.stat(path)
    path.write_text(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))


def test_nothing_changed_nothing_is_stale_and_each_job_is_counted(root):
    store = Store(root / ".incrun").open(writable=False)
    check = UpToDate(store, Signatures(), keep_names=True)
    sweep = Sweep(SPEC, root)
    assert check.stale(sweep) == []
    assert check.count == 3
    assert check.names == ["sweep:a.inp", "sweep:b.inp", "sweep:c.inp"]
    store.close()


def test_an_output_changed_makes_only_its_job_stale(root):
    rewrite(root / "b.out", "edited by hand, much longer than before\n")
    assert stale_inputs(root) == ["b.inp"]


def test_an_output_missing_makes_only_its_job_stale(root):
    (root / "c.out").unlink()
    assert stale_inputs(root) == ["c.inp"]


def test_an_input_touched_makes_its_job_stale(root):
    info = os.stat(root / "a.inp")
    os.utime(root / "a.inp", ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
    assert stale_inputs(root) == ["a.inp"]


@pytest.mark.parametrize("shared", ["params.txt", "runner.py"])
def test_a_shared_file_changed_makes_every_job_stale(root, shared):
    rewrite(root / shared, "changed for every job at once\n")
    assert stale_inputs(root) == list(INPUTS)


def test_a_shared_file_missing_makes_every_job_stale(root):
    sweep = Sweep(SPEC, root)  # made while the file is there, as a run that loses it midway
    (root / "params.txt").unlink()
    assert Signatures().rule_key(sweep.digest, sweep.shared) is None
    store = Store(root / ".incrun").open(writable=False)
    assert UpToDate(store, Signatures()).stale(sweep) == [0, 1, 2]
    store.close()


def test_another_command_or_output_template_makes_every_job_stale(root):
    assert stale_inputs(root, RuleSpec(deps=SPEC.deps, command=("{python}", "runner.py", "-v",
                                                                "{input}"))) == list(INPUTS)
    assert stale_inputs(root, RuleSpec(deps=SPEC.deps, outputs=("{stem}.out",
                                                                "{stem}.log"))) == list(INPUTS)


def test_a_job_never_recorded_is_stale(root):
    (root / "d.inp").write_text("a new input\n")
    (root / "d.out").write_text("an output no run of incrun wrote\n")
    assert stale_inputs(root) == ["d.inp"]


def test_a_job_whose_last_run_failed_is_stale(root):
    store = Store(root / ".incrun").open()
    record(store, "sweep:b.inp", FAILED, None)
    store.close()
    assert stale_inputs(root) == ["b.inp"]


def test_a_signature_needs_every_file(root):
    spec = Sweep(SPEC, root).job(0).spec()
    assert Signatures().of(spec) is not None
    (root / "a.out").unlink()
    assert Signatures().of(spec) is None


# -- a big check, split over processes ----------------------------------------------------

CHAIN = (RuleSpec(name="sim", inputs=("*.inp",), outputs=("{stem}.out",)),
         RuleSpec(name="post", inputs=("*.out",), command=("{python}", "post.py", "{input}"),
                  outputs=("{stem}.sum",), deps=("post.py",)))


def built_chain(root, n: int):
    """A two-rule project of n inputs whose 2n jobs all succeeded, as recorded."""
    (root / "runner.py").write_text("print('run')\n")
    (root / "post.py").write_text("print('post')\n")
    for i in range(n):
        for suffix in (".inp", ".out", ".sum"):
            (root / f"p{i:04d}{suffix}").write_text(f"{suffix} of {i}\n")
    store = Store(root / ".incrun").open()
    signatures = Signatures()
    for sweep in build(CHAIN, root).sweeps:
        for index in range(len(sweep)):
            job = sweep.job(index)
            store.job_started(job.task, 10.0)
            store.job_finished(JobResult(job.task, OK, 10.0, 11.0, 0), signatures.of(job.spec()))
        store.commit()
    store.close()


def pending_tasks(root, cores: int) -> tuple[list[str], dict[str, int]]:
    """The jobs a fresh run's check leaves to doit, and those it found up to date by rule."""
    store = Store(root / ".incrun").open(writable=False)
    try:
        check = UpToDate(store, Signatures(), cores=cores)
        pending = build(CHAIN, root).pending(check)
        return [job.task for _, jobs in pending for job in jobs], check.by_rule
    finally:
        store.close()


def test_a_big_check_split_over_processes_finds_what_one_process_finds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path
    built_chain(root, 240)
    rewrite(root / "p0003.inp", "changed: sim and post rerun\n")
    rewrite(root / "p0150.out", "edited by hand: sim and post rerun\n")
    (root / "p0239.sum").unlink()  # the last job of the last part
    (root / "p9999.inp").write_text("never run\n")
    monkeypatch.setattr("incrun.uptodate.JOBS_PER_PART", 100)  # 482 jobs: 3 parts at most
    expected = ["sim:p0003.inp", "sim:p0150.inp", "sim:p9999.inp",
                "post:p0003.out", "post:p0150.out", "post:p0239.out", "post:p9999.out"]
    alone = pending_tasks(root, cores=1)
    assert alone[0] == expected and alone[1] == {"sim": 238, "post": 237}
    assert pending_tasks(root, cores=3) == alone
    assert pending_tasks(root, cores=4) == alone  # more cores than parts


def children() -> set[int]:
    """This process's child processes, zombies included (reaped ones are gone)."""
    found = set()
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as listed:
            found.update(int(pid) for pid in listed.read().split())
    return found


def test_in_parallel_runs_each_part_but_the_first_in_a_child_and_keeps_their_order():
    parent = os.getpid()
    results = in_parallel(lambda number: (number, os.getpid()), 4)
    assert [number for number, _ in results] == [0, 1, 2, 3]
    pids = [pid for _, pid in results]
    assert pids[0] == parent and parent not in pids[1:] and len(set(pids)) == 4
    for child in pids[1:]:  # every child was reaped
        with pytest.raises(ChildProcessError):
            os.waitpid(child, os.WNOHANG)


@pytest.mark.parametrize("how", ["raises", "is killed"])
def test_a_part_whose_child_fails_is_done_by_the_parent(how):
    parent = os.getpid()

    def work(number: int) -> tuple[int, bool]:
        if number == 2 and os.getpid() != parent:
            if how == "raises":
                raise RuntimeError("a part that fails in its child")
            os.kill(os.getpid(), signal.SIGKILL)
        return number, os.getpid() == parent

    before = children()
    assert in_parallel(work, 3) == [(0, True), (1, False), (2, True)]
    assert children() <= before  # every child it forked was reaped

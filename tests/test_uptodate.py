"""Tests for incrun.uptodate: the one-stat check that lets a no-op run skip doit.

A job is up to date here only while every file it names is as it was at its recorded success;
anything else (a changed or missing file, a job never recorded) leaves it to doit.
"""

from __future__ import annotations

import os

import pytest

from incrun.config import RuleSpec
from incrun.events import FAILED, OK, JobResult
from incrun.rules import Sweep
from incrun.store import Store
from incrun.uptodate import Signatures, UpToDate

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

"""Tests for incrun.store: the state in `.incrun/` survives restarts, damage and concurrency."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest

from incrun.errors import LOCKED, Locked
from incrun.events import FAILED, OK, JobResult
from incrun.store import Store

DONE = ("sweep:a.inp", "sweep:b.inp", "sweep:c.inp")


def finish(store: Store, task: str, status: str = OK, exit_code: int = 0) -> None:
    """As the runner does: mark it running and commit before it starts, record it at its end."""
    store.job_started(task, 10.0)
    store.commit()
    store.job_finished(JobResult(task, status, 10.0, 12.5, exit_code,
                                 str(store.log_path(task)), "" if status == OK else "exit 3"))
    store.commit()


def reopen(state_dir) -> Store:
    return Store(state_dir).open()


def succeeded(store: Store, tasks) -> set[str]:
    return {task for task in tasks if store.job_status(task) == "ok"}


@pytest.fixture
def small_db(tmp_path) -> bytes:
    """The bytes of a real, closed store holding three succeeded jobs and their doit state."""
    store = Store(tmp_path / "built" / ".incrun").open()
    for task in DONE:
        store.backend.set(task, "a.inp", [1.0, 3, "d41d8cd98f00b204e9800998ecf8427e"])
        finish(store, task)
    store.close()
    return (store.db_path).read_bytes()


# -- opening and records -------------------------------------------------------------


def test_store_open_missing_dir_is_fresh(tmp_path):
    store = Store(tmp_path / ".incrun").open()
    assert store.fresh
    assert store.may_adopt
    assert store.warnings == []
    store.close()


def test_store_reopen_existing_is_not_fresh(tmp_path):
    Store(tmp_path / ".incrun").open().close()
    store = reopen(tmp_path / ".incrun")
    assert not store.fresh
    store.close()


def test_store_job_records_persist(tmp_path):
    store = Store(tmp_path / ".incrun").open()
    finish(store, "sweep:a.inp")
    finish(store, "sweep:b.inp", status=FAILED, exit_code=3)
    store.job_started("sweep:c.inp", 11.0)
    store.close()
    again = reopen(tmp_path / ".incrun")
    assert again.job_status("sweep:a.inp") == "ok"
    assert again.job_status("sweep:b.inp") == "failed"
    assert again.job_status("sweep:c.inp") == "running"
    assert again.job_status("sweep:never.inp") is None
    row = again.job_row("sweep:b.inp")
    assert (row["exit_code"], row["started"], row["ended"], row["detail"]) == (3, 10.0, 12.5,
                                                                                 "exit 3")
    again.close()


def test_store_job_finished_durable_once_committed_without_close(tmp_path):
    # A kill -9 right after the commit that follows a job's end must not lose its record.
    store = Store(tmp_path / ".incrun").open()
    finish(store, "sweep:a.inp")
    store.job_started("sweep:b.inp", 11.0)  # staged, not committed: not visible yet
    other = reopen(tmp_path / ".incrun")
    assert other.job_status("sweep:a.inp") == "ok"
    assert other.job_status("sweep:b.inp") is None
    other.close()
    store.close()


def test_store_a_job_that_never_started_gets_its_record_back(tmp_path):
    store = Store(tmp_path / ".incrun").open()
    finish(store, "sweep:a.inp")
    for task in ("sweep:a.inp", "sweep:new.inp"):
        store.job_started(task, 20.0)
    store.commit()
    store.jobs_not_started(["sweep:a.inp", "sweep:new.inp"])
    store.commit()
    store.close()
    again = reopen(tmp_path / ".incrun")
    assert again.job_status("sweep:a.inp") == "ok"
    assert again.job_row("sweep:a.inp")["ended"] == 12.5
    assert again.job_status("sweep:new.inp") is None  # no record, as before
    again.close()


def test_store_backend_persists_after_commit(tmp_path):
    store = Store(tmp_path / ".incrun").open()
    store.backend.set("sweep:a.inp", "a.inp", [1.5, 3, "abc"])
    store.commit()
    other = reopen(tmp_path / ".incrun")
    assert other.backend.in_("sweep:a.inp")
    assert other.backend.get("sweep:a.inp", "a.inp") == [1.5, 3, "abc"]
    assert not other.backend.in_("sweep:b.inp")
    other.close()
    store.close()


def test_store_backend_persists_with_job_record(tmp_path):
    store = Store(tmp_path / ".incrun").open()
    store.backend.set("sweep:a.inp", "_config_changed", "digest")
    finish(store, "sweep:a.inp")
    other = reopen(tmp_path / ".incrun")
    assert other.backend.get("sweep:a.inp", "_config_changed") == "digest"
    other.close()
    store.close()


def test_store_backend_removed_stays_removed(tmp_path):
    store = Store(tmp_path / ".incrun").open()
    store.backend.set("sweep:a.inp", "x", 1)
    store.backend.set("sweep:b.inp", "x", 2)
    store.close()
    store = reopen(tmp_path / ".incrun")
    store.backend.remove("sweep:a.inp")
    store.close()
    again = reopen(tmp_path / ".incrun")
    assert not again.backend.in_("sweep:a.inp")
    assert again.backend.get("sweep:a.inp", "x") is None
    assert again.backend.get("sweep:b.inp", "x") == 2
    again.close()


def test_store_forget_leaves_forgotten(tmp_path):
    store = Store(tmp_path / ".incrun").open()
    store.backend.set("sweep:a.inp", "x", 1)
    finish(store, "sweep:a.inp")
    store.forget(["sweep:a.inp"])
    store.close()
    again = reopen(tmp_path / ".incrun")
    assert again.job_status("sweep:a.inp") == "forgotten"
    assert not again.backend.in_("sweep:a.inp")
    again.close()


# -- damage -------------------------------------------------------------------------


def test_store_garbage_db_set_aside(tmp_path):
    state = tmp_path / ".incrun"
    state.mkdir()
    (state / "state.db").write_bytes(b"this is not a database at all\n" * 200)
    store = Store(state).open()
    assert store.warnings and "state.db" in store.warnings[0]
    assert not store.may_adopt
    assert store.job_status("sweep:a.inp") is None
    finish(store, "sweep:a.inp")  # and it works again
    store.close()
    assert any(name.startswith("state.db.damaged") for name in os.listdir(state))


def test_store_after_damage_may_not_adopt_after_reopen(tmp_path):
    state = tmp_path / ".incrun"
    state.mkdir()
    (state / "state.db").write_bytes(bytes(range(256)) * 20)
    Store(state).open().close()
    again = reopen(state)
    assert not again.may_adopt
    assert again.warnings == []
    again.close()


def test_store_unknown_version_set_aside(tmp_path, small_db):
    state = tmp_path / ".incrun"
    state.mkdir()
    (state / "state.db").write_bytes(small_db)
    with sqlite3.connect(state / "state.db") as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'version'")
    conn.close()
    store = Store(state).open()
    assert store.warnings and "99" in store.warnings[0]
    assert succeeded(store, DONE) == set()
    assert not store.may_adopt
    store.close()


def _open_truncated(base, data: bytes, offset: int) -> tuple:
    state = base / str(offset) / ".incrun"
    state.mkdir(parents=True)
    (state / "state.db").write_bytes(data[:offset])
    try:
        store = Store(state).open()
        outcome = (offset, list(store.warnings), store.may_adopt,
                   succeeded(store, (*DONE, "sweep:other.inp")), None)
        store.close()
    except Exception as error:  # any exception at all is the failure under test
        outcome = (offset, [], True, set(), repr(error))
    shutil.rmtree(base / str(offset))
    return outcome


def cut_points(data: bytes, around: int = 64, stride: int = 257) -> list[int]:
    """Where a truncation can change the outcome, densely: every byte of the header's first
    page part and around each page boundary; every `stride`-th byte (a prime, so every offset
    within a page is reached over the file) elsewhere, and the last byte."""
    page = int.from_bytes(data[16:18], "big")
    page = 65536 if page == 1 else page  # SQLite's spelling of the largest page size
    points = set(range(0, 513)) | set(range(0, len(data), stride)) | {len(data) - 1}
    for boundary in range(page, len(data), page):
        points |= set(range(boundary - around, boundary + around + 1))
    return sorted(point for point in points if 0 <= point < len(data))


def test_store_truncated_anywhere_never_crashes_or_invents(tmp_path, small_db):
    # On a memory file system when there is one, where fsync costs nothing.
    base = Path(tempfile.mkdtemp(dir="/dev/shm")) if os.path.isdir("/dev/shm") else tmp_path
    offsets = cut_points(small_db)
    assert len(small_db) // 4096 >= 3 and len(offsets) < len(small_db) // 4  # pages to cut
    try:
        outcomes = [_open_truncated(base, small_db, offset) for offset in offsets]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    errors = [(offset, error) for offset, _, _, _, error in outcomes if error]
    assert errors == []
    invented = [offset for offset, _, _, ok, _ in outcomes if not ok <= set(DONE)]
    assert invented == []
    # Set aside means warned and not adoptable; losing any record also means not adoptable.
    set_aside = [offset for offset, warned, adopt, _, _ in outcomes if warned and adopt]
    assert set_aside == []
    lost = [offset for offset, _, adopt, ok, _ in outcomes if adopt and ok != set(DONE)]
    assert lost == []
    # The cuts reach every kind of outcome: a file too short to be one, a damaged one set
    # aside, and one cut only past what the records need, read whole.
    kinds = {("warned" if warned else "whole" if ok == set(DONE) else "empty")
             for _, warned, _, ok, _ in outcomes}
    assert kinds == {"empty", "warned", "whole"}


def test_store_read_only_open_of_missing_store_creates_nothing(tmp_path):
    store = Store(tmp_path / ".incrun").open(writable=False)
    assert store.job_status("sweep:a.inp") is None
    store.close()
    assert not (tmp_path / ".incrun").exists()


def test_store_read_only_open_sees_records(tmp_path):
    store = Store(tmp_path / ".incrun").open()
    finish(store, "sweep:a.inp")
    store.close()
    before = sorted(os.listdir(tmp_path / ".incrun"))
    reader = Store(tmp_path / ".incrun").open(writable=False)
    assert reader.job_status("sweep:a.inp") == "ok"
    reader.close()
    assert sorted(os.listdir(tmp_path / ".incrun")) == before


def test_store_read_only_open_of_garbage_leaves_it(tmp_path):
    state = tmp_path / ".incrun"
    state.mkdir()
    (state / "state.db").write_bytes(b"garbage" * 100)
    store = Store(state).open(writable=False)
    assert store.warnings
    store.close()
    assert os.listdir(state) == ["state.db"]


# -- lock ---------------------------------------------------------------------------


def test_store_lock_second_holder_refused_with_pid(tmp_path):
    first = Store(tmp_path / ".incrun")
    first.lock()
    second = Store(tmp_path / ".incrun")
    with pytest.raises(Locked) as caught:
        second.lock()
    assert caught.value.exit_code == LOCKED == 10
    assert str(os.getpid()) in str(caught.value)
    first.close()


def test_store_lock_released_on_close(tmp_path):
    first = Store(tmp_path / ".incrun")
    first.lock()
    first.close()
    second = Store(tmp_path / ".incrun")
    second.lock()  # must not raise
    second.close()


# -- logs ---------------------------------------------------------------------------


def test_store_log_path_distinct_readable_inside_logs(tmp_path):
    store = Store(tmp_path / ".incrun").open()
    tasks = ["sweep:data/a.inp", "sweep:data/a b.inp", "sweep:data/a_b.inp", "sweep:data/a\nb.inp"]
    paths = [Path(store.log_path(task)) for task in tasks]
    assert len(set(paths)) == len(tasks)
    logs = store.logs_dir.resolve()
    for task, path in zip(tasks, paths):
        assert path.resolve().is_relative_to(logs)
        assert path.suffix == ".log"
        assert "\n" not in str(path) and " " not in str(path)
        assert "a" in path.name and "data" in path.parts  # still recognisable
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(task, encoding="utf-8")
    assert [path.read_text(encoding="utf-8") for path in paths] == tasks
    store.close()


@pytest.mark.parametrize("task", ["sweep:../../escape.inp", "sweep:/etc/passwd", "..", ":"])
def test_store_log_path_never_escapes_logs(tmp_path, task):
    store = Store(tmp_path / ".incrun")
    assert Path(store.log_path(task)).resolve().is_relative_to(store.logs_dir.resolve())


def test_store_log_path_long_input_name_is_writable(tmp_path):
    # An input may have the longest name the file system allows; its log must still be writable.
    name = "x y" + "z" * 247 + ".inp"
    (tmp_path / name).write_text("x", encoding="utf-8")
    store = Store(tmp_path / ".incrun").open()
    path = Path(store.log_path("sweep:" + name))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("log", encoding="utf-8")
    assert path.read_text(encoding="utf-8") == "log"
    store.close()


def test_store_log_path_long_names_differing_at_end_distinct(tmp_path):
    store = Store(tmp_path / ".incrun")
    stem = "z" * 240
    first, second = (Path(store.log_path(f"sweep:{stem}{i}.inp")) for i in (1, 2))
    assert first != second
    assert all(len(os.fsencode(part)) <= 255 for part in first.parts + second.parts)


def test_run_history_keeps_the_newest_runs_within_its_bounds(tmp_path, monkeypatch):
    import incrun.store as store_module

    monkeypatch.setattr(store_module, "KEEP_RUNS", 3)
    monkeypatch.setattr(store_module, "KEEP_ROWS", 25)
    sizes = [10, 10, 10, 10, 30]  # jobs run by each of five runs
    for number, size in enumerate(sizes):
        store = reopen(tmp_path / ".incrun")
        store.begin_run(100.0 * number, 2)
        for job in range(size):
            store.job_ran(JobResult(f"sweep:{job}.inp", OK, 100.0 * number + job,
                                    100.0 * number + job + 0.5, 0, worker=f"w{job % 2}"))
            store.commit()
        store.end_run(100.0 * number + 99, size, 0)
        kept = [run["started"] for run in store.runs()]
        if number == 3:  # runs 1-3: 30 rows, over 25: the oldest of them goes too
            assert kept == [300.0, 200.0]
        store.close()
    store = reopen(tmp_path / ".incrun")
    runs = store.runs()
    assert [run["started"] for run in runs] == [400.0]  # alone over the bound, but the last
    history = store.history(runs[0]["id"])
    assert len(history) == 30 and history[0]["worker"] == "w0"
    assert history[1]["ended"] - history[1]["started"] == 0.5


def test_a_run_that_ran_nothing_leaves_no_history(tmp_path):
    store = reopen(tmp_path / ".incrun")
    store.begin_run(1.0, 2)
    store.end_run(2.0, 0, 0)
    assert store.runs() == []

"""The only code that touches `.incrun/`: the state database, per-job logs and the run lock."""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import sqlite3
import time
from pathlib import Path
from typing import NamedTuple

from .errors import Locked, StateError
from .events import JobResult
from .hashing import hash_text

VERSION = 3
DB_NAME = "state.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deps (task TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    task TEXT PRIMARY KEY, status TEXT NOT NULL, exit_code INTEGER,
    started REAL, ended REAL, log TEXT, detail TEXT, attempts INTEGER, sig TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, started REAL NOT NULL, ended REAL, workers INTEGER,
    ran INTEGER, failed INTEGER
);
CREATE TABLE IF NOT EXISTS history (
    run INTEGER NOT NULL, task TEXT NOT NULL, status TEXT NOT NULL, started REAL, ended REAL,
    exit_code INTEGER, signal INTEGER, attempts INTEGER, worker TEXT, detail TEXT, log TEXT
);
CREATE INDEX IF NOT EXISTS history_of_run ON history (run);
"""
# The run history keeps the last runs that ran jobs, as many as fit both bounds (the last one
# always): a few runs of a 100,000-job sweep, or many of a small one.
KEEP_RUNS, KEEP_ROWS = 100, 1_000_000
HISTORY_KEYS = ("task", "status", "started", "ended", "exit_code", "signal", "attempts",
                "worker", "detail", "log")
# Job states in the `jobs` table; RUNNING is written, committed, before the job starts.
RUNNING, SUCCEEDED, FAILED, FORGOTTEN = "running", "ok", "failed", "forgotten"
MAX_NAME = 200  # bytes of a log file name, well below the usual 255
PROBE_WAIT = 0.1  # seconds a run waits for the lock while a reader probes it (see `_take`)
JOB_KEYS = ("status", "exit_code", "started", "ended", "log", "detail", "attempts", "sig")
ONE_BY_ONE = 1_000  # job statuses read one query each; past them, every job's at once
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=@-]")


class DoitBackend:
    """doit's backend interface (get/set/in_/remove/dump) over the store's `deps` table.

    A task's row is read when doit first asks for it: a sweep whose jobs are up to date by
    their signatures never reads theirs. Changes stay pending until the store commits them,
    which it does after every job.
    """

    def __init__(self, conn: sqlite3.Connection | None = None):
        self.name = DB_NAME
        self._conn = conn
        self._cache: dict[str, dict] = {}
        self._absent: set[str] = set()  # asked for and not there, or removed
        self.dirty: set[str] = set()
        self.removed: set[str] = set()

    def _read(self, task_id: str) -> str | None:
        if self._conn is None:
            return None
        try:
            row = self._conn.execute("SELECT data FROM deps WHERE task = ?", (task_id,)).fetchone()
        except sqlite3.DatabaseError:
            return None  # a damaged row: the task is simply stale
        return row[0] if row else None

    def prefetch(self, task_ids: list[str]) -> None:
        """Read the rows of many tasks at once (the stale jobs of a run), rather than one
        query each when doit asks."""
        if self._conn is None:
            return
        wanted = [t for t in task_ids if t not in self._cache and t not in self._absent]
        try:
            for chunk in _chunks(wanted):
                found = dict(self._conn.execute(
                    f"SELECT task, data FROM deps WHERE task IN ({_marks(chunk)})", chunk))
                for task_id in chunk:
                    self._remember(task_id, found.get(task_id))
        except sqlite3.DatabaseError:
            pass  # a damaged row is read, and found stale, one at a time

    def _remember(self, task_id: str, text: str | None) -> dict | None:
        data = _decoded(text)
        if data is not None:
            self._cache[task_id] = data
            return data
        self._absent.add(task_id)
        return None

    def _data(self, task_id: str) -> dict | None:
        data = self._cache.get(task_id)
        if data is None and task_id not in self._absent:
            data = self._remember(task_id, self._read(task_id))
        return data

    def get(self, task_id: str, dependency: str):
        data = self._data(task_id)
        return None if data is None else data.get(dependency)

    def set(self, task_id: str, dependency: str, value) -> None:
        data = self._data(task_id)
        if data is None:
            data = self._cache[task_id] = {}
        data[dependency] = value
        self.dirty.add(task_id)
        self._absent.discard(task_id)
        self.removed.discard(task_id)

    def in_(self, task_id: str) -> bool:
        return self._data(task_id) is not None

    def remove(self, task_id: str) -> None:
        self._cache.pop(task_id, None)
        self._absent.add(task_id)
        self.dirty.discard(task_id)
        self.removed.add(task_id)

    def remove_all(self) -> None:
        stored = [row[0] for row in self._conn.execute("SELECT task FROM deps")] \
            if self._conn is not None else []
        for task_id in {*self._cache, *stored}:
            self.remove(task_id)

    def dump(self) -> None:
        """doit calls this when it is done; the store commits on its own schedule."""

    def release(self) -> None:
        """Let go of what was read (nothing may be pending): asked again, it is read again."""
        self._cache.clear()
        self._absent.clear()

    def pending(self):
        writes = [(task, json.dumps(self._cache[task])) for task in sorted(self.dirty)]
        return writes, sorted(self.removed)

    def clear_pending(self) -> None:
        self.dirty.clear()
        self.removed.clear()


class Store:
    """`.incrun/` of one project. Open it, use it, close it; damage costs a rerun, never a crash."""

    def __init__(self, state_dir: Path):
        self.dir = state_dir
        self.db_path = state_dir / DB_NAME
        self.logs_dir = state_dir / "logs"
        self._logs_text = str(self.logs_dir)  # as text, for a path per job at little cost
        self._root_text = str(state_dir.parent) + os.sep
        self.warnings: list[str] = []
        self.fresh = False  # True when no state existed before this open
        self.may_adopt = True  # False once state was lost: outputs on disk are then unverified
        self._conn: sqlite3.Connection | None = None
        self._signatures: dict[str, str] = {}  # of every recorded success, read at open
        # Jobs' statuses known here (None: no row), staged ones included; every job's once
        # more than ONE_BY_ONE were asked for.
        self._statuses: dict[str, str | None] = {}
        self._all_statuses = False
        self._statuses_asked = 0
        self._new_signatures: dict[str, str] = {}  # refreshed, not yet committed
        self._staged: list[tuple] = []  # job rows for the next commit
        self._unstaged: list[str] = []  # job rows to delete at the next commit
        self._before_start: dict[str, tuple | None] = {}  # rows replaced by a RUNNING mark
        self._rows: dict[str, tuple | None] = {}  # job rows read ahead (prefetch)
        self._run: tuple | None = None  # this run's row: id, started, workers
        self._run_recorded = False  # its row is staged or written
        self._history: list[tuple] = []  # rows for the next commit
        self._logs: dict[str, str] = {}
        self._tracked: list[str] = []  # tasks staged since `release`
        self._lock_file = None
        self._holder: tuple[Holder | None] | None = None  # who holds the lock, once asked
        self.backend = DoitBackend()

    # -- opening ---------------------------------------------------------

    def open(self, writable: bool = True) -> Store:
        """Load the state; a read-only open never creates, repairs or moves anything."""
        if not self.db_path.exists():
            self.fresh = True
            if not writable:
                return self
        if writable:
            self._make_dir()
        try:
            self._connect(writable)
        except sqlite3.OperationalError as error:  # a full disk, an I/O error: not damage
            raise StateError(f"cannot use {self.db_path}: {error}",
                             hint="free some disk space or fix the permissions") from None
        except sqlite3.DatabaseError as error:
            if not writable:
                self.warnings.append(f"state in {self.db_path} is unreadable ({error})")
                return self
            self._set_aside(f"unreadable ({error})")
            try:
                self._connect(writable)
            except sqlite3.Error as again:
                raise StateError(f"cannot create {self.db_path}: {again}") from None
        return self

    def _make_dir(self) -> None:
        try:
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            ignore = self.dir / ".gitignore"
            if not ignore.exists():  # a new project: its state never lands in git
                ignore.write_text("# incrun's state: kept out of version control\n*\n")
        except OSError as error:
            raise StateError(f"cannot create {self.logs_dir}: {error.strerror}",
                             hint="incrun keeps its state there; check the permissions") from None
        if not os.access(self.dir, os.W_OK) or not os.access(self.logs_dir, os.W_OK):
            raise StateError(f"{self.dir} is not writable",
                             hint="incrun keeps its state there; check the permissions")

    def _connect(self, writable: bool = True) -> None:
        conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        try:
            if writable:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")  # survives any crash of incrun itself
                conn.executescript(SCHEMA)
            meta = dict(conn.execute("SELECT key, value FROM meta"))
            if meta.get("version", str(VERSION)) != str(VERSION):
                raise sqlite3.DatabaseError(f"written by another version of incrun "
                                            f"(format {meta['version']}, this one reads "
                                            f"{VERSION})")
            self._signatures = dict(conn.execute(
                "SELECT task, sig FROM jobs WHERE status = ? AND sig IS NOT NULL", (SUCCEEDED,)))
            if writable and "version" not in meta:
                conn.execute("INSERT INTO meta VALUES ('version', ?)", (str(VERSION),))
                if not self.fresh:  # rebuilt after damage: outputs on disk are unverified
                    conn.execute("INSERT INTO meta VALUES ('adopt', 'no')")
                    meta["adopt"] = "no"
        except sqlite3.DatabaseError:
            conn.close()
            raise
        self._conn = conn
        self.may_adopt = meta.get("adopt") != "no"
        self.backend = DoitBackend(conn)

    def _set_aside(self, why: str) -> None:
        """Keep a damaged database for inspection and start afresh: every job becomes stale."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            path = Path(str(self.db_path) + suffix)
            if path.exists():
                try:
                    path.replace(Path(f"{self.db_path}.damaged-{stamp}{suffix}"))
                except OSError as error:
                    raise StateError(f"cannot set aside the damaged {path}: "
                                     f"{error.strerror}") from None
        self.fresh = False
        self.warnings.append(
            f"state in {self.db_path} was {why}; set aside, every job counts as stale")

    # -- jobs --------------------------------------------------------------

    def job_status(self, task: str) -> str | None:
        """The job's status as recorded, or staged. A run asks for a few (one query each), or
        for many (every job's read at once: one query, not 100,000)."""
        if task in self._statuses or self._all_statuses or self._conn is None:
            return self._statuses.get(task)
        if task in self._rows:  # read ahead with the rest of its part
            row = self._rows[task]
            return row[1] if row else None
        self._statuses_asked += 1
        if self._statuses_asked > ONE_BY_ONE:
            self._read_every_status()
            return self._statuses.get(task)
        try:
            row = self._conn.execute("SELECT status FROM jobs WHERE task = ?", (task,)).fetchone()
        except sqlite3.DatabaseError:
            row = None  # read at open already; a failure now only makes the job stale
        self._statuses[task] = row[0] if row else None
        return self._statuses[task]

    def _read_every_status(self) -> None:
        try:
            found = dict(self._conn.execute("SELECT task, status FROM jobs"))
        except sqlite3.DatabaseError:
            found = {}
        found.update(self._statuses)  # what was staged since, and rows known to be missing
        self._statuses = found
        self._all_statuses = True

    def job_row(self, task: str) -> dict | None:
        """Everything recorded of the task's last run (read from the database on demand)."""
        status = self.job_status(task)
        if status is None:
            return None
        row = None
        if self._conn is not None:
            try:
                row = self._conn.execute(f"SELECT {', '.join(JOB_KEYS)} FROM jobs WHERE task = ?",
                                         (task,)).fetchone()
            except sqlite3.DatabaseError:
                row = None
        if row is None:
            return {"status": status, "sig": self._signatures.get(task)}
        return self._job(row)

    def _job(self, row) -> dict:
        """A row of the jobs table (its JOB_KEYS), its log as shown."""
        found = dict(zip(JOB_KEYS, row))
        found["log"] = self._shown(found["log"])
        return found

    def _row(self, task: str) -> tuple | None:
        if task in self._rows:
            return self._rows.pop(task)
        if self._conn is None:
            return None
        try:
            return self._conn.execute("SELECT * FROM jobs WHERE task = ?", (task,)).fetchone()
        except sqlite3.DatabaseError:
            return None

    def durations(self, tasks: list[str]) -> dict[str, float]:
        """How long each of these jobs took the last time it ran, if it did."""
        found: dict[str, float] = {}
        if self._conn is None:
            return found
        try:
            for chunk in _chunks(tasks):
                found.update(self._conn.execute(
                    f"SELECT task, ended - started FROM jobs WHERE task IN ({_marks(chunk)}) "
                    "AND ended IS NOT NULL AND started IS NOT NULL AND ended > started", chunk))
        except sqlite3.DatabaseError:
            pass  # no history: input order, and an ETA from this run's mean
        return found

    def mean_duration(self) -> float | None:
        """The mean of every job's last known duration."""
        if self._conn is None:
            return None
        try:
            return self._conn.execute(
                "SELECT AVG(ended - started) FROM jobs WHERE ended IS NOT NULL "
                "AND started IS NOT NULL AND ended > started").fetchone()[0]
        except sqlite3.DatabaseError:
            return None

    def prefetch(self, tasks: list[str]) -> None:
        """Read at once what the run will ask of these jobs (the stale ones): their doit rows,
        and their job rows, kept in case a job marked running never starts."""
        self.backend.prefetch(tasks)
        if self._conn is None:
            return
        try:
            for chunk in _chunks([task for task in tasks if task not in self._rows]):
                self._rows.update({task: None for task in chunk})
                self._rows.update((row[0], row) for row in self._conn.execute(
                    f"SELECT * FROM jobs WHERE task IN ({_marks(chunk)})", chunk))
        except sqlite3.DatabaseError:
            pass  # read one at a time then

    def release(self) -> None:
        """Commit, then let go of what was read and written for the jobs so far (a part of a
        big run's): memory holds one part's records at a time. What was let go is read from
        the database again, if asked."""
        self.commit()
        if self._conn is None:
            return
        self.backend.release()
        self._rows.clear()
        self._logs.clear()
        for task in self._tracked:
            self._signatures.pop(task, None)
        self._tracked.clear()
        self._statuses.clear()
        self._all_statuses, self._statuses_asked = False, 0

    def job_started(self, task: str, at: float) -> None:
        """Mark a job running, for the next `commit`, which must come before the job starts."""
        if task not in self._before_start:
            self._before_start[task] = self._row(task)
        self._stage([(task, RUNNING, None, at, None, self.log_name(task), "", 0, None)])

    def job_finished(self, result: JobResult, sig: str | None = None) -> None:
        """Record how a job ended, for the next `commit`."""
        self._before_start.pop(result.name, None)
        status = SUCCEEDED if result.ok else FAILED
        self._stage([(result.name, status, result.exit_code, result.started, result.ended,
                      result.log_path, result.detail, result.attempts, sig)])

    def jobs_not_started(self, tasks) -> None:
        """Jobs marked running that never started: their records go back to what they were."""
        for task in tasks:
            if task in self._before_start:
                row = self._before_start.pop(task)
                if row is None:
                    self._unstaged.append(task)
                    self._track(task, None, None)
                else:
                    self._stage([row])

    # -- run history ---------------------------------------------------------

    def begin_run(self, at: float, workers: int) -> None:
        """A run begins; it enters the history with its first job."""
        self._run = (None, at, workers)

    def job_ran(self, result: JobResult) -> None:
        """Keep how a job that ran ended (after retries) in the run history."""
        if self._run is None or self._conn is None:
            return
        if self._run[0] is None:
            last = self._conn.execute("SELECT MAX(id) FROM runs").fetchone()[0]
            self._run = ((last or 0) + 1, *self._run[1:])
        code = result.exit_code
        signal = -code if code is not None and code < 0 else None
        self._history.append((self._run[0], result.name, result.status, result.started,
                              result.ended, None if signal else code, signal, result.attempts,
                              result.worker, result.detail, result.log_path))

    def end_run(self, at: float, ran: int, failed: int, workers: int | None = None) -> None:
        """The run is over: its totals (its `workers`, if known only now: a cluster's), and
        older runs beyond the bounds dropped."""
        if self._run is None or self._run[0] is None or self._conn is None:
            return
        self.commit()
        conn = self._conn
        try:
            conn.execute("BEGIN")
            conn.execute("UPDATE runs SET ended = ?, ran = ?, failed = ?, "
                         "workers = COALESCE(?, workers) WHERE id = ?",
                         (at, ran, failed, workers, self._run[0]))
            self._prune_history()
            conn.execute("COMMIT")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")  # the jobs' records are committed: the history is
                # only a convenience

    def _prune_history(self) -> None:
        kept_rows, dropped = 0, []
        sizes = self._conn.execute("SELECT run, COUNT(*) FROM history GROUP BY run "
                                   "ORDER BY run DESC").fetchall()
        for index, (run, rows) in enumerate(sizes):
            kept_rows += rows
            if index and (index >= KEEP_RUNS or kept_rows > KEEP_ROWS):
                dropped.append((run,))
        self._conn.executemany("DELETE FROM history WHERE run = ?", dropped)
        self._conn.executemany("DELETE FROM runs WHERE id = ?", dropped)

    def runs(self) -> list[dict]:
        """The runs in the history, newest first."""
        if self._conn is None:
            return []
        keys = ("id", "started", "ended", "workers", "ran", "failed")
        try:
            rows = self._conn.execute(f"SELECT {', '.join(keys)} FROM runs ORDER BY id DESC")
            return [dict(zip(keys, row)) for row in rows]
        except sqlite3.DatabaseError:
            return []

    def history(self, run: int) -> list[dict]:
        """The jobs one run ran, in the order they started."""
        if self._conn is None:
            return []
        try:
            rows = self._conn.execute(f"SELECT {', '.join(HISTORY_KEYS)} FROM history "
                                      "WHERE run = ? ORDER BY started", (run,))
            jobs = [dict(zip(HISTORY_KEYS, row)) for row in rows]
        except sqlite3.DatabaseError:
            return []
        for job in jobs:
            job["log"] = self._shown(job["log"])
        return jobs

    def records(self, tasks: list[str] | None = None) -> list[dict]:
        """Everything recorded of each task (or of those named), by name: its last run (`job`)
        and the state of its dependencies doit keeps (`deps`). For `incrun dumpdb`."""
        if self._conn is None:
            return []
        where = f" WHERE task IN ({_marks(tasks)})" if tasks else ""
        found: dict[str, dict] = {}
        try:
            for task, *row in self._conn.execute(
                    f"SELECT task, {', '.join(JOB_KEYS)} FROM jobs{where}", tasks or ()):
                found.setdefault(task, {"task": task})["job"] = self._job(row)
            for task, data in self._conn.execute(f"SELECT task, data FROM deps{where}",
                                                 tasks or ()):
                found.setdefault(task, {"task": task})["deps"] = _decoded(data) or {}
        except sqlite3.DatabaseError as error:
            self.warnings.append(f"state in {self.db_path} is partly unreadable ({error})")
        return [found[task] for task in sorted(found)]

    def ignored(self) -> set[str]:
        """The tasks `incrun ignore` set aside (doit's `ignore:` mark in their state)."""
        if self._conn is None:
            return set()
        try:
            return {row[0] for row in self._conn.execute(
                "SELECT task FROM deps WHERE instr(data, '\"ignore:\"') > 0")}
        except sqlite3.DatabaseError:
            return set()

    def signatures(self) -> dict[str, str]:
        """The signature recorded with each success (see `uptodate`), by task; do not modify."""
        return self._signatures

    def signature(self, task: str) -> str | None:
        """The signature recorded with the task's success, if it succeeded."""
        return self._signatures.get(task)

    def set_signature(self, task: str, sig: str | None) -> None:
        """A job found up to date by content: note its new signature (committed later)."""
        if sig is not None and self.job_status(task) == SUCCEEDED \
                and self._signatures.get(task) != sig:
            self._signatures[task] = sig
            self._new_signatures[task] = sig

    def forget(self, tasks) -> None:
        """Drop the tasks' success; the row that stays keeps old outputs from being adopted."""
        for task in tasks:
            self.backend.remove(task)
        self._stage([(task, FORGOTTEN, None, None, None, None, "", 0, None) for task in tasks])
        self.commit()

    def _stage(self, job_rows: list[tuple]) -> None:
        for task, status, *_, sig in job_rows:
            self._track(task, status, sig)
        self._staged.extend(job_rows)

    def _track(self, task: str, status: str | None, sig: str | None) -> None:
        """Keep the in-memory view of the jobs table in step with what is staged."""
        self._tracked.append(task)
        self._statuses[task] = status
        if status == SUCCEEDED and sig is not None:
            self._signatures[task] = sig
        else:
            self._signatures.pop(task, None)

    @property
    def uncommitted(self) -> bool:
        """Whether anything waits for the next commit (never, with no database to write)."""
        return self._conn is not None and bool(
            self._staged or self._unstaged or self._history or self._new_signatures
            or self.backend.dirty or self.backend.removed)

    def commit(self) -> None:
        """Write, in one transaction, every staged job record and what doit changed (file
        states of finished tasks, refreshed states, forgotten tasks)."""
        if self._conn is None:
            self._staged.clear()
            self._unstaged.clear()
            return
        writes, removals = self.backend.pending()
        sigs = [(sig, task) for task, sig in self._new_signatures.items()]
        if not (writes or removals or sigs or self._staged or self._unstaged or self._history):
            return
        conn = self._conn
        try:
            conn.execute("BEGIN")
            statements = (("INSERT OR REPLACE INTO deps VALUES (?, ?)", writes),
                          ("DELETE FROM deps WHERE task = ?", [(t,) for t in removals]),
                          ("INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           self._staged),
                          ("DELETE FROM jobs WHERE task = ?", [(t,) for t in self._unstaged]),
                          ("UPDATE jobs SET sig = ? WHERE task = ?", sigs),
                          ("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           self._history))
            if self._history and not self._run_recorded:
                conn.execute("INSERT INTO runs (id, started, workers) VALUES (?, ?, ?)",
                             self._run)
            for statement, rows in statements:
                if rows:
                    conn.executemany(statement, rows)
            conn.execute("COMMIT")
        except sqlite3.Error as error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")  # all or nothing: no job counts as done unrecorded
            raise StateError(f"cannot record the run's state in {self.db_path}: {error}",
                             hint="free some disk space or fix the permissions; "
                                  "jobs recorded so far stay recorded") from None
        self._run_recorded = self._run_recorded or bool(self._history)
        self._history.clear()
        self.backend.clear_pending()
        self._new_signatures.clear()
        self._staged.clear()
        self._unstaged.clear()

    # -- logs --------------------------------------------------------------

    def log_path(self, task: str) -> str:
        """A readable file per task, mirroring its name; unsafe characters replaced, then a hash."""
        if task not in self._logs:
            parts = [p for p in task.replace(":", "/").split("/") if p not in ("", ".", "..")]
            safe = [_UNSAFE.sub("_", part)[:MAX_NAME] for part in parts] or ["_"]
            if safe != parts:  # two names must not share a log
                safe[-1] += "-" + format(hash_text(task), "08x")
            self._logs[task] = os.path.join(self._logs_text, *safe[:-1], safe[-1] + ".log")
        return self._logs[task]

    def log_name(self, task: str) -> str:
        """The task's log as incrun shows and records it: relative to the project root."""
        return self._shown(self.log_path(task))

    def _shown(self, log: str | None) -> str | None:
        """A recorded log path as shown: relative to the project root (older records kept it
        absolute)."""
        return log.removeprefix(self._root_text) if log else log

    # -- the lock -------------------------------------------------------------

    def lock(self) -> None:
        """Hold this project for one run; the kernel releases it if the process dies."""
        self._make_dir()
        path = self.dir / "lock"
        try:
            handle = open(path, "a+")
        except OSError as error:
            raise StateError(f"cannot open {path}: {error.strerror}") from None
        if not _take(handle):
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise Locked(f"another incrun run holds this project ({holder})",
                         hint="wait for it to finish; read-only commands such as "
                              "'incrun status' work meanwhile") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._lock_file = handle
        for leftover in self.logs_dir.glob(".scratch-*"):  # job output of a run now dead
            leftover.unlink(missing_ok=True)

    def holder(self) -> Holder | None:
        """The run that holds this project now, as another process sees it; None if no run
        does. Asked of the lock once an open, and only when a job's record says it runs."""
        if self._holder is None:
            self._holder = (_holder_of(self.dir / "lock"),)
        return self._holder[0]

    def running_in(self, recorded: dict) -> Holder | None:
        """The run that runs the job now, if its record says it runs and the run that marked it
        so still holds the project; None if that run is gone (the job was interrupted)."""
        if recorded.get("status") != RUNNING or recorded.get("started") is None:
            return None
        holder = self.holder()
        return holder if holder is not None and recorded["started"] >= holder.since else None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self.commit()
            except StateError:
                pass  # already reported; what could be recorded was
            self._conn.close()
            self._conn = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


class Holder(NamedTuple):
    """The run holding a project's lock: its pid, its host, and when it took the lock."""

    pid: int
    host: str
    since: float


def _take(handle) -> bool:
    """Take the lock; False if another run holds it. A reader asking who holds it (`holder`)
    holds it for an instant: that is waited for, a little."""
    deadline = time.monotonic() + PROBE_WAIT
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(PROBE_WAIT / 20)


def _holder_of(path: Path) -> Holder | None:
    """Who holds the lock at `path`, read without creating or changing anything."""
    try:
        handle = open(path, encoding="utf-8", errors="replace")
    except OSError:
        return None  # no run ever held it
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held: the holder wrote who it is when it took it
            found = re.match(r"pid (\d+) on (\S+)", handle.read())
            since = os.fstat(handle.fileno()).st_mtime
            return Holder(int(found[1]), found[2], since) if found else None
        except OSError:
            return None
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


_CHUNK = 500  # SQLite's limit on parameters in one statement was 999 before 3.32


def _decoded(text: str | None) -> dict | None:
    """A row's JSON, if it holds a dict; None if it is missing or damaged."""
    try:
        data = json.loads(text or "null")
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _chunks(items: list[str]) -> list[list[str]]:
    return [items[i:i + _CHUNK] for i in range(0, len(items), _CHUNK)]


def _marks(chunk: list[str]) -> str:
    return ", ".join("?" * len(chunk))

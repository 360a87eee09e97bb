"""End to end: nothing lost, nothing injected. The real `incrun` on damaged state, hostile
file names, outputs that try to leave the project, misbehaving dodo.py tasks, an unwritable
`.incrun/` and a full disk."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import pytest

# -- helpers -------------------------------------------------------------------


def output_of(result) -> str:
    return result.stdout + result.stderr


def one_error_line(result) -> str:
    """The single line a user mistake prints on stderr (and no traceback anywhere)."""
    assert "Traceback" not in output_of(result), output_of(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("incrun: error:"), lines[0]
    return lines[0]


def tree(folder: Path) -> dict[str, bytes | str]:
    """Every path below a folder with its content (or its link target): a snapshot."""
    snapshot: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            snapshot[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            snapshot[rel] = path.read_bytes()
        else:
            snapshot[rel] = "dir"
    return snapshot


def can_mount() -> str | None:
    """Why tmpfs cannot be mounted here, or None if it can be tried."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "no mount/umount command"
    return None


@contextlib.contextmanager
def tmpfs(folder: Path, options: str):
    """A tmpfs mounted on `folder` for the duration; skips the test if it cannot be mounted."""
    why = can_mount()
    if why:
        pytest.skip(why)
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                             capture_output=True, text=True, timeout=30)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True,
                          timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


def fill(path: Path, leave: int) -> None:
    """Write `path` until the file system is full, then give back `leave` bytes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    block = b"\0" * 4096
    try:
        while True:
            os.write(fd, block)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    os.truncate(path, max(0, path.stat().st_size - leave))


def processes_with(token: str) -> list[int]:
    """Pids of live processes whose command line holds `token`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if token.encode() in cmdline:
            found.append(int(entry.name))
    return found


# -- 6. damaged state ------------------------------------------------------------


def _garbage(db: Path) -> None:
    db.write_bytes(b"\x00\xffnot a database at all\x13\x37" * 300)


def _truncated(db: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    os.truncate(db, db.stat().st_size // 2)


def _future_version(db: Path) -> None:
    conn = sqlite3.connect(db)
    with conn:
        changed = conn.execute("UPDATE meta SET value = '99' WHERE key = 'version'").rowcount
    conn.close()
    assert changed == 1


@pytest.mark.parametrize("damage", [_garbage, _truncated, _future_version],
                         ids=["garbage", "truncated", "future_version"])
def test_damaged_state_warns_once_reruns_everything_and_adopts_nothing(project, damage):
    jobs = ["a.inp", "b.inp", "c.inp"]
    project.inputs(*jobs)
    first = project.run("-n", "2")
    assert first.returncode == 0, output_of(first)
    assert project.ran() == jobs
    db = project.root / ".incrun" / "state.db"
    assert db.is_file()
    damage(db)

    result = project.run("-n", "2")
    text = output_of(result)
    assert result.returncode == 0, text
    assert "Traceback" not in text
    warnings = [line for line in text.splitlines() if "state.db" in line]
    assert len(warnings) == 1, text
    # The outputs on disk are newer than their inputs, yet must not count as done.
    assert project.ran() == jobs
    assert "adopted" not in text
    for name in jobs:
        assert (project.root / name.replace(".inp", ".out")).read_text() == "X = 1\n"

    again = project.run("-n", "2")
    assert again.returncode == 0, output_of(again)
    assert project.ran() == []
    assert "state.db" not in output_of(again)


# -- 7. hostile file names --------------------------------------------------------

HOSTILE = ["a b.inp", "x;touch PWNED.inp", "$(touch PWNED).inp", "`touch PWNED`.inp",
           "q\"uo'te.inp", "-rf.inp", "*.inp", "ünï.inp", "new\nline.inp"]


def test_hostile_file_names_are_plain_arguments_never_shell_code(project, tmp_path):
    for name in HOSTILE:
        project.write(name, f"text of {name}\n")
    result = project.run("-n", "2")
    assert result.returncode == 0, output_of(result)
    assert "Traceback" not in output_of(result)
    for name in HOSTILE:
        out = project.root / (name[:-4] + ".out")
        assert out.read_text(encoding="utf-8") == f"text of {name}\n".upper(), name
    assert len(project.ran()) == len(HOSTILE)
    assert not [p for p in tmp_path.rglob("*") if p.name == "PWNED"]
    assert not (Path.cwd() / "PWNED").exists()
    logs = [p for p in (project.root / ".incrun" / "logs").rglob("*") if p.is_file()]
    assert any("working on new\nline.inp" in p.read_text(errors="replace") for p in logs), logs

    again = project.run("-n", "2")
    assert again.returncode == 0, output_of(again)
    assert project.ran() == []
    assert not [p for p in tmp_path.rglob("*") if p.name == "PWNED"]


# -- 8. outputs stay inside ---------------------------------------------------------


def test_output_template_leading_out_of_the_project_is_refused(project, tmp_path):
    project.inputs("a.inp", "b.inp")
    project.write("incrun.toml", 'outputs = ["../escape/{name}.out"]\n')
    outside = {p: tree(tmp_path)[p] for p in tree(tmp_path) if not p.startswith("project")}
    for args in ((), ("clean",)):
        result = project.run(*args)
        assert result.returncode == 5, output_of(result)
        assert "outside" in one_error_line(result)
        assert project.ran() == []
    assert not (tmp_path / "escape").exists()
    after = {p: c for p, c in tree(tmp_path).items() if not p.startswith("project")}
    assert after == outside


def test_output_folder_symlinked_out_of_the_project_is_refused(project, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.out").write_text("precious, not incrun's\n")
    (elsewhere / "notes.txt").write_text("mine\n")
    (project.root / "results").symlink_to(elsewhere, target_is_directory=True)
    project.inputs("a.inp", "b.inp")
    project.write("incrun.toml", 'outputs = ["results/{/.}.out"]\n')
    before = tree(elsewhere)
    for args in ((), ("clean",)):
        result = project.run(*args)
        assert result.returncode == 5, output_of(result)
        assert "outside" in one_error_line(result)
        assert project.ran() == []
        assert tree(elsewhere) == before


def _target_absolute(project, victim: Path) -> str:
    return str(victim)


def _target_through_symlink(project, victim: Path) -> str:
    (project.root / "shared").symlink_to(victim.parent, target_is_directory=True)
    return "shared/" + victim.name


@pytest.mark.parametrize("target", [_target_absolute, _target_through_symlink],
                         ids=["absolute_path", "through_symlink"])
def test_dodo_task_with_targets_outside_is_refused_by_run_and_clean(project, tmp_path, target):
    victim = tmp_path / "elsewhere" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text("keep me\n")
    project.inputs("a.inp")
    path = target(project, victim)
    project.write("dodo.py", f'''
def write(path):
    open(path, "w").write("overwritten by a task\\n")


def task_escape():
    return {{"actions": [(write, [{path!r}])], "targets": [{path!r}], "clean": True}}
''')
    for args in ((), ("clean",), ("clean", "escape")):
        result = project.run(*args)
        assert result.returncode == 7, (args, output_of(result))
        assert "outside" in one_error_line(result)
        assert victim.read_text() == "keep me\n"
    assert project.ran() == []
    assert not (project.root / "a.out").exists()


def test_output_symlinked_to_a_file_outside_is_replaced_never_written_through(project,
                                                                              tmp_path):
    victim = tmp_path / "elsewhere" / "a.out"
    victim.parent.mkdir()
    victim.write_text("precious\n")
    past = time.time() - 1000
    os.utime(victim, (past, past))  # older than the input: the job is stale, not adoptable
    project.inputs("a.inp", "b.inp")
    link = project.root / "a.out"
    link.symlink_to(victim)

    result = project.run("-n", "2")
    assert result.returncode == 0, output_of(result)
    assert project.ran() == ["a.inp", "b.inp"]
    assert not link.is_symlink()
    assert link.read_text() == "X = 1\n"
    assert victim.read_text() == "precious\n"

    link.unlink()
    link.symlink_to(victim)
    cleaned = project.run("clean")
    assert cleaned.returncode == 0, output_of(cleaned)
    assert not os.path.lexists(link)
    assert not (project.root / "b.out").exists()
    assert victim.read_text() == "precious\n"


def test_output_symlinked_to_a_newer_file_is_never_adopted(project, tmp_path):
    # Both the link and its target are newer than the input and the runner: a regular file
    # would be adopted as the output of an earlier build (b.out shows it is); a link never is.
    past = time.time() - 1000
    project.inputs("a.inp", "b.inp")
    for name in ("a.inp", "b.inp", "runner.py"):
        os.utime(project.root / name, (past, past))
    victim = tmp_path / "elsewhere" / "a.out"
    victim.parent.mkdir()
    victim.write_text("precious\n")
    link = project.root / "a.out"
    link.symlink_to(victim)
    project.write("b.out", "X = 1\n")

    result = project.run("-n", "2")
    assert result.returncode == 0, output_of(result)
    assert "adopted 1" in result.stdout, result.stdout
    assert project.ran() == ["a.inp"]
    assert not link.is_symlink() and link.read_text() == "X = 1\n"
    assert victim.read_text() == "precious\n"


# -- 9. misbehaving dodo.py tasks --------------------------------------------------------


def test_python_action_that_raises_fails_alone_with_a_clear_reason(project):
    project.inputs("a.inp", "b.inp")
    project.write("dodo.py", '''
def boom():
    raise ValueError("the frobnicator is out of flux")


def task_boom():
    return {"actions": [boom]}
''')
    result = project.run("-n", "2")
    assert result.returncode == 1, output_of(result)
    assert project.ran() == ["a.inp", "b.inp"]
    assert (project.root / "a.out").read_text() == "X = 1\n"
    headlines = [line for line in result.stdout.splitlines() if line.startswith("FAILED boom")]
    assert len(headlines) == 1, result.stdout
    # The reason on that one line says what went wrong, not just that something did.
    assert "the frobnicator is out of flux" in headlines[0], headlines[0]


SET_TASK = '''
import json


def make(values):
    open("made.txt", "w").write(open("settings.txt").read())
    return {"v": values}


def task_made():
    return {"actions": [(make, [VALUES])], "file_dep": ["settings.txt"],
            "targets": ["made.txt"]}
'''


def test_unstorable_return_value_fails_the_task_and_the_state_survives(project):
    project.inputs("a.inp", "b.inp")
    project.write("settings.txt", "k = 1\n")
    project.write("dodo.py", SET_TASK.replace("VALUES", "{1, 2}"))
    result = project.run("-n", "2")
    text = output_of(result)
    assert result.returncode == 1, text
    assert "Traceback" not in text
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED made")]
    assert len(failed) == 1 and "cannot be stored" in failed[0], result.stdout
    assert "done in" in result.stdout  # the run reached its summary
    assert project.ran() == ["a.inp", "b.inp"]
    assert not (project.root / "made.txt").exists()  # a failed task's output does not count

    project.write("dodo.py", SET_TASK.replace("VALUES", "[1, 2]"))
    fixed = project.run("-n", "2")
    assert fixed.returncode == 0, output_of(fixed)
    assert project.ran() == []  # the jobs recorded alongside the failure stay recorded
    assert (project.root / "made.txt").read_text() == "k = 1\n"
    last = project.run("-n", "2")
    assert last.returncode == 0, output_of(last)
    assert "all 3 jobs up to date" in last.stdout


def test_hanging_shell_task_ends_at_the_timeout(project):
    project.inputs("a.inp", "b.inp")
    token = f"30.{uuid.uuid4().int % 10**9:09d}"  # `sleep 30.xxx`: findable among processes
    project.write("dodo.py", f'''
def task_hang():
    return {{"actions": ["sleep {token}"]}}
''')
    try:  # without the timeout the task would outlast this bound and fail the test
        result = project.run("-n", "2", "--timeout", "1", timeout=25)
    finally:
        leftovers = []
        deadline = time.monotonic() + 5
        while (leftovers := processes_with(token)) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in leftovers:  # started by this test's incrun: ours to end
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
    assert result.returncode == 1, output_of(result)
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED hang")]
    assert len(failed) == 1 and "timed out" in failed[0], result.stdout
    assert project.ran() == ["a.inp", "b.inp"]
    assert leftovers == [], "the task's sleep outlived incrun"


# -- 10. unwritable .incrun/ and a full disk ------------------------------------------------


@pytest.mark.parametrize("blocker", ["read_only_folder", "file_in_the_way",
                                     "read_only_filesystem"])
def test_unwritable_state_folder_is_a_clear_error_before_any_job(project, blocker):
    project.inputs("a.inp", "b.inp")
    state = project.root / ".incrun"
    with contextlib.ExitStack() as stack:
        if blocker == "read_only_folder":
            state.mkdir()
            state.chmod(0o500)
            stack.callback(state.chmod, 0o700)
            if os.access(state, os.W_OK):
                pytest.skip("running as root: a read-only folder is writable anyway")
        elif blocker == "file_in_the_way":
            state.write_text("not a folder\n")
            stack.callback(state.unlink)
        else:
            stack.enter_context(tmpfs(state, "ro,size=64k"))
        result = project.run("-n", "2")
        assert result.returncode == 9, output_of(result)
        assert ".incrun" in one_error_line(result)
        assert project.ran() == []
        assert not (project.root / "a.out").exists()
    fixed = project.run("-n", "2")  # once the folder is writable, every job runs
    assert fixed.returncode == 0, output_of(fixed)
    assert project.ran() == ["a.inp", "b.inp"]


@pytest.mark.parametrize("free_kb", [8, 96], ids=["almost_no_space", "room_for_a_few_records"])
def test_full_disk_stops_with_one_line_and_loses_no_record(project, free_kb):
    first = ["a.inp", "b.inp", "c.inp"]
    new = ["d.inp", "e.inp", "f.inp", "g.inp", "h.inp", "i.inp"]
    project.inputs(*first)
    state = project.root / ".incrun"
    with tmpfs(state, "size=400k"):
        done = project.run("-n", "1")
        assert done.returncode == 0, output_of(done)
        assert project.ran() == first
        project.inputs(*new, text="x = 2\n")
        fill(state / "filler", leave=free_kb * 1024)

        full = project.run("-n", "1")
        assert "Traceback" not in output_of(full), output_of(full)
        assert full.returncode == 9, output_of(full)
        assert "state" in one_error_line(full)
        ran_while_full = project.ran()
        assert set(ran_while_full) <= set(new)

        (state / "filler").unlink()
        status = project.run("status", "--json")
        assert status.returncode == 0, output_of(status)
        jobs = {job["task"].removeprefix("sweep:"): job["state"]
                for job in json.loads(status.stdout)["jobs"]}
        recorded = {name for name, job_state in jobs.items() if job_state == "up-to-date"}
        # Nothing recorded as done that did not run; nothing recorded before is lost.
        assert recorded <= set(first) | set(ran_while_full)
        assert set(first) <= recorded

        after = project.run("-n", "1")
        assert after.returncode == 0, output_of(after)
        reran = project.ran()
        assert not set(reran) & set(first)
        assert set(reran) == set(jobs) - recorded
        assert set(new) - set(ran_while_full) <= set(reran)
        for name in first:
            assert (project.root / name.replace(".inp", ".out")).read_text() == "X = 1\n"
        for name in new:
            assert (project.root / name.replace(".inp", ".out")).read_text() == "X = 2\n"
        last = project.run("-n", "1")
        assert last.returncode == 0 and project.ran() == []

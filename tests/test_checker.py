"""Tests for incrun.checker: content decides whether a dependency changed; mtime is a shortcut."""

from __future__ import annotations

import hashlib
import os

from doit.dependency import get_file_md5

from incrun.checker import ContentChecker
from incrun.hashing import file_md5, file_states

SECOND = 1_000_000_000  # in nanoseconds


def write(path, data: bytes, mtime_ns: int) -> str:
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return str(path)


def test_checker_get_state_is_mtime_size_md5(tmp_path):
    dep = write(tmp_path / "a.inp", b"hello", 1000 * SECOND)
    mtime, size, md5 = ContentChecker().get_state(dep, None)
    assert (mtime, size) == (1000.0, 5)
    assert md5 == hashlib.md5(b"hello").hexdigest()


def test_checker_check_modified_same_mtime_not_modified(tmp_path):
    dep = write(tmp_path / "a.inp", b"hello", 1000 * SECOND)
    checker = ContentChecker()
    state = checker.get_state(dep, None)
    assert checker.check_modified(dep, os.stat(dep), state) is False
    assert checker.refreshed == {}


def test_checker_check_modified_touch_same_content_refreshed(tmp_path):
    dep = write(tmp_path / "a.inp", b"hello", 1000 * SECOND)
    state = ContentChecker().get_state(dep, None)
    os.utime(dep, ns=(2000 * SECOND, 2000 * SECOND))  # a touch, a fresh clone, a cache restore
    checker = ContentChecker()
    assert checker.check_modified(dep, os.stat(dep), state) is False
    assert checker.refreshed == {dep: (2000.0, 5, state[2])}


def test_checker_check_modified_same_size_new_content_modified(tmp_path):
    dep = write(tmp_path / "a.inp", b"hello", 1000 * SECOND)
    state = ContentChecker().get_state(dep, None)
    write(tmp_path / "a.inp", b"jello", 2000 * SECOND)
    checker = ContentChecker()
    assert checker.check_modified(dep, os.stat(dep), state) is True
    assert dep not in checker.refreshed


def test_checker_check_modified_size_changed_modified(tmp_path):
    dep = write(tmp_path / "a.inp", b"hello", 1000 * SECOND)
    state = ContentChecker().get_state(dep, None)
    write(tmp_path / "a.inp", b"hello world", 2000 * SECOND)
    assert ContentChecker().check_modified(dep, os.stat(dep), state) is True


def test_checker_get_state_none_when_mtime_matches(tmp_path):
    dep = write(tmp_path / "a.inp", b"hello", 1000 * SECOND)
    checker = ContentChecker()
    state = checker.get_state(dep, None)
    assert checker.get_state(dep, state) is None


def test_checker_get_state_new_when_mtime_differs(tmp_path):
    dep = write(tmp_path / "a.inp", b"hello", 1000 * SECOND)
    checker = ContentChecker()
    state = checker.get_state(dep, None)
    write(tmp_path / "a.inp", b"jello", 3000 * SECOND)
    assert checker.get_state(dep, state) == (3000.0, 5, hashlib.md5(b"jello").hexdigest())


def test_checker_hash_computed_once_per_mtime_and_size(tmp_path):
    path = tmp_path / "runner.py"
    dep = write(path, b"print(1)", 1000 * SECOND)
    checker = ContentChecker()
    first = checker.get_state(dep, None)
    write(path, b"print(2)", 1000 * SECOND)  # same size, mtime restored: not read again
    assert checker.get_state(dep, None) == first
    assert ContentChecker().get_state(dep, None)[2] == hashlib.md5(b"print(2)").hexdigest()


def test_checker_hash_recomputed_when_mtime_changes(tmp_path):
    path = tmp_path / "runner.py"
    dep = write(path, b"print(1)", 1000 * SECOND)
    checker = ContentChecker()
    checker.get_state(dep, None)
    write(path, b"print(2)", 1001 * SECOND)
    assert checker.get_state(dep, None)[2] == hashlib.md5(b"print(2)").hexdigest()
    state = (1000.0, 8, hashlib.md5(b"print(1)").hexdigest())
    assert checker.check_modified(dep, os.stat(dep), state) is True


def test_file_hashes_match_doits_so_recorded_states_stay_valid(tmp_path):
    sizes = {"empty": 0, "small": 12, "two_blocks": (1 << 20) + 7}
    for name, size in sizes.items():
        path = tmp_path / name
        path.write_bytes(bytes(i % 251 for i in range(size)))
        assert file_md5(str(path)) == get_file_md5(str(path)), name


def test_a_workers_hash_of_an_input_is_used_while_the_file_is_as_it_hashed_it(tmp_path):
    dep = write(tmp_path / "a.inp", b"hello", 1000 * SECOND)
    checker = ContentChecker()
    [(path, mtime, size, digest)] = file_states(["a.inp"], str(tmp_path))
    assert (path, mtime, size, digest) == ("a.inp", 1000.0, 5, hashlib.md5(b"hello").hexdigest())
    # Told a digest it cannot have computed itself, it takes it: it did not read the file.
    checker.learn(((dep, mtime, size, "from-the-worker"),))
    assert checker.get_state(dep, None)[2] == "from-the-worker"
    checker.learn(())  # the next job's: what was learned for another is gone
    assert checker.get_state(dep, None)[2] == digest


def test_a_workers_hash_is_not_used_once_the_file_changed(tmp_path):
    dep = write(tmp_path / "a.inp", b"hello", 1000 * SECOND)
    [(_, mtime, size, _)] = file_states(["a.inp"], str(tmp_path))
    write(tmp_path / "a.inp", b"hello!", 2000 * SECOND)  # rewritten after the worker hashed it
    checker = ContentChecker()
    checker.learn(((dep, mtime, size, "stale"),))
    assert checker.get_state(dep, None)[2] == hashlib.md5(b"hello!").hexdigest()


def test_file_states_leave_out_files_that_are_gone(tmp_path):
    write(tmp_path / "a.inp", b"a", 1000 * SECOND)
    assert [state[0] for state in file_states(["a.inp", "gone.inp"], str(tmp_path))] == ["a.inp"]

"""Tests for incrun.discover: which files of a project are inputs."""

from __future__ import annotations

import os

import pytest

from incrun.discover import find_inputs


def make(root, *paths: str) -> None:
    """Create each file (and its folders) below root."""
    for path in paths:
        file = root / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text("x", encoding="utf-8")


def ignore(folder, *lines: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".gitignore").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_discover_find_inputs_unanchored_pattern_any_depth(tmp_path):
    make(tmp_path, "a.inp", "data/b.inp", "data/deep/c.inp", "d.txt", "data/e.inp.bak")
    assert find_inputs(tmp_path, ["*.inp"]) == ["a.inp", "data/b.inp", "data/deep/c.inp"]


def test_discover_find_inputs_slash_pattern_anchored(tmp_path):
    make(tmp_path, "a.inp", "data/b.inp", "data/deep/c.inp", "other/data/d.inp")
    assert find_inputs(tmp_path, ["data/*.inp"]) == ["data/b.inp"]


def test_discover_find_inputs_exclude(tmp_path):
    make(tmp_path, "a.inp", "skip_me.inp", "tmp/b.inp", "c.inp")
    found = find_inputs(tmp_path, ["*.inp"], exclude=["skip_*.inp", "tmp/"])
    assert found == ["a.inp", "c.inp"]


def test_discover_find_inputs_root_gitignore(tmp_path):
    make(tmp_path, "a.inp", "scratch.inp", "build/b.inp")
    ignore(tmp_path, "scratch.inp", "build/")
    assert find_inputs(tmp_path, ["*.inp"]) == ["a.inp"]


def test_discover_find_inputs_nested_gitignore_applies_below_only(tmp_path):
    make(tmp_path, "a.inp", "sub/a.inp", "sub/deep/a.inp", "other/a.inp")
    ignore(tmp_path / "sub", "a.inp")
    assert find_inputs(tmp_path, ["*.inp"]) == ["a.inp", "other/a.inp"]


def test_discover_find_inputs_nested_anchored_pattern_relative_to_its_folder(tmp_path):
    make(tmp_path, "x.inp", "sub/x.inp", "sub/deep/x.inp")
    ignore(tmp_path / "sub", "/x.inp")
    assert find_inputs(tmp_path, ["*.inp"]) == ["sub/deep/x.inp", "x.inp"]


def test_discover_find_inputs_deeper_negation_reincludes(tmp_path):
    make(tmp_path, "a.inp", "sub/keep.inp", "sub/drop.inp")
    ignore(tmp_path, "*.inp")
    ignore(tmp_path / "sub", "!keep.inp")
    assert find_inputs(tmp_path, ["*.inp"]) == ["sub/keep.inp"]


def test_discover_find_inputs_ignored_dir_pruned(tmp_path):
    # As in git: once a folder is ignored, nothing inside it (not even its own
    # .gitignore's negations) brings a file back.
    make(tmp_path, "a.inp", "build/b.inp")
    ignore(tmp_path, "build/")
    ignore(tmp_path / "build", "!b.inp")
    assert find_inputs(tmp_path, ["*.inp"]) == ["a.inp"]


def test_discover_find_inputs_never_enters_state_or_git_dirs(tmp_path):
    make(tmp_path, "a.inp", ".incrun/logs/x.inp", ".git/objects/y.inp", "sub/.git/z.inp")
    assert find_inputs(tmp_path, ["*.inp"]) == ["a.inp"]


def test_discover_find_inputs_skip_paths(tmp_path):
    make(tmp_path, "a.inp", "b.inp", "sub/c.inp")
    assert find_inputs(tmp_path, ["*.inp"], skip=["b.inp", "sub/c.inp"]) == ["a.inp"]


def test_discover_find_inputs_sorted_posix_relative(tmp_path):
    make(tmp_path, "z.inp", "b/y.inp", "a/x.inp", "m.inp")
    found = find_inputs(tmp_path, ["*.inp"])
    assert found == sorted(found)
    assert found == ["a/x.inp", "b/y.inp", "m.inp", "z.inp"]
    assert not any(os.path.isabs(path) or "\\" in path for path in found)


def test_discover_find_inputs_symlink_loop_not_followed(tmp_path):
    make(tmp_path, "top.inp", "a/x.inp")
    (tmp_path / "a" / "loop").symlink_to("..", target_is_directory=True)
    assert find_inputs(tmp_path, ["*.inp"]) == ["a/x.inp", "top.inp"]


def test_discover_find_inputs_symlinked_dir_not_followed(tmp_path):
    outside = tmp_path / "outside"
    make(outside, "secret.inp")
    project = tmp_path / "project"
    make(project, "a.inp")
    (project / "linked").symlink_to(outside, target_is_directory=True)
    assert find_inputs(project, ["*.inp"]) == ["a.inp"]


@pytest.mark.parametrize("name", ["a b.inp", "ünï cödé.inp", "new\nline.inp", "-x.inp",
                                  "a;touch PWNED.inp", "$(x).inp", "it's.inp"])
def test_discover_find_inputs_odd_names_included(tmp_path, name):
    make(tmp_path, name, "plain.inp")
    assert find_inputs(tmp_path, ["*.inp"]) == sorted([name, "plain.inp"])

"""What a remote worker sends back is written into the project only if it is one of the job's
own files: a reply read from a broker could name any path."""

from __future__ import annotations

from incrun.events import ERROR, OK, JobResult
from incrun.executors.contract import JobSpec
from incrun.executors.staging import bring_back


def test_only_the_jobs_own_outputs_and_log_come_back(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    spec = JobSpec("sweep:a", ("true",), ("a.out",), "logs/a.log")
    done = JobResult("sweep:a", OK, 0.0, 1.0)
    assert bring_back(root, spec, done, {"a.out": b"x", "logs/a.log": b"said"}).ok
    assert (root / "a.out").read_bytes() == b"x" and (root / "logs/a.log").read_bytes() == b"said"
    for stranger in ("../escaped", str(tmp_path / "elsewhere"), "runner.py"):
        refused = bring_back(root, spec, done, {"a.out": b"y", stranger: b"code"})
        assert refused.status == ERROR and "not a file of the job's" in refused.detail
        assert not (root / "a.out").exists()  # a refused answer leaves no output
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "elsewhere").exists()
    assert not (root / "runner.py").exists()

"""What may import what: executors run jobs and never reach the store or the plan, so a worker
process (and, later, a remote one) loads neither sqlite3 nor incrun's state."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import incrun.executors

EXECUTORS = sorted(f"incrun.executors.{module.name}"
                   for module in pkgutil.iter_modules(incrun.executors.__path__))
# The coordinator's side: deciding, planning, recording.
FORBIDDEN = ("incrun.store", "incrun.coordinator", "incrun.plan", "incrun.rules",
             "incrun.uptodate", "incrun.engine", "sqlite3")


def loaded_by(*modules: str) -> list[str]:
    """The modules a fresh interpreter has loaded after importing these."""
    code = (f"import json, sys; import {', '.join(modules)}; "
            "print(json.dumps(sorted(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(incrun.__file__).parent.parent, check=True)
    return json.loads(result.stdout)


def test_the_executors_package_has_the_modules_this_test_expects():
    assert {"incrun.executors.local", "incrun.executors.workers"} <= set(EXECUTORS)


def test_no_executor_module_imports_the_store_or_the_plan():
    for module in EXECUTORS:
        reached = set(loaded_by(module)).intersection(FORBIDDEN)
        assert not reached, f"{module} imports {sorted(reached)}"


def test_a_worker_running_calls_loads_the_call_lookup_and_nothing_of_the_plan():
    loaded = set(loaded_by("incrun.executors.workers", "incrun.calls"))
    assert "incrun.calls" in loaded and not loaded.intersection(FORBIDDEN)

"""`module:function` commands: how one is recognised and how its function is found. Worker
processes import this alone to run calls, nothing of the plan or the store."""

from __future__ import annotations

import importlib
import re

# A command whose first word is `module:function` is a call, run in a long-lived worker process.
CALL = re.compile(r"([A-Za-z_][\w.]*):([A-Za-z_]\w*)")


def is_call(command) -> bool:
    return bool(command) and CALL.fullmatch(command[0]) is not None


def called_module(command) -> str:
    """The module a call's command names (`pkg.sim` of `pkg.sim:run`)."""
    return CALL.fullmatch(command[0]).group(1)


def find_function(target: str):
    """The function a `module:function` call names, its module imported."""
    module_name, _, function_name = target.partition(":")
    function = getattr(importlib.import_module(module_name), function_name, None)
    if not callable(function):
        raise AttributeError(f"module {module_name!r} has no function {function_name!r}")
    return function


def call(target: str, *args: str) -> None:
    """A call job as plain doit runs it: in doit's own process (incrun uses worker processes)."""
    find_function(target)(*args)

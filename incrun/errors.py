"""User mistakes as `IncrunError`, each kind with its own exit code; the exit-code table."""

from __future__ import annotations

# The exit-code table; the README copies it.
OK = 0
JOBS_FAILED = 1
USAGE = 2  # bad command line (argparse's own code)
NO_RULE = 3  # no runner.py, no config and no dodo.py
NO_INPUTS = 4  # the input patterns matched no file
BAD_CONFIG = 5  # unreadable TOML, unknown key, bad value
BAD_PLACEHOLDER = 6  # unknown {placeholder} in command or outputs
BAD_DODO = 7  # dodo.py failed to import or defines an invalid task
UNKNOWN_TASK = 8  # a task or file named on the command line is not known
STATE_ERROR = 9  # .incrun/ cannot be written
LOCKED = 10  # another incrun run holds this project
CLUSTER = 11  # the cluster cannot be reached, cannot read the project, or was lost mid-run
MISSING_EXTRA = 12  # an optional part (dask, dask-jobqueue) is not installed
INTERRUPTED = 130  # Ctrl-C
BROKEN_PIPE = 141  # the reader of the output went (`| head`), as a shell tool killed by SIGPIPE
TERMINATED = 143  # SIGTERM


def first_line(error: BaseException) -> str:
    """An exception's first line, for a one-line message (its type if it says nothing)."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def one_line(error: IncrunError) -> str:
    """How a mistake is told: `error: what (hint: how to fix it)`."""
    hint = f" (hint: {error.hint})" if error.hint else ""
    return f"error: {error.message}{hint}"


class IncrunError(Exception):
    """A mistake the user can fix: one line, a hint, an exit code, no traceback."""

    exit_code = NO_RULE

    def __init__(self, message: str, hint: str = "", exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class NoRule(IncrunError):
    exit_code = NO_RULE


class NoInputs(IncrunError):
    exit_code = NO_INPUTS


class BadConfig(IncrunError):
    exit_code = BAD_CONFIG


class BadPlaceholder(IncrunError):
    exit_code = BAD_PLACEHOLDER


class BadDodo(IncrunError):
    exit_code = BAD_DODO


class UnknownTask(IncrunError):
    exit_code = UNKNOWN_TASK


class StateError(IncrunError):
    exit_code = STATE_ERROR


class Locked(IncrunError):
    exit_code = LOCKED


class ClusterError(IncrunError):
    exit_code = CLUSTER


class MissingExtra(IncrunError):
    """`module` is missing: `pip install 'incrun[extra]'` brings it."""

    exit_code = MISSING_EXTRA

    def __init__(self, module: str, extra: str, needed_for: str):
        super().__init__(f"{needed_for} needs {module}, which is not installed",
                         hint=f"pip install 'incrun[{extra}]'")

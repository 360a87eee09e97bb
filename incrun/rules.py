"""A rule turns input files into jobs: placeholders, argv, outputs, deps, doit task dicts."""

from __future__ import annotations

import functools
import json
import os
import posixpath
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from doit.tools import config_changed

from .config import (
    DEFAULT_COMMAND,
    DEFAULT_INPUTS,
    DEFAULT_OUTPUTS,
    RuleSpec,
    positive_seconds,
)
from .discover import find_inputs
from .errors import BadConfig, BadPlaceholder, NoInputs

PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
PYTHON = "{python}"
# Ours first, then GNU parallel's spellings of the same things.
PLACEHOLDERS = ("input", "stem", "name", "dir", "output", "python", "", ".", "/", "//", "/.")
META_KEY = "incrun"  # the key under a task's `meta` that marks it as a job incrun runs itself
# Rules whose tasks a dodo.py asked for: the loader then adds no rule of its own.
declared_rules: list[Rule] = []
# Set by incrun's loader for a run: jobs it finds up to date by signature are left out.
job_filter: list = []


@dataclass(frozen=True)
class Job:
    """One input's job: what to run, what it reads and what it must write."""

    task: str  # doit task name, "<rule>:<input>"
    input: str  # relative to the project root, POSIX separators
    command: tuple[str, ...]  # templates
    values: dict = field(compare=False, repr=False)  # each placeholder's value
    outputs: tuple[str, ...] = ()
    deps: tuple[str, ...] = ()  # the input first, then the runner script and extra deps
    timeout: float | None = None
    rule_digest: str = ""  # the rule's command and output templates, shared by its jobs

    @functools.cached_property
    def argv(self) -> tuple[str, ...]:
        """Expanded when needed: a job found up to date never is."""
        return tuple(expand(template, self.values) for template in self.command)

    def spec(self) -> dict:
        """The JSON-able job spec executors receive."""
        return {"task": self.task, "input": self.input, "argv": list(self.argv),
                "outputs": list(self.outputs), "timeout": self.timeout,
                "shared": list(self.deps[1:]), "digest": self.rule_digest}

    def command_digest(self) -> str:
        """The command as recorded: without the interpreter's path, so a new venv reruns nothing."""
        return json.dumps([PYTHON if arg == sys.executable else arg for arg in self.argv])

    def task_dict(self) -> dict:
        return {
            "name": self.input,
            "doc": " ".join("python" if arg == sys.executable else arg for arg in self.argv),
            "actions": [list(self.argv)],
            "file_dep": list(self.deps),
            "targets": list(self.outputs),
            "uptodate": [config_changed(self.command_digest())],
            "clean": True,
            "meta": {META_KEY: self.spec()},
        }


def _safe_path(path: str) -> str:
    """A root-relative path that no program can take for an option."""
    return "./" + path if path.startswith("-") else path


def path_values(rel_input: str) -> dict[str, str]:
    """The value of each placeholder but {output} and {python}, for one input path."""
    directory, _, name = rel_input.rpartition("/")
    head = name.rpartition(".")[0]
    if head.strip("."):  # an extension, as posixpath.splitext sees one
        base, stem = head, rel_input[: len(rel_input) - len(name)] + head
    else:
        base, stem = name, rel_input
    given = _safe_path(rel_input)
    stem, folder = _safe_path(stem), _safe_path(directory or ".")
    return {"input": given, "stem": stem, "name": name, "dir": folder,
            "python": sys.executable, "": given, ".": stem, "/": name, "//": folder, "/.": base}


def check_template(template: str, allowed=PLACEHOLDERS, where: str = "command") -> None:
    for match in PLACEHOLDER.finditer(template):
        key = match.group(1)
        if key is not None and key not in allowed:
            known = " ".join("{" + k + "}" for k in allowed)
            raise BadPlaceholder(f"unknown placeholder {{{key}}} in {where}: {template!r}",
                                 hint=f"known placeholders: {known}")


@functools.lru_cache(maxsize=256)
def _parts(template: str) -> tuple[tuple[str, str | None], ...]:
    """A template as (literal text, placeholder or None) pairs, parsed once."""
    parts, position = [], 0
    for match in PLACEHOLDER.finditer(template):
        literal = template[position:match.start()]
        if match.group(1) is None:
            parts.append((literal + match.group(0)[0], None))  # "{{" -> "{", "}}" -> "}"
        else:
            parts.append((literal, match.group(1)))
        position = match.end()
    parts.append((template[position:], None))
    return tuple(parts)


def expand(template: str, values: dict[str, str]) -> str:
    return "".join(literal + (values[key] if key is not None else "")
                   for literal, key in _parts(template))


class Rule:
    """Inputs, command and outputs, as in `[tool.incrun]`; usable from a dodo.py.

    In a dodo.py::

        sweep = Rule(inputs=["data/*.inp"], command=["{python}", "data/runner.py", "{input}"])
        def task_sweep():
            yield from sweep.tasks()
    """

    def __init__(self, inputs=None, command=None, outputs=None, deps=(), exclude=(),
                 name: str = "sweep", root: str | os.PathLike = ".",
                 timeout: float | None = None):
        spec = RuleSpec(
            inputs=_tuple(inputs) or DEFAULT_INPUTS,
            exclude=_tuple(exclude),
            command=_tuple(command) or DEFAULT_COMMAND,
            outputs=_tuple(outputs) or DEFAULT_OUTPUTS,
            deps=_tuple(deps),
            name=name,
            timeout=positive_seconds(timeout, "Rule timeout"),
        )
        self.spec = spec
        self.root = Path(root)
        self._jobs: list[Job] | None = None

    @classmethod
    def from_spec(cls, spec: RuleSpec, root: Path) -> Rule:
        return cls(spec.inputs, spec.command, spec.outputs, spec.deps, spec.exclude,
                   spec.name, root, spec.timeout)

    def jobs(self) -> list[Job]:
        if self._jobs is None:
            self._jobs = make_jobs(self.spec, self.root)
        return self._jobs

    def tasks(self):
        """doit task dicts, one per input; a plain `doit` runs them as well as incrun does."""
        declared_rules.append(self)
        for job in self.jobs():
            if not any(up_to_date(job) for up_to_date in job_filter):
                yield job.task_dict()

    def outputs(self) -> list[str]:
        return [output for job in self.jobs() for output in job.outputs]


def _tuple(value) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, os.PathLike)):
        return (os.fspath(value),)
    return tuple(os.fspath(item) for item in value)


def _check_spec(spec: RuleSpec) -> None:
    for template in spec.command:
        check_template(template)
    output_keys = tuple(key for key in PLACEHOLDERS if key not in ("output", "python"))
    for template in spec.outputs:
        check_template(template, output_keys, where="outputs")


def command_files(spec: RuleSpec, root: Path) -> list[str]:
    """The runner script and other files named literally in the command: jobs depend on them."""
    found = []
    for arg in spec.command:
        if not PLACEHOLDER.search(arg) and (root / arg).is_file():
            found.append(posixpath.normpath(arg))
    return found


def _deps(spec: RuleSpec, root: Path) -> list[str]:
    deps = command_files(spec, root)
    for dep in spec.deps:
        if not (root / dep).is_file():
            raise BadConfig(f"dependency {dep!r} does not exist",
                            hint="'deps' lists files every job depends on")
        deps.append(posixpath.normpath(dep))
    return list(dict.fromkeys(deps))


def inside(root: Path, rel: str) -> bool:
    """Whether a path stays in the project once `..` and symlinked folders are resolved."""
    if posixpath.isabs(rel) or rel == ".." or rel.startswith("../"):
        return False
    return _real_dir(str(root / posixpath.dirname(rel))).is_relative_to(_real_dir(str(root)))


@functools.lru_cache(maxsize=4096)
def _real_dir(path: str) -> Path:
    """A folder with its symlinks resolved; outputs share few folders, so this is cached."""
    return Path(path).resolve()


def _outputs(spec: RuleSpec, values: dict[str, str], root: Path,
             checked: dict[str, bool]) -> tuple[str, ...]:
    outputs = []
    for template in spec.outputs:
        output = posixpath.normpath(expand(template, values).removeprefix("./"))
        folder = posixpath.dirname(output)
        if folder not in checked:  # one check per output folder, not per output
            checked[folder] = inside(root, output)
        if not checked[folder]:
            raise BadConfig(f"output {output!r} lies outside the project",
                            hint="outputs must be paths inside the project, "
                                 "not through a symlink that leads out of it")
        outputs.append(output)
    return tuple(outputs)


def make_jobs(spec: RuleSpec, root: Path) -> list[Job]:
    """One job per matching input; outputs and deps of the rule are never inputs."""
    _check_spec(spec)
    deps = _deps(spec, root)
    candidates = find_inputs(root, spec.inputs, spec.exclude, skip=deps)
    checked: dict[str, bool] = {}
    planned = []
    for rel in candidates:
        values = path_values(rel)
        planned.append((rel, values, _outputs(spec, values, root, checked)))
    all_outputs = {output for _, _, outputs in planned for output in outputs}
    shared = tuple(deps)
    digest = json.dumps([spec.command, spec.outputs])
    jobs = []
    for rel, values, outputs in planned:
        if rel in all_outputs:
            continue
        values["output"] = _safe_path(outputs[0]) if outputs else ""
        jobs.append(Job(f"{spec.name}:{rel}", rel, spec.command, values, outputs,
                        (rel, *shared), spec.timeout, digest))
    return jobs


def require_jobs(jobs: list[Job], spec: RuleSpec) -> list[Job]:
    if not jobs:
        patterns = " ".join(spec.inputs)
        raise NoInputs(f"no input file matches {patterns}",
                       hint="set 'inputs' in [tool.incrun] or incrun.toml, "
                            "or check .gitignore and 'exclude'")
    return jobs

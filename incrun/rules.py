"""A rule turns input files into jobs: placeholders, argv, outputs, deps, doit task dicts."""

from __future__ import annotations

import functools
import json
import posixpath
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .calls import call, called_module, is_call
from .config import (
    RuleSpec,
)
from .discover import find_inputs
from .errors import BadConfig, BadPlaceholder, NoInputs
from .executors.jobfiles import write_inputs_file
from .hashing import hash_text
from .wildcards import Binder, names
from .words import counted

PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
PYTHON = "{python}"
# Ours first, then GNU parallel's spellings of the same things.
PLACEHOLDERS = ("input", "stem", "name", "dir", "output", "python", "", ".", "/", "//", "/.")
# A gather rule's command: every input (each its own word), or a file listing them.
GATHER_PLACEHOLDERS = ("inputs", "inputs_file", "output", "python")
INPUTS_WORD = "{inputs}"
INPUT_LISTS = ".incrun/inputs"  # where a gather job's {inputs_file} is written
META_KEY = "incrun"  # the key under a task's `meta` that marks it as a job incrun runs itself
# Programs that run the file their first word that is not an option names (`bash run.sh`).
PYTHON_NAME = re.compile(r"python[0-9.]*")
SCRIPT_RUNNERS = ("bash", "sh", "Rscript", "julia", "perl")


def in_shard(task: str, index: int, count: int) -> bool:
    """Whether a job belongs to shard `index` (1-based) of `count`: by a hash of its own name,
    so a job never moves to another shard when inputs are added or removed."""
    return hash_text(task) % count == index - 1


@dataclass(frozen=True)
class Job:
    """One input's job: what to run, what it reads and what it must write."""

    task: str  # doit task name, "<rule>:<input>"
    input: str  # relative to the project root, POSIX separators
    command: tuple[str, ...]  # templates
    outputs: tuple[str, ...] = ()
    deps: tuple[str, ...] = ()  # the input first, then the runner script and extra deps
    timeout: float | None = None
    rule_digest: str = ""  # the rule's command and output templates, shared by its jobs
    retries: int | None = None  # the rule's own, if it has one
    gathered: tuple[str, ...] | None = None  # a gather job's inputs (then `input` is "")
    own_deps: tuple[str, ...] = ()  # deps named after its wildcards: this job's alone
    wildcards: tuple[tuple[str, str], ...] = ()  # each named wildcard's value for its input
    limit: tuple[str, int] | None = None  # (its rule, how many of its jobs may run at once)
    warm: bool = False  # its rule's `warm`: how it starts, not what it makes

    @functools.cached_property
    def values(self) -> dict[str, str]:
        """The value of each placeholder the command uses; made when needed: a job found up to
        date never is."""
        if self.gathered is not None:
            values = {"python": sys.executable, "inputs_file": self.inputs_file}
        else:
            values = path_values(self.input, _keys(self.command))
            values.update(self.wildcards)
        values["output"] = _safe_path(self.outputs[0]) if self.outputs else ""
        return values

    @property
    def inputs_file(self) -> str:
        return f"{INPUT_LISTS}/{self.task}.txt"

    @functools.cached_property
    def argv(self) -> tuple[str, ...]:
        words: list[str] = []
        for template in self.command:
            if template == INPUTS_WORD and self.gathered is not None:
                words.extend(_safe_path(path) for path in self.gathered)
            else:
                words.append(expand(template, self.values))
        return tuple(words)

    @property
    def shared(self) -> tuple[str, ...]:
        """The deps every job of the rule has (the runner script, `deps`)."""
        if self.gathered is not None:
            return self.deps[len(self.gathered):]
        return self.deps[1 + len(self.own_deps):]

    def spec(self) -> dict:
        """The JSON-able job spec executors receive."""
        spec = {"task": self.task, "input": self.input, "argv": list(self.argv),
                "outputs": list(self.outputs), "timeout": self.timeout,
                "shared": list(self.shared), "digest": self.rule_digest,
                "call": is_call(self.command)}
        if self.retries is not None:
            spec["retries"] = self.retries
        if self.own_deps:
            spec["deps"] = list(self.own_deps)
        if self.limit is not None:
            spec["limit"] = list(self.limit)
        if self.warm:
            spec["warm"] = True
        if self.gathered is not None:
            spec["inputs"] = list(self.gathered)
            if "{inputs_file}" in "".join(self.command):
                spec["inputs_file"] = self.inputs_file
        return spec

    def doc(self) -> str:
        """The command as `list` shows it: a gather's inputs counted, not listed."""
        if self.gathered is None:
            words = self.argv
        else:
            words = [f"<{counted(len(self.gathered), 'input')}>" if template == INPUTS_WORD
                     else expand(template, self.values) for template in self.command]
        return " ".join("python" if word == sys.executable else word for word in words)

    def command_digest(self) -> str:
        """The command as recorded: without the interpreter's path, so a new venv reruns nothing."""
        return json.dumps([PYTHON if arg == sys.executable else arg for arg in self.argv])

    def task_dict(self) -> dict:
        from .checker import command_changed  # doit is loaded only when a job may run

        spec = self.spec()
        actions = [(call, list(self.argv)) if is_call(self.command) else list(self.argv)]
        if "inputs_file" in spec:  # as incrun's executors do, for a plain doit
            actions.insert(0, (write_inputs_file, [spec["inputs_file"], spec["inputs"]]))
        task = {
            "name": self.input,
            "doc": self.doc(),
            "actions": actions,
            "file_dep": list(self.deps),
            "targets": list(self.outputs),
            "uptodate": [command_changed(self.command_digest())],
            "clean": True,
            "meta": {META_KEY: spec},
        }
        if self.gathered is not None:
            del task["name"]  # the rule's one task, named as the rule
        # The task has them now: the job, one of a million waiting their turn maybe, stays small.
        self.__dict__.pop("argv", None)
        self.__dict__.pop("values", None)
        return task


def _safe_path(path: str) -> str:
    """A root-relative path that no program can take for an option."""
    return "./" + path if path.startswith("-") else path


def _name(rel: str) -> str:
    return rel.rpartition("/")[2]


def _without_extension(path: str) -> str:
    """The path without its file name's extension, as posixpath.splitext sees one."""
    head, dot, extension = path.rpartition(".")
    if dot and "/" not in extension and head.rpartition("/")[2].strip("."):
        return head
    return path


def _base(rel: str) -> str:
    return _without_extension(_name(rel))


def _input(rel: str) -> str:
    return _safe_path(rel)


def _stem(rel: str) -> str:
    return _safe_path(_without_extension(rel))


def _dir(rel: str) -> str:
    return _safe_path(rel.rpartition("/")[0] or ".")


# Each path placeholder's value for an input: ours, then GNU parallel's spelling of it.
PATH_VALUES = {"input": _input, "stem": _stem, "name": _name, "dir": _dir,
               "": _input, ".": _stem, "/": _name, "//": _dir, "/.": _base}


def path_values(rel_input: str, keys=PATH_VALUES) -> dict[str, str]:
    """The value of each placeholder but {output} (of those in `keys`), for one input path."""
    values = {key: value_of(rel_input) for key, value_of in PATH_VALUES.items() if key in keys}
    values["python"] = sys.executable
    return values


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


@functools.lru_cache(maxsize=64)
def _keys(templates: tuple[str, ...]) -> frozenset[str]:
    """The placeholders some templates use."""
    return frozenset(key for template in templates for _, key in _parts(template)
                     if key is not None)


def expand(template: str, values: dict[str, str]) -> str:
    return "".join(literal + (values[key] if key is not None else "")
                   for literal, key in _parts(template))


class Sweep:
    """A rule over the inputs found now: each input with its outputs, in two parallel lists.

    Jobs are made on demand: a 100,000-input sweep that is up to date never makes one.
    `inputs`, when given (by the plan: files found and other rules' outputs), are used as they
    are; otherwise the rule finds its own.
    """

    def __init__(self, spec: RuleSpec, root: Path, inputs: list[str] | None = None):
        self.binder = Binder(spec.inputs)
        _check_spec(spec, self.binder.names)
        self.spec = spec
        # A call names no arguments: it gets the input path, as pool.map(function, inputs).
        self.calls = is_call(spec.command)  # module:function, run in worker processes
        called_bare = self.calls and len(spec.command) == 1
        self.command = (*spec.command, "{input}") if called_bare else spec.command
        self.shared = tuple(_deps(spec, root))  # files every job depends on
        self.digest = json.dumps([self.command, spec.outputs])
        if inputs is None:
            self.inputs = find_inputs(root, spec.inputs, spec.exclude, skip=self.shared)
        else:
            skip = set(self.shared)
            self.inputs = [rel for rel in inputs if rel not in skip]
        self.bindings: list[dict[str, str]] | None = None  # each input's wildcards, if any
        self.job_deps: list[tuple[str, ...]] | None = None  # each job's own deps, if any
        if self.binder:
            self._bind(spec)
        self.outputs = _output_paths(spec, self.inputs, root, self.bindings)
        made = {output for outputs in self.outputs for output in outputs}
        if not made.isdisjoint(self.inputs):  # one job's output is never another's input
            self._keep([i for i, rel in enumerate(self.inputs) if rel not in made])
        self.found = len(self.inputs)  # before the shard is taken

    def _bind(self, spec: RuleSpec) -> None:
        """Each input's wildcard values, and the deps named after them."""
        bound = [(rel, self.binder.bind(rel)) for rel in self.inputs]
        bound = [(rel, values) for rel, values in bound if values is not None]
        self.inputs = [rel for rel, _ in bound]
        self.bindings = [values for _, values in bound]
        own = [dep for dep in spec.deps if names(dep)]
        if own:
            self.job_deps = [tuple(_normal(expand(dep, values)) for dep in own)
                             for values in self.bindings]

    def keep(self, kept: list[int]) -> None:
        """Only these jobs, by index (a shard's)."""
        self._keep(kept)

    def _keep(self, kept: list[int]) -> None:
        self.inputs = [self.inputs[i] for i in kept]
        self.outputs = [self.outputs[i] for i in kept]
        if self.bindings is not None:
            self.bindings = [self.bindings[i] for i in kept]
        if self.job_deps is not None:
            self.job_deps = [self.job_deps[i] for i in kept]

    def __len__(self) -> int:
        return len(self.inputs)

    def task_name(self, rel_input: str) -> str:
        return f"{self.spec.name}:{rel_input}"

    def job(self, index: int) -> Job:
        rel = self.inputs[index]
        own = self.job_deps[index] if self.job_deps is not None else ()
        wildcards = tuple(self.bindings[index].items()) if self.bindings is not None else ()
        return Job(self.task_name(rel), rel, self.command, self.outputs[index],
                   (rel, *own, *self.shared), self.spec.timeout, self.digest, self.spec.retries,
                   own_deps=own, wildcards=wildcards, limit=_limit(self.spec),
                   warm=self.spec.warm)

    def jobs(self) -> list[Job]:
        return [self.job(index) for index in range(len(self.inputs))]


class Gather:
    """A gather rule: one job over all its inputs (files found, and other rules' outputs).

    Shaped as a sweep of at most one job: `inputs` are that job's, `outputs` has its one tuple.
    """

    def __init__(self, spec: RuleSpec, root: Path, inputs: list[str] | None = None):
        _check_spec(spec, set())
        self.spec = spec
        self.calls = is_call(spec.command)
        self.command = spec.command
        self.shared = tuple(_deps(spec, root))
        self.digest = json.dumps([self.command, spec.outputs, "gather"])
        outputs = tuple(_normal(output) for output in spec.outputs)
        for output in outputs:
            if not inside(root, output):
                raise BadConfig(f"rule {spec.name!r}: output {output!r} lies outside the "
                                "project", hint="outputs must be paths inside the project")
        if inputs is None:
            inputs = find_inputs(root, spec.inputs, spec.exclude)
        skip = {*self.shared, *outputs}
        self.inputs = [rel for rel in inputs if rel not in skip]
        self.outputs = [outputs]
        self.found = len(self.inputs)

    def keep(self, kept: list[int]) -> None:
        if not kept:
            self.inputs, self.outputs = [], []

    def __len__(self) -> int:
        return 1 if self.outputs and self.inputs else 0

    def task_name(self, rel_input: str = "") -> str:
        return self.spec.name

    def job(self, index: int = 0) -> Job:
        return Job(self.spec.name, "", self.command, self.outputs[0],
                   (*self.inputs, *self.shared), self.spec.timeout, self.digest,
                   self.spec.retries, gathered=tuple(self.inputs), limit=_limit(self.spec),
                   warm=self.spec.warm)

    def jobs(self) -> list[Job]:
        return [self.job()] if len(self) else []


def _limit(spec: RuleSpec) -> tuple[str, int] | None:
    return None if spec.jobs is None else (spec.name, spec.jobs)


def make_sweep(spec: RuleSpec, root: Path, inputs: list[str] | None = None) -> Sweep | Gather:
    """The rule's jobs over these inputs: one per input, or one over all (gather)."""
    return (Gather if spec.gather else Sweep)(spec, root, inputs)


def _check_spec(spec: RuleSpec, wildcards: set[str]) -> None:
    """The rule's templates use only what each of its jobs has a value for."""
    where = f"the command of rule {spec.name!r}"
    clashing = sorted(wildcards & {*PLACEHOLDERS, *GATHER_PLACEHOLDERS})
    if clashing:
        raise BadConfig(f"rule {spec.name!r}: the wildcard {{{clashing[0]}}} in its inputs is "
                        "also a placeholder", hint="give the wildcard another name")
    if spec.gather:
        for template in spec.command:
            _check_gather_template(template, where)
        for template in spec.outputs:
            if _keys((template,)):
                raise BadConfig(f"the outputs of gather rule {spec.name!r} are plain paths: "
                                f"{template!r}",
                                hint="a gather job has no one input to name its outputs after")
        return
    for template in spec.command:
        if _keys((template,)) & set(GATHER_PLACEHOLDERS[:2]):
            raise BadConfig(f"{{inputs}} and {{inputs_file}} are for a gather rule: "
                                 f"{template!r} in {where}",
                                 hint="set gather = true for one job over all the inputs")
        check_template(template, (*PLACEHOLDERS, *sorted(wildcards)))
    path_keys = {key for key in PLACEHOLDERS if key not in ("output", "python")} | wildcards
    for what, templates in (("outputs", spec.outputs),
                            ("deps", [dep for dep in spec.deps if names(dep)])):
        for template in templates:
            unknown = sorted(_keys((template,)) - path_keys)
            if unknown and unknown[0] in (*PLACEHOLDERS, *GATHER_PLACEHOLDERS):
                raise BadPlaceholder(f"{{{unknown[0]}}} cannot name the {what} of rule "
                                     f"{spec.name!r}: {template!r}",
                                     hint="{input} {stem} {name} {dir} and the wildcards of "
                                          "the inputs can")
            if unknown:
                raise _unknown_wildcard(spec, unknown[0], template, what, wildcards)


def _unknown_wildcard(spec: RuleSpec, key: str, template: str, what: str,
                      wildcards: set[str]) -> BadConfig:
    bound = " ".join("{" + name + "}" for name in sorted(wildcards))
    return BadConfig(f"unknown wildcard {{{key}}} in the {what} of rule {spec.name!r}: "
                     f"{template!r}",
                     hint=(f"its inputs bind {bound}" if bound else
                           "name it in every input pattern, as in \"raw/{" + key + "}/*.yml\"")
                          + "; placeholders: {input} {stem} {name} {dir}")


def _check_gather_template(template: str, where: str) -> None:
    used = _keys((template,))
    if used - set(GATHER_PLACEHOLDERS):
        raise BadConfig(f"a gather rule runs once over all its inputs: {template!r} in "
                             f"{where} names one input's placeholder",
                             hint="use {inputs} (each input a word) or {inputs_file} "
                                  "(a file listing them)")
    if "inputs" in used and template != INPUTS_WORD:
        raise BadConfig(f"{{inputs}} must be a word of its own: {template!r} in {where}",
                             hint="or pass {inputs_file}, a file listing the inputs")


def script_of(command) -> str | None:
    """The file of the project a command runs, as named in it: the script after `{python}` (or
    `python3`, `bash`...), or a first word that is a relative path (`./run.sh`, `bin/sim`).
    None when it names none: a program found on PATH, `-m module`, `-c code`, a call, or a
    placeholder (`{python} {input}`)."""
    if not command or is_call(command):
        return None
    first, rest = command[0], iter(command[1:])
    program = posixpath.basename(first)
    if first == PYTHON or PYTHON_NAME.fullmatch(program):
        for word in rest:
            if word == "-" or word[1:2] in ("c", "m") and word.startswith("-"):
                return None  # stdin, -c code, -m module: no script
            if not word.startswith("-"):
                return _literal(word)
            if word in ("-W", "-X", "--check-hash-based-pycs"):
                next(rest, None)  # the option's value
        return None
    if program in SCRIPT_RUNNERS:
        word = next(rest, "-")
        return None if word.startswith("-") else _literal(word)
    if "/" in first and not posixpath.isabs(first):
        return _literal(first)
    return None


def _literal(word: str) -> str | None:
    """A word of a command as a path, if it is one as written (no placeholder)."""
    return None if PLACEHOLDER.search(word) else posixpath.normpath(word)


def command_files(spec: RuleSpec, root: Path) -> list[str]:
    """The script the command runs (there or not: a missing one is named, not skipped), the
    other files named literally in it, or the project's module a call names: jobs depend on
    them."""
    script = script_of(spec.command)
    found = []
    for arg in spec.command:
        if PLACEHOLDER.search(arg):
            continue
        path = root / arg
        if path.is_file() or (posixpath.normpath(arg) == script and not path.exists()):
            found.append(posixpath.normpath(arg))
    if is_call(spec.command):
        module = called_module(spec.command).replace(".", "/")
        found.extend(path for path in (f"{module}.py", f"{module}/__init__.py")
                     if (root / path).is_file())
    return found


def _deps(spec: RuleSpec, root: Path) -> list[str]:
    """The files every job of the rule depends on, there or not: the plan checks they are
    before a run (see plan.build), while `status` says which is missing."""
    deps = command_files(spec, root)
    deps += [posixpath.normpath(dep) for dep in spec.deps
             if not names(dep)]  # one named after wildcards is each job's own
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


def _path_template(template: str) -> Callable[[str], str]:
    """An output template as a function of the input path, computing only what it uses."""
    parts = [(literal, PATH_VALUES.get(key) if key is not None else None)
             for literal, key in _parts(template)]
    if len(parts) == 2 and parts[0][0] == "" and parts[1][1] is None:
        (_, value_of), (suffix, _) = parts  # "{stem}.out", the usual shape: one call

        return lambda rel: value_of(rel) + suffix

    def expand_for(rel: str) -> str:
        return "".join([literal + value_of(rel) if value_of else literal
                        for literal, value_of in parts])

    return expand_for


def _normal(path: str) -> str:
    """posixpath.normpath, skipped for the paths it would leave as they are (nearly all)."""
    if path.startswith(".") or "/." in path or "//" in path or path.endswith("/"):
        return posixpath.normpath(path.removeprefix("./"))
    return path


def _stem_suffix(template: str) -> str | None:
    """The suffix of a `{stem}.out` template (`.out`), the usual shape; None for any other."""
    parts = _parts(template)
    if len(parts) == 2 and parts[0] in (("", "stem"), ("", ".")) and parts[1][1] is None \
            and "/" not in parts[1][0] and parts[1][0]:
        return parts[1][0]
    return None


def _stem_outputs(inputs: list[str], suffix: str) -> list[tuple[str, ...]]:
    """`{stem}.out` for each input: _output_paths' loop with every call inlined, as it runs
    once per job of every no-op run. Each output is in its input's folder."""
    found = []
    append = found.append
    for rel in inputs:
        head, dot, extension = rel.rpartition(".")
        if dot and "/" not in extension and head.rpartition("/")[2].strip("."):
            output = head + suffix  # as _without_extension
        else:
            output = rel + suffix
        if output[0] in "-." or "/." in output:
            output = _normal(output)
        append((output,))
    return found


def _output_paths(spec: RuleSpec, inputs: list[str], root: Path,
                  bindings: list[dict[str, str]] | None = None) -> list[tuple[str, ...]]:
    """Each input's outputs; an output that would land outside the project is refused."""
    suffix = _stem_suffix(spec.outputs[0]) if len(spec.outputs) == 1 else None
    if bindings is None and suffix is not None:
        found = _stem_outputs(inputs, suffix)
        for output in {output.rpartition("/")[0]: output for (output,) in found}.values():
            _refuse_outside(root, output)  # one check per output folder, not per output
        return found
    templates = [_path_template(template) for template in spec.outputs]
    checked: dict[str, bool] = {}  # one check per output folder, not per output
    keys = _keys(spec.outputs)
    found = []
    for index, rel in enumerate(inputs):
        if bindings is not None:
            values = {**path_values(rel, keys), **bindings[index]}
            outputs = tuple(_normal(expand(template, values)) for template in spec.outputs)
        elif len(templates) == 1:
            outputs = (_normal(templates[0](rel)),)
        else:
            outputs = tuple(_normal(expand_for(rel)) for expand_for in templates)
        for output in outputs:
            folder = output.rpartition("/")[0]
            if folder not in checked:
                checked[folder] = _refuse_outside(root, output)
        found.append(outputs)
    return found


def _refuse_outside(root: Path, output: str) -> bool:
    """True for an output inside the project; one line for one outside it."""
    if not inside(root, output):
        raise BadConfig(f"output {output!r} lies outside the project",
                        hint="outputs must be paths inside the project, "
                             "not through a symlink that leads out of it")
    return True


def make_jobs(spec: RuleSpec, root: Path) -> list[Job]:
    """One job per matching input; outputs and deps of the rule are never inputs."""
    return Sweep(spec, root).jobs()


def require_jobs(jobs, spec: RuleSpec):
    """The jobs (or the sweep) of a project's own rule; none is a mistake to report."""
    if not getattr(jobs, "found", jobs):  # a shard may be empty, the sweep may not
        patterns = " ".join(spec.inputs)
        raise NoInputs(f"no input file matches {patterns}",
                       hint="set 'inputs' in [tool.incrun] or incrun.toml, "
                            "or check .gitignore and 'exclude'")
    return jobs

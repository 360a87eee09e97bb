"""The frozen `Config` of one invocation: `[tool.incrun]` or incrun.toml, defaults, CI detection."""

from __future__ import annotations

import difflib
import os
import re
import shlex
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from . import broker_urls
from .errors import BadConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

RUNNER = "runner.py"
DODO = "dodo.py"
STATE_DIR = ".incrun"
DEFAULT_INPUTS = ("*.inp",)
DEFAULT_COMMAND = ("{python}", RUNNER, "{input}")
DEFAULT_OUTPUTS = ("{stem}.out",)
RULE_KEYS = ("inputs", "exclude", "command", "outputs", "deps", "timeout", "warm")
KNOWN_KEYS = (*RULE_KEYS, "jobs", "retries", "grace", "rules", "cluster", "env", "stage",
              "stage_limit", "dask", "slurm", "queue")
# What a named rule (`[tool.incrun.rules.NAME]`) may set: a rule's keys, its own retries and
# limit of jobs at once, gather.
NAMED_RULE_KEYS = (*RULE_KEYS, "retries", "jobs", "gather")
RULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")  # becomes a task name's first part
DEFAULT_GRACE = 5.0  # seconds a job that is ended has between SIGTERM and SIGKILL
DEFAULT_STAGE_LIMIT = 64 * 2**20  # bytes a staged job may send, and bring back
# `[tool.incrun.dask]`: Dask's own TLS settings for a `tls://` scheduler (file paths).
DASK_KEYS = ("ca", "cert", "key")
# `[tool.incrun.slurm]`: what builds a dask-jobqueue SLURMCluster (see executors.dask).
SLURM_KEYS = ("partition", "account", "cores", "memory", "walltime", "max_workers",
              "processes", "extra", "python", "local_directory", "interface")
CLUSTER_FORMS = ("tcp://HOST:PORT, tls://HOST:PORT, local:N or slurm (Dask); amqp://USER:PASS@HOST//"
                 " or redis://HOST:6379/0 (Celery); rq+redis://HOST:6379/0 (RQ); env:NAME")


@dataclass(frozen=True)
class Cluster:
    """Where jobs run when not on this machine's worker processes (`--cluster`)."""

    # "scheduler" (an existing Dask scheduler), "local" (a LocalCluster), "slurm", or a
    # broker's: "celery", "rq"
    kind: str
    address: str = ""  # of the scheduler (tcp://HOST:PORT), or the broker's URL, masked
    workers: int = 0  # local:N
    url: str = field(default="", repr=False, compare=False)  # a broker's, password and all
    env: str = field(default="", compare=False)  # the variable the URL was read from, if any

    def __str__(self) -> str:
        return {"local": f"local:{self.workers}", "slurm": "slurm"}.get(self.kind, self.address)

    @property
    def broker(self) -> bool:
        return self.kind in ("celery", "rq")

    def resolved(self, where: str = "cluster", env=os.environ) -> Cluster:
        """An `env:NAME` whose variable was not set when read, read again: a broker's URL,
        or a clear error."""
        if self.kind != "env":
            return self
        cluster = parse_cluster(broker_urls.from_env(self.address, where, env), where, env)
        if not cluster.broker:
            raise BadConfig(f"{where} {self.address!r} holds a Dask cluster's address",
                            hint="env: is for a broker's URL; write a Dask address out")
        return cluster


def parse_cluster(text: str, where: str = "--cluster", env=os.environ) -> Cluster:
    """A `--cluster` value, or a clear error naming the forms it may take."""
    if not isinstance(text, str):
        raise BadConfig(f"{where} must be a string, not {text!r}", hint=CLUSTER_FORMS)
    name = broker_urls.env_name(text, where)
    if name is not None and not env.get(name):
        return Cluster("env", address=text)  # read when a job needs it: status needs none
    if name is not None:  # what the variable holds is never shown: it may be a password
        where = f"{where} {text!r}: the variable {name}"
        text = env[name]
    engine = broker_urls.engine_of(text)
    if engine is not None:
        if not urlsplit(text).netloc and "socket" not in text and "unix" not in text:
            raise BadConfig(f"{where} {broker_urls.masked(text)!r}: a broker's URL names its "
                            "host", hint=broker_urls.FORMS)
        return Cluster(engine, address=broker_urls.masked(text), url=text, env=name or "")
    if name is not None and "://" not in text:
        raise BadConfig(f"{where} holds no URL incrun knows", hint=broker_urls.FORMS)
    scheme, sep, rest = text.partition("://")
    if sep and scheme in ("tcp", "tls"):
        host, colon, port = rest.rpartition(":")
        if host and colon and port.isdigit() and 0 < int(port) < 65536:
            return Cluster("scheduler", address=text)
        raise BadConfig(f"{where} {text!r}: a scheduler's address is {scheme}://HOST:PORT",
                        hint=f"for example {scheme}://10.0.0.5:8786")
    kind, colon, count = text.partition(":")
    if kind == "local" and colon and count.isdigit() and int(count) > 0:
        return Cluster("local", workers=int(count))
    if text == "slurm":
        return Cluster("slurm")
    raise BadConfig(f"{where} {broker_urls.masked(text) if sep else text!r} is not a cluster "
                    "incrun knows", hint=f"one of {CLUSTER_FORMS}")


@dataclass(frozen=True)
class RuleSpec:
    """A sweep rule as written by the user: patterns and templates, not yet expanded."""

    inputs: tuple[str, ...] = DEFAULT_INPUTS
    exclude: tuple[str, ...] = ()
    command: tuple[str, ...] = DEFAULT_COMMAND
    outputs: tuple[str, ...] = DEFAULT_OUTPUTS
    deps: tuple[str, ...] = ()
    name: str = "sweep"
    timeout: float | None = None  # seconds a job may run before it is ended
    retries: int | None = None  # the rule's own; None: the run's
    gather: bool = False  # one job over all the inputs, not one per input
    jobs: int | None = None  # at most this many of its jobs at once; None: as many as slots
    after: tuple[str, ...] = ()  # rules all of whose outputs are inputs too (dodo.py's
    # `Rule(inputs=sim)`)
    warm: bool = False  # `{python} SCRIPT` jobs forked from a worker that imported its imports


@dataclass(frozen=True)
class FileSettings:
    """What the project's config file says; `rules` is None when it says nothing about rules."""

    rules: tuple[RuleSpec, ...] | None = None
    jobs: int | None = None
    retries: int | None = None
    grace: float | None = None
    cluster: Cluster | None = None
    env: tuple[str, ...] = ()
    stage: bool = False
    stage_limit: int = DEFAULT_STAGE_LIMIT
    dask: dict = field(default_factory=dict)  # DASK_KEYS
    slurm: dict = field(default_factory=dict)  # SLURM_KEYS
    queue: str | None = None  # a broker's queue for this project's jobs; None: its own
    source: str | None = None  # "incrun.toml" or "pyproject.toml [tool.incrun]"


@dataclass(frozen=True)
class Config:
    root: Path
    command: str = "run"  # a name of commands_help.COMMANDS
    targets: tuple[str, ...] = ()  # the selection as doit reads it: names, each task's options
    rules: tuple[RuleSpec, ...] = ()  # the project's own rules, in the order written
    jobs: int = 1
    in_flight: int | None = None  # -n or `jobs` as given; None: the cluster's worker threads
    cluster: Cluster | None = None  # --cluster or `cluster`: None is this machine
    env: tuple[str, ...] = ()  # variables a remote job gets from incrun's environment
    stage: bool = False  # send inputs with remote jobs, bring outputs back: no shared folder
    stage_limit: int = DEFAULT_STAGE_LIMIT
    dask: dict = field(default_factory=dict)  # [tool.incrun.dask]: TLS files
    slurm: dict = field(default_factory=dict)  # [tool.incrun.slurm]
    queue: str | None = None  # `queue`: a broker's queue; None: the project's own
    fail_fast: bool = False
    always: bool = False  # run every selected job, up to date or not
    timeout: float | None = None  # from the command line: for every job
    retries: int = 0
    grace: float = DEFAULT_GRACE  # a stopped or timed-out job's time between TERM and KILL
    display: str = "plain"  # live, plain or json
    quiet: bool = False
    no_color: bool = False
    as_json: bool = False  # `status --json`
    list_all: bool = False  # `list --all`
    list_private: bool = False  # `list -p/--private`: tasks named _... too, as in doit
    # `list -s/--status`: the status column (U up to date, R would run); None: shown when
    # stdout is a terminal, unless -q
    list_status: bool | None = None
    explain_deps: bool = False  # `explain --deps`: the jobs the named ones need, explained too
    verbosity: int | None = None  # -v: a task's output shown (2) or only logged; None: its own
    single: bool = False  # -s: the named tasks without the tasks they depend on
    variables: tuple[tuple[str, str], ...] = ()  # NAME=value: doit's get_var for the dodo.py
    dry_run: bool = False  # `run --dry-run`: say what would run, and why; run nothing
    warm: bool = False  # --warm: every rule's `{python} SCRIPT` jobs start warm
    junit: Path | None = None  # write JUnit XML there
    step_summary: Path | None = None  # append a markdown summary (GITHUB_STEP_SUMMARY)
    annotations: bool = False  # print `::error` workflow commands (in GitHub Actions)
    shard: tuple[int, int] | None = None  # --shard I/N: only the jobs of shard I of N
    limit: int | None = None  # --limit K: at most K jobs run; the other stale ones wait
    in_order: bool = False  # --in-order: start jobs in input order, not longest first
    graph_format: str = "dot"  # `graph --format`: dot or mermaid
    graph_jobs: bool = False  # `graph --jobs`: a node per job, not per rule
    out: Path | None = None  # `report --out`: where the page goes
    dodo: Path | None = None
    settings_source: str | None = None

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR


def is_project(folder: Path) -> bool:
    """Whether incrun has something to run here: state, a config, a dodo.py or a runner.py."""
    if any((folder / name).exists() for name in (STATE_DIR, "incrun.toml", DODO, RUNNER)):
        return True
    pyproject = folder / "pyproject.toml"
    try:
        return pyproject.is_file() and "[tool.incrun" in pyproject.read_text(errors="replace")
    except OSError:
        return False


def find_project(start: Path) -> Path | None:
    """The project `start` is in, when it is not one itself: the nearest folder above it that
    is (as git finds its repository), not past the top of a git repository; None if none."""
    start = start.resolve()
    if is_project(start):
        return start
    for folder in start.parents:
        if is_project(folder):
            return folder
        if (folder / ".git").exists():
            return None
    return None


def read_settings(root: Path) -> FileSettings:
    """Read incrun.toml, else `[tool.incrun]` of pyproject.toml; a missing file is no settings."""
    own = root / "incrun.toml"
    if own.is_file():
        return _settings_from(_load_toml(own), "incrun.toml")
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        table = _load_toml(pyproject).get("tool", {}).get("incrun")
        if table is not None:
            return _settings_from(table, "pyproject.toml [tool.incrun]")
    return FileSettings()


def _load_toml(path: Path) -> dict:
    try:
        with path.open("rb") as stream:
            return tomllib.load(stream)
    except tomllib.TOMLDecodeError as error:
        raise BadConfig(f"{path.name}: {error}", hint="fix the TOML syntax at that line") from None
    except OSError as error:
        raise BadConfig(f"cannot read {path.name}: {error.strerror}") from None


def _settings_from(table: dict, source: str) -> FileSettings:
    if not isinstance(table, dict):
        raise BadConfig(f"{source} must be a table of settings")
    if source == "incrun.toml" and isinstance(table.get("tool"), dict):
        raise BadConfig("incrun.toml: the settings go at the top level there, not under "
                        "[tool.incrun] (that is pyproject.toml's form)",
                        hint="remove the [tool.incrun] line; [tool.incrun.rules.X] becomes "
                             "[rules.X]")
    _refuse_unknown(table, KNOWN_KEYS, source)
    return FileSettings(rules=_rules(table, source),
                        jobs=_count(table.get("jobs"), "jobs", source, minimum=1),
                        retries=_count(table.get("retries"), "retries", source, minimum=0),
                        grace=positive_seconds(table.get("grace"), f"{source}: 'grace'"),
                        **_cluster_settings(table, source), source=source)


def _refuse_unknown(table: dict, known: tuple[str, ...], where: str,
                    listed: str = "known settings") -> None:
    """One line for a key the table may not have, with the nearest known one if it is a slip
    (`output` for `outputs`)."""
    unknown = sorted(set(table) - set(known))
    if not unknown:
        return
    near = difflib.get_close_matches(unknown[0], known, n=1)
    hint = f"did you mean {near[0]!r}? " if near else ""
    raise BadConfig(f"{where}: unknown setting {unknown[0]!r}",
                    hint=hint + f"{listed}: " + ", ".join(known))


def _cluster_settings(table: dict, source: str) -> dict:
    """What the config file says about running beyond this machine."""
    found = {}
    if "cluster" in table:
        found["cluster"] = parse_cluster(table["cluster"], f"{source}: 'cluster'")
    env = table.get("env", [])
    if not isinstance(env, list) or not all(isinstance(name, str) and name for name in env):
        raise BadConfig(f"{source}: 'env' must be a list of variable names",
                        hint='for example env = ["OMP_NUM_THREADS", "LICENSE_SERVER"]')
    found["env"] = tuple(env)
    stage = table.get("stage", False)
    if not isinstance(stage, bool):
        raise BadConfig(f"{source}: 'stage' must be true or false, not {stage!r}")
    found["stage"] = stage
    limit = table.get("stage_limit")
    if limit is not None:
        found["stage_limit"] = _count(limit, "stage_limit", source, minimum=1)
    queue = table.get("queue")
    if queue is not None:
        if not isinstance(queue, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]+", queue):
            raise BadConfig(f"{source}: 'queue' must be a name of letters, digits and . _ : -, "
                            f"not {queue!r}")
        found["queue"] = queue
    for key, known in (("dask", DASK_KEYS), ("slurm", SLURM_KEYS)):
        section = table.get(key, {})
        where = f"{source}: [{key}]" if source == "incrun.toml" else f"[tool.incrun.{key}]"
        if not isinstance(section, dict):
            raise BadConfig(f"{where} must be a table of settings")
        _refuse_unknown(section, known, where)
        for name, value in section.items():
            _check_cluster_value(where, name, value)
        found[key] = dict(section)
    return found


def _check_cluster_value(where: str, name: str, value) -> None:
    """[tool.incrun.slurm] and [tool.incrun.dask] values: counts, a list of lines, or text."""
    if name in ("cores", "processes", "max_workers"):
        _count(value, name, where, minimum=1)
    elif name == "extra":
        if not isinstance(value, list) or not all(isinstance(line, str) for line in value):
            raise BadConfig(f"{where}: 'extra' must be a list of #SBATCH options",
                            hint='for example extra = ["--qos=normal"]')
    elif not isinstance(value, str) or not value:
        raise BadConfig(f"{where}: {name!r} must be a non-empty string, not {value!r}")


def _rules(table: dict, source: str) -> tuple[RuleSpec, ...]:
    """The named rules, or the one top-level rule named `sweep`; never both."""
    named = table.get("rules")
    if named is None:
        return (_rule_spec(table, source, "sweep", named=False),)
    top_level = [key for key in RULE_KEYS if key in table]
    prefix = "tool.incrun." if source.startswith("pyproject") else ""
    if top_level:
        raise BadConfig(f"{source}: rule settings at the top ({', '.join(top_level)}) and "
                        "named rules: one form or the other",
                        hint=f"move them into a [{prefix}rules.sweep] table")
    if not isinstance(named, dict) or not named:
        raise BadConfig(f"{source}: 'rules' must hold one table per rule",
                        hint=f"for example [{prefix}rules.sim] with inputs and command")
    specs = []
    for name, rule_table in named.items():
        where = f"{source}: rule {name!r}"
        if not RULE_NAME.fullmatch(name):
            raise BadConfig(f"{where}: a rule's name is letters, digits, '_', '-' and '.'")
        if not isinstance(rule_table, dict):
            raise BadConfig(f"{where} must be a table of settings")
        _refuse_unknown(rule_table, NAMED_RULE_KEYS, where, "a rule's settings")
        specs.append(_rule_spec(rule_table, where, name))
    return tuple(specs)


def _rule_spec(table: dict, source: str, name: str, named: bool = True) -> RuleSpec:
    """A rule from its table; at the top level (not `named`), `retries` is the run's."""
    gather = table.get("gather", False)
    if not isinstance(gather, bool):
        raise BadConfig(f"{source}: 'gather' must be true or false, not {gather!r}")
    if gather and "outputs" not in table:
        raise BadConfig(f"{source}: a gather rule names its outputs",
                        hint='for example outputs = ["summary.csv"]')
    command = command_words(table.get("command"), source)
    return RuleSpec(
        inputs=_patterns(table, "inputs", source, DEFAULT_INPUTS),
        exclude=_patterns(table, "exclude", source, ()),
        command=command,
        outputs=_patterns(table, "outputs", source, DEFAULT_OUTPUTS),
        deps=_patterns(table, "deps", source, ()),
        name=name,
        timeout=positive_seconds(table.get("timeout"), f"{source}: 'timeout'"),
        retries=_count(table.get("retries"), "retries", source, minimum=0) if named else None,
        gather=gather,
        jobs=_count(table.get("jobs"), "jobs", source, minimum=1) if named else None,
        warm=warm_rule(table.get("warm", False), command, source),
    )


def warm_rule(value, command: tuple[str, ...], source: str) -> bool:
    """`warm`: true only for a command `{python} SCRIPT ARGS…`, the one kind that can."""
    if not isinstance(value, bool):
        raise BadConfig(f"{source}: 'warm' must be true or false, not {value!r}")
    if value and (len(command) < 2 or command[0] != "{python}" or command[1].startswith("-")):
        raise BadConfig(f"{source}: 'warm' starts only a command {{python}} SCRIPT ARGS..., "
                        f"not {' '.join(command)!r}",
                        hint='for example command = "{python} runner.py {input}"')
    return value


def _patterns(table: dict, key: str, source: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = table.get(key)
    if value is None:
        return default
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise BadConfig(f"{source}: {key!r} must be a string or a list of non-empty strings")
    return tuple(value)


def command_words(value, source: str) -> tuple[str, ...]:
    """An argv list, or a string split like a shell would split it (but never run by one)."""
    if value is None:
        return DEFAULT_COMMAND
    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as error:
            raise BadConfig(f"{source}: 'command' cannot be split: {error}") from None
    if not isinstance(value, list) or not value or not all(isinstance(i, str) for i in value):
        raise BadConfig(
            f"{source}: 'command' must be a non-empty list of strings or a string",
            hint='for example command = ["python", "runner.py", "{input}"]',
        )
    return tuple(value)


def _count(value, key: str, source: str, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive integer" if minimum else "a whole number, 0 or more"
        raise BadConfig(f"{source}: {key!r} must be {kind}, not {value!r}")
    return value


def positive_seconds(value, what: str) -> float | None:
    """A timeout: a positive number of seconds, or None for no limit."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise BadConfig(f"{what} must be a positive number of seconds, not {value!r}")
    return float(value)


def default_jobs() -> int:
    """The machine's cores (those this process may use)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


def choose_display(stream, env=os.environ, as_json: bool = False) -> str:
    """Live display on an interactive terminal; plain lines for pipes, files and CI."""
    if as_json:
        return "json"
    interactive = hasattr(stream, "isatty") and stream.isatty()
    if not interactive or env.get("CI") or env.get("TERM") == "dumb":
        return "plain"
    return "live"


def project_rules(root: Path, settings: FileSettings) -> tuple[RuleSpec, ...]:
    """The project's rules: from its config file, else zero config if runner.py exists."""
    if settings.rules is not None:
        return settings.rules
    if (root / RUNNER).is_file():
        return (RuleSpec(),)
    return ()


def build(root: Path, **options) -> Config:
    """Combine the project's files with the command-line options (which win)."""
    root = root.resolve()
    settings = read_settings(root)
    in_flight = options.pop("jobs", None) or settings.jobs
    jobs = in_flight or default_jobs()
    cluster = options.pop("cluster", None) or settings.cluster
    stage = options.pop("stage", False) or settings.stage
    retries = options.pop("retries", None)
    retries = retries if retries is not None else settings.retries or 0
    grace = options.pop("grace", None) or settings.grace or DEFAULT_GRACE
    dodo = options.pop("dodo_file", None) or root / DODO
    config = Config(
        root=root,
        rules=project_rules(root, settings),
        jobs=jobs,
        in_flight=in_flight,
        cluster=cluster,
        env=settings.env,
        stage=stage,
        stage_limit=settings.stage_limit,
        dask=settings.dask,
        slurm=settings.slurm,
        queue=settings.queue,
        retries=retries,
        grace=grace,
        dodo=dodo if dodo.is_file() else None,
        settings_source=settings.source,
    )
    return replace(config, **options)

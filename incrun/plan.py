"""The plan: the project's rules as one graph of jobs, chained by the outputs they declare, built
once before anything runs, and checked (a cycle, an output two jobs claim, a rule with nothing
to do) before anything can go wrong halfway.

A rule's input patterns match the files on disk and the outputs other rules declare, made yet
or not, as make's pattern rules chain. doit then orders the jobs by their file deps and
decides by content, in one run: a job runs after those that make its inputs.
"""

from __future__ import annotations

import difflib
import os
import posixpath
from collections.abc import Sequence
from pathlib import Path

from .config import RuleSpec
from .discover import find_each, select_paths
from .errors import BadConfig, NoInputs
from .rules import Gather, Job, Sweep, in_shard, make_sweep, script_of
from .wildcards import names


class Plan:
    """Every rule's jobs, upstream rules first."""

    def __init__(self, sweeps: list[Sweep | Gather], upstream: dict[str, set[str]]):
        self.sweeps = sweeps  # in an order where a rule comes after those it reads from
        self.upstream = upstream  # by rule name: the rules whose outputs it reads

    @property
    def calls(self) -> bool:
        """Whether some rule's jobs are `module:function` calls (run in worker processes)."""
        return any(sweep.calls for sweep in self.sweeps)

    def __len__(self) -> int:
        return sum(len(sweep) for sweep in self.sweeps)

    def sweep(self, name: str) -> Sweep | Gather:
        return next(sweep for sweep in self.sweeps if sweep.spec.name == name)

    def parts(self, pending: list, size: int) -> list[list]:
        """`pending` in parts of about `size` jobs, for doit to hold one part's tasks at a time:
        only when no rule's pending jobs read what another's make (each part must hold the jobs
        that make a job's inputs); else one part."""
        busy = {sweep.spec.name for sweep, jobs in pending if jobs}
        if any(self.upstream.get(name, set()) & busy for name in busy):
            return [pending]
        found: list[list] = [[]]
        room = size
        for sweep, jobs in pending:
            start = 0
            while start < len(jobs):
                taken = jobs[start:start + room]
                found[-1].append((sweep, taken))
                start += len(taken)
                room -= len(taken)
                if room == 0:
                    found.append([])
                    room = size
        return [part for part in found if part] or [pending]

    def pending(self, up_to_date=None, order=None) -> list[tuple[Sweep | Gather, list[Job]]]:
        """Each rule's jobs that `up_to_date` cannot vouch for: stale ones, and those that read
        what a stale one will make again (doit then decides by content whether they rerun).
        Without `up_to_date`, every job. `order` (schedule.Expected) orders each rule's."""
        remade: set[str] = set()  # outputs of jobs handed to doit, upstream of what follows
        feeding = {name for names in self.upstream.values() for name in names}
        if up_to_date is not None:
            up_to_date.check_ahead(self.sweeps)
        found = []
        for sweep in self.sweeps:
            if up_to_date is None:
                indices = list(range(len(sweep)))
            else:
                indices = up_to_date.stale(sweep, remade, sweep.spec.name in feeding)
            for index in indices:
                remade.update(sweep.outputs[index])
            jobs = [sweep.job(index) for index in indices]
            if jobs and order is not None:
                jobs = order.order(jobs)
            found.append((sweep, jobs))
        return found


def build(specs: Sequence[RuleSpec], root: Path, shard: tuple[int, int] | None = None,
          require_inputs: bool = True, check_files: bool = True) -> Plan:
    """The plan of these rules over the project's files now; one line and a hint if it is bad.
    A rule with no inputs is a mistake, unless (`require_inputs` False) a dodo.py has tasks.
    A file the jobs need that is not there and that no rule makes is a mistake too, unless
    (`check_files` False: `status`, `--dry-run`) the jobs are to say so themselves."""
    on_disk = find_each(root, {spec.name: (spec.inputs, spec.exclude) for spec in specs})
    inputs = dict(on_disk)
    for _ in range(len(specs) + 1):  # each round reaches one rule further down every chain
        sweeps = [make_sweep(spec, root, inputs[spec.name]) for spec in specs]
        makers = _makers(sweeps)
        chained = {spec.name: _chain(on_disk[spec.name], spec, makers) for spec in specs}
        if chained == inputs:
            break
        inputs = chained
    upstream = {sweep.spec.name: {makers[rel] for rel in _reads(sweep) if rel in makers}
                for sweep in sweeps}
    if check_files:
        _check_files(sweeps, makers, root)
    ordered = _upstream_first(sweeps, upstream)
    for sweep in ordered:
        if require_inputs and not sweep.found:
            raise _nothing_to_do(sweep.spec)
    if shard is not None:
        _keep_shard(ordered, shard)
    return Plan(ordered, upstream)


def _makers(sweeps) -> dict[str, str]:
    """Each declared output's rule; an output two jobs claim is refused."""
    makers: dict[str, str] = {}
    for sweep in sweeps:
        outputs = [output for outputs in sweep.outputs for output in outputs]
        before = len(makers)
        makers.update(dict.fromkeys(outputs, sweep.spec.name))
        if len(makers) - before != len(outputs):  # rare: find who, the slow way
            _refuse_claimed_twice(sweeps)
    return makers


def _refuse_claimed_twice(sweeps) -> None:
    """One line naming the two jobs that claim one output (a job may name it twice)."""
    claims: dict[str, str] = {}
    for sweep in sweeps:
        for index, outputs in enumerate(sweep.outputs):
            job = sweep.task_name(sweep.inputs[index] if sweep.inputs else "")
            for output in outputs:
                if claims.setdefault(output, job) != job:
                    raise BadConfig(f"output {output!r} is claimed by two jobs: "
                                    f"{claims[output]} and {job}",
                                    hint="put {dir} or a named wildcard in the outputs "
                                         "(inputs = [\"raw/{sample}/*.yml\"], outputs = "
                                         "[\"out/{sample}-{/.}.h5\"]), so each job writes "
                                         "its own file")


def _reads(sweep) -> list[str]:
    """The files a rule's jobs read that other rules may make: inputs, their own deps, and the
    files they all depend on (the script the command runs, `deps`)."""
    own = [dep for deps in sweep.job_deps or () for dep in deps] \
        if isinstance(sweep, Sweep) else []
    return [*sweep.inputs, *own, *sweep.shared]


def _check_files(sweeps, makers: dict[str, str], root: Path) -> None:
    """Every file the jobs need is there, or some rule makes it: the script the command runs,
    `deps`, and the deps named after wildcards. Checked once, before any job starts, rather
    than failing every job."""
    for sweep in sweeps:
        script = script_of(sweep.command)
        if script is not None and script not in makers and not (root / script).exists():
            rule = f" of rule {sweep.spec.name!r}" if len(sweeps) > 1 else ""
            near = _nearest(script, root)
            raise BadConfig(f"{script}, named in the command{rule}, does not exist",
                            hint=f"did you mean {near}?" if near else
                            "paths in the command are relative to the project folder, and "
                            "no rule makes it")
        for dep in sweep.spec.deps:
            dep = posixpath.normpath(dep)
            if not names(dep) and dep not in makers and not (root / dep).is_file():
                raise BadConfig(f"dependency {dep!r} does not exist",
                                hint="'deps' lists files every job depends on")
        if not isinstance(sweep, Sweep) or sweep.job_deps is None:
            continue
        for rel, deps in zip(sweep.inputs, sweep.job_deps):
            for dep in deps:
                if dep not in makers and not (root / dep).is_file():
                    raise BadConfig(f"dependency {dep!r} of {sweep.task_name(rel)} does not "
                                    "exist, and no rule makes it",
                                    hint="deps named after wildcards are each job's own files")


def _nearest(path: str, root: Path) -> str | None:
    """The file beside `path` whose name is closest to its name, if one is close: a slip."""
    folder, _, name = path.rpartition("/")
    try:
        found = sorted(os.listdir(root / folder))
    except OSError:
        return None
    near = difflib.get_close_matches(name, found, n=1)
    return posixpath.join(folder, near[0]) if near else None


def _chain(on_disk: list[str], spec: RuleSpec, makers: dict[str, str]) -> list[str]:
    """The rule's inputs, sorted: files on disk, and other rules' outputs its patterns match."""
    declared = [rel for rel, rule in makers.items() if rule != spec.name]
    matched = select_paths(declared, spec.inputs, spec.exclude)
    if spec.after:
        matched += [rel for rel, rule in makers.items() if rule in spec.after]
    not_made_yet = set(matched).difference(on_disk)
    if not not_made_yet:
        return on_disk  # a built project: every output is on disk already
    return sorted(on_disk + list(not_made_yet))


def _upstream_first(sweeps, upstream: dict[str, set[str]]) -> list:
    """The rules ordered so each comes after the rules it reads from; a cycle is refused."""
    by_name = {sweep.spec.name: sweep for sweep in sweeps}
    ordered, placed = [], set()
    waiting = [sweep.spec.name for sweep in sweeps]  # the order written, where free to choose
    while waiting:
        ready = [name for name in waiting if upstream[name] <= placed]
        if not ready:
            raise BadConfig(f"the rules make a cycle: {_cycle(waiting, upstream)}",
                            hint="a rule's outputs must not lead back to its own inputs")
        for name in ready:
            ordered.append(by_name[name])
            placed.add(name)
        waiting = [name for name in waiting if name not in placed]
    return ordered


def _cycle(waiting: list[str], upstream: dict[str, set[str]]) -> str:
    """One cycle among rules that wait for each other, as `a -> b -> a`."""
    path = [waiting[0]]
    while True:
        step = sorted(upstream[path[-1]] & set(waiting))[0]
        if step in path:
            cycle = path[path.index(step):] + [step]
            return " -> ".join(reversed(cycle))  # in the direction data flows
        path.append(step)


def _nothing_to_do(spec: RuleSpec) -> NoInputs:
    patterns = " ".join(spec.inputs)
    return NoInputs(f"rule {spec.name!r}: no input file matches {patterns}, and no other rule "
                    "makes one",
                    hint="check its 'inputs', .gitignore and 'exclude', or the rule that "
                         "should make them")


def _keep_shard(sweeps, shard: tuple[int, int]) -> None:
    """A CI shard keeps its jobs whole chains at a time: a job goes where the first job of its
    chain goes. Gather jobs need every shard's outputs: no shard runs them."""
    first_job: dict[str, str] = {}  # by output: the job at the head of the chain making it
    for sweep in sweeps:
        kept = []
        for index, outputs in enumerate(sweep.outputs):
            rel = sweep.inputs[index] if sweep.inputs else ""
            head = first_job.get(rel, sweep.task_name(rel))
            for output in outputs:
                first_job[output] = head
            if not isinstance(sweep, Gather) and in_shard(head, *shard):
                kept.append(index)
        sweep.keep(kept)

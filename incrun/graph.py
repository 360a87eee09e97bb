"""The plan as a graph: rules, gather rules and dodo.py tasks (or each job) with how many jobs
each has and how many would run; drawn as Graphviz DOT, a Mermaid flowchart or inline SVG.
Pure functions of the tasks and their states."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from .loader import is_job
from .words import counted

RULE, GATHER, TASK = "rule", "gather", "task"
STALE_FILL, DONE_FILL = "#fde2c4", "#d7efd9"  # a node with jobs to run, one up to date


@dataclass(frozen=True)
class Node:
    name: str
    kind: str  # rule, gather or task
    jobs: int
    stale: int  # of its jobs, those that would run
    one_job: bool = False  # a node of the job-level graph

    @property
    def summary(self) -> str:
        """`32 jobs, 1 stale`, as the node's second line says it."""
        if self.one_job:
            return "stale" if self.stale else "up to date"
        jobs = counted(self.jobs, "job")
        if self.kind == GATHER:
            jobs = "gather"
        elif self.kind == TASK and self.jobs == 1:
            jobs = "task"
        return f"{jobs}, {self.stale} stale" if self.stale else f"{jobs}, up to date"


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]  # upstream first
    edges: tuple[tuple[str, str], ...]  # (from, to): `to` reads what `from` makes


def _kind(task) -> str:
    if not is_job(task):
        return TASK
    return GATHER if "inputs" in task.meta["incrun"] else RULE


def build(chosen: list, states: list, tasks: dict, makers: dict[str, str],
          per_job: bool = False) -> Graph:
    """The graph of these tasks (in run order, with their states; `makers`: each target's
    task): a node per rule and per hand-written task, or (`per_job`) per job."""
    def group(task) -> str:
        return task.name if per_job else (task.subtask_of or task.name)

    nodes: dict[str, list] = {}  # name -> [kind, jobs, stale]
    edges: dict[tuple[str, str], None] = {}
    for task, state in zip(chosen, states):
        name = group(task)
        node = nodes.setdefault(name, [_kind(task), 0, 0])
        node[1] += 1
        node[2] += state.would_run
        before = [group(tasks[makers[dep]]) for dep in task.file_dep if dep in makers]
        before += [dep if per_job or dep not in tasks else group(tasks[dep])
                   for dep in task.task_dep]
        for upstream in before:
            if upstream != name:
                edges[(upstream, name)] = None
    edges = {edge: None for edge in edges if edge[0] in nodes}
    return Graph(tuple(Node(name, *counts, one_job=per_job) for name, counts in nodes.items()),
                 tuple(edges))


def to_dot(graph: Graph) -> str:
    shapes = {RULE: "box", GATHER: "invtrapezium", TASK: "note"}
    lines = ["digraph incrun {", "  rankdir=LR;", '  node [style="rounded,filled", '
             'fontname="sans-serif"];']
    for node in graph.nodes:
        fill = STALE_FILL if node.stale else DONE_FILL
        label = _dot_text(f"{node.name}\n{node.summary}")
        lines.append(f'  {_dot_text(node.name)} [label={label}, shape={shapes[node.kind]}, '
                     f'fillcolor="{fill}"];')
    lines += [f"  {_dot_text(a)} -> {_dot_text(b)};" for a, b in graph.edges]
    lines.append("}")
    return "\n".join(lines)


def _dot_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_mermaid(graph: Graph) -> str:
    ids = {node.name: f"n{index}" for index, node in enumerate(graph.nodes)}
    shapes = {RULE: ("(", ")"), GATHER: ("[\\", "/]"), TASK: ("[", "]")}
    lines = ["flowchart LR"]
    for node in graph.nodes:
        opening, closing = shapes[node.kind]
        label = _mermaid_text(f"{node.name}<br/>{node.summary}")
        lines.append(f"  {ids[node.name]}{opening}{label}{closing}")
    lines += [f"  {ids[a]} --> {ids[b]}" for a, b in graph.edges]
    lines += [f"  classDef stale fill:{STALE_FILL}", f"  classDef done fill:{DONE_FILL}"]
    for cls in ("stale", "done"):
        members = [ids[node.name] for node in graph.nodes if bool(node.stale) == (cls == "stale")]
        if members:
            lines.append(f"  class {','.join(members)} {cls}")
    return "\n".join(lines)


def _mermaid_text(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


BOX_WIDTH, BOX_HEIGHT, GAP_X, GAP_Y, MARGIN = 190, 44, 60, 16, 8  # the SVG's layout (px)


def to_svg(graph: Graph) -> str:
    """An SVG of the graph, upstream on the left: a column per depth, a box per node."""
    depth = _depths(graph)
    columns: dict[int, list[Node]] = {}
    for node in graph.nodes:
        columns.setdefault(depth[node.name], []).append(node)
    place = {}
    for column, nodes in columns.items():
        for row, node in enumerate(nodes):
            place[node.name] = (MARGIN + column * (BOX_WIDTH + GAP_X),
                                MARGIN + row * (BOX_HEIGHT + GAP_Y))
    width = MARGIN * 2 + len(columns) * (BOX_WIDTH + GAP_X) - GAP_X
    height = MARGIN * 2 + max((len(nodes) for nodes in columns.values()), default=0) \
        * (BOX_HEIGHT + GAP_Y) - GAP_Y
    parts = [f'<svg id="graph" xmlns="http://www.w3.org/2000/svg" width="{max(width, 0)}" '
             f'height="{max(height, 0)}" role="img" aria-label="the rules and what they read">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
             'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#888"/>'
             '</marker></defs>']
    for a, b in graph.edges:
        (x1, y1), (x2, y2) = place[a], place[b]
        x1, y1, y2 = x1 + BOX_WIDTH, y1 + BOX_HEIGHT / 2, y2 + BOX_HEIGHT / 2
        middle = (x1 + x2) / 2
        parts.append(f'<path class="edge" d="M{x1},{y1} C{middle},{y1} {middle},{y2} {x2},{y2}" '
                     'fill="none" stroke="#888" marker-end="url(#arrow)"/>')
    for node in graph.nodes:
        x, y = place[node.name]
        state = "stale" if node.stale else "done"
        fill = STALE_FILL if node.stale else DONE_FILL
        radius = 10 if node.kind == RULE else 2
        parts.append(f'<g class="node {node.kind} {state}"><title>{escape(node.name)}: '
                     f'{escape(node.summary)}</title>'
                     f'<rect x="{x}" y="{y}" width="{BOX_WIDTH}" height="{BOX_HEIGHT}" '
                     f'rx="{radius}" fill="{fill}" stroke="#666"/>'
                     f'<text x="{x + 10}" y="{y + 18}" class="name">{escape(_short(node.name))}'
                     f'</text><text x="{x + 10}" y="{y + 35}">{escape(node.summary)}</text></g>')
    parts.append("</svg>")
    return "\n".join(parts)


def _short(name: str, most: int = 28) -> str:
    return name if len(name) <= most else name[:most - 1] + "…"


def _depths(graph: Graph) -> dict[str, int]:
    """Each node's column: one more than the deepest node it reads from."""
    depth = {node.name: 0 for node in graph.nodes}
    for _ in graph.nodes:  # nodes come upstream first, so this settles in a pass or two
        changed = False
        for a, b in graph.edges:
            if depth[b] < depth[a] + 1:
                depth[b], changed = depth[a] + 1, True
        if not changed:
            break
    return depth

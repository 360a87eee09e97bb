"""`incrun report`: one self-contained HTML page from the run history. The project's rules as
a graph, what each rule's jobs did in the last run, a timeline of it (a lane per worker slot,
a bar per job), its slowest jobs, and its failures with their logs' tails. Rendering is a pure
function of the history and the graph; nothing is fetched from the network."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

from .events import OK, rule_of
from .words import counted, moment

WIDTH, LANE, LABEL = 960, 26, 48  # timeline: drawing width, lane height, label column (px)
COLORS = {OK: "#2e9e44", "failed": "#d62728", "timeout": "#ff7f0e", "error": "#8c2d04",
          "interrupted": "#999999"}
SLOWEST = 15


@dataclass
class RunRecord:
    """One run of the history, as the report shows it."""

    number: int
    started: float
    ended: float | None
    workers: int
    jobs: list[dict]  # history rows: task, status, started, ended, exit_code, signal, ...
    tails: dict[str, tuple[str, ...]] = field(default_factory=dict)  # of failed jobs' logs
    graph: str = ""  # the project's rules now, as an SVG (graph.to_svg)


def _seconds(value: float) -> str:
    if value < 60:
        return f"{value:.2f} s"
    minutes, seconds = divmod(value, 60)
    return f"{int(minutes)} min {seconds:04.1f} s"


def _took(job: dict) -> float:
    return (job["ended"] or job["started"]) - job["started"]


def _how(job: dict) -> str:
    if job["signal"]:
        return f"killed by signal {job['signal']}"
    if job["status"] == OK:
        return "ok"
    return job["detail"] or job["status"]


def timeline(run: RunRecord) -> str:
    """An SVG: a lane per worker slot, a bar per job from its start to its end."""
    lanes = sorted({job["worker"] or "?" for job in run.jobs},
                   key=lambda name: (len(name), name))
    end = max([run.ended or 0.0, *(job["ended"] or 0.0 for job in run.jobs)])
    span = max(end - run.started, 1e-6)
    scale = (WIDTH - LABEL) / span
    height = LANE * len(lanes) + 22
    parts = [f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
             f'height="{height}" role="img" aria-label="timeline of the run">']
    for index, lane in enumerate(lanes):
        y = index * LANE
        parts.append(f'<text x="0" y="{y + 17}" class="lane">{escape(lane)}</text>')
        parts.append(f'<line x1="{LABEL}" x2="{WIDTH}" y1="{y + LANE - 1}" '
                     f'y2="{y + LANE - 1}" class="grid"/>')
    for job in run.jobs:
        y = lanes.index(job["worker"] or "?") * LANE + 3
        start = (job["started"] - run.started) * scale
        width = max(_took(job) * scale, 1.5)
        color = COLORS.get(job["status"], COLORS["error"])
        title = f"{job['task']}: {_how(job)}, {_seconds(_took(job))}"
        parts.append(f'<rect class="job {escape(job["status"])}" x="{LABEL + start:.1f}" '
                     f'y="{y}" width="{width:.1f}" height="{LANE - 7}" fill="{color}">'
                     f'<title>{escape(title)}</title></rect>')
    axis = WIDTH - LABEL - 40  # room for the last tick's text
    for fraction in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f'<text x="{LABEL + fraction * axis:.0f}" y="{height - 4}" '
                     f'class="tick">{_seconds(fraction * axis / scale)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _slowest(run: RunRecord) -> str:
    jobs = sorted(run.jobs, key=lambda job: -_took(job))
    rows = "\n".join(
        f"<tr><td>{escape(job['task'])}</td><td class=num>"
        f"{_seconds(_took(job))}</td><td>{escape(_how(job))}</td>"
        f"<td>{escape(job['worker'] or '')}</td></tr>"
        for job in jobs[:SLOWEST] if job["ended"] is not None)
    return ("<table><tr><th>job</th><th>time</th><th>how it ended</th><th>worker</th></tr>"
            f"\n{rows}\n</table>")


def _failures(run: RunRecord) -> str:
    failed = [job for job in run.jobs if job["status"] != OK]
    if not failed:
        return "<p>None: every job that ran succeeded.</p>"
    blocks = []
    for job in failed:
        tail = "\n".join(run.tails.get(job["task"], ())) or "(the log is empty or gone)"
        blocks.append(f'<div class="failure"><h3>{escape(job["task"])}</h3>'
                      f"<p>{escape(_how(job))}; log <code>{escape(job['log'] or '')}</code>"
                      f"</p><pre>{escape(tail)}</pre></div>")
    return "\n".join(blocks)


def _per_rule(run: RunRecord) -> str:
    """A row per rule, in the order its first job started: jobs that ran, failed, their time."""
    rules: dict[str, list[dict]] = {}
    for job in sorted(run.jobs, key=lambda job: job["started"]):
        rules.setdefault(rule_of(job["task"]), []).append(job)
    rows = "\n".join(
        f'<tr class="rule"><td>{escape(rule)}</td><td class=num>{len(jobs)}</td>'
        f'<td class=num>{sum(job["status"] != OK for job in jobs)}</td><td class=num>'
        f'{_seconds(sum(_took(job) for job in jobs))}</td><td class=num>'
        f'{_seconds(max(_took(job) for job in jobs))}</td></tr>'
        for rule, jobs in rules.items())
    return ("<table id=rules><tr><th>rule</th><th>ran</th><th>failed</th><th>job time</th>"
            f"<th>longest job</th></tr>\n{rows}\n</table>")


def _rules(run: RunRecord) -> str:
    drawing = ("<p>What each rule reads from, with its jobs now and how many are stale.</p>\n"
               f"{run.graph}\n") if run.graph else ""
    return (f"<h2>Rules</h2>\n{drawing}<p>What each rule's jobs did in this run.</p>\n"
            f"{_per_rule(run)}\n")


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; }
tr:nth-child(even) { background: #f4f4f4; } .num { text-align: right; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; max-height: 24em; }
svg text { font: 11px sans-serif; fill: #555; } svg .grid { stroke: #eee; }
#graph text { font-size: 12px; fill: #222; } #graph .name { font-weight: 600; }
.legend span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; }
"""


def render(run: RunRecord, project: str) -> str:
    """The whole page, as one string."""
    duration = (run.ended or max((job["ended"] or 0) for job in run.jobs)) - run.started
    failed = sum(job["status"] != OK for job in run.jobs)
    legend = "".join(f'<span style="background:{color}"></span>{status}'
                     for status, color in COLORS.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>incrun report: {escape(project)}</title><style>{STYLE}</style></head>
<body>
<h1>incrun report: {escape(project)}</h1>
<p>Run {run.number}, started {moment(run.started)}: {counted(len(run.jobs), "job")} ran on
{counted(run.workers, "worker")} in {_seconds(duration)}, {failed} failed.</p>
{_rules(run)}<h2>Timeline</h2>
<p class="legend">{legend}</p>
{timeline(run)}
<h2>Slowest jobs</h2>
{_slowest(run)}
<h2>Failures</h2>
{_failures(run)}
</body></html>
"""

"""CI artifacts of a run: a JUnit XML file, a GitHub Actions step summary and `::error`
annotations. Each consumes the run's events, as a display does, and writes when the run ends."""

from __future__ import annotations

import os
import socket
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TextIO

from .display import summary_lines
from .events import (
    ERROR,
    UP_TO_DATE,
    Event,
    JobFinished,
    JobResult,
    JobSkipped,
    RunFinished,
    RunStarted,
    Summary,
)

TAIL_LINES = 30  # of a failed job's log, in a JUnit failure and an annotation
SUMMARY_ROWS = 50  # failed jobs listed in a step summary; the slowest jobs listed: 10


def _split(task: str) -> tuple[str, str]:
    """A task as CI viewers group tests: the rule ("sweep") as the class, the input as the name;
    a gather job or a hand-written task is a class of its own."""
    rule, _, rest = task.partition(":")
    return rule, rest or task


def _failure_text(result: JobResult) -> str:
    lines = [result.detail] if result.detail else []
    lines += list(result.log_tail[-TAIL_LINES:])
    if result.log_path:
        lines.append(f"log: {result.log_path}")
    return "\n".join(lines)


class Collector:
    """What a run did, job by job, from its events."""

    def __init__(self):
        self.started = time.time()
        self.results: list[JobResult] = []
        self.skipped: list[tuple[str, str, str]] = []  # (task, reason, detail): did not run
        self.summary: Summary | None = None

    def handle(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.started = event.at
        elif isinstance(event, JobFinished):
            self.results.append(event.result)
        elif isinstance(event, JobSkipped):
            names = event.names or ((event.name,) if event.name else ())
            self.skipped.extend((name, event.reason, event.detail) for name in names)
        elif isinstance(event, RunFinished):
            self.summary = event.summary
            self.finish()

    def finish(self) -> None:
        """Write the artifact; the run is over."""


class JUnitReport(Collector):
    """JUnit XML: a test suite per rule (and per hand-written task), one testcase per job
    that ran (a failure carries its log's tail), a skipped one for each job up to date or not
    run. The attributes are those of the common schema
    (junit-10.xsd) that CI test-report viewers accept."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def finish(self) -> None:
        suites = ET.Element("testsuites", name="incrun")
        by_rule: dict[str, ET.Element] = {}  # a test suite per rule (or hand-written task)
        for result in self.results:
            case = self._case(by_rule, suites, result.name, result.duration)
            if not result.ok:
                kind = "error" if result.status == ERROR else "failure"
                ET.SubElement(case, kind, type=result.status,
                              message=result.detail or result.status).text = _failure_text(result)
        for name, reason, detail in self.skipped:
            message = "up to date" if reason == UP_TO_DATE else reason.replace("-", " ")
            if detail:
                message += f": {detail}"
            ET.SubElement(self._case(by_rule, suites, name, 0.0), "skipped", message=message)
        elapsed = f"{self.summary.elapsed:.3f}" if self.summary else "0.000"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started))
        totals = {"tests": 0, "failures": 0, "errors": 0}
        for suite in by_rule.values():
            counts = {key: sum(case.find(key.rstrip("s")) is not None for case in suite)
                      for key in ("failures", "errors", "skipped")}
            counts["tests"] = len(suite)
            seconds = sum(float(case.get("time")) for case in suite)
            suite.attrib.update({key: str(value) for key, value in counts.items()},
                                time=f"{seconds:.3f}", timestamp=stamp,
                                hostname=socket.gethostname())
            for key in totals:
                totals[key] += counts[key]
        suites.attrib.update({key: str(value) for key, value in totals.items()}, time=elapsed)
        ET.indent(suites)
        temporary = self.path.with_name(self.path.name + ".incomplete")
        try:
            ET.ElementTree(suites).write(temporary, encoding="utf-8", xml_declaration=True)
            os.replace(temporary, self.path)  # a reader never sees half a file
        except OSError as error:
            print(f"incrun: warning: cannot write the JUnit report {self.path}: "
                  f"{error.strerror}", file=sys.stderr)

    @staticmethod
    def _case(by_rule: dict, suites: ET.Element, task: str, seconds: float) -> ET.Element:
        classname, name = _split(task)
        if classname not in by_rule:
            by_rule[classname] = ET.SubElement(suites, "testsuite", name=classname)
        return ET.SubElement(by_rule[classname], "testcase", classname=classname, name=name,
                             time=f"{max(seconds, 0.0):.3f}")


class StepSummary(Collector):
    """Markdown appended to $GITHUB_STEP_SUMMARY: the counts, the failed jobs and the slowest."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def finish(self) -> None:
        if self.summary is None:
            return
        lines = [f"### incrun: {summary_lines(self.summary)[0]}", ""]
        failed = [result for result in self.results if not result.ok]
        if failed:
            lines += ["| failed job | why | log |", "|---|---|---|"]
            lines += [f"| `{result.name}` | {_cell(result.detail or result.status)} | "
                      f"`{result.log_path or ''}` |" for result in failed[:SUMMARY_ROWS]]
            if len(failed) > SUMMARY_ROWS:
                lines.append(f"| … and {len(failed) - SUMMARY_ROWS} more | | |")
            lines.append("")
        slowest = sorted((r for r in self.results if r.ok), key=lambda r: -r.duration)[:10]
        if slowest:
            lines += ["| slowest jobs | seconds |", "|---|---:|"]
            lines += [f"| `{result.name}` | {result.duration:.2f} |" for result in slowest]
            lines.append("")
        try:
            with open(self.path, "a", encoding="utf-8") as stream:
                stream.write("\n".join(lines) + "\n")
        except OSError:
            pass  # a summary that cannot be written must not fail the run


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


class Annotations(Collector):
    """`::error` workflow commands, one per failed job, which GitHub shows on the run's page."""

    def __init__(self, file: TextIO):
        super().__init__()
        self.file = file

    def finish(self) -> None:
        for result in self.results:
            if result.ok:
                continue
            _, name = _split(result.name)
            where = f"file={_property(name)}," if os.path.isfile(name) else ""
            self.file.write(f"::error {where}title={_property('incrun: ' + result.name)}::"
                            f"{_data(_failure_text(result))}\n")
        self.file.flush()


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def make_artifacts(junit: Path | None, step_summary: Path | None, annotations: bool,
                   file: TextIO) -> list[Collector]:
    """The artifacts the run was asked for (by options, or by the CI it runs in)."""
    chosen: list[Collector] = []
    if junit is not None:
        chosen.append(JUnitReport(junit))
    if step_summary is not None:
        chosen.append(StepSummary(step_summary))
    if annotations:
        chosen.append(Annotations(file))
    return chosen

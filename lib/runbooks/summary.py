"""What a run found, for the terminal: what it looked at, each finding with its severity, each action with its
target, the status and where its HTML is. `runbook run`, `runbook demo` and `runbook show-incident` print it.

Built from the evidence file's record (runbooks.evidence.Record), so what is printed is what was recorded.
Lines carry a colour name; `render` shows their text with escape.line (no control sequence from a finding
reaches the terminal), wraps them to the terminal's width and colours them only for a terminal.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import click

from . import escape, targets, units
from .evidence import SEVERITIES, Record

COLOURS = {"critical": "red", "warning": "yellow", "info": "cyan", "failed": "red", "completed": "green"}
_MODES = {"dry-run": "previewed", "applied": "applied"}
ACTIONS_SHOWN = 5  # of one action and mode; the others are counted


@dataclass(frozen=True)
class Line:
    text: str
    label: str = ""  # a leading word shown in colour: a severity, a mode, a status
    indent: int = 0
    wrap: bool = True  # False: a path to copy, kept on one line


def by_severity(findings: tuple[dict, ...] | list[dict]) -> list[dict]:
    """Critical first, then warning, info and findings without a severity; recorded order within each."""
    order = {severity: index for index, severity in enumerate(SEVERITIES)}
    return sorted(findings, key=lambda f: order.get(f.get("severity"), len(order)))


def counts(findings: tuple[dict, ...] | list[dict]) -> str:
    """`2 critical, 3 warning, 1 info` (only those present); `none` without findings."""
    present = [(s, sum(f.get("severity") == s for f in findings)) for s in SEVERITIES]
    text = ", ".join(f"{n} {s}" for s, n in present if n)
    return text or ("none" if not findings else units.count(len(findings), "note"))


def run_lines(record: Record, evidence_path: Path | None = None, looked_at: bool = True) -> list[Line]:
    """The run in lines: heading, what it looked at, findings by severity, actions, and its files."""
    took = units.duration(record.finished_at - record.started_at)
    lines = [
        Line(
            f"{record.runbook} ({record.incident}), started {units.when(record.started_at, seconds=True)}, took {took}",
            record.status,
        )
    ]
    if record.error:
        lines.append(Line(f"failed {record.error.line()}", indent=2))
    if looked_at:
        lines += [Line(f"Looked at {text}") for text in targets.looked_at(record.parameters)]
    findings = by_severity(record.findings)
    lines.append(Line(f"Findings: {counts(findings)}"))
    lines += [Line(f"{f['summary']} [{f['id']}]", f.get("severity") or "note", indent=2) for f in findings]
    lines += action_lines(record)
    html = next((a.path for a in record.artifacts if a.path.endswith(".html")), None)
    if evidence_path is not None and html:
        lines.append(Line(f"HTML: {evidence_path.with_name(html)}", wrap=False))
    return lines


def action_lines(record: Record) -> list[Line]:
    actions = record.actions
    if not actions:
        return [Line("Actions: none")]
    applied = sum(a["mode"] == "applied" for a in actions)
    heading = (
        f"Actions: {applied} applied, {len(actions) - applied} previewed"
        if applied
        else f"Actions: {len(actions)} previewed, nothing changed"
        + (" (apply=True does them)" if "apply" in record.parameters else " (drafts: nothing is posted)")
    )
    lines, shown = [Line(heading)], dict[tuple[str, str], int]()
    for a in actions:
        key = (a["id"], a["mode"])
        shown[key] = shown.get(key, 0) + 1
        if shown[key] <= ACTIONS_SHOWN:
            lines.append(Line(f"{a['id']} on {a['target']}: {a['result']}", _MODES.get(a["mode"], a["mode"]), 2))
    for (action, mode), n in shown.items():
        if n > ACTIONS_SHOWN:
            more = f"... {n - ACTIONS_SHOWN} more {action}: the HTML and the evidence file list every one"
            lines.append(Line(more, _MODES.get(mode, mode), 2))
    return lines


def render(lines: list[Line], width: int | None, colour: bool) -> str:
    """The lines as text: labels padded to one column, wrapped to `width` (None: not wrapped), coloured if asked."""
    pad = max((len(line.label) for line in lines if line.indent), default=0)
    out = []
    for line in lines:
        label = f"{line.label:<{pad}}  " if line.indent and line.label else ""
        lead = " " * line.indent
        if not line.indent and line.label:
            label = f"{line.label}: "
        text = lead + label + escape.line(line.text)  # outside text never drives the terminal
        if width and line.wrap:
            hang = " " * (len(lead) + len(label))
            text = textwrap.fill(text, width, subsequent_indent=hang, break_on_hyphens=False, break_long_words=False)
        if colour and line.label:
            styled = click.style(line.label, fg=COLOURS.get(line.label), bold=line.label in ("critical", "applied"))
            text = text.replace(line.label, styled, 1)
        out.append(text)
    return "\n".join(out)


def terminal() -> tuple[int | None, bool]:
    """Width to wrap to and whether to colour: a terminal's (colour unless NO_COLOR is set), else plain text."""
    if not sys.stdout.isatty():
        return None, False
    return shutil.get_terminal_size((100, 24)).columns, not os.environ.get("NO_COLOR")


def echo(lines: list[Line]) -> None:
    """Print the lines to stdout as `render` makes them fit it."""
    width, colour = terminal()
    click.echo(render(lines, width, colour), color=colour)

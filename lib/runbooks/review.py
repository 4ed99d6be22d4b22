"""The post-incident review document (the incident-response runbook's Post-Incident Document Template).

Markdown from `templates/post-incident-review.md.j2`, filled from the incident's evidence; the HTML is
that same Markdown rendered by mistune (nbconvert's Markdown renderer) with raw HTML escaped. Every word from
the evidence or the incident log is escaped on its way into the Markdown (runbooks.escape), so none becomes
markup in either. What the evidence cannot know (root cause, users affected, what
went well, action items) keeps the incident-response runbook's placeholders for the people in the review.
"""

from __future__ import annotations

import datetime as dt
import html as html_text
from dataclasses import dataclass
from pathlib import Path

import jinja2
import mistune

from . import escape, runfiles
from .chain import Verification
from .communication import EASTERN
from .incident import Incident, human_duration, percent
from .runfiles import RunFiles

NAME = "review"  # review.md and review.html in the incident folder
STYLE = """
body { font-family: sans-serif; max-width: 60rem; margin: 2rem auto; line-height: 1.4; }
table { border-collapse: collapse; } th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: left; }
code { font-size: 0.9em; }
"""


@dataclass(frozen=True)
class Row:
    time: str  # US Eastern
    event: str


def write(incident: Incident, verification: Verification) -> tuple[Path, Path]:
    """Write review.md and review.html into the incident folder; their paths."""
    text = markdown(incident, verification)
    md_path, html_path = incident.folder / f"{NAME}.md", incident.folder / f"{NAME}.html"
    runfiles.replace(md_path, text.encode())
    runfiles.replace(html_path, html(text, f"Post-Incident Review: {incident.id}").encode())
    return md_path, html_path


def markdown(incident: Incident, verification: Verification) -> str:
    start, end = (when.astimezone(EASTERN) for when in (incident.start, incident.end))
    one_day = start.date() == end.date()
    return _template().render(
        incident=incident.id,
        date=f"{start:%Y-%m-%d}" if one_day else f"{start:%Y-%m-%d} to {end:%Y-%m-%d}",
        duration=human_duration(incident.duration),
        duration_basis=f"from {incident.start_basis} at {start:%H:%M} ET to {incident.end_basis} at {end:%H:%M} ET",
        severity=_severity(incident),
        error_rate=percent(incident.error_rate),
        latency_ratio=None if incident.latency_ratio is None else f"{incident.latency_ratio:.1f}",
        timeline=timeline(incident, "%H:%M:%S" if one_day else "%Y-%m-%d %H:%M:%S"),
        artifacts=[
            {"run": f"{run.record.runbook} ({run.record.status})", "path": a.path, "sha256": a.sha256}
            for run in incident.runs
            for a in run.record.artifacts
        ],
        verification=verification,
    )


def timeline(incident: Incident, clock: str) -> list[Row]:
    """Each alert's firing and arrival, each run's start, end, findings and actions, and the incident's start if
    triage gave one, by time. Every word from the evidence or the incident log is escaped (runbooks.escape): none
    becomes markup in review.md or review.html."""
    code, md = escape.code, escape.markdown
    events: list[tuple[dt.datetime, str]] = []
    if incident.incident_start:
        events.append((incident.incident_start, "Incident started (the `incident_start` triage gave)"))
    for a in incident.alerts:
        if a.state == "resolved":
            events.append((a.received_at, f"Alert {code(a.alertname)} resolved (notification received)"))
            continue
        events.append((a.starts_at, f"Alert {code(a.alertname)} fired"))
        outcome = (
            f"runbook {code(a.runbook)} queued" if a.state == "queued" else md(f"{a.state}: {a.reason or 'no route'}")
        )
        events.append((a.received_at, f"Alert {code(a.alertname)} received by `runbook serve`: {outcome}"))
    for run in incident.runs:
        record, finished = run.record, run.record.finished_at
        events.append((record.started_at, f"Runbook {code(record.runbook)} started (evidence {code(run.evidence)})"))
        if record.error:
            e = record.error
            where = f" at cell {e.cell}" if e.cell is not None else ""
            events.append((finished, f"Runbook {code(record.runbook)} failed{where}: {md(f'{e.ename}: {e.evalue}')}"))
        else:
            events.append((finished, f"Runbook {code(record.runbook)} completed"))
        for f in record.findings:
            badge = f" ({md(f['severity'])})" if f["severity"] else ""
            events.append((finished, f"Finding {code(f['id'])}{badge}: {md(f['summary'])}"))
        for action in record.actions:
            done = "Applied" if action["mode"] == "applied" else "Previewed only (dry run)"
            events.append((finished, f"{done} {code(action['id'])} on {md(action['target'])}: {md(action['result'])}"))
    return [Row(f"{when.astimezone(EASTERN):{clock}}", event) for when, event in sorted(events, key=lambda e: e[0])]


def html(text: str, title: str) -> str:
    body = mistune.create_markdown(escape=True, plugins=["table"])(text)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html_text.escape(title)}</title>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )


def _severity(incident: Incident) -> str | None:
    """`P2 (rule that fired)`, or None when no triage run classified the incident."""
    if incident.severity and incident.severity_rule:
        return f"{incident.severity} ({incident.severity_rule})"
    return incident.severity


def _link(name: str) -> str:
    """A link to a file of the incident folder; a name the runner would not write is shown, not linked."""
    return f"[{name}]({name})" if RunFiles.of(Path(name)) and Path(name).name == name else escape.code(name)


def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("runbooks", "templates"),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # Markdown: what comes from the evidence goes through runbooks.escape
        undefined=jinja2.StrictUndefined,
    )
    environment.filters.update(code=escape.code, markdown=escape.markdown, link=_link)
    return environment.get_template("post-incident-review.md.j2")

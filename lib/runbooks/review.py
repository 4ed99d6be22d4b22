"""The post-incident review document (the incident-response runbook's Post-Incident Document Template).

Markdown from `templates/post-incident-review.md.j2`, filled from the incident's evidence; the HTML is
that same Markdown rendered by mistune (nbconvert's Markdown renderer) with raw HTML escaped. Every word from
the evidence or the incident log is escaped on its way into the Markdown (runbooks.escape), so none becomes
markup in either. What the evidence cannot know (root cause, users affected, what
went well, action items) keeps the incident-response runbook's placeholders for the people in the review.
The review meeting (when it is due, attendees, agenda) comes from runbooks.review_meeting; the Impact
figures and the chart of error rate and latency over the incident from the metrics the runs recorded
(`review-impact.png` beside review.md; embedded in review.html).
"""

from __future__ import annotations

import base64
import datetime as dt
import html as html_text
import io
from dataclasses import dataclass
from pathlib import Path

import jinja2
import mistune

from . import escape, review_meeting, runfiles, units
from .chain import Verification
from .command_evidence import is_command
from .incident import Incident, Run, percent
from .runfiles import RunFiles

NAME = "review"  # review.md and review.html in the incident folder
CHART = "review-impact.png"  # beside them: error rate and latency over the incident
STYLE = """
body { font-family: sans-serif; max-width: 60rem; margin: 2rem auto; line-height: 1.4; }
table { border-collapse: collapse; } th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: left; }
code { font-size: 0.9em; }
"""


@dataclass(frozen=True)
class Row:
    time: str  # in the reading zone (runbooks.units)
    event: str


def write(incident: Incident, verification: Verification, now: dt.datetime | None = None) -> tuple[Path, Path]:
    """Write review.md and review.html (and the chart, when the runs recorded metrics) into the incident folder;
    the paths of the two documents."""
    now = now or dt.datetime.now(dt.timezone.utc)
    png = impact_chart(incident)
    md_path, html_path = incident.folder / f"{NAME}.md", incident.folder / f"{NAME}.html"
    (incident.folder / CHART).unlink(missing_ok=True)
    if png:
        runfiles.replace(incident.folder / CHART, png)
    runfiles.replace(md_path, markdown(incident, verification, now, CHART if png else None).encode())
    embedded = f"data:image/png;base64,{base64.b64encode(png).decode()}" if png else None
    title = f"Post-Incident Review: {incident.id}"
    runfiles.replace(html_path, html(markdown(incident, verification, now, embedded), title).encode())
    return md_path, html_path


def impact_chart(incident: Incident) -> bytes | None:
    """Error rate and latency over the incident window as PNG; None when no run recorded metrics."""
    from . import charts  # matplotlib loads only for a chart

    series = incident.series
    if series.empty or series[["error_rate", "latency_seconds"]].isna().all().all():
        return None
    figure = charts.error_rate_and_latency(
        series,
        incident.normal_latency,
        incident.start,
        "baseline",
        f"Error rate and latency over {incident.id}, against the baseline",
        (incident.start, incident.end),
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def markdown(
    incident: Incident, verification: Verification, now: dt.datetime | None = None, chart: str | None = None
) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    start, end = units.local(incident.start), units.local(incident.end)
    one_day = start.date() == end.date()
    impact = incident.impact()
    return _template().render(
        incident=incident.id,
        date=f"{start:%Y-%m-%d}" if one_day else f"{start:%Y-%m-%d} to {end:%Y-%m-%d}",
        duration=units.duration(incident.duration),
        duration_basis=(
            f"from {incident.start_basis} at {units.clock(incident.start)} "
            f"to {incident.end_basis} at {units.clock(incident.end)}"
        ),
        severity=_severity(incident),
        error_rate=percent(impact.peak_error_rate),
        latency_ratio=None if impact.peak_latency_ratio is None else f"{impact.peak_latency_ratio:.1f}",
        over=impact.lines(),
        covered=_span(impact.covered),
        chart=chart,
        closed=_closed(incident),
        meeting=review_meeting.meeting(incident, now),
        timeline=timeline(incident, "%H:%M:%S" if one_day else "%Y-%m-%d %H:%M:%S"),
        zone=f"{units.zone().key}, {units.zone_name(incident.start)}",
        artifacts=[
            {"run": _run_label(run, incident), "path": a.path, "sha256": a.sha256}
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
    for run in incident.current:
        record, finished = run.record, run.record.finished_at
        if is_command(record):
            events += _command_events(run.evidence, record)
            continue
        events += _session(run) if record.session else _run(run)
        for f in record.findings:
            badge = f" ({md(f['severity'])})" if f["severity"] else ""
            events.append((finished, f"Finding {code(f['id'])}{badge}: {md(f['summary'])}"))
        by_hand = f" by hand ({code(record.operator)})" if record.session else ""
        for action in record.actions:
            done = f"Applied{by_hand}" if action["mode"] == "applied" else "Previewed only (dry run)"
            events.append((finished, f"{done} {code(action['id'])} on {md(action['target'])}: {md(action['result'])}"))
    return [Row(f"{units.local(when):{clock}}", event) for when, event in sorted(events, key=lambda e: e[0])]


def _run(run: Run) -> list[tuple[dt.datetime, str]]:
    """A headless or alert run: its start, and how it ended."""
    record, code, md = run.record, escape.code, escape.markdown
    by = f" by alert {code(record.alert['labels'].get('alertname', '?'))}" if record.alert else ""
    events = [(record.started_at, f"Runbook {code(record.runbook)} started{by} (evidence {code(run.evidence)})")]
    if record.error:
        e = record.error
        where = f" at cell {e.cell}" if e.cell is not None else ""
        failed = f"Runbook {code(record.runbook)} failed{where}: {md(f'{e.ename}: {e.evalue}')}"
        events.append((record.finished_at, failed))
    else:
        events.append((record.finished_at, f"Runbook {code(record.runbook)} completed"))
    return events


def _session(run: Run) -> list[tuple[dt.datetime, str]]:
    """An interactive session as last sealed: opened by whom, sealed how, which cells were edited by hand."""
    record, session, code = run.record, run.record.session, escape.code
    assert session is not None
    name, by = code(record.runbook), code(record.operator or "unknown")
    earlier = f"; supersedes {session.seal - 1} earlier seal(s)" if session.seal > 1 else ""
    how = escape.markdown(record.status if not session.reason else f"{record.status}: {session.reason}")
    events = [
        (record.started_at, f"Interactive session {name} opened by {by} (working copy {code(session.working_copy)})"),
        (
            record.finished_at,
            f"Interactive session {name} by {by} sealed, {how} (evidence {code(run.evidence)}{earlier})",
        ),
    ]
    if session.edited:
        cells = ", ".join(
            f"cell {e.cell}"
            if e.runbook_cell is not None and e.cell is not None
            else f"cell {e.cell} (added)"
            if e.cell is not None
            else f"runbook cell {e.runbook_cell} (removed)"
            for e in session.edited
        )
        events.append((record.finished_at, f"Edited by hand in {name} ({by}), differing from the runbook: {cells}"))
    return events


def _run_label(run: Run, incident: Incident) -> str:
    """`runbook (completed)`; an interactive session's: `runbook (interactive by alice, partial[, superseded])`."""
    record = run.record
    if not record.session:
        return f"{record.runbook} ({record.status})"
    superseded = ", superseded" if run.evidence in incident.superseded else ""
    return f"{record.runbook} (interactive by {record.operator}, {record.status}{superseded})"


COMMAND_WORDS = {"close": "Closed", "comms": "Message sent", "escalate": "Escalation"}


def _command_events(evidence: str, record) -> list[tuple[dt.datetime, str]]:
    """A command's record as timeline rows: what was closed, sent, escalated, and the receivers' answers."""
    code, md = escape.code, escape.markdown
    events = [(record.finished_at, f"{code(f'runbook {record.runbook}')} (evidence {code(evidence)})")]
    for f in record.findings:
        events.append((record.finished_at, f"{COMMAND_WORDS.get(record.runbook, 'Command')}: {md(f['summary'])}"))
    for action in record.actions:
        events.append(
            (record.finished_at, f"Applied {code(action['id'])} on {md(action['target'])}: {md(action['result'])}")
        )
    return events


def _closed(incident: Incident) -> str:
    resolution = incident.resolution
    if resolution is None or incident.resolved_at is None:
        return "open (not closed with `runbook close`)"
    how = (
        f"forced: {escape.markdown(resolution.get('reason'))}"
        if resolution.get("forced")
        else "recovery confirmed by verify-recovery"
    )
    return f"closed, resolved {units.when(incident.resolved_at)} ({how})"


def _span(covered) -> str | None:
    if not covered:
        return None
    return f"{units.when(covered[0])} to {units.clock(covered[1])}"


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

"""The post-incident review meeting (the incident-response runbook's "Meeting Structure (60 minutes)"), filled
from the incident's evidence: when it is due, who attends, and the agenda with what the evidence already answers.

Attendees ("Incident responders, affected team leads, optional stakeholders"): the roles the escalation matrix
engaged over the incident's duration at its severity (escalation.engagement), with their contacts; the leads of
the services the evidence names (services down, the service investigated or suspected, the deployments acted
on); stakeholders are named, not filled in. The agenda's questions are answered where the evidence knows (start,
detection, actions, resolution, response and resolution targets met, the suspected causes); the others keep the
runbook's placeholders for the people in the room.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from . import escalation, units
from .escape import markdown  # the agenda is Markdown: words from the evidence are escaped on the way in
from .incident import Incident, review_due

CAUSE_FINDINGS = ("suspected-cause", "likely-cause")  # service-investigation's, api-gateway-high-error-rate's
_DEPLOYMENT = re.compile(r"deployment[/ ]([a-z0-9][-a-z0-9]*)")


@dataclass(frozen=True)
class Item:
    title: str  # "Timeline Review (15 min)"
    points: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Meeting:
    due: str  # "by Wed 2026-12-02 ET (P2: within 3 business days)", or why it is not known
    attendees: list[str]
    agenda: list[Item]


def meeting(incident: Incident, now: dt.datetime) -> Meeting:
    due = review_due(incident)
    if due is not None:
        when = (
            f"by {due.due:%a %Y-%m-%d} ET ({due.severity}: {due.rule})"
            if due.due
            else f"none asked for ({due.severity})"
        )
    elif incident.resolved_at is None:
        when = "once closed (`runbook close`): P1/P2 within 3 business days, P3 within 1 week"
    else:
        when = "unknown: no severity (no triage run)"
    return Meeting(when, attendees(incident, now), agenda(incident, now))


def attendees(incident: Incident, now: dt.datetime) -> list[str]:
    people = []
    if incident.severity:
        engaged = escalation.engagement(incident.severity, incident.start, max(incident.end, incident.start))
        for row in engaged[engaged["engage_now"] & engaged["role"].notna()].itertuples():
            contact = f" ({row.contact})" if row.contact else ""
            people.append(f"Incident responder: {row.role}{contact}")
    else:
        people.append("Incident responders: Primary and Secondary On-Call (no severity recorded, so no matrix row)")
    people += [f"Team lead of {markdown(service)}: @[name]" for service in affected_services(incident)]
    people.append("Optional stakeholders: Support, Product, Account management")
    return people


def affected_services(incident: Incident) -> list[str]:
    """Services the evidence names: down in triage, investigated or suspected, or acted on."""
    found: list[str] = []
    for t in incident.triage:
        found += list(t.get("services_down") or [])
    for run in incident.runbook_runs:
        record = run.record
        if record.runbook == "service-investigation" and isinstance(record.parameters.get("service"), str):
            found.append(record.parameters["service"])
        for f in record.findings:
            data = f["data"] if isinstance(f["data"], dict) else {}
            if f["id"] in CAUSE_FINDINGS:
                found += [v for v in (data.get("service"), data.get("deployment")) if isinstance(v, str)]
        for action in record.actions:
            if action["mode"] == "applied":
                found += _DEPLOYMENT.findall(action["target"])
    return list(dict.fromkeys(found))


def agenda(incident: Incident, now: dt.datetime) -> list[Item]:
    start, detected, resolved = incident.start, incident.detected_at, incident.resolved_at
    actions = incident.actions_taken()
    timeline = Item(
        "Timeline Review (15 min)",
        [
            f"When did it start? {units.when(start)} ({incident.start_basis})",
            f"When was it detected? {units.when(detected)}, {units.duration(detected - start)} after the start",
            "What actions were taken? " + ("; ".join(actions) if actions else "none applied by a runbook"),
            f"When was it resolved? {units.when(resolved)}, after {units.duration(resolved - start)}"
            if resolved
            else "When was it resolved? not closed yet",
        ],
    )
    impact = Item(
        "Impact Analysis (10 min)",
        [
            "Users affected: [Number]",
            "Revenue impact: [Amount, if applicable]",
            f"SLA impact: {sla(incident, now)}",
        ],
    )
    causes = [f"{markdown(f['summary'])} ({markdown(run.record.runbook)})" for run, f in _causes(incident)]
    root = Item(
        "Root Cause Analysis (20 min)",
        [
            "What caused the incident? " + ("; ".join(causes) if causes else "[Detailed explanation]"),
            f"Why wasn't it caught earlier? detected {units.duration(detected - start)} after it started; "
            "[Detailed explanation]",
            "Contributing factors: [Detailed explanation]",
        ],
    )
    items = Item(
        "Action Items (15 min)",
        ["Prevention measures", "Detection improvements", "Process improvements", "Assign owners and due dates"],
    )
    return [timeline, impact, root, items]


def sla(incident: Incident, now: dt.datetime) -> str:
    """The severity's response and resolution targets against the acknowledgement and the resolution."""
    if incident.severity is None:
        return "targets unknown: no severity recorded"
    targets = escalation.TARGETS[incident.severity]
    parts = []
    for what, at, within in (
        ("response", incident.acknowledged_at, targets.response),
        ("resolution", incident.resolved_at, targets.resolution),
    ):
        limit = units.duration(within)
        if at is None:
            overdue = now - incident.start > within
            parts.append(f"{what} target {limit}: " + ("missed (none recorded)" if overdue else "none recorded yet"))
        else:
            took = at - incident.start
            parts.append(f"{what} in {units.duration(took)} against {limit}: {'met' if took <= within else 'missed'}")
    return f"{incident.severity}: " + "; ".join(parts)


def _causes(incident: Incident) -> list:
    return [(run, f) for run, f in incident.findings(("critical", "warning")) if f["id"] in CAUSE_FINDINGS]

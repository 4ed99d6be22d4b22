"""`runbook comms INC --kind KIND [--post]`: the message of KIND for an incident, printed or sent, and recorded.

Which channel takes which kind (ROUTES): the Slack templates go to Slack, the status-page ones to Statuspage (P4
is internal only: never to the public page), the PagerDuty events to PagerDuty; the customer email goes to no
channel. What was sent becomes an evidence record of the command `comms` in the incident's chain
(runbooks.command_evidence): an `applied` action per message (id the kind, target the channel, result the
answer) and a finding `message-<channel>` with the text (or its SHA-256 for a channel marked private), the
request as sent with secrets replaced by the names of their variables, the answer and every attempt. A failed
post makes the record `failed`, so it stands out in the review; nothing is lost silently.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from .. import command_evidence, communication
from ..errors import UsageError
from ..evidence import RunError, jsonable
from ..incident import MESSAGE_KINDS, Incident, message_fields
from . import pagerduty, slack, statuspage
from .config import Integrations
from .deliver import Delivery

KINDS = (*MESSAGE_KINDS, *pagerduty.KINDS)
ROUTES = {
    **{kind: "slack" for kind in MESSAGE_KINDS if kind.startswith("slack-")},
    **{kind: "statuspage" for kind in statuspage.STATUSES},
    **{kind: "pagerduty" for kind in pagerduty.KINDS},
}


@dataclass(frozen=True)
class Outcome:
    deliveries: list[Delivery] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # lines: a channel not configured, P4 kept off the page

    @property
    def failed(self) -> list[Delivery]:
        return [d for d in self.deliveries if not d.sent]


def text(incident: Incident, kind: str, integrations: Integrations, now: dt.datetime) -> str:
    """What `runbook comms` prints: the filled template, or for a PagerDuty kind the event as it would be sent."""
    if kind in pagerduty.KINDS:
        return json.dumps(_event(incident, kind, integrations), indent=2) + "\n"
    return communication.render(
        kind, **message_fields(incident, kind, now, integrations.incident_link(incident.folder))
    )


def post(incident: Incident, kind: str, integrations: Integrations, now: dt.datetime) -> Outcome:
    """Send the message of `kind` to its channel, if configured; skipped otherwise, with the reason."""
    name = ROUTES.get(kind)
    if name is None:
        raise UsageError(f"{kind} goes to no channel: send it yourself (print it without --post)")
    channel, why = integrations.channel(name)
    if channel is None:
        return Outcome(skipped=[f"{name}: skipped: {why}"])
    policy = integrations.policy
    if name == "slack":
        return Outcome([slack.post(channel, kind, text(incident, kind, integrations, now), policy)])
    if name == "statuspage":
        if incident.severity == "P4":
            return Outcome(skipped=["statuspage: skipped: P4 is internal only (not on the public status page)"])
        existing = statuspage_incident(incident)
        message = text(incident, kind, integrations, now)
        return Outcome([statuspage.post(channel, kind, message, incident.severity, existing, policy)])
    return Outcome([pagerduty.post(channel, kind, _event(incident, kind, integrations), policy)])


def record(
    output_dir: Path, incident: Incident, kind: str, outcome: Outcome, started: dt.datetime, integrations: Integrations
) -> Path | None:
    """The command's evidence in the incident's chain; None when nothing was attempted."""
    if not outcome.deliveries:
        return None
    failed = outcome.failed
    error = RunError(None, "PostFailed", "; ".join(d.line() for d in failed)) if failed else None
    return command_evidence.write(
        output_dir,
        incident.id,
        "comms",
        {"kind": kind, "post": True, "channels": [d.channel for d in outcome.deliveries]},
        [d.finding() for d in outcome.deliveries],
        [d.action() for d in outcome.deliveries],
        started,
        error,
        integrations.secrets(),
    )


def statuspage_incident(incident: Incident) -> str | None:
    """The id of the status page's incident an earlier post created, from the incident's evidence."""
    found = None
    for run in incident.runs:
        for f in run.record.findings:
            data = f["data"] if isinstance(f["data"], dict) else {}
            if f["id"] == "message-statuspage" and data.get("sent") and data.get("reference"):
                found = data["reference"]
    return found


def _event(incident: Incident, kind: str, integrations: Integrations) -> dict:
    channel = integrations.channels.get("pagerduty")
    variable = channel.secret_env if channel else "PAGERDUTY_ROUTING_KEY"
    source = str(channel.settings.get("source") or "runbooks") if channel else "runbooks"
    summary = f"{incident.id}: {incident.severity or 'severity not classified'}" + (
        f" - {incident.severity_rule}" if incident.severity_rule else ""
    )
    details = {
        "severity": incident.severity,
        "rule": incident.severity_rule,
        "started": incident.start,
        "findings": [f["summary"] for _, f in incident.findings(("critical", "warning"))][:10],
        "actions_taken": incident.actions_taken()[:10],
    }
    return pagerduty.event(
        variable, kind, incident.id, summary, incident.severity, source, incident.start, jsonable(details)
    )

"""The seed's communication templates (Incident Response Runbook → Communication Templates), filled in.

Each template is the seed's text with its `[placeholders]` as `$names` (string.Template): a missing
value fails loudly rather than leaving a bracket behind. These functions only draft text; nothing
here posts to a status page or to Slack.
"""

from __future__ import annotations

import datetime as dt
from string import Template
from typing import Iterable
from zoneinfo import ZoneInfo

EASTERN = ZoneInfo("America/New_York")  # the seed's status-page times are in ET

# Internal Communication → Slack Status Update
SLACK_STATUS_UPDATE = Template("""\
:construction: INCIDENT UPDATE :construction:

Incident: $incident
Severity: $severity
Duration: $duration

Current Status: $status

What we know:
$known

Actions taken:
$actions

Next steps:
$next_steps

Next Update: $next_update
""")

# External Communication → Status Page - Identified
STATUS_PAGE_IDENTIFIED = Template("""\
Title: $feature Degradation - Cause Identified

We have identified the cause of the current issues affecting $feature.
Our team is implementing a fix.

Impact: $impact

We expect to resolve this within $estimate.

Updated: $updated ET
""")


def slack_status_update(incident: str, severity: str, duration: str, status: str, known: Iterable[str],
                        actions: Iterable[str], next_steps: Iterable[str], next_update: str) -> str:
    return SLACK_STATUS_UPDATE.substitute(
        incident=incident, severity=severity, duration=duration, status=status, known=bullets(known),
        actions=bullets(actions), next_steps=bullets(next_steps), next_update=next_update,
    )


def status_page_identified(feature: str, impact: str, estimate: str, updated: dt.datetime) -> str:
    return STATUS_PAGE_IDENTIFIED.substitute(feature=feature, impact=impact, estimate=estimate,
                                             updated=eastern(updated))


def bullets(items: Iterable[str]) -> str:
    lines = [f"- {item}" for item in items]
    return "\n".join(lines) if lines else "- (none)"


def eastern(when: dt.datetime) -> str:
    """`2024-11-26 09:05` in US Eastern time, as the seed's status-page templates write times."""
    return when.astimezone(EASTERN).strftime("%Y-%m-%d %H:%M")


def utc(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%H:%M UTC")

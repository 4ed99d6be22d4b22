"""PagerDuty Events API v2: `POST https://events.pagerduty.com/v2/enqueue`, answered `202 {"status": "success",
"message": "Event processed", "dedup_key": ...}` (400 for an invalid event, 429 when throttled).

Events: `{"routing_key", "event_action": trigger|acknowledge|resolve, "dedup_key"}`; a trigger also carries
`payload` (`summary` up to 1024 characters, `source`, `severity` critical|error|warning|info, `timestamp`,
`custom_details`) and `client`. The dedup_key is the incident's id, so the three events of one incident act on
one PagerDuty alert. The routing key is the secret: recorded as the name of its variable.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .config import PAGERDUTY_URL, Channel, Policy
from .deliver import Delivery, send

KINDS = ("pagerduty-trigger", "pagerduty-acknowledge", "pagerduty-resolve")
SEVERITY = {"P1": "critical", "P2": "error", "P3": "warning", "P4": "info"}  # unknown: error ("when in doubt")
CLIENT = "Autolytiq incident runbooks"
SUMMARY_CHARS = 1024


def event(
    channel_env: str,
    kind: str,
    incident: str,
    summary: str,
    severity: str | None,
    source: str,
    started: dt.datetime,
    details: dict[str, Any],
) -> dict[str, Any]:
    """The event of `kind` for `incident`, its routing key written as `$<variable>` (the secret goes in at send)."""
    body: dict[str, Any] = {
        "routing_key": f"${channel_env}",
        "event_action": kind.removeprefix("pagerduty-"),
        "dedup_key": incident,
    }
    if kind == "pagerduty-trigger":
        body["payload"] = {
            "summary": summary[:SUMMARY_CHARS],
            "source": source,
            "severity": SEVERITY.get(severity or "", "error"),
            "timestamp": started.astimezone(dt.timezone.utc).isoformat(),
            "component": "autolytiq",
            "class": "incident",
            "custom_details": details,
        }
        body["client"] = CLIENT
    return body


def post(channel: Channel, kind: str, body: dict[str, Any], policy: Policy) -> Delivery:
    key = channel.secret() or ""
    url = str(channel.settings.get("url") or PAGERDUTY_URL)
    reply = send("POST", url, {**body, "routing_key": key}, {}, policy, [key])
    reference = reply.json.get("dedup_key") if reply.ok and isinstance(reply.json, dict) else None
    text = body.get("payload", {}).get("summary") or f"{body['event_action']} {body['dedup_key']}"
    target = f"PagerDuty Events API v2 (routing key ${channel.secret_env}, dedup_key {body['dedup_key']})"
    return Delivery.of(channel, kind, target, text, body, reply, reference)

"""Atlassian Statuspage REST API (https://api.statuspage.io/v1), `Authorization: OAuth <api key>`.

The first status message of an incident creates the page's incident, `POST /pages/{page_id}/incidents` with
`{"incident": {"name", "status", "body", "impact_override", "deliver_notifications", "component_ids"}}` (201, the
incident with its `id`); later ones update it, `PATCH /pages/{page_id}/incidents/{id}` with `{"incident": {"status",
"body"}}` (200). The id comes from the incident's evidence: the reference the creation's answer gave.
Status per message kind: status-investigating, -identified, -monitoring, -resolved. The template's `Title:` line is
the incident's name, the rest its body (Statuspage stamps its own times).
"""

from __future__ import annotations

from .config import STATUSPAGE_URL, Channel, Policy
from .deliver import Delivery, send

STATUSES = {
    "status-investigating": "investigating",
    "status-identified": "identified",
    "status-monitoring": "monitoring",
    "status-resolved": "resolved",
}
IMPACT = {"P1": "critical", "P2": "major", "P3": "minor"}  # P4 is internal only: never on the page


def post(
    channel: Channel, kind: str, text: str, severity: str | None, existing: str | None, policy: Policy
) -> Delivery:
    """Create (no `existing` id) or update the page's incident with the status of `kind` and the message."""
    key = channel.secret() or ""
    base = str(channel.settings.get("url") or STATUSPAGE_URL).rstrip("/")
    page = channel.settings["page_id"]
    name, body_text = split_title(text)
    incident: dict = {"status": STATUSES[kind], "body": body_text}
    if existing is None:
        incident |= {"name": name, "deliver_notifications": True}
        if severity in IMPACT:
            incident["impact_override"] = IMPACT[severity]
        if channel.settings.get("component_ids"):
            incident["component_ids"] = list(channel.settings["component_ids"])
        method, url, target = "POST", f"{base}/pages/{page}/incidents", f"Statuspage page {page}: new incident"
    else:
        method, url, target = (
            "PATCH",
            f"{base}/pages/{page}/incidents/{existing}",
            f"Statuspage page {page} incident {existing}",
        )
    reply = send(method, url, {"incident": incident}, {"Authorization": f"OAuth {key}"}, policy, [key])
    reference = existing
    if reply.ok and isinstance(reply.json, dict) and isinstance(reply.json.get("id"), str):
        reference = reply.json["id"]
    return Delivery.of(channel, kind, target, text, {"incident": incident}, reply, reference)


def split_title(text: str) -> tuple[str, str]:
    """(`Title:` line's text, the rest without the template's `Posted:/Updated:/Resolved: ... ET` stamp)."""
    lines = text.strip().splitlines()
    title = lines[0].removeprefix("Title:").strip() if lines and lines[0].startswith("Title:") else ""
    rest = lines[1:] if title else lines
    rest = [line for line in rest if not line.startswith(("Posted:", "Updated:", "Resolved:"))]
    return title or "Incident", "\n".join(rest).strip()

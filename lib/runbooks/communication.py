"""The incident-response runbook's communication templates (its section Communication Templates), filled in.

One Jinja2 file per template of the incident-response runbook under `templates/`, named by its kind (`slack-update`,
`status-identified`, ...). A field nobody knows stays as the incident-response runbook's own `[placeholder]`, visibly:
these drafts never invent a fact. Nothing here posts to a status page or to Slack.
"""

from __future__ import annotations

from functools import lru_cache

import jinja2

KINDS = (
    "slack-declared",  # Internal → Slack Incident Channel Message (Initial)
    "slack-update",  # Internal → Slack Status Update
    "slack-resolved",  # Internal → Slack Resolution Message
    "status-investigating",  # External → Status Page - Investigating
    "status-identified",  # External → Status Page - Identified
    "status-monitoring",  # External → Status Page - Monitoring
    "status-resolved",  # External → Status Page - Resolved
    "customer-email",  # External → Customer Email Template (P1/P2)
    "slack-escalation",  # Escalation Procedures → How to Escalate → Via Slack
)


def render(kind: str, **fields) -> str:
    """The `kind` template with `fields` filled in; a missing or empty field keeps its placeholder.

    List fields (`known`, `actions`, `next_steps` of slack-update) are rendered as bullets.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown template {kind!r}; one of: {', '.join(KINDS)}")
    return _environment().get_template(f"{kind}.txt.j2").render(**fields)


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("runbooks", "templates"),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # plain text for Slack and the status page; HTML renderings escape their own way
    )

"""Slack incoming webhooks: `POST <webhook URL>` with `{"text": ...}`, answered `200 ok` (or e.g. `400
invalid_payload`, `403 action_prohibited`, `404 channel_not_found`). The webhook URL is the secret.

Slack reads `&`, `<` and `>` in text as markup (`<!channel>` notifies everyone, `<https://x|y>` is a link): they are
escaped (`&amp;`, `&lt;`, `&gt;`), so a finding or a log line quoted in a message stays text. Mentions come only
from the configuration (`mentions`), put in after escaping.
"""

from __future__ import annotations

from .config import Channel, Policy
from .deliver import Delivery, send

TARGET = "Slack (incoming webhook ${})"


def escape(text: str) -> str:
    """Text as Slack shows it literally (its "Escaping text" rule: only &, < and >)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def post(channel: Channel, kind: str, text: str, policy: Policy, markup: dict[str, str] | None = None) -> Delivery:
    """Send `text`, escaped; then each key of `markup` found in it (a token the caller put there) is replaced by its
    value as is: configured mention markup, which must reach Slack unescaped."""
    webhook = channel.secret() or ""
    sent = escape(text)
    for token, value in (markup or {}).items():
        sent = sent.replace(token, value)
    body = {"text": sent}
    reply = send("POST", webhook, body, {}, policy, [webhook])
    return Delivery.of(channel, kind, TARGET.format(channel.secret_env), sent, body, reply)

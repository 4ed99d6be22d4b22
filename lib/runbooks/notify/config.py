"""`parameters/integrations.yaml`: the channels messages go to, and the environment variables holding their secrets.

    slack:
      webhook_url_env: SLACK_WEBHOOK_URL    # the variable holding the incoming webhook's URL (the secret)
      private: false                        # true: record only the SHA-256 of what was sent, not its text
      mentions: {Engineering Manager: "<!subteam^S0123>"}   # escalation roles as Slack mentions (optional)
      incident_url: https://runbooks.internal/incidents/{incident}   # the link escalations give (optional)
    statuspage:
      page_id: kctbh9vrtdwd
      api_key_env: STATUSPAGE_API_KEY       # sent as `Authorization: OAuth <key>`
      url: https://api.statuspage.io/v1     # optional
      component_ids: []                     # optional: the components an incident affects
    pagerduty:
      routing_key_env: PAGERDUTY_ROUTING_KEY   # the Events API v2 integration key
      url: https://events.pagerduty.com/v2/enqueue   # optional
      source: autolytiq-prod                # payload.source of trigger events (optional)
    delivery: {attempts: 3, backoff_seconds: 2, timeout_seconds: 10}   # optional

Values of secrets never go in this file (a key that looks like one is refused); only the names of the variables.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..catalog import PARAMETERS, read_yaml
from ..errors import UsageError

DEFAULT = PARAMETERS / "integrations.yaml"
CHANNELS = ("slack", "statuspage", "pagerduty")
STATUSPAGE_URL = "https://api.statuspage.io/v1"
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYS = {
    "slack": {"webhook_url_env", "private", "mentions", "incident_url"},
    "statuspage": {"page_id", "api_key_env", "url", "component_ids", "private"},
    "pagerduty": {"routing_key_env", "url", "source", "private"},
    "delivery": {"attempts", "backoff_seconds", "timeout_seconds"},
}
_REQUIRED = {"slack": ("webhook_url_env",), "statuspage": ("page_id", "api_key_env"), "pagerduty": ("routing_key_env",)}


@dataclass(frozen=True)
class Channel:
    name: str  # one of CHANNELS
    secret_env: str  # the environment variable holding its secret
    private: bool = False
    settings: dict[str, Any] = field(default_factory=dict)

    def secret(self) -> str | None:
        """The secret's value from the environment, read when a message is sent; None when the variable is unset."""
        return os.environ.get(self.secret_env) or None


@dataclass(frozen=True)
class Policy:
    attempts: int = 3
    backoff_seconds: float = 2.0
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class Integrations:
    path: Path
    channels: dict[str, Channel]  # configured ones only
    policy: Policy

    def channel(self, name: str) -> tuple[Channel | None, str]:
        """The channel ready to send, or None and why not (a line for the user)."""
        channel = self.channels.get(name)
        if channel is None:
            return None, f"not configured in {self.path}"
        if channel.secret() is None:
            return None, f"${channel.secret_env} is not set"
        return channel, ""

    def incident_link(self, folder: Path) -> str:
        """Where a person reads the whole incident: Slack's `incident_url` for it, else its evidence folder."""
        channel = self.channels.get("slack")
        template = channel.settings.get("incident_url") if channel else None
        return str(template).replace("{incident}", folder.name) if template else str(folder.resolve())

    @property
    def secret_variables(self) -> tuple[str, ...]:
        """The environment variables holding secrets: kept out of every kernel's environment."""
        return tuple(c.secret_env for c in self.channels.values())

    def secrets(self) -> list[str]:
        """Their values, to scrub from anything written."""
        return [s for c in self.channels.values() if (s := c.secret())]


def load(path: Path | None = None) -> Integrations:
    """The integrations file (default parameters/integrations.yaml); none there: no channel configured."""
    path = path or DEFAULT
    if not path.is_file():
        if path != DEFAULT:
            raise UsageError(f"no integrations file at {path}")
        return Integrations(path, {}, Policy())
    data = read_yaml(path)
    unknown = set(data) - set(_KEYS)
    if unknown:
        raise UsageError(f"{path}: unknown sections {sorted(unknown)} (known: {', '.join(_KEYS)})")
    channels = {name: _channel(path, name, data[name]) for name in CHANNELS if data.get(name)}
    return Integrations(path, channels, _policy(path, data.get("delivery") or {}))


def _channel(path: Path, name: str, spec: Any) -> Channel:
    if not isinstance(spec, dict):
        raise UsageError(f"{path}: {name} must be a mapping")
    unknown = set(spec) - _KEYS[name]
    if unknown:
        raise UsageError(f"{path}: {name}: unknown keys {sorted(unknown)} (known: {', '.join(sorted(_KEYS[name]))})")
    for key in _REQUIRED[name]:
        if not isinstance(spec.get(key), str) or not spec[key]:
            raise UsageError(f"{path}: {name}: {key} is required")
    secret_env = spec[_REQUIRED[name][-1]]
    if not _ENV_NAME.fullmatch(secret_env):
        raise UsageError(
            f"{path}: {name}: {_REQUIRED[name][-1]} must name an environment variable (e.g. SLACK_WEBHOOK_URL), "
            "never hold the secret itself"
        )
    for key in ("url", "incident_url"):
        url = spec.get(key)
        if url is not None and not re.match(r"https?://[^/\s]+", str(url)):
            raise UsageError(f"{path}: {name}: {key} must be http(s)://host..., got {url!r}")
    mentions = spec.get("mentions") or {}
    if not isinstance(mentions, dict) or not all(isinstance(v, str) for v in mentions.values()):
        raise UsageError(f"{path}: {name}: mentions must map role names to Slack mention text")
    settings = {k: v for k, v in spec.items() if k not in ("private", _REQUIRED[name][-1])}
    return Channel(name, secret_env, bool(spec.get("private", False)), settings)


def _policy(path: Path, spec: Any) -> Policy:
    if not isinstance(spec, dict):
        raise UsageError(f"{path}: delivery must be a mapping")
    unknown = set(spec) - _KEYS["delivery"]
    if unknown:
        raise UsageError(f"{path}: delivery: unknown keys {sorted(unknown)}")
    try:
        policy = Policy(
            int(spec.get("attempts", 3)), float(spec.get("backoff_seconds", 2)), float(spec.get("timeout_seconds", 10))
        )
    except (TypeError, ValueError):
        raise UsageError(f"{path}: delivery: attempts, backoff_seconds and timeout_seconds are numbers") from None
    if not 1 <= policy.attempts <= 10 or not 0 <= policy.backoff_seconds <= 60 or not 0 < policy.timeout_seconds <= 60:
        raise UsageError(f"{path}: delivery: attempts 1-10, backoff_seconds 0-60, timeout_seconds over 0, at most 60")
    return policy

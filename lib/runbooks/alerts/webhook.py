"""Alertmanager's webhook payload (version 4), checked field by field before anything reads it.

https://prometheus.io/docs/alerting/latest/configuration/#webhook_config
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
_TIME = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"}
_STATUS = {"enum": ["firing", "resolved"]}

SCHEMA = {
    "type": "object",
    "required": [
        "version",
        "groupKey",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
    ],
    "properties": {
        "version": {"const": "4"},
        "groupKey": {"type": "string", "minLength": 1},
        "truncatedAlerts": {"type": "integer", "minimum": 0},  # Alertmanager 0.22 and later send it
        "status": _STATUS,
        "receiver": {"type": "string"},
        "groupLabels": _STRINGS,
        "commonLabels": _STRINGS,
        "commonAnnotations": _STRINGS,
        "externalURL": {"type": "string"},
        "alerts": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"],
                "properties": {
                    "status": _STATUS,
                    "labels": {**_STRINGS, "required": ["alertname"]},
                    "annotations": _STRINGS,
                    "startsAt": _TIME,
                    "endsAt": _TIME,
                    "generatorURL": {"type": "string"},
                    "fingerprint": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
                },
            },
        },
    },
}
_VALIDATOR = Draft202012Validator(SCHEMA)
_MESSAGE_LENGTH = 200  # a message quotes the offending value; a hostile one is cut short


class Invalid(Exception):
    """The request cannot be taken: `status` is the HTTP status to answer, the message says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Alert:
    status: str  # firing | resolved
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    ends_at: str
    generator_url: str
    fingerprint: str

    @property
    def name(self) -> str:
        return self.labels["alertname"]

    def record(self, group_key: str) -> dict:
        """What a run's evidence keeps under "alert"."""
        return {
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": self.starts_at,
            "generatorURL": self.generator_url,
            "fingerprint": self.fingerprint,
            "groupKey": group_key,
        }


@dataclass(frozen=True)
class Notification:
    group_key: str
    status: str
    receiver: str
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    common_annotations: dict[str, str]
    external_url: str
    truncated_alerts: int
    alerts: tuple[Alert, ...]


def parse(body: bytes) -> Notification:
    """The notification in `body`; Invalid(400) when it is not JSON, Invalid(422) naming the first wrong field."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise Invalid(400, f"body is not valid JSON: {_short(str(e))}") from None
    error = best_match(_VALIDATOR.iter_errors(data))
    if error is not None:
        raise Invalid(422, f"{_field(error.absolute_path)}: {_short(error.message)}")
    return Notification(
        group_key=data["groupKey"],
        status=data["status"],
        receiver=data["receiver"],
        group_labels=data["groupLabels"],
        common_labels=data["commonLabels"],
        common_annotations=data["commonAnnotations"],
        external_url=data["externalURL"],
        truncated_alerts=data.get("truncatedAlerts", 0),
        alerts=tuple(
            Alert(
                a["status"],
                a["labels"],
                a["annotations"],
                a["startsAt"],
                a["endsAt"],
                a["generatorURL"],
                a["fingerprint"],
            )
            for a in data["alerts"]
        ),
    )


def _field(path) -> str:
    """`alerts[0].labels.namespace` for the path jsonschema reports; `payload` for the top level."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".") or "payload"


def _short(text: str) -> str:
    return text if len(text) <= _MESSAGE_LENGTH else text[:_MESSAGE_LENGTH] + "…"

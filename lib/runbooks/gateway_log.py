"""Gateway access-log lines: the HTTP status, the upstream and whether the line says error.

Read from `key=value` text (`status=502 upstream=auth-service`, `status: 502`, but not `upstream_status=...`)
or from a JSON object per line. Used by every runbook that counts the gateway's responses.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

STATUS = re.compile(r"(?<![\w.])status\s*[=:]\s*\"?(\d{3})\b")
UPSTREAM = re.compile(r"(?<![\w.])upstream\s*[=:]\s*\"?([^\s\",}]+)")
ERROR = re.compile(
    r"\berror\b", re.IGNORECASE
)  # the incident-response runbook's grep -E "(error|5[0-9]{2})", as a word


@dataclass(frozen=True)
class LogLine:
    status: int | None
    upstream: str | None
    error: bool


def parse_line(text: str) -> LogLine:
    """Status, upstream and error flag of a log line: `key=value` text or a JSON object."""
    status = upstream = None
    record = _json_object(text)
    if record is not None:
        status, upstream = record.get("status"), record.get("upstream")
    else:
        if match := STATUS.search(text):
            status = match.group(1)
        if match := UPSTREAM.search(text):
            upstream = match.group(1)
    try:
        status = int(status) if status is not None else None
    except (TypeError, ValueError):
        status = None
    upstream = str(upstream).strip() if upstream not in (None, "", "-") else None
    return LogLine(status, upstream, bool(ERROR.search(text)))


def _json_object(text: str) -> dict | None:
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        value = json.loads(stripped)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None

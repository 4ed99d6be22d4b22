"""Alertmanager's API v2: the alerts firing now, as a DataFrame.

The incident-response runbook's "AlertManager: alert management"
(`kubectl port-forward svc/alertmanager 9093:9093 -n monitoring`), read through `GET /api/v2/alerts`:
active alerts only, silenced and inhibited ones left out (what a person looking at Alertmanager's page
would call firing). Labels and annotations are the alerts' own text: data, never markup.

Errors: Alertmanager not answering, or something else answering, is AlertmanagerUnreachable.
"""

from __future__ import annotations

import re

import pandas as pd
import requests

from .errors import AlertmanagerUnreachable

TIMEOUT = (5, 15)  # seconds: connect, read
COLUMNS = ["alertname", "severity", "namespace", "summary", "starts_at", "state", "fingerprint", "labels"]


def firing(url: str) -> pd.DataFrame:
    """The alerts Alertmanager at `url` holds active (not silenced, not inhibited), oldest first."""
    if not re.match(r"https?://[^/\s]+", url or ""):
        raise AlertmanagerUnreachable(f"not an Alertmanager URL: {url!r} (expected http://host:port)")
    endpoint = f"{url.rstrip('/')}/api/v2/alerts"
    params = {"active": "true", "silenced": "false", "inhibited": "false", "unprocessed": "false"}
    try:
        response = requests.get(endpoint, params=params, timeout=TIMEOUT, headers={"Accept": "application/json"})
    except requests.RequestException as e:
        reason = f"no answer within {TIMEOUT[1]} s" if isinstance(e, requests.Timeout) else _reason(e)
        raise AlertmanagerUnreachable(f"Alertmanager at {url} does not answer: {reason}") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, list):
        raise AlertmanagerUnreachable(
            f"{endpoint} answered HTTP {response.status_code}, not Alertmanager's API v2: is {url} Alertmanager?"
        )
    rows = [_row(alert) for alert in body if isinstance(alert, dict)]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["starts_at"] = pd.to_datetime(frame["starts_at"], utc=True, format="ISO8601")
    return frame.sort_values(["starts_at", "alertname"], ignore_index=True)


def _row(alert: dict) -> dict:
    labels = {str(k): str(v) for k, v in (alert.get("labels") or {}).items()}
    annotations = alert.get("annotations") or {}
    return {
        "alertname": labels.get("alertname"),
        "severity": labels.get("severity"),
        "namespace": labels.get("namespace"),
        "summary": annotations.get("summary") or annotations.get("description"),
        "starts_at": alert.get("startsAt"),
        "state": (alert.get("status") or {}).get("state"),
        "fingerprint": alert.get("fingerprint"),
        "labels": labels,
    }


def _reason(error: Exception) -> str:
    return " ".join(str(error).split())[:300]

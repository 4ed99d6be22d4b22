"""What becomes of each alert of a notification, decided and recorded before Alertmanager is answered.

A firing alert with a route whose labels pass their checks is `queued`; one with no route is
`unrouted`, one with a label that fails its check is `rejected`, a resolved one is `resolved`: none of
those starts a run. Each alert counts once (fingerprint + startsAt + status): re-sent, it is a
`duplicate` and changes nothing. Each new one gets one JSON line in `output/<incident>/alerts.jsonl`, the
incident log, whose lines are records of the incident's chain as its evidence files are.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import chain
from ..errors import UsageError
from ..runfiles import ALERT_LOG, make_incident_folder
from .queue import Entry, Queue
from .routing import Rejected, Routing, incident_id
from .webhook import Alert, Notification

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    alertname: str
    fingerprint: str
    status: str  # firing | resolved
    outcome: str  # queued | duplicate | unrouted | rejected | resolved
    incident: str
    runbook: str | None
    reason: str | None


def receive(notification: Notification, routing: Routing, queue: Queue, output_dir: Path) -> list[Outcome]:
    """Decide each alert, commit them all to the queue, log the new ones; what became of each."""
    entries = [_entry(notification, alert, routing) for alert in notification.alerts]
    added = queue.add(entries)
    for entry, new in zip(entries, added, strict=True):
        if new:
            _log(output_dir, entry)
    return [
        Outcome(e.alertname, e.fingerprint, e.status, e.state if new else "duplicate", e.incident, e.runbook, e.reason)
        for e, new in zip(entries, added, strict=True)
    ]


def _entry(notification: Notification, alert: Alert, routing: Routing) -> Entry:
    common: dict[str, Any] = {
        "fingerprint": alert.fingerprint,
        "starts_at": alert.starts_at,
        "status": alert.status,
        "alertname": alert.name,
        "incident": incident_id(notification, alert),
        "alert": alert.record(notification.group_key),
    }
    route = routing.routes.get(alert.name)
    if alert.status == "resolved" or route is None:
        return Entry(
            **common, state="resolved" if alert.status == "resolved" else "unrouted", runbook=None, parameters={}
        )
    try:
        parameters = route.parameters(alert)
        routing.parameters(route.runbook, parameters)  # the runbook's type checks, as for `runbook run`
    except (Rejected, UsageError) as e:
        return Entry(**common, state="rejected", runbook=route.runbook, parameters={}, reason=str(e))
    return Entry(**common, state="queued", runbook=route.runbook, parameters=parameters)


def _log(output_dir: Path, entry: Entry) -> None:
    """The entry's line in its incident's log, under the incident's chain (runbooks.chain.append)."""
    line = {
        "received_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        **asdict(entry),
    }
    try:
        chain.append(make_incident_folder(output_dir, entry.incident) / ALERT_LOG, line)
    except (OSError, UsageError) as e:  # a link planted at the log or the folder: never written through
        log.error("incident %s: the alert is queued, but its incident log was not written: %s", entry.incident, e)

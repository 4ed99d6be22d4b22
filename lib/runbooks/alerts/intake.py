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
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from .. import chain
from ..errors import UsageError
from ..runfiles import ALERT_LOG, make_incident_folder
from .queue import AlertQueue, Entry
from .routing import Rejected, Routing, Unrouted, incident_id
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


def receive(notification: Notification, routing: Routing, queue: AlertQueue, output_dir: Path) -> list[Outcome]:
    """Decide each alert, commit them all to the queue, log the new ones; what became of each."""
    folders, limit = _incident_folders(output_dir), routing.policy.incidents
    entries: list[Entry] = []
    unlogged: set[int] = set()
    for alert in notification.alerts:
        entry = _entry(notification, alert, routing)
        if entry.incident not in folders and len(folders) >= limit:  # clearly abuse: logged by the service only
            reason = f"no new incident folder: {limit} exist (limits.incidents)"
            entry = replace(entry, state="rejected", runbook=None, parameters={}, reason=reason)
            unlogged.add(len(entries))
        folders.add(entry.incident)
        entries.append(entry)
    added = queue.add(entries)
    for i, (entry, new) in enumerate(zip(entries, added, strict=True)):
        if new and i not in unlogged:
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
        "incident": incident_id(notification, alert, routing.policy),
        "alert": alert.record(notification.group_key),
    }
    route = routing.routes.get(alert.name)
    if alert.status == "resolved" or route is None:
        return Entry(
            **common, state="resolved" if alert.status == "resolved" else "unrouted", runbook=None, parameters={}
        )
    try:
        parameters = route.parameters(alert, routing.policy)
        if routing.clusters is not None:
            context = routing.clusters.context(alert)
            if "context" in routing.books[route.runbook].parameters:
                parameters["context"] = context
        routing.parameters(route.runbook, parameters)  # the runbook's type checks, as for `runbook run`
    except Unrouted as e:
        return Entry(**common, state="unrouted", runbook=None, parameters={}, reason=str(e))
    except (Rejected, UsageError) as e:
        return Entry(**common, state="rejected", runbook=route.runbook, parameters={}, reason=str(e))
    return Entry(**common, state="queued", runbook=route.runbook, parameters=parameters)


def _incident_folders(output_dir: Path) -> set[str]:
    if not output_dir.is_dir():
        return set()
    return {p.name for p in output_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}


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

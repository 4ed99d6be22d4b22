"""`runbook close INC`: Phase 4's "Close Incident" and "Schedule Post-Incident Review", recorded.

An incident closes when the verify-recovery runbook's latest `recovery` finding says `recovered`, or with
`--force REASON` (the reason is recorded, and the review shows the incident was closed without a confirmed
recovery). Closing writes a `close` record into the incident's chain (runbooks.command_evidence) with one
finding, `resolution`: when it was resolved (now), on what basis, and when the post-incident review is due from
the severity (escalation.review_due: P1/P2 within 3 business days, P3 within a week, P4 none). From then on the
incident's end is that resolution time (runbooks.incident). An incident closes once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from . import command_evidence, escalation, units
from .errors import UsageError
from .evidence import Action, Finding
from .incident import Incident


class NotRecovered(UsageError):
    """No recovered `recovery` finding and no --force: the incident stays open. Exit 4."""

    exit_code = 4


@dataclass(frozen=True)
class Closed:
    evidence: Path
    resolved_at: dt.datetime
    review: escalation.ReviewDue | None  # None without a severity
    lines: list[str]


def close(output_dir: Path, incident: Incident, force_reason: str | None, now: dt.datetime) -> Closed:
    """Record the resolution of `incident`, or NotRecovered / UsageError saying why not."""
    if incident.resolved_at is not None:
        raise UsageError(f"{incident.id} was closed already, at {units.when(incident.resolved_at)}")
    if force_reason is not None and not force_reason.strip():
        raise UsageError("--force needs a reason: what says the incident is over")
    found = incident.recovery
    recovery = {"evidence": found[0].evidence, **_recovery(found[1])} if found else None
    if not (recovery and recovery["status"] == "recovered") and force_reason is None:
        latest = (
            f"the latest verify-recovery ({recovery['evidence']}) says {recovery['status']}: {recovery['summary']}"
            if recovery
            else "no verify-recovery run"
        )
        raise NotRecovered(
            f"{incident.id} is not confirmed recovered ({latest}); run verify-recovery, or close with --force REASON"
        )
    review = escalation.review_due(incident.severity, now) if incident.severity else None
    duration = units.duration(now - incident.start)
    if force_reason is None and recovery:
        basis = f"recovered per verify-recovery ({recovery['evidence']})"
    else:
        basis = f"forced: {(force_reason or '').strip()}"
    review_text = review.line() if review else "post-incident review deadline unknown: no severity (run triage)"
    summary = f"Resolved at {units.when(now)} after {duration}, {basis}; {review_text}"
    data = {
        "resolved_at": now,
        "started": incident.start,
        "duration_seconds": (now - incident.start).total_seconds(),
        "forced": force_reason is not None,
        "reason": force_reason.strip() if force_reason else None,
        "recovery": recovery,
        "severity": incident.severity,
        "review_due": review.due if review else None,
        "review_rule": review.rule if review else None,
    }
    path = command_evidence.write(
        output_dir,
        incident.id,
        "close",
        {"force": force_reason},
        [Finding("resolution", summary, "warning" if force_reason is not None else "info", data)],
        [Action("close", "applied", f"incident {incident.id}", f"closed: {basis}")],
        now,
    )
    lines = [
        f"{incident.id} closed: resolved {units.when(now)} after {duration} ({basis})",
        review_text,
        f"next: runbook comms {incident.id} --kind slack-resolved --post (and status-resolved, pagerduty-resolve); "
        f"runbook report {incident.id}",
    ]
    return Closed(path, now, review, lines)


def _recovery(finding: dict) -> dict:
    data = finding["data"] if isinstance(finding["data"], dict) else {}
    return {"status": data.get("status"), "summary": finding["summary"], "watched_to": data.get("watched_to")}

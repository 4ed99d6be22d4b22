"""An incident as its evidence tells it: the runs, severity, start and end, findings and actions.

Loaded from every `*.evidence.json` in `output/<incident>/`; `runbook report` and `runbook comms` both
read it. Severity and impact figures come from the `severity` finding the triage runbook records (data:
`severity` P1..P4, `rule`, `measured`, `error_rate` as a fraction, `latency_ratio`, `incident_start`);
without one they are None, and the documents keep the incident-response runbook's placeholders.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from . import communication, escalation, evidence
from .errors import UsageError
from .evidence import Record, parse_time
from .runfiles import ALERT_LOG, evidence_files, incident_folder

LEVELS = ("P1", "P2", "P3", "P4")  # most severe first
SEVERITY_FINDING = "severity"  # the triage runbook's finding id
# The communication templates `message_fields` fills; triage drafts slack-declared and status-investigating itself.
MESSAGE_KINDS = (
    "slack-update",
    "slack-resolved",
    "status-identified",
    "status-monitoring",
    "status-resolved",
    "customer-email",
)


@dataclass(frozen=True)
class Run:
    """One evidence file of the incident: its name and what it records."""

    evidence: str  # its file name
    record: Record


@dataclass(frozen=True)
class AlertEvent:
    """One line of the incident log `runbook serve` keeps (alerts.jsonl): an alert seen for the first time."""

    alertname: str
    state: str  # queued | unrouted | rejected (firing, what became of it) | resolved
    starts_at: dt.datetime
    received_at: dt.datetime
    runbook: str | None
    reason: str | None


@dataclass(frozen=True)
class Incident:
    id: str
    folder: Path
    runs: tuple[Run, ...]  # by start time
    triage: tuple[dict, ...]  # the data of every `severity` finding, in run order
    incident_start: dt.datetime | None  # the earliest `incident_start` triage gave
    alerts: tuple[AlertEvent, ...] = ()  # from the incident log, when alerts started runs

    @property
    def severity(self) -> str | None:
        """The highest severity any triage run found: an incident is classed by its worst moment."""
        found = [t["severity"] for t in self.triage]
        return min(found, key=LEVELS.index) if found else None

    @property
    def severity_rule(self) -> str | None:
        """The rule that fired for that severity, as the triage finding names it."""
        return next((t.get("rule") for t in self.triage if t["severity"] == self.severity), None)

    @property
    def error_rate(self) -> float | None:
        return _peak(t.get("error_rate") for t in self.triage)

    @property
    def latency_ratio(self) -> float | None:
        return _peak(t.get("latency_ratio") for t in self.triage)

    @property
    def start(self) -> dt.datetime:
        """The earliest of the start triage gave and the first alert firing; without either, the first run's start."""
        known = [*([self.incident_start] if self.incident_start else []), *(a.starts_at for a in self.firing)]
        return min(known) if known else self.runs[0].record.started_at

    @property
    def start_basis(self) -> str:
        if self.incident_start and self.start == self.incident_start:
            return "the incident start triage gave"
        return "the first alert firing" if self.firing else "the first runbook run starting"

    @property
    def end(self) -> dt.datetime:
        """When the last runbook run finished or the last resolved notification came, whichever is later."""
        return max(
            [
                *(run.record.finished_at for run in self.runs),
                *(a.received_at for a in self.alerts if a.state == "resolved"),
            ]
        )

    @property
    def end_basis(self) -> str:
        last_run = max(run.record.finished_at for run in self.runs)
        return "the last runbook run finishing" if self.end == last_run else "the last alert resolved"

    @property
    def firing(self) -> tuple[AlertEvent, ...]:
        return tuple(a for a in self.alerts if a.state != "resolved")

    @property
    def duration(self) -> dt.timedelta:
        return self.end - self.start

    @property
    def superseded(self) -> frozenset[str]:
        """Evidence files of interactive sessions that a later seal of the same working copy supersedes."""
        return frozenset(
            run.record.session.supersedes for run in self.runs if run.record.session and run.record.session.supersedes
        )

    @property
    def current(self) -> tuple[Run, ...]:
        """The runs, with each interactive session only as last sealed."""
        return tuple(run for run in self.runs if run.evidence not in self.superseded)

    def findings(self, severities: tuple[str | None, ...]) -> list[tuple[Run, dict]]:
        """The latest finding of each runbook and finding id with one of `severities`, in run order."""
        latest = {
            (run.record.runbook, f["id"]): (run, f)
            for run in self.current
            for f in run.record.findings
            if f["severity"] in severities
        }
        return sorted(latest.values(), key=lambda pair: self.runs.index(pair[0]))

    def actions_taken(self) -> list[str]:
        """The applied actions, a line per runbook, action and result: `restart on 3 targets: done (runbook)`."""
        targets: dict[tuple[str, str, str], list[str]] = {}
        for run in self.current:
            for a in run.record.actions:
                if a["mode"] == "applied":
                    targets.setdefault((run.record.runbook, a["id"], a["result"]), []).append(a["target"])
        return [
            f"{action} on {on[0] if len(on) == 1 else f'{len(on)} targets'}: {result} ({runbook})"
            for (runbook, action, result), on in targets.items()
        ]


def evidence_folder(output_dir: Path, incident: str) -> Path:
    """The incident's folder; a usage error unless it holds evidence."""
    path = incident_folder(output_dir, incident)
    if not evidence_files(path):
        raise UsageError(f"no evidence for incident {incident!r} in {output_dir}")
    return path


def load(output_dir: Path, incident: str) -> Incident:
    path = evidence_folder(output_dir, incident)
    runs = sorted((_run(p) for p in evidence_files(path)), key=lambda run: (run.record.started_at, run.evidence))
    triage = tuple(
        f["data"]
        for run in runs
        for f in run.record.findings
        if f["id"] == SEVERITY_FINDING and isinstance(f["data"], dict) and f["data"].get("severity") in LEVELS
    )
    try:
        starts = [parse_time(t["incident_start"]) for t in triage if t.get("incident_start")]
    except (ValueError, TypeError, AttributeError):
        raise UsageError(
            f"a triage finding of incident {incident!r} has an incident_start that is no ISO time"
        ) from None
    return Incident(incident, path, tuple(runs), triage, min(starts, default=None), _alerts(path / ALERT_LOG))


def message_fields(incident: Incident, kind: str, now: dt.datetime) -> dict:
    """The fields of communication template `kind` the evidence knows; the template keeps the others' placeholders.

    Public texts (status page, customer email) get times and durations only: findings and actions are
    technical, and their plain-language version is for a person to write.
    """
    duration = human_duration(incident.duration)
    if kind == "slack-update":
        return {
            "incident": incident.id,
            "severity": incident.severity,
            "duration": duration,
            "known": [
                f"{f['summary']} ({run.record.runbook})" for run, f in incident.findings(("critical", "warning"))
            ],
            "actions": incident.actions_taken(),
            "next_update": next_update(incident, now),
        }
    if kind == "slack-resolved":
        return {
            "incident": incident.id,
            "severity": incident.severity,
            "duration": duration,
            "resolution": "; ".join(incident.actions_taken()),
            "error_rate": percent(incident.error_rate),
        }
    if kind in ("status-identified", "status-monitoring"):
        return {"updated": communication.eastern(now)}
    if kind == "status-resolved":
        return {"duration": duration, "resolved": communication.eastern(now)}
    if kind == "customer-email":
        return {
            "date": f"{incident.start.astimezone(communication.EASTERN):%Y-%m-%d}",
            "started": f"{communication.eastern(incident.start)} ET",
            "ended": f"{communication.eastern(incident.end)} ET",
            "duration": duration,
        }
    raise ValueError(f"no fields for template {kind!r}")


def next_update(incident: Incident, now: dt.datetime) -> str | None:
    """When the next update is due by the severity's cadence (P1 every 15 min, P2 every 30 min from the start);
    None, a placeholder, without a severity or a fixed cadence."""
    if incident.severity is None:
        return None
    cadence = escalation.cadence(incident.severity, incident.start, now)
    if cadence.next_update is None:
        return None
    return f"{communication.utc(cadence.next_update)} ({cadence.communication})"


def human_duration(span: dt.timedelta) -> str:
    """`42 s`, `7 min`, `2 h 05 min`."""
    seconds = max(int(span.total_seconds()), 0)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def percent(fraction: float | None) -> str | None:
    return None if fraction is None else f"{fraction:.1%}"


def _run(path: Path) -> Run:
    try:
        return Run(path.name, evidence.read(path))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UsageError(f"{path} is not a readable evidence file; `runbook verify` says what changed") from None


def _alerts(log: Path) -> tuple[AlertEvent, ...]:
    """The incident log's lines as events; none without a log (runs started by hand)."""
    if not log.exists():
        return ()
    events = []
    for number, line in enumerate(log.read_text().splitlines(), 1):
        try:
            entry = json.loads(line)
            events.append(
                AlertEvent(
                    entry["alertname"],
                    entry["state"],
                    parse_time(entry["starts_at"]),
                    parse_time(entry["received_at"]),
                    entry.get("runbook"),
                    entry.get("reason"),
                )
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UsageError(f"{log}:{number} is not an incident log line of `runbook serve`") from None
    return tuple(events)


def _peak(values) -> float | None:
    known = [v for v in values if isinstance(v, (int, float))]
    return max(known) if known else None

"""An incident as its evidence tells it: the runs, severity, start and end, findings and actions.

Loaded from every `*.evidence.json` in `output/<incident>/`; `runbook report`, `runbook comms`, `runbook close`
and the oncall-handoff runbook read it. Severity and impact figures come from the `severity` finding the triage
runbook records (data: `severity` P1..P4, `rule`, `measured`, `error_rate` as a fraction, `latency_ratio`,
`incident_start`, `series`); without one they are None, and the documents keep the incident-response runbook's
placeholders. Whether it recovered is the verify-recovery runbook's `recovery` finding; whether it is closed,
and when it was resolved, the `resolution` finding `runbook close` records (runbooks.command_evidence).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import escalation, evidence, severity, units
from .command_evidence import is_command
from .errors import UsageError
from .evidence import Record, parse_time
from .runfiles import ALERT_LOG, evidence_files, incident_folder

LEVELS = ("P1", "P2", "P3", "P4")  # most severe first
SEVERITY_FINDING = "severity"  # the triage runbook's finding id
RECOVERY_FINDING = "recovery"  # the verify-recovery runbook's: data.status recovered | not-recovered | unknown
RESOLUTION_FINDING = "resolution"  # what `runbook close` records: data.resolved_at, review_due, forced, reason
TOP_FINDINGS = 5  # what the Slack update lists; the rest it counts and links
PLAIN_LENGTH = 200  # characters of a finding the Slack update quotes
PROCESS_FINDINGS = ("targets", "communication", "engage")  # triage's about the response, not the incident
SERIES_COLUMNS = ["error_rate", "latency_seconds", "baseline_error_rate", "baseline_latency_seconds"]
# The communication templates `message_fields` fills; triage drafts slack-declared and status-investigating itself.
MESSAGE_KINDS = (
    "slack-declared",
    "status-investigating",
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
    fingerprint: str | None = None  # Alertmanager's: one alert firing, then resolved


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
    def state(self) -> str:
        """`closed` (runbook close), `recovered` (verify-recovery's latest says so), else `open`."""
        if self.resolution:
            return "closed (forced)" if self.resolution.get("forced") else "closed"
        recovery = self.recovery
        return "recovered" if recovery and recovery[1]["data"].get("status") == "recovered" else "open"

    @property
    def runbook_runs(self) -> tuple[Run, ...]:
        """The runs of runbooks, without the records of commands (close, comms, escalate)."""
        return tuple(run for run in self.runs if not is_command(run.record))

    @property
    def resolution(self) -> dict | None:
        """What `runbook close` recorded (resolved_at, review_due, forced, reason, ...); None while open."""
        found = self.latest(RESOLUTION_FINDING, commands=True)
        return found[1]["data"] if found else None

    @property
    def resolved_at(self) -> dt.datetime | None:
        return parse_time(self.resolution["resolved_at"]) if self.resolution else None

    @property
    def recovery(self) -> tuple[Run, dict] | None:
        """The latest `recovery` finding of verify-recovery and its run; None when recovery was never checked."""
        return self.latest(RECOVERY_FINDING)

    @property
    def mitigated_at(self) -> dt.datetime | None:
        """When the last runbook run that applied an action finished; None when nothing was applied."""
        done = [
            run.record.finished_at
            for run in self.runbook_runs
            if any(a["mode"] == "applied" for a in run.record.actions)
        ]
        return max(done, default=None)

    @property
    def detected_at(self) -> dt.datetime:
        """When someone or something first looked: the first alert reaching `runbook serve`, or the first run."""
        return min([*(a.received_at for a in self.firing), self.runs[0].record.started_at])

    @property
    def acknowledged_at(self) -> dt.datetime | None:
        """When a person first took it on: the first acknowledge sent to PagerDuty (`runbook comms`), or the first
        runbook run started by hand (not by an alert); None when neither happened."""
        by_hand = [r.record.started_at for r in self.runbook_runs if r.record.alert is None]
        acknowledged = [
            run.record.finished_at
            for run in self.runs
            if is_command(run.record)
            for a in run.record.actions
            if a["id"] == "pagerduty-acknowledge" and a["result"].startswith("sent")
        ]
        return min([*by_hand, *acknowledged], default=None)

    def latest(self, finding_id: str, commands: bool = False) -> tuple[Run, dict] | None:
        """The last finding with this id in run order (of runbook runs; with `commands`, of command records only)."""
        found = [
            (run, f)
            for run in self.runs
            if is_command(run.record) == commands
            for f in run.record.findings
            if f["id"] == finding_id
        ]
        return found[-1] if found else None

    @property
    def series(self) -> pd.DataFrame:
        """Error rate and latency (with their baselines) per minute, from every finding that recorded a `series`
        (triage's severity, verify-recovery's recovery), in run order; the first value read for a minute stands.
        Index: the minute (UTC); columns SERIES_COLUMNS; empty when no run read metrics."""
        frames = []
        for run in self.runbook_runs:
            for f in run.record.findings:
                rows = f["data"].get("series") if isinstance(f["data"], dict) else None
                if rows:
                    frame = pd.DataFrame(rows).reindex(columns=["time", *SERIES_COLUMNS])
                    frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601").dt.floor("min")
                    frames.append(frame.set_index("time").astype(float))
        if not frames:
            return pd.DataFrame(columns=SERIES_COLUMNS, index=pd.DatetimeIndex([], tz="UTC", name="time"), dtype=float)
        merged = pd.concat(frames)
        merged = merged[~merged.index.duplicated(keep="first")].sort_index()
        merged.index.name = "time"
        return merged

    @property
    def normal_latency(self) -> float | None:
        """Normal latency in seconds: triage's (its baseline's median), else the median of the recorded baselines."""
        given = [t["normal_latency_seconds"] for t in self.triage if t.get("normal_latency_seconds")]
        if given:
            return float(given[-1])
        baseline = self.series["baseline_latency_seconds"].dropna()
        return float(baseline.median()) or None if not baseline.empty else None

    def impact(self) -> Impact:
        """The figures the evidence knows for the review's Impact: peaks, and how long each severity threshold of
        error rate and latency was reached, from the recorded series."""
        series, normal = self.series, self.normal_latency
        peak_error = _peak([self.error_rate, *series["error_rate"].dropna()])
        peak_latency = _peak(series["latency_seconds"].dropna())
        ratio = series["latency_seconds"] / normal if normal else pd.Series(dtype=float)
        peak_ratio = _peak([self.latency_ratio, *ratio.dropna()])
        step = _step(series.index)
        over = []
        for rule in severity.RULES:
            values = {"error_rate": series["error_rate"], "latency_ratio": ratio}.get(rule.measure)
            if values is None or values.dropna().empty:
                continue
            hits = values.dropna().round(9) >= rule.threshold
            over.append(Threshold(rule.level, rule.measure, rule.threshold, int(hits.sum()) * step))
        covered = (series.index.min(), series.index.max()) if not series.empty else None
        return Impact(peak_error, peak_ratio, peak_latency, normal, tuple(over), covered)

    @property
    def start_basis(self) -> str:
        if self.incident_start and self.start == self.incident_start:
            return "the incident start triage gave"
        return "the first alert firing" if self.firing else "the first runbook run starting"

    @property
    def end(self) -> dt.datetime:
        """When `runbook close` resolved it; while open, when the last runbook run finished or the last resolved
        notification came, whichever is later."""
        if self.resolved_at:
            return self.resolved_at
        return max(
            [
                *(run.record.finished_at for run in self.runbook_runs or self.runs),
                *(a.received_at for a in self.alerts if a.state == "resolved"),
            ]
        )

    @property
    def end_basis(self) -> str:
        if self.resolved_at:
            return "its resolution (`runbook close`)"
        last_run = max(run.record.finished_at for run in self.runbook_runs or self.runs)
        return "the last runbook run finishing" if self.end == last_run else "the last alert resolved"

    @property
    def firing(self) -> tuple[AlertEvent, ...]:
        return tuple(a for a in self.alerts if a.state != "resolved")

    @property
    def still_firing(self) -> tuple[AlertEvent, ...]:
        return still_firing(self.alerts)

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
        for run in self.runbook_runs:
            if run.evidence in self.superseded:
                continue  # its actions are in the later seal too
            for a in run.record.actions:
                if a["mode"] == "applied":
                    targets.setdefault((run.record.runbook, a["id"], a["result"]), []).append(a["target"])
        return [
            f"{action} on {on[0] if len(on) == 1 else f'{len(on)} targets'}: {result} ({runbook})"
            for (runbook, action, result), on in targets.items()
        ]


@dataclass(frozen=True)
class Threshold:
    level: str  # the severity whose rule this threshold is
    measure: str  # error_rate | latency_ratio
    threshold: float
    duration: dt.timedelta  # how long the recorded series was at or above it


@dataclass(frozen=True)
class Impact:
    peak_error_rate: float | None  # fraction
    peak_latency_ratio: float | None
    peak_latency_seconds: float | None
    normal_latency_seconds: float | None
    over: tuple[Threshold, ...]  # per severity rule on error rate or latency, in the rules' order
    covered: tuple[dt.datetime, dt.datetime] | None  # the span the recorded series cover

    def lines(self) -> list[str]:
        """`error rate >= 10 % (P2): 18 min`, ... for the thresholds reached."""
        lines = []
        for t in self.over:
            if t.duration:
                shown = f"{units.percent(t.threshold, 0)}" if t.measure == "error_rate" else f"{t.threshold:g}x normal"
                what = "error rate" if t.measure == "error_rate" else "latency"
                lines.append(f"{what} >= {shown} ({t.level}): {units.duration(t.duration)}")
        return lines


def evidence_folder(output_dir: Path, incident: str) -> Path:
    """The incident's folder; a usage error naming the incidents there are unless it holds evidence."""
    path = incident_folder(output_dir, incident)
    if not evidence_files(path):
        known = incident_ids(output_dir)
        listed = f"known: {', '.join(known[:12])}{', ...' if len(known) > 12 else ''}" if known else "none has any"
        raise UsageError(f"no evidence for incident {incident!r} in {output_dir} ({listed}; `runbook incidents`)")
    return path


def incident_ids(output_dir: Path) -> list[str]:
    """The incidents with evidence in `output_dir`, the most recently changed first."""
    try:
        folders = [p for p in Path(output_dir).iterdir() if p.is_dir() and evidence_files(p)]
    except OSError:
        return []
    return [p.name for p in sorted(folders, key=lambda p: evidence_files(p)[-1].stat().st_mtime, reverse=True)]


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
    return Incident(incident, path, tuple(runs), triage, min(starts, default=None), alert_log(path / ALERT_LOG))


def message_fields(incident: Incident, kind: str, now: dt.datetime, link: str | None = None) -> dict:
    """The fields of communication template `kind` the evidence knows; the template keeps the others' placeholders.
    `link`: where the whole incident can be read (the Slack update points there for the findings it leaves out).

    Public texts (status page, customer email) get times and durations only: findings and actions are
    technical, and their plain-language version is for a person to write.
    """
    duration = units.duration(incident.duration)
    if kind == "slack-declared":
        return {
            "severity": incident.severity,
            "started": f"{units.clock(incident.start)} ({incident.start_basis})",
            "next_update": next_update(incident, now),
        }
    if kind == "status-investigating":
        return {"posted": units.when(now)}
    if kind == "slack-update":
        return {
            "incident": incident.id,
            "severity": incident.severity,
            "duration": duration,
            "known": what_we_know(incident, link),
            "actions": incident.actions_taken(),
            "next_update": next_update(incident, now),
        }
    if kind == "slack-resolved":
        return {
            "incident": incident.id,
            "severity": incident.severity,
            "duration": duration,
            "resolution": "; ".join(incident.actions_taken()),
            "error_rate": percent(incident.impact().peak_error_rate),
            "review_scheduled": review_line(incident),
        }
    if kind in ("status-identified", "status-monitoring"):
        return {"updated": units.when(now)}
    if kind == "status-resolved":
        return {"duration": duration, "resolved": units.when(incident.resolved_at or now)}
    if kind == "customer-email":
        return {
            "date": f"{units.local(incident.start):%Y-%m-%d}",
            "started": f"{units.when(incident.start)}",
            "ended": f"{units.when(incident.end)}",
            "duration": duration,
        }
    raise ValueError(f"no fields for template {kind!r}")


def what_we_know(incident: Incident, link: str | None = None) -> list[str]:
    """The Slack update's "What we know": the severity, then the findings that matter most (critical before warning,
    the latest of each), at most TOP_FINDINGS, each its first sentence; the rest counted, with where to read them."""
    ranked = sorted(
        (f for _, f in incident.findings(("critical", "warning")) if f["id"] not in PROCESS_FINDINGS),
        key=lambda f: (f["id"] != SEVERITY_FINDING, f["severity"] != "critical"),
    )
    known = [_plain(f) for f in ranked[:TOP_FINDINGS]]
    if len(ranked) > TOP_FINDINGS:
        more = units.count(len(ranked) - TOP_FINDINGS, "more finding")
        known.append(f"{more}: {link or f'runbook show-incident {incident.id}'}")
    return known


def _plain(finding: dict) -> str:
    """A finding for the channel: the severity as a sentence, others their summary's first sentence, kept short."""
    data = finding.get("data")
    if finding["id"] == SEVERITY_FINDING and isinstance(data, dict) and data.get("severity") in LEVELS:
        measured = {k: data[k] for k in ("error_rate", "latency_ratio") if isinstance(data.get(k), (int, float))}
        return f"Severity {data['severity']}: {severity.measured_words(measured)}"
    text = finding["summary"].split(". ", 1)[0].rstrip(".")
    return text if len(text) <= PLAIN_LENGTH else text[: text.rfind(" ", 0, PLAIN_LENGTH)] + " …"


def review_due(incident: Incident) -> escalation.ReviewDue | None:
    """When the post-incident review is due, from the severity and the resolution; None while either is unknown."""
    if incident.severity is None or incident.resolved_at is None:
        return None
    return escalation.review_due(incident.severity, incident.resolved_at)


def review_line(incident: Incident) -> str | None:
    """`due by Wed 2026-12-02 ET (within 3 business days)`; None (a placeholder) while open or unclassified."""
    due = review_due(incident)
    if due is None:
        return None
    return f"due by {due.due:%a %Y-%m-%d} ET ({due.rule})" if due.due else f"none ({due.severity})"


def next_update(incident: Incident, now: dt.datetime) -> str | None:
    """When the next update is due by the severity's cadence (P1 every 15 min, P2 every 30 min from the start);
    None, a placeholder, without a severity or a fixed cadence."""
    if incident.severity is None:
        return None
    cadence = escalation.cadence(incident.severity, incident.start, now)
    if cadence.next_update is None:
        return None
    return f"{units.clock(cadence.next_update)} ({cadence.communication})"


def percent(fraction: float | None) -> str | None:
    return None if fraction is None else f"{units.percent(fraction, 1)}"


def _run(path: Path) -> Run:
    try:
        return Run(path.name, evidence.read(path))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UsageError(f"{path} is not a readable evidence file; `runbook verify` says what changed") from None


def alert_log(log: Path) -> tuple[AlertEvent, ...]:
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
                    entry.get("fingerprint"),
                )
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UsageError(f"{log}:{number} is not an incident log line of `runbook serve`") from None
    return tuple(events)


def still_firing(events: tuple[AlertEvent, ...]) -> tuple[AlertEvent, ...]:
    """The alerts that fired and whose resolved notification has not come (same fingerprint and start)."""
    resolved = {(a.fingerprint, a.starts_at) for a in events if a.state == "resolved"}
    return tuple(a for a in events if a.state != "resolved" and (a.fingerprint, a.starts_at) not in resolved)


def _peak(values) -> float | None:
    known = [float(v) for v in values if isinstance(v, (int, float)) and v == v]  # NaN != NaN
    return max(known) if known else None


def _step(index: pd.DatetimeIndex) -> dt.timedelta:
    """The series' sampling interval (the most common gap), one minute when it cannot tell."""
    gaps = index.to_series().diff().dropna()
    return gaps.mode().iloc[0].to_pytimedelta() if not gaps.empty else dt.timedelta(minutes=1)

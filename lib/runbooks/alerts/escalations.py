"""Escalation on time: `runbook serve` escalates an unresolved incident as it crosses a column of the matrix.

Every `interval` seconds the service looks at each incident whose log (alerts.jsonl) it keeps: when it started
(the earliest of triage's start and its first alert firing), whether any of its alerts still fires (no resolved
notification for that fingerprint and start), whether `runbook close` resolved it, and its severity (triage's;
without a triage run P2's row is used, and the message says so). When such an incident, unresolved and firing,
has crossed a column of the escalation matrix (30 min, 1 h, 2 h: escalation.COLUMNS) that it was not escalated
for, the service drafts the runbook's "Via Slack" escalation (incident link, current status, why escalating,
what help is needed, and whom the matrix engages, as Slack mentions when integrations.yaml maps them) and writes
it into the incident's evidence as an `escalate` record (runbooks.command_evidence); when Slack is configured and
the column engages someone, it posts it, and the record holds what was sent and Slack's answer. Once per column:
the records say which were done, across restarts; an incident first seen past several columns is escalated for
the latest one only (its message names everyone the matrix engages by then). Incidents that started over
STALE ago are left alone: a forgotten log must not page the CTO.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from .. import command_evidence, communication, escalation, storage, units
from ..errors import UsageError
from ..evidence import Action, Finding, RunError
from ..incident import Incident, alert_log, load, still_firing
from ..notify import Integrations, slack
from ..runfiles import ALERT_LOG, evidence_files

log = logging.getLogger(__name__)
INTERVAL_SECONDS = 30.0
STALE = dt.timedelta(hours=24)
ASSUMED_SEVERITY = "P2"  # without a triage run
FINDING = "escalation"
MENTIONS = "\x00mentions\x00"  # where the Slack mention markup goes, after the text is escaped


class Escalator:
    """A thread that calls `check` every `interval` seconds until stopped, while `lead()` says this replica is the
    one that escalates (replicas sharing a PostgreSQL queue elect one: runbooks.alerts.pgqueue)."""

    def __init__(
        self,
        output_dir: Path,
        integrations: Integrations,
        interval: float = INTERVAL_SECONDS,
        lead: Callable[[], bool] = lambda: True,
    ):
        self.output_dir, self.integrations, self.interval, self.lead = output_dir, integrations, interval, lead
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="escalations", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.lead():
                    self.check(dt.datetime.now(dt.timezone.utc).replace(microsecond=0))
            except Exception:  # one bad folder must not stop escalations for the others
                log.exception("escalation check failed")
            self._stop.wait(self.interval)

    def check(self, now: dt.datetime) -> list[Path]:
        """One pass over the incidents: the evidence files of the escalations written."""
        written = []
        storage.pull_all(self.output_dir)  # evidence in object storage: the incidents every replica received
        for folder in sorted(p.parent for p in self.output_dir.glob(f"*/{ALERT_LOG}")):
            path = escalate(self.output_dir, folder, self.integrations, now)
            if path:
                written.append(path)
        return written


def escalate(output_dir: Path, folder: Path, integrations: Integrations, now: dt.datetime) -> Path | None:
    """Escalate the incident in `folder` if it crossed a column it was not escalated for; its record's path."""
    try:
        alerts = alert_log(folder / ALERT_LOG)
        incident = load(output_dir, folder.name) if evidence_files(folder) else None
    except UsageError as e:  # unreadable evidence: escalating blind could page everyone again each time
        log.warning("incident %s: not escalated: %s", folder.name, e)
        return None
    firing = still_firing(alerts)
    if not firing or (incident is not None and incident.resolved_at is not None):
        return None
    triage_start = incident.incident_start if incident else None
    start = min([*([triage_start] if triage_start else []), *(a.starts_at for a in alerts if a.state != "resolved")])
    elapsed = now - start
    if elapsed < escalation.COLUMNS[1] or elapsed > STALE:
        return None
    column = max(i for i, begins in enumerate(escalation.COLUMNS) if elapsed >= begins)
    if column <= _escalated(incident):
        return None
    severity = incident.severity if incident and incident.severity else None
    level = severity or ASSUMED_SEVERITY
    engaged = escalation.engagement(level, start, now)
    new = engaged[(engaged["column"] == escalation.COLUMN_NAMES[column]) & engaged["role"].notna()]
    everyone = engaged[engaged["engage_now"] & engaged["role"].notna()]
    roles = list(new["role"])
    note = engaged.loc[engaged["column"] == escalation.COLUMN_NAMES[column], "note"].iloc[0]
    fields = {
        "incident": f"{folder.name} ({level}{'' if severity else ', assumed: no triage run'})",
        "link": integrations.incident_link(folder),
        "status": _status(firing, incident, elapsed),
        "why": (
            f"unresolved after {units.duration(elapsed)}: the escalation matrix ({level}, "
            f"{escalation.COLUMN_NAMES[column]}) adds {', '.join(roles) if roles else f'nobody ({note})'}"
        ),
        "help": _help(incident),
    }
    text = communication.render("slack-escalation", mentions=_mentions(roles), **fields)
    data = {
        "column": escalation.COLUMN_NAMES[column],
        "column_index": column,
        "severity": level,
        "severity_assumed": severity is None,
        "started": start,
        "elapsed_seconds": elapsed.total_seconds(),
        "engage": roles,
        "engaged_by_now": list(everyone["role"]),
        "contacts": {r.role: r.contact for r in new.itertuples()},
        "still_firing": sorted({a.alertname for a in firing}),
        "text": text,
    }
    summary = f"{level}, {units.duration(elapsed)} unresolved ({escalation.COLUMN_NAMES[column]}): " + (
        f"engage {', '.join(roles)}" if roles else f"nobody to add ({note})"
    )
    findings = [Finding(FINDING, summary, "warning", data)]
    actions = [Action("escalate", "dry-run", "#incidents (Via Slack)", "drafted into the incident's evidence")]
    error = None
    channel, why = integrations.channel("slack")
    if channel is not None and roles:
        for_slack = communication.render("slack-escalation", mentions=MENTIONS, **fields)
        markup = {MENTIONS: _slack_mentions(roles, integrations)}
        delivery = slack.post(channel, "slack-escalation", for_slack, integrations.policy, markup)
        findings.append(delivery.finding())
        actions.append(delivery.action())
        if not delivery.sent:
            error = RunError(None, "PostFailed", delivery.line())
        log.info("incident %s: escalation %s: %s", folder.name, escalation.COLUMN_NAMES[column], delivery.line())
    else:
        reason = why or "nobody to engage at this step"
        log.info(
            "incident %s: escalation %s drafted, not posted: %s", folder.name, escalation.COLUMN_NAMES[column], reason
        )
    return command_evidence.write(
        output_dir,
        folder.name,
        "escalate",
        {"column": escalation.COLUMN_NAMES[column], "severity": level},
        findings,
        actions,
        now,
        error,
        integrations.secrets(),
    )


def _escalated(incident: Incident | None) -> int:
    """The latest column the incident was escalated for (0: none)."""
    if incident is None:
        return 0
    done = [
        f["data"].get("column_index", 0)
        for run in incident.runs
        if run.record.runbook == "escalate"
        for f in run.record.findings
        if f["id"] == FINDING and isinstance(f["data"], dict)
    ]
    return max(done, default=0)


def _mentions(roles: list[str]) -> str:
    """Whom to @mention, as the runbook's Escalation Contacts name them (else the role)."""
    return " ".join(_contact(role) for role in roles)


def _slack_mentions(roles: list[str], integrations: Integrations) -> str:
    """The mentions as sent to Slack: the configured mention markup where there is one, else the contact as text."""
    channel = integrations.channels.get("slack")
    configured = channel.settings.get("mentions", {}) if channel else {}
    return " ".join(configured.get(role) or slack.escape(_contact(role)) for role in roles)


def _contact(role: str) -> str:
    return escalation.CONTACTS.get(role, (None, None))[0] or role


def _status(firing, incident: Incident | None, elapsed: dt.timedelta) -> str:
    alerts = ", ".join(sorted({f"{a.alertname} (since {units.when(a.starts_at)})" for a in firing}))
    last = ""
    if incident and incident.runbook_runs:
        run = incident.runbook_runs[-1].record
        last = f"; last runbook: {run.runbook} {run.status} at {units.when(run.finished_at)}"
    return f"unresolved for {units.duration(elapsed)}; still firing: {alerts}{last}"


def _help(incident: Incident | None) -> str | None:
    """What help is needed, as far as the evidence says: the suspected cause to act on."""
    if incident is None:
        return None
    causes = [
        f"{f['summary']} ({run.record.runbook})"
        for run, f in incident.findings(("critical", "warning"))
        if f["id"] in ("suspected-cause", "likely-cause")
    ]
    return f"confirm and fix the suspected cause: {causes[-1]}" if causes else None

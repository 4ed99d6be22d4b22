"""The weekly on-call handoff: active incidents, known issues, scheduled maintenance, environment health.

Runbook section: On-Call Responsibilities → On-Call Rotation ("Handoff: Monday 9:00 AM ET. Handoff meeting to
review: Active incidents, Known issues, Scheduled maintenance, Environment health").

- Incidents of the last `days`: every incident folder of the output folder whose evidence started within them
  (or that is still open), read as runbooks.incident reads it: severity (triage's), start, duration, time to
  acknowledge (the first acknowledge sent to PagerDuty, or the first run started by hand), time to resolve
  (`runbook close`'s resolution), whether the post-incident review was written (`review.md`). Folders holding
  only oncall-handoff runs are no incidents.
- Open incidents: those not closed with `runbook close`, whatever their age.
- Known issues and scheduled maintenance: what the outgoing on-call writes into the parameters, recorded.
- Environment health, live: pods not Running/Ready, certificates expiring within `cert_warn_days` (cert-manager
  Certificates and the TLS `endpoints`), the database's connection-pool usage, alerts firing now in Alertmanager.
  A target that does not answer is a row saying so, not a failed handoff.
Nothing is changed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import alertmanager, catalog, display, kube, postgres, tls, units
from ..errors import AlertmanagerUnreachable, ClusterUnreachable, DatabaseUnreachable, UsageError
from ..evidence import Finding
from ..incident import LEVELS, Incident, load
from ..kube import certmanager, pods
from ..kube.cluster import Cluster
from ..runfiles import evidence_files

RUNBOOK = "oncall-handoff"
INCIDENT_COLUMNS = [
    "incident",
    "severity",
    "started",
    "state",
    "duration",
    "time_to_acknowledge",
    "time_to_resolve",
    "review",
    "runs",
]
HEALTH_COLUMNS = ["check", "status", "detail"]  # status: ok | attention | unreachable | not checked


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def check_parameters(days: int, cert_warn_days: int) -> None:
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if cert_warn_days < 0:
        raise ValueError(f"cert_warn_days must be 0 or more, got {cert_warn_days}")


def handed_over(known_issues: list, maintenance: list) -> display.Lines:
    """What the outgoing on-call hands over, a line each: known issues, then scheduled maintenance."""
    lines = [*(f"known issue: {item}" for item in known_issues), *(f"maintenance: {item}" for item in maintenance)]
    return display.Lines(lines, "Handed over" if lines else "Known issues and maintenance handed over")


# --- incidents


@dataclass(frozen=True)
class Incidents:
    table: pd.DataFrame  # INCIDENT_COLUMNS, newest first: the last `days`, and every open one
    unreadable: list[str]  # folders whose evidence could not be read (`runbook verify` says why)
    days: int
    at: dt.datetime

    @property
    def open(self) -> pd.DataFrame:
        opened = self.table[self.table["state"] == "open"].reset_index(drop=True)
        return display.table(opened, empty="No incident is open.")

    def per_day(self) -> pd.DataFrame:
        """Incidents started per day (reading zone) of the last `days`, a column per severity (and `unclassified`)."""
        days = pd.date_range(end=units.local(self.at).date(), periods=self.days, freq="D").date
        started = self.table.assign(day=[units.local(t).date() for t in self.table["started"]])
        counts = started.assign(severity=started["severity"].fillna("unclassified")).pivot_table(
            index="day", columns="severity", values="incident", aggfunc="count", fill_value=0
        )
        columns = [c for c in (*LEVELS, "unclassified") if c in counts.columns]
        return counts.reindex(index=days, columns=columns, fill_value=0)


def incidents(output_dir: str, days: int, at: dt.datetime) -> Incidents:
    """Every incident folder under `output_dir` (empty: the project's output folder) started within the last `days`
    or still open."""
    root = Path(output_dir) if output_dir else catalog.OUTPUT
    since = at - dt.timedelta(days=days)
    rows, unreadable = [], []
    for folder in (
        sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
    ):
        if not evidence_files(folder):
            continue
        try:
            incident = load(root, folder.name)
        except UsageError:
            unreadable.append(folder.name)
            continue
        if all(run.record.runbook == RUNBOOK for run in incident.runs):
            continue
        closed = incident.resolved_at is not None
        if incident.start < since and closed:
            continue
        rows.append(_row(incident, folder, at))
    table = pd.DataFrame(rows, columns=INCIDENT_COLUMNS)
    table = display.table(
        table.sort_values("started", ascending=False, ignore_index=True), empty="No incident in the period."
    )
    return Incidents(table, unreadable, days, at)


def _row(incident: Incident, folder: Path, at: dt.datetime) -> dict:
    acknowledged, resolved = incident.acknowledged_at, incident.resolved_at
    return {
        "incident": incident.id,
        "severity": incident.severity,
        "started": incident.start,
        "state": "closed" if resolved else "open",
        "duration": units.duration((resolved or at) - incident.start) + ("" if resolved else " so far"),
        "time_to_acknowledge": units.duration(acknowledged - incident.start) if acknowledged else None,
        "time_to_resolve": units.duration(resolved - incident.start) if resolved else None,
        "review": (folder / "review.md").is_file(),
        "runs": len(incident.runbook_runs),
    }


# --- environment health


@dataclass(frozen=True)
class Health:
    summary: pd.DataFrame  # HEALTH_COLUMNS, one row per check
    pods: pd.DataFrame  # kube.pods.NOT_RUNNING_COLUMNS
    certificates: pd.DataFrame  # name, source, not_after, days_left, status: those expiring within cert_warn_days
    pool: pd.DataFrame  # postgres PoolUsage.frame(), or empty
    alerts: pd.DataFrame  # alertmanager.COLUMNS, or empty


def connect_cluster(kubeconfig: str, context: str, namespace: str) -> Cluster | str:
    """The cluster, or why it cannot be reached (the handoff goes on without it)."""
    try:
        return kube.connect(kubeconfig, context, namespace)
    except ClusterUnreachable as e:
        return str(e)


def environment_health(
    cluster: Cluster | str,
    dsn: str,
    alertmanager_url: str,
    endpoints: list,
    ca_file: str,
    cert_warn_days: int,
    at: dt.datetime,
) -> Health:
    """The four live checks; a target that does not answer is a row that says so."""
    summary = []
    not_ready, certificates = pd.DataFrame(columns=pods.NOT_RUNNING_COLUMNS), _certificates_frame([])
    if isinstance(cluster, str):
        summary.append(("pods not ready", "unreachable", cluster))
        summary.append(("certificates (cert-manager)", "unreachable", cluster))
    else:
        not_ready = pods.not_running(pods.containers(cluster))
        names = sorted(set(not_ready["pod"]))
        summary.append(
            (
                f"pods not ready in {cluster.namespace}",
                "attention" if names else "ok",
                ", ".join(names) or "every pod Running and Ready",
            )
        )
        listed = certmanager.list_certificates(cluster, at)
        rows = [
            {
                "name": f"certificate/{r.name}",
                "source": "cert-manager",
                "not_after": r.not_after,
                "days_left": r.days_left,
                "status": "expired" if r.days_left < 0 else "expiring",
            }
            for r in listed.frame.itertuples()
            if pd.notna(r.days_left) and r.days_left <= cert_warn_days
        ]
        certificates = _certificates_frame(rows)
        summary.append(
            (
                "certificates (cert-manager)",
                "not checked" if listed.note else ("attention" if rows else "ok"),
                listed.note or _expiring(rows, cert_warn_days),
            )
        )
    if endpoints:
        probed = tls.inspect(endpoints, cert_warn_days, timeout_seconds=5, ca_file=ca_file, now=at)
        rows = [
            {
                "name": r.endpoint,
                "source": "tls",
                "not_after": r.not_after,
                "days_left": r.days_left,
                "status": r.status,
            }
            for r in probed.itertuples()
            if r.status != "ok"
        ]
        certificates = pd.concat([certificates, _certificates_frame(rows)], ignore_index=True)
        summary.append(("certificates (endpoints)", "attention" if rows else "ok", _expiring(rows, cert_warn_days)))
    else:
        summary.append(("certificates (endpoints)", "not checked", "no endpoints given"))
    pool = pd.DataFrame()
    try:
        with postgres.connect(dsn, RUNBOOK) as conn:
            usage = postgres.connections.pool_usage(conn)
        pool = usage.frame()
        summary.append(
            (
                "database connection pool",
                "ok" if usage.status == "ok" else "attention",
                f"{usage.client_connections} of {usage.ordinary_limit} ordinary slots "
                f"({units.percent(usage.utilisation, 0)}): "
                f"{usage.status}",
            )
        )
    except DatabaseUnreachable as e:
        summary.append(("database connection pool", "unreachable", str(e)))
    alerts = pd.DataFrame(columns=alertmanager.COLUMNS)
    if alertmanager_url:
        try:
            alerts = alertmanager.firing(alertmanager_url)
            firing = ", ".join(f"{r.alertname} ({r.severity or 'no severity'})" for r in alerts.itertuples())
            summary.append(("alerts firing (Alertmanager)", "attention" if firing else "ok", firing or "none firing"))
        except AlertmanagerUnreachable as e:
            summary.append(("alerts firing (Alertmanager)", "unreachable", str(e)))
    else:
        summary.append(("alerts firing (Alertmanager)", "not checked", "no alertmanager_url given"))
    return Health(pd.DataFrame(summary, columns=HEALTH_COLUMNS), not_ready, certificates, pool, alerts)


def _certificates_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["name", "source", "not_after", "days_left", "status"])


def _expiring(rows: list[dict], warn_days: int) -> str:
    if not rows:
        return f"none expiring within {warn_days} days"
    return ", ".join(f"{r['name']} ({r['status']}{_days_left(r['days_left'])})" for r in rows)


# --- findings


def assess(listed: Incidents, health: Health, known_issues: list, maintenance: list) -> list[Finding]:
    """incidents, open-incidents, known-issues, environment-health."""
    table = listed.table
    by_severity = table["severity"].fillna("unclassified").value_counts().to_dict()
    recent = table[table["started"] >= listed.at - dt.timedelta(days=listed.days)]
    unreviewed = list(table[(table["state"] == "closed") & ~table["review"]]["incident"])
    open_ = listed.open
    open_names = [f"{r.incident} ({r.severity or 'unclassified'})" for r in open_.itertuples()]
    attention = health.summary[health.summary["status"].isin(["attention", "unreachable"])]
    return [
        Finding(
            "incidents",
            f"{units.count(len(recent), 'incident')} in the last {units.count(listed.days, 'day')}"
            + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(by_severity.items()))})" if by_severity else "")
            + (f"; closed without a review: {', '.join(unreviewed)}" if unreviewed else ""),
            "warning" if unreviewed else "info",
            {
                "days": listed.days,
                "incidents": table.to_dict(orient="records"),
                "by_severity": by_severity,
                "without_review": unreviewed,
                "unreadable": listed.unreadable,
            },
        ),
        Finding(
            "open-incidents",
            f"{len(open_)} incidents still open" + (f": {', '.join(open_names)}" if open_names else ""),
            "warning" if len(open_) else "info",
            {"open": list(open_["incident"])},
        ),
        Finding(
            "known-issues",
            f"{len(known_issues)} known issues, {len(maintenance)} scheduled maintenance windows handed over",
            "info",
            {"known_issues": known_issues, "maintenance": maintenance},
        ),
        Finding(
            "environment-health",
            "; ".join(f"{r.check}: {r.status}" for r in health.summary.itertuples()),
            "warning" if not attention.empty else "info",
            {
                "checks": health.summary.to_dict(orient="records"),
                "alerts_firing": health.alerts.drop(columns=["labels"]).to_dict(orient="records"),
                "certificates": health.certificates.to_dict(orient="records"),
            },
        ),
    ]


def _days_left(days) -> str:
    """`, 12 days left`, `, expired 2 days ago`; nothing when unknown (an endpoint that did not answer)."""
    if units.missing(days):
        return ""
    days = int(days)
    return f", {units.count(days, 'day')} left" if days >= 0 else f", {units.count(-days, 'day')} ago"

"""Phase 1 of the incident-response runbook, detection and triage: what is down, how bad, who to call, what to say.

Runbook section: Incident Response Process → Phase 1: Detection & Triage (0-15 minutes), with "Incident
Severity Levels" (runbooks.severity), "Escalation Procedures" (runbooks.escalation) and the Slack and
status-page templates for declaring the incident (runbooks.communication). The runbook's first commands:

    kubectl get pods -n autolytiq-prod                                   -> pod_status (pods not Running/Ready,
                                                                            deployments without a ready pod)
    kubectl logs -l app=api-gateway --tail=100 | grep -i error           -> gateway_errors (redacted lines; the
                                                                            lines carrying an HTTP status counted)
    Open Grafana / check metrics                                         -> read_metrics (Prometheus, last hour and
                                                                            the same hour `baseline_offset` earlier)

What the severity is computed from (severity.classify, whose docstring reads every boundary):
- error rate: the highest value of the error-rate query from the incident's start to now (within the last
  hour): the incident's worst, not its latest, as "when in doubt, escalate" asks. Without metrics (no
  Prometheus URL, Prometheus unreachable, or no data), the share of 5xx among the gateway log lines read
  that carry a status: a sample whose size the finding gives.
- latency ratio: the highest value of the latency query since the start, divided by normal latency, the
  median of the same query over the baseline window (default: the same hour one week earlier). Without a
  baseline it is not measured.
- services down: workloads (Deployments, StatefulSets, DaemonSets) wanting pods with no pod Running and Ready;
  critical ones are those named in `critical_services`. A database StatefulSet down is a service down.
A query giving several series (e.g. one per service) counts by its worst series at each time.

The incident's start: the `incident_start` parameter when given (ISO 8601; without a zone: UTC), else the
first minute of the last hour at which the error rate reached 1 % or latency 1.5x normal (the lowest
thresholds of the severity table; the query's own rate window, e.g. [5m], makes this a little late), else
the first 5xx in the gateway log lines read, else now. When the hour's first minute is already over a threshold
the incident began earlier: the error rate (and latency) are read back LOOK_BACK further, every 5 minutes, to
the last time they were below; still over at the start of that, the start is "at least" that long ago. The first
5xx of a gateway tail that did not reach back an hour is likewise "at least".

Nothing is changed and nothing is posted: the drafts are for a human to post.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .. import communication, escalation, escape, gateway_log, prometheus, severity, units
from ..errors import PrometheusUnreachable
from ..evidence import Action, Finding
from ..gateway_log import parse_line
from ..kube import logs, pods, workloads
from ..kube.cluster import Cluster
from ..redact import redact_line

WINDOW = dt.timedelta(hours=1)
STEP = dt.timedelta(minutes=1)
LOOK_BACK = dt.timedelta(hours=24)  # how far back the start is sought when the hour began in breach
LOOK_BACK_STEP = dt.timedelta(minutes=5)
ERROR = re.compile(r"error", re.IGNORECASE)  # the incident-response runbook's `grep -i error`
SERIES_COLUMNS = ["error_rate", "baseline_error_rate", "latency_seconds", "baseline_latency_seconds"]
FINDING_SEVERITY = {"P1": "critical", "P2": "critical", "P3": "warning", "P4": "info"}


def now() -> dt.datetime:
    """Now in UTC, to the second: the time every step of one triage counts from."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


# --- step 1: pods and services


@dataclass(frozen=True)
class PodStatus:
    down: pd.DataFrame  # containers of pods not Running or not Ready (pods that Succeeded are not a fault)
    restarting: pd.DataFrame  # containers that restarted within the window (kubectl's RESTARTS, recent ones)
    services: pd.DataFrame  # SERVICE_COLUMNS: workload, kind, desired, pods, ready_pods, down, critical


RESTART_COLUMNS = [
    "pod",
    "container",
    "workload_kind",
    "workload",
    "restarts",
    "last_termination",
    "last_termination_at",
]
SERVICE_COLUMNS = ["workload", "kind", "desired", "pods", "ready_pods", "down", "critical"]


def pod_status(cluster: Cluster, critical_services: list[str], at: dt.datetime) -> PodStatus:
    """The runbook's `kubectl get pods`: what is not Running, what restarted in the hour before `at`, and which
    Deployments, StatefulSets and DaemonSets have no ready pod at all."""
    containers = pods.containers(cluster)
    ended = pd.to_datetime(containers["last_termination_at"], utc=True)
    restarting = containers[
        (containers["restarts"] > 0) & (ended >= at - WINDOW) & (containers["phase"] != "Succeeded")
    ]
    pod_ready = (
        containers.assign(ok=(containers["phase"] == "Running") & containers["ready"])
        .groupby(["pod", "workload_kind", "workload", "phase"], dropna=False)["ok"]
        .all()
        .reset_index()
    )
    pod_ready = pod_ready[~pod_ready["phase"].isin(["Succeeded", "Failed"])]  # ended pods are replaced, not down
    rows = []
    for kind, workload in workloads.list_all(cluster):
        name, desired = workload.metadata.name, workloads.desired(kind, workload)
        mine = pod_ready[(pod_ready["workload_kind"] == kind) & (pod_ready["workload"] == name)]
        ready = int(mine["ok"].sum())
        rows.append(
            {
                "workload": name,
                "kind": kind,
                "desired": desired,
                "pods": len(mine),
                "ready_pods": ready,
                "down": desired > 0 and ready == 0,
                "critical": name in critical_services,
            }
        )
    services = pd.DataFrame(rows, columns=SERVICE_COLUMNS)
    return PodStatus(pods.not_running(containers), restarting[RESTART_COLUMNS].reset_index(drop=True), services)


# --- step 2: the gateway's error lines


@dataclass(frozen=True)
class GatewayErrors:
    lines: pd.DataFrame  # pod, container, instance, time, line: the lines saying "error", redacted
    lines_read: int
    requests: int  # lines carrying an HTTP status
    five_xx: int  # of those, 5xx
    first_5xx: dt.datetime | None
    log_format: str = "auto"
    tail_cut: bool = False  # some container's tail held only its latest lines: the 5xx may have begun earlier

    @property
    def error_rate(self) -> float | None:
        return self.five_xx / self.requests if self.requests else None

    def _counted(self) -> str:
        return (
            f"{self.lines_read} lines read, {self.requests} with an HTTP status, {self.five_xx} of them 5xx; "
            f"{len(self.lines)} say error"
        )

    def _shown(self) -> str:
        return "\n".join(f"{row.pod}/{row.container}: {row.line}" for row in self.lines.itertuples())

    def _repr_markdown_(self) -> str:
        if self.lines.empty:
            return f"*{self._counted()}.*"
        return f"*{self._counted()}:*\n\n{escape.code_block(self._shown())}"

    def _repr_html_(self) -> str:
        if self.lines.empty:
            return f"<p><em>{self._counted()}.</em></p>"
        return f"<p><em>{self._counted()}:</em></p>\n{escape.html_block(self._shown())}"


def gateway_errors(
    cluster: Cluster, selector: str, tail_lines: int, log_format: str = "auto", gateway_namespace: str = ""
) -> GatewayErrors:
    """The runbook's `kubectl logs -l app=api-gateway --tail=100 | grep -i error`, for every container of every
    gateway pod in `gateway_namespace` (empty: the cluster's; and the previous instance of restarted ones); the
    statuses of all lines read are counted, in `log_format` (runbooks.gateway_log)."""
    rows, lines_read, requests, five_xx, first_5xx = [], 0, 0, 0, None
    per_container: dict[tuple[str, str, str], int] = {}
    gateway = cluster.in_namespace(gateway_namespace)
    for pod, container, instance, when, text in logs.every_line(gateway, selector, tail_lines=tail_lines):
        lines_read += 1
        per_container[(pod, container, instance)] = per_container.get((pod, container, instance), 0) + 1
        status = parse_line(text, log_format).status
        if status:
            requests += 1
            if status >= 500:
                five_xx += 1
                if when and (first_5xx is None or when < first_5xx):
                    first_5xx = when
        if ERROR.search(text):
            rows.append(
                {"pod": pod, "container": container, "instance": instance, "time": when, "line": redact_line(text)}
            )
    lines = pd.DataFrame(rows, columns=["pod", "container", "instance", "time", "line"])
    cut = any(n >= tail_lines for n in per_container.values())
    return GatewayErrors(lines, lines_read, requests, five_xx, first_5xx, log_format, cut)


# --- step 3: metrics


@dataclass(frozen=True)
class MetricSeries:
    series: pd.DataFrame  # index: time (UTC, every STEP over the window); SERIES_COLUMNS
    read_at: dt.datetime
    baseline_offset: str
    unavailable: str | None = None  # why no metrics were read; None when Prometheus answered
    earlier: pd.DataFrame | None = None  # error_rate, latency_seconds every LOOK_BACK_STEP over LOOK_BACK before
    # the window: read only when the window's first minute is already over a threshold

    @property
    def normal_latency(self) -> float | None:
        """Median latency over the baseline window; None without one (or when it is 0)."""
        baseline = self.series["baseline_latency_seconds"].dropna()
        median = float(baseline.median()) if not baseline.empty else None
        return median or None


def read_metrics(
    prometheus_url: str,
    error_rate_query: str,
    latency_query: str,
    baseline_offset: str,
    read_at: dt.datetime,
    auth: prometheus.Auth | None = None,
) -> MetricSeries:
    """Both queries over the hour up to `read_at`, and over the same hour `baseline_offset` earlier; over
    LOOK_BACK before the hour too when its first minute is already over a threshold (see the module docstring).

    No URL, or Prometheus not answering, gives MetricSeries with `unavailable` saying why; a query Prometheus
    refuses raises PrometheusQueryError, and a bad `baseline_offset` ValueError (both the caller's to fix).
    """
    offset = prometheus.duration(baseline_offset)
    start = read_at - WINDOW
    if not prometheus_url:
        return MetricSeries(_empty_series(), read_at, baseline_offset, "no prometheus_url given")
    queries = {"error_rate": error_rate_query, "latency_seconds": latency_query}
    try:
        prom = prometheus.connect(prometheus_url, auth)
        series = prometheus.against_baseline(prom, queries, start, read_at, STEP, offset)[SERIES_COLUMNS]
        measured = MetricSeries(series, read_at, baseline_offset)
        earlier = None
        if _began_in_breach(measured):
            earlier = _worst_per_time(
                {
                    name: prometheus.query_range(prom, query, start - LOOK_BACK, start, LOOK_BACK_STEP)
                    for name, query in queries.items()
                },
                list(queries),
            )
    except PrometheusUnreachable as e:
        return MetricSeries(_empty_series(), read_at, baseline_offset, str(e))
    return MetricSeries(series, read_at, baseline_offset, earlier=earlier)


def _worst_per_time(frames: dict[str, pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    series = pd.DataFrame(
        {name: frame.groupby("time")["value"].max() for name, frame in frames.items()}, columns=columns
    )
    series.index.name = "time"
    return series.astype(float)


def _breaches(series: pd.DataFrame, normal_latency: float | None) -> pd.Series:
    """Whether each row is over the lowest threshold of the severity table (error rate, or latency ratio)."""
    over = series["error_rate"].round(9) >= severity.lowest_threshold("error_rate")
    if normal_latency:
        ratio = series["latency_seconds"] / normal_latency
        over = over | (ratio.round(9) >= severity.lowest_threshold("latency_ratio"))
    return over.fillna(False).astype(bool)


def _began_in_breach(metrics: MetricSeries) -> bool:
    """Whether the window's first measured minute is already over a threshold: the incident began earlier."""
    measured = metrics.series.dropna(how="all", subset=["error_rate", "latency_seconds"])
    return not measured.empty and bool(_breaches(measured, metrics.normal_latency).iloc[0])


def _empty_series() -> pd.DataFrame:
    return pd.DataFrame(columns=SERIES_COLUMNS, index=pd.DatetimeIndex([], tz="UTC", name="time"), dtype=float)


# --- step 4: start, measurements, severity


def check_parameters(baseline_offset: str, incident_start: str, tail_lines: int, log_format: str = "auto") -> None:
    """Fail at once, in one line, on a parameter that cannot work (before anything is read)."""
    prometheus.duration(baseline_offset)
    gateway_log.check_format(log_format)
    if incident_start:
        parse_start(incident_start)
    if tail_lines < 1:
        raise ValueError(f"tail_lines must be at least 1, got {tail_lines}")


def parse_start(given: str) -> dt.datetime:
    """An ISO 8601 time in UTC; one without a zone is read as UTC."""
    try:
        at = dt.datetime.fromisoformat(given.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"incident_start must be an ISO 8601 time such as 2024-11-26T14:05:00Z, got {given!r}"
        ) from None
    return (at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc)


@dataclass(frozen=True)
class Start:
    at: dt.datetime
    source: str  # how it was found
    at_least: bool = False  # the incident began at `at` or earlier: what was read did not reach its start


def incident_start(given: str, metrics: MetricSeries, gateway_log: GatewayErrors) -> Start:
    """When the incident began: `given`, else the first threshold crossing in the metrics (looked for further
    back when the hour began in breach), else the first 5xx in the gateway logs, else the time the metrics were
    read (see the module docstring)."""
    if given:
        return Start(parse_start(given), "incident_start parameter")
    if metrics.earlier is not None:
        return _earlier_start(metrics)
    series = metrics.series
    error_at = _first_at_least(series["error_rate"], severity.lowest_threshold("error_rate"))
    latency_at = None
    if metrics.normal_latency:
        ratio = series["latency_seconds"] / metrics.normal_latency
        latency_at = _first_at_least(ratio, severity.lowest_threshold("latency_ratio"))
    crossings = [
        (at, what)
        for at, what in (
            (error_at, f"error rate first >= {units.percent(severity.lowest_threshold('error_rate'), 0)}"),
            (latency_at, f"latency first >= {severity.lowest_threshold('latency_ratio'):g}x normal"),
        )
        if at is not None
    ]
    if crossings:
        at, what = min(crossings)
        return Start(at, f"metrics: {what} in the last hour")
    if gateway_log.first_5xx is not None:
        if gateway_log.tail_cut:
            return Start(
                gateway_log.first_5xx,
                "first 5xx in the gateway log lines read; the tail held only the latest lines: then or earlier",
                at_least=True,
            )
        return Start(gateway_log.first_5xx, "first 5xx in the gateway log lines read")
    return Start(metrics.read_at, "now: no threshold crossed in the last hour, no 5xx in the gateway logs")


def _earlier_start(metrics: MetricSeries) -> Start:
    """The start of the breach the window opened in: the step after the last one below every threshold."""
    assert metrics.earlier is not None
    earlier = metrics.earlier.dropna(how="all")
    over = _breaches(earlier, metrics.normal_latency)
    below = over[~over]
    hours = LOOK_BACK.total_seconds() / 3600
    if below.empty:
        first = earlier.index[0].to_pydatetime() if not earlier.empty else metrics.read_at - WINDOW
        return Start(first, f"metrics: over a threshold for the whole {hours:g} h read back: at least since then", True)
    after = over[over.index > below.index[-1]]
    at = after.index[0].to_pydatetime() if not after.empty else metrics.read_at - WINDOW
    return Start(at, f"metrics: over a threshold since then (read back up to {hours:g} h before the last hour)")


@dataclass(frozen=True)
class Measurements:
    error_rate: float | None
    error_rate_source: str | None  # "prometheus" | "gateway logs (N lines with a status)" | None
    worst_error_at: dt.datetime | None
    latency_seconds: float | None  # the worst since the start
    normal_latency_seconds: float | None
    latency_ratio: float | None
    worst_latency_at: dt.datetime | None
    services_down: tuple[str, ...]
    critical_services_down: tuple[str, ...]

    def classify(self) -> severity.Severity:
        return severity.classify(self.error_rate, self.latency_ratio, self.services_down, self.critical_services_down)

    def table(self) -> pd.DataFrame:
        """What the severity is computed from, one row per measure."""
        rows = [
            ("error rate", _percent(self.error_rate), self.error_rate_source, self.worst_error_at),
            (
                "latency (worst)",
                _seconds(self.latency_seconds),
                "prometheus" if self.latency_seconds is not None else None,
                self.worst_latency_at,
            ),
            (
                "normal latency",
                _seconds(self.normal_latency_seconds),
                "prometheus (baseline median)" if self.normal_latency_seconds else None,
                None,
            ),
            ("latency ratio", f"{self.latency_ratio:.2f}x" if self.latency_ratio is not None else None, None, None),
            ("services down", ", ".join(self.services_down) or "none", "kubernetes", None),
            ("critical services down", ", ".join(self.critical_services_down) or "none", "kubernetes", None),
        ]
        return pd.DataFrame(rows, columns=["measure", "value", "source", "at"])


def measure(metrics: MetricSeries, gateway_log: GatewayErrors, pods: PodStatus, start: Start) -> Measurements:
    """The worst error rate and latency from the start on (the whole window if it began earlier), and the
    services down; the gateway logs' error rate stands in when Prometheus gave no error rate."""
    since = metrics.series[metrics.series.index >= min(start.at, metrics.read_at - STEP)]
    error_rate, worst_error_at = _worst(since["error_rate"])
    source = "prometheus" if error_rate is not None else None
    if error_rate is None and gateway_log.error_rate is not None:
        error_rate, source = gateway_log.error_rate, f"gateway logs, {gateway_log.requests} lines with a status"
    latency, worst_latency_at = _worst(since["latency_seconds"])
    normal = metrics.normal_latency
    ratio = latency / normal if latency is not None and normal else None
    services = pods.services
    down = services[services["down"]]
    return Measurements(
        error_rate,
        source,
        worst_error_at,
        latency,
        normal,
        ratio,
        worst_latency_at,
        tuple(down["workload"]),
        tuple(down.loc[down["critical"], "workload"]),
    )


# --- findings


def assess(
    result: severity.Severity,
    measured: Measurements,
    start: Start,
    metrics: MetricSeries,
    gateway_log: GatewayErrors,
    pods: PodStatus,
    prometheus_url: str,
) -> list[Finding]:
    """severity (the contract `runbook comms`/`report` read), metrics-unavailable, pods-down or
    all-pods-running, pods-restarting, gateway-errors, and what the severity asks for: targets, communication,
    engage."""
    findings = [_severity_finding(result, measured, start, metrics)]
    if metrics.unavailable:
        findings.append(
            Finding(
                "metrics-unavailable",
                f"No metrics: {metrics.unavailable}. Error rate and latency from Prometheus not measured; "
                f"severity from what is measurable (gateway logs, pods)",
                "warning",
                {"prometheus_url": prometheus_url, "reason": metrics.unavailable},
            )
        )
    findings.append(_pods_finding(pods))
    if not pods.restarting.empty:
        findings.append(_restarts_finding(pods.restarting))
    findings.append(_gateway_finding(gateway_log))
    findings += escalation_findings(result.level, start.at, metrics.read_at)
    return findings


def escalation_findings(level: str, started: dt.datetime, at: dt.datetime) -> list[Finding]:
    """targets, communication and engage: the runbook's targets, cadence and escalation matrix at `at`."""
    targets = escalation.targets(level, started, at)
    cadence = escalation.cadence(level, started, at)
    people = escalation.engagement(level, started, at)
    due = {row.target: row.due for row in targets.itertuples()}
    overdue = [row.target for row in targets.itertuples() if row.overdue]
    now_engaged = people[people["engage_now"] & people["role"].notna()]
    later = people[~people["engage_now"] & people["role"].notna()]
    following = later.iloc[0] if not later.empty else None
    return [
        Finding(
            "targets",
            f"{level}: respond by {_utc(due['response'])}, resolve by {_utc(due['resolution'])}"
            + (f"; overdue: {', '.join(overdue)}" if overdue else ""),
            "warning" if overdue else "info",
            {
                "severity": level,
                "started": started,
                "response_due": due["response"],
                "resolution_due": due["resolution"],
                "overdue": overdue,
                "minutes_since_start": round((at - started).total_seconds() / 60, 1),
            },
        ),
        Finding(
            "communication",
            f"{level}: {cadence.communication}"
            + (f"; next update at {_utc(cadence.next_update)}" if cadence.next_update else ""),
            "info",
            {
                "severity": level,
                "cadence": cadence.communication,
                "update_every_minutes": cadence.update_every.total_seconds() / 60 if cadence.update_every else None,
                "next_update": cadence.next_update,
                "status_page": level != "P4",
            },
        ),
        Finding(
            "engage",
            f"{level}, {(at - started).total_seconds() / 60:.0f} min in: engage "
            f"{', '.join(now_engaged['role'])}"
            + (f"; next: {following['role']} at {_utc(following['from'])}" if following is not None else ""),
            "info",
            {
                "severity": level,
                "engage_now": list(now_engaged["role"]),
                "contacts": {r.role: r.contact for r in now_engaged.itertuples()},
                "next": ({"role": following["role"], "from": following["from"]} if following is not None else None),
            },
        ),
    ]


def _severity_finding(
    result: severity.Severity, measured: Measurements, start: Start, metrics: MetricSeries
) -> Finding:
    fired = "; ".join(
        f"{name.replace('_', ' ')} {_shown(name, value, measured)}" for name, value in result.measured.items()
    )
    unmeasured = f" Not measured: {', '.join(result.unmeasured)}." if result.unmeasured else ""
    return Finding(
        "severity",
        f"{result.level} by {result.rule}: measured {fired or 'nothing'}.{unmeasured} "
        f"Incident start {'at or before ' if start.at_least else ''}{_utc(start.at)} ({start.source})",
        FINDING_SEVERITY[result.level],
        {
            "severity": result.level,
            "rule": result.rule,
            "measured": result.measured,
            "unmeasured": list(result.unmeasured),
            "error_rate": measured.error_rate,
            "error_rate_source": measured.error_rate_source,
            "latency_ratio": measured.latency_ratio,
            "latency_seconds": measured.latency_seconds,
            "normal_latency_seconds": measured.normal_latency_seconds,
            "services_down": list(measured.services_down),
            "critical_services_down": list(measured.critical_services_down),
            "incident_start": start.at.isoformat(),
            "incident_start_source": start.source,
            "incident_start_at_least": start.at_least,
            "metrics": "unavailable" if metrics.unavailable else "prometheus",
            "baseline_offset": metrics.baseline_offset,
            "series": [{"time": at, **row} for at, row in metrics.series.iterrows()],  # for the review's Impact
        },
    )


def _pods_finding(pods: PodStatus) -> Finding:
    down = pods.down
    services = pods.services[pods.services["down"]]
    if down.empty and services.empty:
        return Finding(
            "all-pods-running",
            "Every pod of the namespace is Running and Ready",
            "info",
            {"pods": [], "services_down": []},
        )
    names = sorted(set(down["pod"]))
    reasons = {
        pod: sorted({str(r) for r in rows["reason"].dropna()} | {str(t) for t in rows["last_termination"].dropna()})
        for pod, rows in down.groupby("pod")
    }
    listed = ", ".join(f"{pod} ({', '.join(reasons[pod]) or 'not ready'})" for pod in names)
    return Finding(
        "pods-down",
        f"{len(names)} pods not Running/Ready: {listed or 'none'}"
        + (
            "; without a ready pod: "
            + ", ".join(f"{k.lower()}/{w}" for k, w in zip(services["kind"], services["workload"], strict=True))
            if not services.empty
            else ""
        ),
        "critical" if not services.empty else "warning",
        {
            "pods": names,
            "reasons": reasons,
            "deployments": sorted({d for d in down["deployment"].dropna()}),
            "workloads": sorted(
                {
                    f"{k.lower()}/{w}"
                    for k, w in zip(down["workload_kind"], down["workload"], strict=True)
                    if isinstance(k, str)
                }
            ),
            "services_down": list(services["workload"]),
            "services_down_kinds": dict(zip(services["workload"], services["kind"], strict=True)),
        },
    )


def _restarts_finding(restarting: pd.DataFrame) -> Finding:
    listed = ", ".join(
        f"{r.pod}/{r.container} ({units.count(r.restarts, 'restart')}, last {r.last_termination})"
        for r in restarting.itertuples()
    )
    return Finding(
        "pods-restarting",
        f"Containers restarted in the last hour: {listed}",
        "warning",
        {
            "containers": [
                {
                    "pod": r.pod,
                    "container": r.container,
                    "workload": f"{r.workload_kind.lower()}/{r.workload}" if isinstance(r.workload_kind, str) else None,
                    "restarts": r.restarts,
                    "last_termination": r.last_termination,
                    "last_termination_at": r.last_termination_at,
                }
                for r in restarting.itertuples()
            ]
        },
    )


def _gateway_finding(log: GatewayErrors) -> Finding:
    data: dict[str, Any] = {
        "lines_read": log.lines_read,
        "error_lines": len(log.lines),
        "requests": log.requests,
        "five_xx": log.five_xx,
        "error_rate": log.error_rate,
        "first_5xx": log.first_5xx,
        "pods": sorted(set(log.lines["pod"])),
        "examples": list(log.lines["line"].head(5)),
    }
    rate = (
        f" ({units.percent(log.error_rate, 0)} of {units.count(log.requests, 'line')} with a status)"
        if log.error_rate is not None
        else ""
    )
    data["log_format"] = log.log_format
    unparsed = (
        f"; none of the {log.lines_read} lines carries an HTTP status in log format {log.log_format!r}: the error "
        "rate cannot be read from them (set log_format)"
        if log.lines_read and not log.requests
        else ""
    )
    return Finding(
        "gateway-errors",
        f"{len(log.lines)} of {log.lines_read} gateway log lines say error; {log.five_xx} 5xx{rate}{unparsed}",
        "warning" if len(log.lines) or log.five_xx or unparsed else "info",
        data,
    )


# --- declaring: drafts, nothing posted


@dataclass(frozen=True)
class Drafts:
    slack_declared: str  # the incident-response runbook's "Slack Incident Channel Message (Initial)"
    status_investigating: (
        str | None
    )  # the incident-response runbook's "Status Page - Investigating"; None for P4 (internal only)

    @property
    def action(self) -> Action:
        return Action("declare", "dry-run", "#incidents / status page", "drafted (not posted)")

    def _repr_markdown_(self) -> str:
        page = (
            escape.code_block(self.status_investigating)
            if self.status_investigating
            else "*No status-page message: P4 is internal only.*"
        )
        return (
            f"### Slack #incidents — INCIDENT DECLARED (draft, not posted)\n\n{escape.code_block(self.slack_declared)}"
            f"\n\n### Status page — Investigating (draft, not posted)\n\n{page}\n"
        )

    def _repr_html_(self) -> str:
        page = (
            escape.html_block(self.status_investigating)
            if self.status_investigating
            else "<p><em>No status-page message: P4 is internal only.</em></p>"
        )
        return (
            "<h3>Slack #incidents — INCIDENT DECLARED (draft, not posted)</h3>\n"
            f"{escape.html_block(self.slack_declared)}\n"
            f"<h3>Status page — Investigating (draft, not posted)</h3>\n{page}\n"
        )


def drafts(findings: list[Finding], at: dt.datetime) -> Drafts:
    """The declaration's texts filled from the findings; what they do not say stays a placeholder."""
    data = {f.id: f.data for f in findings}
    sev, comms = data["severity"], data["communication"]
    started = dt.datetime.fromisoformat(sev["incident_start"])
    next_update = (
        _utc(comms["next_update"])
        if comms["next_update"]
        else "at major updates and resolution"
        if sev["severity"] == "P3"
        else None
    )
    slack = communication.render(
        "slack-declared",
        severity=sev["severity"],
        summary=_summary(sev, data),
        started=f"{_utc(started)} ({sev['incident_start_source']})",
        next_update=next_update,
    )
    page = None
    if comms["status_page"]:
        page = communication.render("status-investigating", symptom=_symptom(sev), posted=units.when(at))
    return Drafts(slack, page)


def _summary(sev: dict, data: dict) -> str:
    facts = []
    if sev["error_rate"] is not None:
        facts.append(f"error rate {units.percent(sev['error_rate'], 1)} ({sev['error_rate_source']})")
    if sev["latency_ratio"] is not None:
        facts.append(f"latency {sev['latency_ratio']:.1f}x normal")
    if sev["services_down"]:
        facts.append(f"no ready pod: {', '.join(sev['services_down'])}")
    if "pods-down" in data:
        facts.append(f"{len(data['pods-down']['pods'])} pods not Running/Ready")
    return "; ".join(facts)


def _symptom(sev: dict) -> str | None:
    """What users see, when the rule that fired says it: errors, or slowness; else the placeholder stays."""
    measure = next(iter(sev["measured"]), None) if sev["severity"] != "P4" else None
    return {"error_rate": "errors", "latency_ratio": "slower responses than usual"}.get(measure or "")


# --- helpers


def _first_at_least(values: pd.Series, threshold: float) -> dt.datetime | None:
    hits = values[values.round(9) >= threshold]
    return hits.index[0].to_pydatetime() if not hits.empty else None


def _worst(values: pd.Series) -> tuple[float | None, dt.datetime | None]:
    values = values.dropna()
    if values.empty:
        return None, None
    return float(values.max()), values.idxmax().to_pydatetime()


def _shown(name: str, value, measured: Measurements) -> str:
    if name == "error_rate":
        return f"{units.percent(value)} ({measured.error_rate_source})"
    if name == "latency_ratio":
        return f"{value:.2f}x ({measured.latency_seconds:.3f} s against normal {measured.normal_latency_seconds:.3f} s)"
    if isinstance(value, list):
        return ", ".join(value) or "none"
    return str(value)


def _percent(value: float | None) -> str | None:
    return units.percent(value, 2) if value is not None else None


def _seconds(value: float | None) -> str | None:
    return f"{value:.3f} s" if value is not None else None


def _utc(when: dt.datetime) -> str:
    return units.when(when)

"""Phase 2 of the incident-response runbook, investigation: one service's picture, and which cause stands out.

Runbook section: Incident Response Process → Phase 2: Investigation (15-60 minutes). Its four "Gather
information" commands, made into one picture:

    kubectl rollout history deployment/<service>        -> rollout (revisions, and what the live one changed:
                                                           image, env names, resources, ConfigMap/Secret refs)
    kubectl describe pods -l app=<service>              -> pods (containers, states, restarts) and events
    kubectl logs -l app=<service> --since=30m           -> error_signatures (error lines grouped by signature,
                                                           counted per minute, credentials redacted)
    Prometheus (port-forward svc/prometheus)            -> read_metrics (error rate, latency and request rate
                                                           of the service against `baseline_offset` earlier)

and its "Identify Root Cause", four checks in this order, the most direct evidence first:

1. resource-exhaustion: a container of the service last terminated OOMKilled, using at least 90 % of its
   memory limit, or of its CPU limit (CPU throttling), or log lines of an exhausted connection pool.
2. dependency-failing: a dependency (an `upstream=`, a URL's host or a `host:port` in the lines) named in at
   least MIN_DEPENDENCY_LINES error lines of timeouts, refused connections or 502/503/504, or a `dependencies`
   health URL failing its probe.
3. recent-change: the live revision rolled out within `since_minutes` (a deploy, or a config change that
   rolled out) and before the first error line of the window: it coincides.
4. traffic-anomaly: the request rate of the last 5 minutes at least twice, or at most half, the baseline's.

`suspected-cause` names the first check that holds, with its evidence, and the others that hold too; when none
holds it says none stands out. Metrics queries take `{service}` where the service's name goes (checked to be a
DNS label first). Nothing is changed: the notebook takes no `apply`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pandas as pd
from kubernetes.client.exceptions import ApiException

from .. import health, prometheus, units
from ..errors import PrometheusUnreachable
from ..evidence import Finding
from ..kube import events, logs, pods, revisions, rollouts, usage
from ..kube.cluster import REQUEST_TIMEOUT, Cluster
from ..redact import redact_line

SERVICE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # a DNS label, as deployment names are
STEP = dt.timedelta(minutes=1)
MIN_WINDOW = dt.timedelta(minutes=30)  # the metrics window, at least (the runbook's --since=30m)
CHECKS = ("resource-exhaustion", "dependency-failing", "recent-change", "traffic-anomaly")
NEAR_LIMIT_PCT = usage.NEAR_LIMIT_PCT  # memory or CPU used, % of the limit
MIN_DEPENDENCY_LINES = 3
SURGE, DROP = 2.0, 0.5  # request rate against the baseline
RECENT_READINGS = 5  # the last minutes of the request rate compared with the baseline's
TOP_SIGNATURES = 6

ERROR_LINE = re.compile(
    r"\b(error|exception|fatal|panic|fail(?:ed|ure)?|time-?outs?|timed out|refused|oom|out of memory|unavailable)\b"
    r"|(?<![\w.])status\s*[=:]\s*\"?5\d\d\b|\"level\"\s*:\s*\"(?:error|fatal)\"",
    re.IGNORECASE,
)
DEPENDENCY_FAILURE = re.compile(
    r"time-?outs?\b|timed out|deadline exceeded|connection refused|ECONNREFUSED|connect error|no healthy upstream"
    r"|connection reset|(?<![\w.])status\s*[=:]\s*\"?50[234]\b|service unavailable|bad gateway",
    re.IGNORECASE,
)
POOL_EXHAUSTED = re.compile(
    r"too many (connections|clients)|remaining connection slots|pool (is )?exhausted|timeout acquiring"
    r"|could not obtain (a )?connection|connection pool (is )?(full|exhausted)",
    re.IGNORECASE,
)
HOSTS = (
    re.compile(r"(?<![\w.])upstream\s*[=:]\s*\"?([A-Za-z0-9][\w.-]*)"),
    re.compile(r"https?://([A-Za-z0-9][\w.-]*)"),
    re.compile(r"\b([a-z][\w-]*(?:\.[\w-]+)+):\d{2,5}\b"),
)
_VARIABLE = (
    (re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z?\s*"), ""),  # a leading timestamp
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE), "<uuid>"),
    (re.compile(r"\b[0-9a-f]{12,}\b", re.IGNORECASE), "<hex>"),
    (re.compile(r"\d+(\.\d+)?"), "N"),
    (re.compile(r"\s+"), " "),
)


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def check_parameters(service: str, since_minutes: float, baseline_offset: str) -> None:
    """Fail at once, in one line, on a parameter that cannot work (before anything is read)."""
    if not SERVICE_NAME.fullmatch(service or ""):
        raise ValueError(f"service must be a deployment name (a DNS label such as auth-service), got {service!r}")
    if not 0 < since_minutes <= 24 * 60:
        raise ValueError(f"since_minutes must be more than 0 and at most 1440, got {since_minutes}")
    prometheus.duration(baseline_offset)


def selector_of(service: str, selector: str) -> str:
    """The label selector of the service's pods: `selector`, else the runbook's `app=<service>`."""
    return selector or f"app={service}"


# --- step 1: rollout history and what the live revision changed


@dataclass(frozen=True)
class Rollout:
    deployment: str | None  # None: no deployment of that name
    history: pd.DataFrame  # kube.rollouts.COLUMNS, newest first
    change: revisions.RevisionChange | None


def rollout(cluster: Cluster, service: str) -> Rollout:
    """`kubectl rollout history deployment/<service>`, and the live revision against the one before."""
    try:
        cluster.apps.read_namespaced_deployment(service, cluster.namespace, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as e:
        if e.status != 404:
            raise
        return Rollout(None, pd.DataFrame(columns=rollouts.COLUMNS), None)
    return Rollout(service, rollouts.history(cluster, service), revisions.last_change(cluster, service))


# --- step 2: pods and their events


@dataclass(frozen=True)
class Pods:
    containers: pd.DataFrame  # kube.pods.CONTAINER_COLUMNS
    usage: pd.DataFrame  # kube.usage.pod_usage: usage against requests and limits (empty usage without metrics)
    events: pd.DataFrame  # kube.events.COLUMNS, about the pods, their ReplicaSets and the deployment

    def table(self) -> pd.DataFrame:
        columns = ["pod", "container", "phase", "ready", "restarts", "state", "reason", "last_termination"]
        return self.containers[columns]


def pod_picture(cluster: Cluster, selector: str, deployment: str | None) -> Pods:
    """`kubectl describe pods -l <selector>`: containers, usage against limits, and the events about them."""
    containers = pods.containers(cluster, selector)
    usage_frame = usage.pod_usage(cluster, selector)
    names = set(containers["pod"])
    if deployment:
        names |= {deployment} | set(rollouts.history(cluster, deployment)["replicaset"])
    return Pods(containers, usage_frame, events.for_names(cluster, names))


# --- step 3: error signatures in the logs


@dataclass(frozen=True)
class Signatures:
    table: pd.DataFrame  # signature, count, first_seen, last_seen, pods, example (redacted); most first
    per_minute: pd.DataFrame  # minute, signature, count
    lines_read: int
    error_lines: int
    first_error: dt.datetime | None
    dependencies: pd.DataFrame  # host, error_lines, example: hosts named in lines of dependency failures
    pool_errors: int  # lines of an exhausted connection pool

    def chart_frame(self) -> pd.DataFrame:
        """Error lines per minute of the TOP_SIGNATURES commonest signatures, a column each (`#1`, `#2`, ...)."""
        top = list(self.table["signature"].head(TOP_SIGNATURES))
        if not top or self.per_minute.empty:
            return pd.DataFrame()
        labels = {signature: f"#{n}" for n, signature in enumerate(top, 1)}
        mine = self.per_minute[self.per_minute["signature"].isin(top)]
        frame = mine.assign(label=mine["signature"].map(labels)).pivot_table(
            index="minute", columns="label", values="count", aggfunc="sum", fill_value=0
        )
        return frame.reindex(pd.date_range(frame.index.min(), frame.index.max(), freq="min"), fill_value=0)


def signature(line: str) -> str:
    """A line with what varies between occurrences (times, ids, numbers) replaced: lines of one error group."""
    text = line.strip()
    for pattern, replacement in _VARIABLE:
        text = pattern.sub(replacement, text)
    return text[:200]


def error_signatures(cluster: Cluster, selector: str, since_minutes: float) -> Signatures:
    """`kubectl logs -l <selector> --since=<since_minutes>m`, every container and the previous instance of those
    that restarted: the error lines grouped by signature and counted per minute; the dependencies they name."""
    per: Counter = Counter()
    first: dict[str, dt.datetime] = {}
    last: dict[str, dt.datetime] = {}
    pods_of: dict[str, set[str]] = {}
    examples: dict[str, str] = {}
    hosts: Counter = Counter()
    host_examples: dict[str, str] = {}
    lines_read = error_lines = pool_errors = 0
    first_error = None
    for pod, _container, _instance, when, text in logs.every_line(cluster, selector, since_minutes):
        lines_read += 1
        if not ERROR_LINE.search(text):
            continue
        error_lines += 1
        shown = redact_line(text)
        key = signature(shown)
        minute = when.replace(second=0, microsecond=0) if when else None
        per[(minute, key)] += 1
        pods_of.setdefault(key, set()).add(pod)
        examples.setdefault(key, shown[:300])
        if when:
            first[key] = min(first.get(key, when), when)
            last[key] = max(last.get(key, when), when)
            first_error = when if first_error is None else min(first_error, when)
        pool_errors += bool(POOL_EXHAUSTED.search(text))
        if DEPENDENCY_FAILURE.search(text):
            for host in dependency_hosts(text):
                hosts[host] += 1
                host_examples.setdefault(host, shown[:300])
    totals: Counter = Counter()
    for (_, key), n in per.items():
        totals[key] += n
    table = pd.DataFrame(
        [
            {
                "signature": key,
                "count": n,
                "first_seen": first.get(key),
                "last_seen": last.get(key),
                "pods": sorted(pods_of[key]),
                "example": examples[key],
            }
            for key, n in totals.most_common()
        ],
        columns=["signature", "count", "first_seen", "last_seen", "pods", "example"],
    )
    per_minute = pd.DataFrame(
        [(minute, key, n) for (minute, key), n in per.items() if minute is not None],
        columns=["minute", "signature", "count"],
    )
    per_minute["minute"] = pd.to_datetime(per_minute["minute"], utc=True)
    dependencies = pd.DataFrame(
        [{"host": h, "error_lines": n, "example": host_examples[h]} for h, n in hosts.most_common()],
        columns=["host", "error_lines", "example"],
    )
    return Signatures(table, per_minute, lines_read, error_lines, first_error, dependencies, pool_errors)


def dependency_hosts(line: str) -> list[str]:
    """The hosts a log line names: `upstream=auth-service`, `https://taxrates.example/...`, `db.internal:5432`."""
    found = []
    for pattern in HOSTS:
        for host in pattern.findall(line):
            host = host.rstrip(".").lower()
            if host not in found and host not in ("-", "localhost", "127.0.0.1"):
                found.append(host)
    return found


# --- step 4: metrics against the baseline


@dataclass(frozen=True)
class ServiceMetrics:
    series: pd.DataFrame  # index: time (UTC); error_rate, latency_seconds, request_rate and their baseline_ columns
    queries: dict[str, str]  # as sent, the service's name filled in
    baseline_offset: str
    unavailable: str | None = None

    def comparison(self) -> pd.DataFrame:
        """Per measure: the latest reading, the window's worst, and the baseline's median."""
        rows = []
        for name in self.queries:
            values = self.series[name].dropna() if name in self.series else pd.Series(dtype=float)
            baseline = self.series[f"baseline_{name}"].dropna() if name in self.series else pd.Series(dtype=float)
            rows.append(
                {
                    "measure": name,
                    "latest": values.iloc[-1] if not values.empty else None,
                    "worst": values.max() if not values.empty else None,
                    self.baseline_column: baseline.median() if not baseline.empty else None,
                }
            )
        return pd.DataFrame(rows, columns=["measure", "latest", "worst", self.baseline_column])

    @property
    def baseline_column(self) -> str:
        return f"baseline ({self.baseline_offset} earlier, median)"

    def table(self) -> pd.DataFrame:
        """The comparison as people read it: error rate as a share, latency in seconds, requests per second."""
        shown = {"error_rate": units.percent, "latency_seconds": lambda v: f"{v:.3f} s"}
        rows = []
        for row in self.comparison().to_dict(orient="records"):
            say = shown.get(row["measure"], lambda v: f"{v:.1f}/s")
            columns = ("latest", "worst", self.baseline_column)
            rows.append(
                {
                    "measure": row["measure"].replace("_", " "),
                    **{k: say(row[k]) if not units.missing(row[k]) else "none" for k in columns},
                }
            )
        return pd.DataFrame(rows)

    @property
    def normal_latency(self) -> float | None:
        if "baseline_latency_seconds" not in self.series:
            return None
        baseline = self.series["baseline_latency_seconds"].dropna()
        return float(baseline.median()) or None if not baseline.empty else None


def read_metrics(
    prometheus_url: str,
    service: str,
    queries: dict[str, str],
    baseline_offset: str,
    since_minutes: float,
    at: dt.datetime,
) -> ServiceMetrics:
    """Each query (`{service}` replaced by the service's name) every minute over the last `since_minutes` (at least
    30), and the same span `baseline_offset` earlier. No URL, or Prometheus not answering: `unavailable` says why."""
    filled = {name: promql.replace("{service}", service) for name, promql in queries.items()}
    offset = prometheus.duration(baseline_offset)
    window = max(dt.timedelta(minutes=since_minutes), MIN_WINDOW)
    if not prometheus_url:
        return ServiceMetrics(_empty(filled), filled, baseline_offset, "no prometheus_url given")
    try:
        prom = prometheus.connect(prometheus_url)
        series = prometheus.against_baseline(prom, filled, at - window, at, STEP, offset)
    except PrometheusUnreachable as e:
        return ServiceMetrics(_empty(filled), filled, baseline_offset, str(e))
    return ServiceMetrics(series, filled, baseline_offset)


def _empty(queries: dict[str, str]) -> pd.DataFrame:
    columns = [*queries, *(f"baseline_{name}" for name in queries)]
    return pd.DataFrame(columns=columns, index=pd.DatetimeIndex([], tz="UTC", name="time"), dtype=float)


# --- step 5: identify root cause


def probe_dependencies(dependencies: dict, timeout_seconds: float) -> list[health.Probe]:
    """One GET of each dependency's health URL (`dependencies`: name -> URL)."""
    for name, url in dependencies.items():
        if not isinstance(url, str) or not re.match(r"https?://", url, re.IGNORECASE):
            raise ValueError(f"dependency {name!r}: the health URL must be http:// or https://, got {url!r}")
    return [health.probe(url, timeout_seconds) for url in dependencies.values()]


@dataclass(frozen=True)
class Check:
    name: str  # one of CHECKS
    holds: bool | None  # None: could not be checked
    because: str
    evidence: dict


def resource_exhaustion(picture: Pods, signatures: Signatures) -> Check:
    containers, used = picture.containers, picture.usage
    oomkilled = containers[containers["last_termination"] == pods.OOMKILLED]
    memory = used[used["memory_pct_of_limit"] >= NEAR_LIMIT_PCT]
    cpu_pct = 100 * used["cpu_usage"] / used["cpu_limit"]
    cpu = used[cpu_pct >= NEAR_LIMIT_PCT]
    oom = [f"{r.pod}/{r.container} ({r.restarts} restarts)" for r in oomkilled.itertuples()]
    near_memory = [f"{r.pod}/{r.container} {r.memory_pct_of_limit:.0f}%" for r in memory.itertuples()]
    near_cpu = [
        f"{r.pod}/{r.container} {100 * r.cpu_usage / r.cpu_limit:.0f}% of {r.cpu_limit:g}m" for r in cpu.itertuples()
    ]
    evidence = {
        "oomkilled": oom,
        "memory_near_limit": near_memory,
        "cpu_near_limit": near_cpu,
        "pool_error_lines": signatures.pool_errors,
    }
    parts = [
        f"OOMKilled: {', '.join(oom)}" if oom else "",
        f"memory at {NEAR_LIMIT_PCT:g}%+ of the limit: {', '.join(near_memory)}" if near_memory else "",
        f"CPU at {NEAR_LIMIT_PCT:g}%+ of the limit (throttled): {', '.join(near_cpu)}" if near_cpu else "",
        f"{signatures.pool_errors} log lines of an exhausted connection pool" if signatures.pool_errors else "",
    ]
    found = "; ".join(p for p in parts if p)
    no_usage = used["memory_usage"].isna().all()
    because = found or "no container OOMKilled, none near its limits, no connection-pool errors" + (
        " (no usage: the metrics API answered nothing)" if no_usage else ""
    )
    return Check("resource-exhaustion", bool(found), because, evidence)


def dependency_failing(signatures: Signatures, probes: list[health.Probe], service: str) -> Check:
    named = signatures.dependencies[
        (signatures.dependencies["error_lines"] >= MIN_DEPENDENCY_LINES) & (signatures.dependencies["host"] != service)
    ]
    failing = [p for p in probes if p.result == "failing"]
    evidence = {
        "in_logs": named.to_dict(orient="records"),
        "probes": [{"url": p.url, "status": p.status, "failure": p.failure, "error": p.error} for p in probes],
    }
    parts = [f"{r.host} named in {r.error_lines} lines of timeouts/refusals/5xx" for r in named.itertuples()]
    parts += [f"{p.url} answers {p.status or p.failure}" for p in failing]
    because = "; ".join(parts) or (
        f"no dependency named in {MIN_DEPENDENCY_LINES}+ lines of timeouts, refused connections or 502/503/504"
        + (f"; {len(probes)} health URL(s) up" if probes else "")
    )
    return Check("dependency-failing", bool(parts), because, evidence)


def recent_change(change: Rollout, signatures: Signatures, since_minutes: float, at: dt.datetime) -> Check:
    live = change.change
    if change.deployment is None or live is None or live.live_created is None:
        return Check("recent-change", None, f"no deployment named {change.deployment or 'so'}: rollouts not read", {})
    if live.rolled_out_at is None:  # a re-used ReplicaSet whose rollout left no record: its creation says nothing
        return Check(
            "recent-change", None, f"when revision {live.live_revision} went live is not known: {live.known_from}", {}
        )
    created = live.rolled_out_at
    age = (at - created).total_seconds() / 60
    evidence: dict[str, Any] = {
        "deployment": live.deployment,
        "revision": live.live_revision,
        "previous_revision": live.previous_revision,
        "rolled_out_at": created,
        "known_from": live.known_from,
        "minutes_ago": round(age, 1),
        "change_cause": live.change_cause,
        "changes": live.changes.to_dict(orient="records"),
        "first_error": signatures.first_error,
    }
    ago = units.duration(at - created)
    what = f"revision {live.live_revision} ({live.change_cause or 'no change-cause'}) rolled out {ago} ago"
    if age > since_minutes:
        return Check("recent-change", False, f"{what}: before the window of {since_minutes:g} min", evidence)
    first = signatures.first_error
    if first is not None and first < created:
        lead = (created - first).total_seconds() / 60
        return Check("recent-change", False, f"{what}, but errors began {lead:.0f} min before it", evidence)
    after = f", {(first - created).total_seconds() / 60:.0f} min before the first error line" if first else ""
    return Check("recent-change", True, f"{what}{after}; changed: {live.summary()}", evidence)


def traffic_anomaly(metrics: ServiceMetrics) -> Check:
    if metrics.unavailable or "request_rate" not in metrics.series:
        return Check("traffic-anomaly", None, f"not checked: {metrics.unavailable or 'no request_rate query'}", {})
    recent = metrics.series[["request_rate", "baseline_request_rate"]].dropna().tail(RECENT_READINGS)
    if recent.empty or not recent["baseline_request_rate"].mean():
        return Check("traffic-anomaly", None, "not checked: no request rate or no baseline for it", {})
    now_rate, normal = float(recent["request_rate"].mean()), float(recent["baseline_request_rate"].mean())
    ratio = now_rate / normal
    evidence = {"request_rate": now_rate, "baseline_request_rate": normal, "ratio": ratio}
    shown = f"{now_rate:.1f} requests/s against {normal:.1f} {metrics.baseline_offset} earlier ({ratio:.2f}x)"
    if ratio >= SURGE:
        return Check("traffic-anomaly", True, f"a surge: {shown}", evidence)
    if ratio <= DROP:
        return Check("traffic-anomaly", True, f"a drop: {shown}", evidence)
    return Check("traffic-anomaly", False, f"normal traffic: {shown}", evidence)


def root_cause(checks: list[Check]) -> pd.DataFrame:
    """Every check in order, whether it holds and why."""
    return pd.DataFrame(
        [{"check": c.name, "holds": c.holds, "because": c.because} for c in checks],
        columns=["check", "holds", "because"],
    )


# --- findings


def assess(service: str, checks: list[Check], signatures: Signatures, metrics: ServiceMetrics) -> list[Finding]:
    """One finding per check (warning when it holds), error-signatures, metrics, and suspected-cause."""
    findings = [
        Finding(c.name, c.because, "warning" if c.holds else "info", {"holds": c.holds, **c.evidence}) for c in checks
    ]
    top = signatures.table.head(TOP_SIGNATURES)
    findings.append(
        Finding(
            "error-signatures",
            f"{signatures.error_lines} error lines of {signatures.lines_read} read, {len(signatures.table)} signatures"
            + (f"; commonest ({top['count'].iloc[0]}x): {top['signature'].iloc[0]}" if not top.empty else ""),
            "warning" if signatures.error_lines else "info",
            {
                "lines_read": signatures.lines_read,
                "error_lines": signatures.error_lines,
                "first_error": signatures.first_error,
                "signatures": top[["signature", "count", "first_seen", "last_seen", "pods"]].to_dict(orient="records"),
            },
        )
    )
    findings.append(_metrics_finding(service, metrics))
    holding = [c for c in checks if c.holds]
    if holding:
        first, others = holding[0], holding[1:]
        also = f" Also holding: {'; '.join(f'{c.name}: {c.because}' for c in others)}" if others else ""
        findings.append(
            Finding(
                "suspected-cause",
                f"{first.name} in {service}: {first.because}.{also}",
                "critical",
                {"cause": first.name, "service": service, "because": first.because, "also": [c.name for c in others]},
            )
        )
    else:
        unchecked = [c.name for c in checks if c.holds is None]
        findings.append(
            Finding(
                "suspected-cause",
                f"None stands out for {service}: no check of the runbook's root causes holds"
                + (f" (not checked: {', '.join(unchecked)})" if unchecked else ""),
                "info",
                {"cause": None, "service": service, "unchecked": unchecked},
            )
        )
    return findings


def _metrics_finding(service: str, metrics: ServiceMetrics) -> Finding:
    if metrics.unavailable:
        return Finding(
            "service-metrics",
            f"No metrics for {service}: {metrics.unavailable}",
            "info",
            {"reason": metrics.unavailable},
        )
    table = metrics.comparison().set_index("measure")
    baseline = table.columns[-1]
    data = {name: {k: _plain(v) for k, v in row.items()} for name, row in table.iterrows()}
    error = table.loc["error_rate"] if "error_rate" in table.index else None
    if error is None or error["latest"] is None or pd.isna(error["latest"]):
        return Finding("service-metrics", f"Prometheus has no error rate for {service}", "info", data)
    normal = error[baseline]
    return Finding(
        "service-metrics",
        f"{service}: error rate {units.percent(error['latest'], 2)} now, "
        f"worst {units.percent(error['worst'], 2)} in the window, against "
        + (
            f"{units.percent(normal, 2)} {metrics.baseline_offset} earlier"
            if normal is not None and pd.notna(normal)
            else "no baseline"
        ),
        "warning" if error["worst"] >= 0.01 else "info",
        data,
    )


def _plain(value):
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else value

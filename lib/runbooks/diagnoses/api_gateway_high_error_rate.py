"""API gateway 5xx: which statuses and upstreams since when, the state of what is behind them, and the likely cause.

Runbook section: API Gateway Issues / High Error Rate (5xx), with the Phase 1/2 commands it relies on
(gateway logs, pods not Running, rollout history, logs of the affected services).

The gateway's access log is read in its own format (runbooks.gateway_log: ours, ingress-nginx, Envoy/Istio,
Traefik, or a pattern), in its own namespace (`gateway_namespace`); each line's upstream is traced to a Service
by the address the gateway connected to (EndpointSlices) or by the name it logged. The suspect upstream is the
Service named in the most 5xx lines. The likely cause is the first of these rules that holds (the
incident-response runbook's cause table, most specific evidence first):

1. memory-exhaustion: a container of the suspect upstream's workload, else of the gateway's, was OOMKilled
   within the window. Memory goes first: an OOMKilled upstream also looks down, and the incident-response
   runbook's fix for it differs (more memory, then restart). An OOMKill older than the window, or memory near
   the limit (a JVM sizes its heap to it), supports this cause and never makes it.
2. upstream-down: that workload (Deployment, StatefulSet, DaemonSet) has pods not Running/Ready (pods that
   Succeeded, as old pods do after a rolling deploy, do not count), fewer ready replicas than desired, or none.
3. configuration-error-after-rollout: the upstream's or the gateway's deployment rolled out within the window
   and before the 5xx began (kube.rollouts: rollbacks re-using an old ReplicaSet included); the latest such
   rollout names the deployment to roll back. When the 5xx began is the first 5xx since the window's start: when
   `tail_lines` did not reach back that far (a busy gateway), the logs are read again from the window's start up
   to the first 5xx; when even that is not possible the rule does not hold and says so. It goes before the
   database rule: connection errors right after a release are most often the release's (a wrong DSN, a pool
   size), and a rollback is the cheapest test.
4. database-connection-issues: database connection errors in the logs of any pod of the namespace; the
   upstream's workload is named if its pods log any, else the one logging most of them.

No rule holding is a result too (cause None): the remaining checks need metrics, not the API server.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from kubernetes.client.exceptions import ApiException

from .. import display, gateway_log, units
from ..evidence import Finding
from ..gateway_log import parse_line, upstream_service
from ..kube import logs, mitigate, pods, services, usage, workloads
from ..kube.cluster import Cluster
from ..kube.mitigate import Change
from ..redact import redact_line

CAUSES = ("memory-exhaustion", "upstream-down", "configuration-error-after-rollout", "database-connection-issues")
FIXES = {  # the incident-response runbook's table
    "memory-exhaustion": "increase memory limits, restart pods (runbook pod-oomkilled)",
    "upstream-down": "restart or roll back the upstream service",
    "configuration-error-after-rollout": "roll back to the previous config",
    "database-connection-issues": "see Database Issues (runbook db-connection-pool-exhausted)",
    None: "no rule held: check the gateway's metrics and the upstreams' own alerts",
}
RESOLUTIONS = ("restart", "rollback")

DATABASE_ERRORS = {  # name -> regex, for kube.logs.scan
    "too many connections": r"too many (connections|clients)",
    "remaining connection slots": r"remaining connection slots",
    "could not connect to server": r"could not connect to server",
    "connection refused (5432)": r"connection refused.*5432|5432.*connection refused",
}
EXAMPLES = 5
LOG_COLUMNS = ["pod", "container", "minute", "status", "upstream", "error", "count"]
HEALTH_COLUMNS = [
    "deployment",
    "kind",
    "role",
    "desired",
    "ready",
    "pods",
    "not_ready",
    "oomkilled",
    "oomkilled_earlier",
    "near_limit",
    "max_memory_pct",
]
DATABASE_COLUMNS = ["deployment", "pod", "pattern", "count"]


@dataclass(frozen=True)
class GatewayLog:
    """Gateway log lines with a status or an error, counted per pod, container, minute, status and upstream.

    `upstream` is the Service the line's upstream leads to (by the address the gateway reached, through the
    EndpointSlices, else by the name it logged), else the name or address as logged."""

    counts: pd.DataFrame  # LOG_COLUMNS; status 0 and upstream "-" when the line names none
    lines_read: int
    first_5xx: dt.datetime | None  # when the 5xx began, as far as `onset` says
    examples: list[str] = field(default_factory=list)  # redacted 5xx lines
    unparsed: int = 0  # lines read that carried no status in `log_format`
    log_format: str = "auto"
    truncated: tuple[str, ...] = ()  # pod/container whose `tail_lines` did not reach back to the window's start
    onset: str = "the first 5xx among the lines read"  # how `first_5xx` was found
    onset_known: bool = True  # False: the 5xx may have begun before `first_5xx`, and nothing could read further
    unmapped: tuple[str, ...] = ()  # upstream addresses no EndpointSlice lists (their pods are gone)


@dataclass(frozen=True)
class DatabaseErrors:
    table: pd.DataFrame  # DATABASE_COLUMNS
    examples: list[str]  # a few matching lines, credentials taken out


@dataclass(frozen=True)
class Diagnosis:
    cause: str | None  # one of CAUSES, or None
    upstream: str | None  # the upstream with the most 5xx (the Service, when traced to one)
    upstream_deployment: str | None  # the workload behind it
    deployment: str | None  # the workload the resolution acts on (a Deployment, StatefulSet, DaemonSet...)
    evidence: dict
    rules: list[dict]  # every rule in order: rule, holds, deployment, kind, detail, note
    kind: str | None = None  # the kind of `deployment`

    @property
    def fix(self) -> str:
        return FIXES[self.cause]

    def rules_table(self) -> pd.DataFrame:
        """Every rule in order, whether it holds and for which workload: the first that holds is the cause. `note`
        says why a rule could not hold, or what supports it without deciding."""
        return pd.DataFrame(self.rules, columns=["rule", "holds", "deployment", "kind", "detail", "note"])


# --- step 1: the gateway logs


def scan_gateway_logs(
    cluster: Cluster,
    selector: str,
    since_minutes: float | None,
    tail_lines: int | None,
    log_format: str = "auto",
    gateway_namespace: str = "",
) -> GatewayLog:
    """`kubectl logs -l app=api-gateway --tail=500 | grep -E "(error|5[0-9]{2})"` (the runbook's), parsed and counted.

    Every container of every matching pod in `gateway_namespace` (empty: the cluster's), and the previous instance
    of those that restarted; `tail_lines` 0 or None reads the whole window. A container whose tail did not reach
    back to the window's start is read again from there up to its first 5xx, for when the 5xx began.
    """
    gateway = cluster.in_namespace(gateway_namespace)
    counter: Counter = Counter()
    per_container: Counter = Counter()
    examples: list[str] = []
    first_5xx = None
    lines_read = unparsed = 0
    for pod, container, instance, when, text in logs.every_line(gateway, selector, since_minutes, tail_lines or None):
        lines_read += 1
        per_container[(pod, container, instance)] += 1
        line = parse_line(text, log_format)
        unparsed += line.status is None
        if line.status is None and not line.error:
            continue
        minute = when.replace(second=0, microsecond=0) if when else None
        counter[(pod, container, minute, line.status or 0, (line.upstream, line.address), line.error)] += 1
        if (line.status or 0) >= 500:
            if when and (first_5xx is None or when < first_5xx):
                first_5xx = when
            if len(examples) < EXAMPLES:
                examples.append(redact_line(text))
    truncated = tuple(
        f"{pod}/{container}"
        for (pod, container, instance), n in sorted(per_container.items())
        if tail_lines and n >= tail_lines and instance == "current"
    )
    names, unmapped = _upstream_services(cluster, {key[4] for key in counter})
    rows = [(*key[:4], names[key[4]], key[5], n) for key, n in counter.items()]
    counts = pd.DataFrame(rows, columns=LOG_COLUMNS).groupby(LOG_COLUMNS[:-1], as_index=False, dropna=False).sum()
    counts = counts.astype({"status": int, "error": bool, "count": int})
    counts["minute"] = pd.to_datetime(counts["minute"], utc=True)
    onset, onset_text, known = first_5xx, "the first 5xx among the lines read", True
    if truncated:
        onset, onset_text, known = _onset(gateway, truncated, since_minutes, log_format, first_5xx, tail_lines)
    return GatewayLog(
        counts, lines_read, onset, display.Lines(examples), unparsed, log_format, truncated, onset_text, known, unmapped
    )


def _upstream_services(
    cluster: Cluster, upstreams: set[tuple[str | None, str | None]]
) -> tuple[dict[tuple[str | None, str | None], str], tuple[str, ...]]:
    """(logged name, address) -> the Service behind it (by address first, then by name), else what was logged;
    and the addresses no EndpointSlice lists."""
    table = services.addresses(cluster) if any(address for _, address in upstreams) else None
    names, unmapped = {}, set()
    for name, address in upstreams:
        by_address = services.service_of(table, address) if address and table is not None else None
        if address and not by_address:
            unmapped.add(address)
        names[(name, address)] = by_address or upstream_service(name, cluster.namespace) or address or "-"
    return names, tuple(sorted(unmapped))


def _onset(
    gateway: Cluster,
    truncated: tuple[str, ...],
    since_minutes: float | None,
    log_format: str,
    first_in_tail: dt.datetime | None,
    tail_lines: int | None,
) -> tuple[dt.datetime | None, str, bool]:
    """When the 5xx began, read from the window's start to the first 5xx of each container whose tail was cut."""
    if not since_minutes:
        return (
            first_in_tail,
            f"the first 5xx in the last {tail_lines} lines of {', '.join(truncated)}: it may have begun earlier "
            "(no since_minutes to read from)",
            False,
        )
    found = [first_in_tail] if first_in_tail else []
    for name in truncated:
        pod, container = name.split("/", 1)
        stream = logs.lines(gateway, pod, container, since_minutes=since_minutes)
        try:
            found += [when for when, text in stream if when and (parse_line(text, log_format).status or 0) >= 500][:1]
        finally:
            stream.close()
    onset = min(found) if found else None
    return (
        onset,
        f"the first 5xx since the window's start: the last {tail_lines} lines of {', '.join(truncated)} did not "
        "reach back that far, so those logs were read again from the start of the window to their first 5xx",
        True,
    )


def by_upstream(log: GatewayLog) -> pd.DataFrame:
    """Per upstream: lines with a status (requests), 5xx among them, lines saying error; most 5xx first."""
    counts = log.counts.assign(
        requests=log.counts["count"].where(log.counts["status"] > 0, 0),
        five_xx=log.counts["count"].where(log.counts["status"] >= 500, 0),
        error_lines=log.counts["count"].where(log.counts["error"], 0),
    )
    table = counts.groupby("upstream", as_index=False)[["requests", "five_xx", "error_lines"]].sum()
    table = table.rename(columns={"five_xx": "5xx"})
    table["5xx_pct"] = (100 * table["5xx"] / table["requests"].where(table["requests"] > 0)).round(1)
    return table.sort_values(["5xx", "error_lines"], ascending=False, ignore_index=True)


def by_status(log: GatewayLog) -> pd.DataFrame:
    """5xx lines per status and upstream, most first."""
    five_xx = log.counts[log.counts["status"] >= 500]
    table = five_xx.groupby(["status", "upstream"], as_index=False)["count"].sum()
    return table.sort_values(["count", "status"], ascending=[False, True], ignore_index=True)


def errors_per_minute(log: GatewayLog) -> pd.DataFrame:
    """5xx lines per minute and status, for charts.errors_over_time."""
    five_xx = log.counts[(log.counts["status"] >= 500) & log.counts["minute"].notna()]
    return five_xx.groupby(["minute", "status"], as_index=False)["count"].sum()


def suspect_upstream(log: GatewayLog) -> str | None:
    """The upstream named in the most 5xx lines (ties: alphabetical), None without any."""
    table = by_upstream(log)
    table = table[(table["upstream"] != "-") & (table["5xx"] > 0)]
    if table.empty:
        return None
    return table.sort_values(["5xx", "upstream"], ascending=[False, True])["upstream"].iloc[0]


# --- steps 2 and 3: pods not running, the deployments behind the upstream and the gateway


def upstream_deployment(cluster: Cluster, upstream: str | None) -> str | None:
    """The workload behind an upstream name (its name): a Deployment of that name, else the Deployment,
    StatefulSet or DaemonSet the Service of that name selects.

    Accepts what gateways log: `auth-service`, `auth-service:8080`, `http://auth-service.ns.svc:8080`,
    ingress-nginx's `<namespace>-auth-service-8080`, Envoy's `outbound|8080||auth-service.ns.svc.cluster.local`.
    """
    found = services.workload_behind(cluster, upstream_service(upstream, cluster.namespace))
    return found[1] if found else None


def gateway_deployments(cluster: Cluster, selector: str) -> list[tuple[str, str]]:
    """(kind, name) of the workloads owning the gateway's pods."""
    owners = pods.owning_workloads(cluster, pods.list_pods(cluster, selector))
    return sorted({owner for owner in owners.values() if owner})


def deployment_health(
    cluster: Cluster,
    containers: pd.DataFrame,
    upstream: str | None,
    gateway_selector: str,
    gateway_namespace: str = "",
    since_minutes: float | None = None,
) -> pd.DataFrame:
    """The runbook's "check upstream services": replicas, pods not ready, OOMKilled and near-limit containers
    of the workload behind `upstream` (role "upstream", if one is found) and of the gateway's (role "gateway",
    in `gateway_namespace`). `oomkilled`: within the last `since_minutes` (None: any time); older ones are
    `oomkilled_earlier`.

    Takes kube.pods.containers(...) for the whole namespace.
    """
    gateway = cluster.in_namespace(gateway_namespace)
    behind = services.workload_behind(cluster, upstream_service(upstream, cluster.namespace))
    roles = ([(cluster, behind, "upstream")] if behind else []) + [
        (gateway, owner, "gateway") for owner in gateway_deployments(gateway, gateway_selector) if owner != behind
    ]
    rows = []
    for where, (kind, name), role in roles:
        mine_all = containers if where is cluster else pods.containers(where, gateway_selector)
        memory = usage.memory_usage(where, "" if where is cluster else gateway_selector, pods.oomkilled(mine_all))
        memory["workload"] = memory["pod"].map(dict(zip(mine_all["pod"], mine_all["workload"], strict=True)))
        down = pods.not_running(mine_all)
        desired, ready = _replicas(where, kind, name)
        mine = mine_all[(mine_all["workload"] == name) & (mine_all["phase"] != "Succeeded")]
        killed = mine[mine["last_termination"] == pods.OOMKILLED]
        recent = _within(killed["last_termination_at"], since_minutes)
        used = memory[memory["workload"] == name]
        pct = used["memory_pct_of_limit"].max()
        rows.append(
            {
                "deployment": name,
                "kind": kind,
                "role": role,
                "desired": desired,
                "ready": ready,
                "pods": mine["pod"].nunique(),
                "not_ready": sorted(set(down.loc[down["workload"] == name, "pod"])),
                "oomkilled": [f"{r.pod}/{r.container}" for r in killed[recent].itertuples()],
                "oomkilled_earlier": [f"{r.pod}/{r.container}" for r in killed[~recent].itertuples()],
                "near_limit": [f"{r.pod}/{r.container}" for r in used[used["near_limit"]].itertuples()],
                "max_memory_pct": round(float(pct), 1) if pd.notna(pct) else None,
            }
        )
    return pd.DataFrame(rows, columns=HEALTH_COLUMNS)


def _within(times: pd.Series, minutes: float | None) -> pd.Series:
    """Which of these times fall in the last `minutes` (all of them when None; a missing time counts as within)."""
    if minutes is None:
        return pd.Series(True, index=times.index, dtype=bool)
    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=minutes)
    stamps = pd.to_datetime(times, utc=True)
    return (stamps.isna() | (stamps >= since)).astype(bool)


# --- step 5: database connection errors anywhere in the namespace


def database_errors(
    cluster: Cluster, containers: pd.DataFrame, since_minutes: float | None, tail_lines: int | None
) -> DatabaseErrors:
    """Lines matching DATABASE_ERRORS in the logs of every pod of the namespace, per deployment, pod and pattern.

    Takes kube.pods.containers(...) to name each pod's deployment.
    """
    scan = logs.scan(cluster, "", DATABASE_ERRORS, since_minutes, tail_lines or None)
    table = scan.totals("pod", "pattern")
    table.insert(0, "deployment", table["pod"].map(dict(zip(containers["pod"], containers["workload"], strict=True))))
    examples = [line for lines in scan.examples.values() for line in lines]  # redacted by scan
    return DatabaseErrors(table[DATABASE_COLUMNS], display.Lines(examples, "lines saying so"))


# --- findings


def diagnose(log: GatewayLog, health: pd.DataFrame, rollouts: pd.DataFrame, database: DatabaseErrors) -> Diagnosis:
    """Every rule of the module's list, checked in order; the first that holds is the cause.

    `rollouts` from kube.rollouts.recent over the logs' window.
    """
    upstream = suspect_upstream(log)
    upstream_row = health[health["role"] == "upstream"]
    upstream_deployment_name = upstream_row["deployment"].iloc[0] if not upstream_row.empty else None
    evidence = {
        "upstream": upstream,
        "upstream_deployment": upstream_deployment_name,
        "five_xx": int(log.counts.loc[log.counts["status"] >= 500, "count"].sum()),
        "first_5xx": log.first_5xx,
        "onset": log.onset,
    }
    kinds = dict(zip(health["deployment"], health["kind"], strict=True))
    rules = [
        _rule("memory-exhaustion", *_memory(health), kinds),
        _rule("upstream-down", *_down(health), kinds),
        _rule("configuration-error-after-rollout", *_rollout(health, rollouts, log), kinds),
        _rule("database-connection-issues", *_database(health, database.table), kinds),
    ]
    first = next((r for r in rules if r["holds"]), None)
    if first is None:
        return Diagnosis(None, upstream, upstream_deployment_name, None, evidence, rules)
    return Diagnosis(
        first["rule"],
        upstream,
        upstream_deployment_name,
        first["deployment"],
        {**evidence, **first["detail"]},
        rules,
        first["kind"],
    )


def assess(log: GatewayLog, diagnosis: Diagnosis) -> list[Finding]:
    return [_counts_finding(log), _cause_finding(diagnosis)]


def check_parameters(resolution: str, log_format: str) -> None:
    """Fail at once, in one line, on a resolution or a log format that cannot work."""
    check_resolution(resolution)
    gateway_log.check_format(log_format)


# --- resolution


def check_resolution(resolution: str) -> None:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}, not {resolution!r}")


def resolve(cluster: Cluster, diagnosis: Diagnosis, resolution: str, upstream: str, apply: bool) -> list[Change]:
    """Restart or roll back the workload the diagnosis names, or the one behind `upstream` when given.

    Restart: Deployments, StatefulSets, DaemonSets. Rollback: Deployments (a StatefulSet or DaemonSet rolls
    back through its ControllerRevisions: `kubectl rollout undo statefulset/NAME`, named, not done)."""
    check_resolution(resolution)
    action = {"restart": "rollout-restart", "rollback": "rollback"}[resolution]
    if upstream:
        found = services.workload_behind(cluster, upstream_service(upstream, cluster.namespace))
        kind, name = found if found else (None, None)
    else:
        kind, name = diagnosis.kind or ("Deployment" if diagnosis.deployment else None), diagnosis.deployment
    if name is None:
        why = (
            f"no workload named {upstream}, nor behind a service of that name"
            if upstream
            else "the diagnosis names no workload: set the upstream parameter"
        )
        return [mitigate.not_handled(cluster, action, None, None, apply, why)]
    if resolution == "rollback":
        if kind != "Deployment":
            return [
                mitigate.not_handled(
                    cluster,
                    action,
                    kind,
                    name,
                    apply,
                    f"rollback is done here for Deployments only: kubectl rollout undo {str(kind).lower()}/{name}",
                )
            ]
        return [mitigate.rollback(cluster, name, apply)]
    if kind not in mitigate.KINDS:
        return [mitigate.not_handled(cluster, action, kind, name, apply, f"{kind} is not a kind this runbook restarts")]
    return [mitigate.restart(cluster, name, apply, kind=kind)]


# --- rules: each returns (workload, detail, None) when it holds, (None, None, note) otherwise; detail["because"]
# says why it holds, the note (or None) why it could not, or what supports it without deciding

Holds = tuple[Any, dict | None, str | None]


def _rule(rule: str, deployment: str | None, detail: dict | None, note: str | None, kinds: dict) -> dict:
    return {
        "rule": rule,
        "holds": detail is not None,
        "deployment": deployment,
        "kind": kinds.get(deployment) if deployment else None,
        "detail": detail,
        "note": note,
    }


def _memory(health: pd.DataFrame) -> Holds:
    for row in health.itertuples():
        if row.oomkilled:
            because = (
                f"OOMKilled within the window: {', '.join(row.oomkilled)}; "
                f"at {usage.NEAR_LIMIT_PCT:g}% of the memory limit or more: {', '.join(row.near_limit) or 'none'}"
            )
            return (
                row.deployment,
                {
                    "role": row.role,
                    "oomkilled": row.oomkilled,
                    "oomkilled_earlier": row.oomkilled_earlier,
                    "near_limit": row.near_limit,
                    "max_memory_pct": row.max_memory_pct,
                    "because": because,
                },
                None,
            )
    supporting = [
        f"{row.deployment}: {', '.join(row.near_limit + row.oomkilled_earlier)}"
        for row in health.itertuples()
        if row.near_limit or row.oomkilled_earlier
    ]
    note = (
        "no OOMKill within the window; near the memory limit or OOMKilled before the window (supports, does not "
        f"decide): {'; '.join(supporting)}"
        if supporting
        else None
    )
    return None, None, note


def _down(health: pd.DataFrame) -> Holds:
    for row in health.itertuples():
        short = row.desired is None or row.desired == 0 or (row.ready or 0) < row.desired
        if row.not_ready or short:
            because = (
                f"{row.ready} of {row.desired} replicas ready; pods not ready: {', '.join(row.not_ready) or 'none'}"
            )
            return (
                row.deployment,
                {
                    "role": row.role,
                    "not_ready": row.not_ready,
                    "desired": row.desired,
                    "ready": row.ready,
                    "because": because,
                },
                None,
            )
    return None, None, None


def _rollout(health: pd.DataFrame, rollouts: pd.DataFrame, log: GatewayLog) -> Holds:
    first_5xx = log.first_5xx
    mine = rollouts[rollouts["deployment"].isin(set(health["deployment"]))] if not rollouts.empty else rollouts
    if first_5xx is None or mine.empty:
        return None, None, None
    listed = ", ".join(f"{r.deployment} at {units.clock(r.rolled_out_at)} ({r.known_from})" for r in mine.itertuples())
    if not log.onset_known:
        return None, None, f"when the 5xx began is not known ({log.onset}): rollouts {listed} not weighed"
    before = mine[mine["rolled_out_at"] <= first_5xx]
    if before.empty:
        return None, None, f"rolled out after the 5xx began at {first_5xx:%H:%M:%S} UTC: {listed}"
    latest = before.sort_values("rolled_out_at", ascending=False).iloc[0]
    minutes = round((first_5xx - latest["rolled_out_at"]).total_seconds() / 60, 1)
    because = (
        f"revision {latest['revision']} ({latest['change_cause'] or latest['images']}) rolled out "
        f"{minutes:g} min before the first 5xx ({latest['known_from']})"
    )
    columns = ["deployment", "revision", "rolled_out_at", "known_from", "change_cause", "images"]
    return (
        latest["deployment"],
        {
            "rollouts": before[columns].to_dict(orient="records"),
            "minutes_before_first_5xx": minutes,
            "because": because,
        },
        None,
    )


def _database(health: pd.DataFrame, database: pd.DataFrame) -> Holds:
    if database.empty:
        return None, None, None
    per_deployment = (
        database.dropna(subset=["deployment"]).groupby("deployment")["count"].sum().sort_values(ascending=False)
    )
    upstream = health.loc[health["role"] == "upstream", "deployment"]
    if not upstream.empty and upstream.iloc[0] in per_deployment.index:
        deployment = upstream.iloc[0]
    else:
        deployment = per_deployment.index[0] if not per_deployment.empty else None
    total, pods_logging = int(database["count"].sum()), sorted(set(database["pod"]))
    return (
        deployment,
        {
            "database_errors": total,
            "by_pattern": database.groupby("pattern")["count"].sum().to_dict(),
            "pods": pods_logging,
            "because": f"{total} database connection errors in {', '.join(pods_logging)}",
        },
        None,
    )


def _counts_finding(log: GatewayLog) -> Finding:
    five_xx = log.counts[log.counts["status"] >= 500]
    total = int(five_xx["count"].sum())
    data: dict[str, Any] = {
        "five_xx": total,
        "error_lines": int(log.counts.loc[log.counts["error"], "count"].sum()),
        "requests": int(log.counts.loc[log.counts["status"] > 0, "count"].sum()),
        "by_status": {str(k): int(v) for k, v in five_xx.groupby("status")["count"].sum().items()},
        "by_upstream": {
            k: int(v) for k, v in five_xx.groupby("upstream")["count"].sum().sort_values(ascending=False).items()
        },
        "first_5xx": log.first_5xx,
        "onset": log.onset,
        "lines_read": log.lines_read,
        "unparsed": log.unparsed,
        "log_format": log.log_format,
        "truncated": list(log.truncated),
        "unmapped_addresses": list(log.unmapped),
    }
    if log.lines_read and not data["requests"]:
        return Finding(
            "error-counts",
            f"{log.lines_read} gateway log lines read, none with an HTTP status in log format {log.log_format!r}: "
            "the 5xx cannot be counted. Set log_format (ingress-nginx, envoy, traefik, ours, or a regex with "
            "(?P<status>...))",
            "warning",
            data,
        )
    unmapped = f"; addresses in no EndpointSlice (pods gone): {', '.join(log.unmapped)}" if log.unmapped else ""
    if not total:
        return Finding(
            "error-counts",
            f"no 5xx in {log.lines_read} gateway log lines ({data['error_lines']} lines say error)",
            "info",
            data,
        )
    statuses = ", ".join(f"{n}× {s}" for s, n in data["by_status"].items())
    upstreams = ", ".join(f"{u}: {n}" for u, n in data["by_upstream"].items())
    return Finding(
        "error-counts",
        f"{total} 5xx of {data['requests']} logged responses ({statuses}); by upstream: {upstreams}; began "
        f"{units.clock(log.first_5xx, seconds=True)} ({log.onset}){unmapped}",
        "critical",
        data,
    )


def _cause_finding(diagnosis: Diagnosis) -> Finding:
    data = {
        "cause": diagnosis.cause,
        "deployment": diagnosis.deployment,
        "kind": diagnosis.kind,
        "upstream": diagnosis.upstream,
        "upstream_deployment": diagnosis.upstream_deployment,
        "fix": diagnosis.fix,
        "evidence": diagnosis.evidence,
        "rules": diagnosis.rules,
    }
    notes = "; ".join(f"{r['rule']}: {r['note']}" for r in diagnosis.rules if r["note"] and not r["holds"])
    if diagnosis.cause is None:
        return Finding(
            "likely-cause",
            f"no rule of the cause table holds: {diagnosis.fix}" + (f". Not decisive: {notes}" if notes else ""),
            "info",
            data,
        )
    return Finding(
        "likely-cause",
        f"{diagnosis.cause} in {(diagnosis.kind or 'Deployment').lower()} {diagnosis.deployment} "
        f"(5xx upstream: {diagnosis.upstream or 'none named'}): {diagnosis.evidence['because']}. "
        f"Fix: {diagnosis.fix}",
        "critical",
        data,
    )


# --- helpers


def _replicas(cluster: Cluster, kind: str, name: str) -> tuple[int | None, int | None]:
    """Desired and ready pods of a Deployment, StatefulSet or DaemonSet; (None, None) for other kinds or gone."""
    if kind not in workloads.SERVING:
        return None, None
    try:
        workload = workloads.read(cluster, kind, name)
    except ApiException as e:
        if e.status == 404:
            return None, None
        raise
    return workloads.desired(kind, workload), workloads.ready(kind, workload)

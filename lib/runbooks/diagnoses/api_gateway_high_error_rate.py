"""API gateway 5xx: which statuses and upstreams since when, the state of what is behind them, and the likely cause.

Runbook section: API Gateway Issues / High Error Rate (5xx), with the Phase 1/2 commands it relies on
(gateway logs, pods not Running, rollout history, logs of the affected services).

The suspect upstream is the one the gateway logs name in the most 5xx lines. The likely cause is the
first of these rules that holds (the incident-response runbook's cause table, most specific evidence first):

1. memory-exhaustion: a container of the suspect upstream's deployment, else of the gateway's, was last
   terminated OOMKilled or uses at least 90% of its memory limit. Memory goes first: an OOMKilled
   upstream also looks down, and the incident-response runbook's fix for it differs (more memory, then restart).
2. upstream-down: that deployment has pods not Running/Ready (pods that Succeeded, as old pods do after a
   rolling deploy, do not count), fewer ready replicas than desired, or none desired.
3. configuration-error-after-rollout: the upstream's or the gateway's deployment rolled out within the
   window and before the first 5xx; the latest such rollout names the deployment to roll back. It goes
   before the database rule: connection errors right after a release are most often the release's (a
   wrong DSN, a pool size), and a rollback is the cheapest test.
4. database-connection-issues: database connection errors in the logs of any pod of the namespace; the
   upstream's deployment is named if its pods log any, else the deployment logging most of them.

No rule holding is a result too (cause None): the remaining checks need metrics, not the API server.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from kubernetes.client.exceptions import ApiException

from ..evidence import Action, Finding
from ..gateway_log import parse_line
from ..kube import logs, mitigate, pods, usage
from ..kube.cluster import REQUEST_TIMEOUT, Cluster
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
    "role",
    "desired",
    "ready",
    "pods",
    "not_ready",
    "oomkilled",
    "near_limit",
    "max_memory_pct",
]
DATABASE_COLUMNS = ["deployment", "pod", "pattern", "count"]


@dataclass(frozen=True)
class GatewayLog:
    """Gateway log lines with a status or an error, counted per pod, container, minute, status and upstream."""

    counts: pd.DataFrame  # LOG_COLUMNS; status 0 and upstream "-" when the line names none
    lines_read: int
    first_5xx: dt.datetime | None
    examples: list[str] = field(default_factory=list)  # redacted 5xx lines


@dataclass(frozen=True)
class DatabaseErrors:
    table: pd.DataFrame  # DATABASE_COLUMNS
    examples: list[str]  # a few matching lines, credentials taken out


@dataclass(frozen=True)
class Diagnosis:
    cause: str | None  # one of CAUSES, or None
    upstream: str | None  # the upstream with the most 5xx, as the gateway logs name it
    upstream_deployment: str | None  # the deployment behind it
    deployment: str | None  # the deployment the resolution acts on
    evidence: dict
    rules: list[dict]  # every rule in order: rule, holds, deployment, detail

    @property
    def fix(self) -> str:
        return FIXES[self.cause]

    def rules_table(self) -> pd.DataFrame:
        """Every rule in order, whether it holds and for which deployment: the first that holds is the cause."""
        return pd.DataFrame(self.rules, columns=["rule", "holds", "deployment", "detail"])


# --- step 1: the gateway logs


def scan_gateway_logs(
    cluster: Cluster, selector: str, since_minutes: float | None, tail_lines: int | None
) -> GatewayLog:
    """`kubectl logs -l app=api-gateway --tail=500 | grep -E "(error|5[0-9]{2})"` (the runbook's), parsed and counted.

    Every container of every matching pod, and the previous instance of those that restarted.
    """
    counter: Counter = Counter()
    examples: list[str] = []
    first_5xx = None
    lines_read = 0
    for pod, container, _, when, text in logs.every_line(cluster, selector, since_minutes, tail_lines):
        lines_read += 1
        line = parse_line(text)
        if line.status is None and not line.error:
            continue
        minute = when.replace(second=0, microsecond=0) if when else None
        counter[(pod, container, minute, line.status or 0, line.upstream or "-", line.error)] += 1
        if (line.status or 0) >= 500:
            if when and (first_5xx is None or when < first_5xx):
                first_5xx = when
            if len(examples) < EXAMPLES:
                examples.append(redact_line(text))
    counts = pd.DataFrame([(*key, n) for key, n in counter.items()], columns=LOG_COLUMNS)
    counts = counts.astype({"status": int, "error": bool, "count": int})
    counts["minute"] = pd.to_datetime(counts["minute"], utc=True)
    return GatewayLog(counts, lines_read, first_5xx, examples)


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
    """The deployment behind an upstream name: a deployment of that name, else the one a service of that name selects.

    Accepts what gateways log: `auth-service`, `auth-service:8080`, `http://auth-service.ns.svc:8080`.
    """
    name = _service_name(upstream)
    if not name:
        return None
    try:
        return cluster.apps.read_namespaced_deployment(
            name, cluster.namespace, _request_timeout=REQUEST_TIMEOUT
        ).metadata.name
    except ApiException as e:
        if e.status != 404:
            raise
    try:
        service = cluster.core.read_namespaced_service(name, cluster.namespace, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    selector = service.spec.selector or {}
    if not selector:
        return None
    deployments = cluster.apps.list_namespaced_deployment(cluster.namespace, _request_timeout=REQUEST_TIMEOUT).items
    for deployment in sorted(deployments, key=lambda d: d.metadata.name):
        labels = deployment.spec.template.metadata.labels or {}
        if all(labels.get(k) == v for k, v in selector.items()):
            return deployment.metadata.name
    return None


def gateway_deployments(cluster: Cluster, selector: str) -> list[str]:
    """The deployments owning the gateway's pods."""
    owners = pods.owning_deployments(cluster, pods.list_pods(cluster, selector))
    return sorted({d for d in owners.values() if d})


def deployment_health(
    cluster: Cluster, containers: pd.DataFrame, upstream: str | None, gateway_selector: str
) -> pd.DataFrame:
    """The runbook's "check upstream services": replicas, pods not ready, OOMKilled and near-limit containers
    of the deployment behind `upstream` (role "upstream", if one is found) and of the gateway's (role "gateway").

    Takes kube.pods.containers(...) for the whole namespace.
    """
    behind = upstream_deployment(cluster, upstream)
    gateways = gateway_deployments(cluster, gateway_selector)
    roles = ([(behind, "upstream")] if behind else []) + [(g, "gateway") for g in gateways if g != behind]
    memory = usage.memory_usage(cluster, "", pods.oomkilled(containers))
    memory["deployment"] = memory["pod"].map(dict(zip(containers["pod"], containers["deployment"], strict=True)))
    down = pods.not_running(containers)
    rows = []
    for name, role in roles:
        desired, ready = _replicas(cluster, name)
        mine = containers[(containers["deployment"] == name) & (containers["phase"] != "Succeeded")]
        killed = mine[mine["last_termination"] == pods.OOMKILLED]
        used = memory[memory["deployment"] == name]
        pct = used["memory_pct_of_limit"].max()
        rows.append(
            {
                "deployment": name,
                "role": role,
                "desired": desired,
                "ready": ready,
                "pods": mine["pod"].nunique(),
                "not_ready": sorted(set(down.loc[down["deployment"] == name, "pod"])),
                "oomkilled": [f"{r.pod}/{r.container}" for r in killed.itertuples()],
                "near_limit": [f"{r.pod}/{r.container}" for r in used[used["near_limit"]].itertuples()],
                "max_memory_pct": round(float(pct), 1) if pd.notna(pct) else None,
            }
        )
    return pd.DataFrame(rows, columns=HEALTH_COLUMNS)


# --- step 5: database connection errors anywhere in the namespace


def database_errors(
    cluster: Cluster, containers: pd.DataFrame, since_minutes: float | None, tail_lines: int | None
) -> DatabaseErrors:
    """Lines matching DATABASE_ERRORS in the logs of every pod of the namespace, per deployment, pod and pattern.

    Takes kube.pods.containers(...) to name each pod's deployment.
    """
    scan = logs.scan(cluster, "", DATABASE_ERRORS, since_minutes, tail_lines)
    table = scan.totals("pod", "pattern")
    table.insert(0, "deployment", table["pod"].map(dict(zip(containers["pod"], containers["deployment"], strict=True))))
    examples = [line for lines in scan.examples.values() for line in lines]  # redacted by scan
    return DatabaseErrors(table[DATABASE_COLUMNS], examples)


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
    }
    rules = [
        _rule("memory-exhaustion", *_memory(health)),
        _rule("upstream-down", *_down(health)),
        _rule("configuration-error-after-rollout", *_rollout(health, rollouts, log.first_5xx)),
        _rule("database-connection-issues", *_database(health, database.table)),
    ]
    first = next((r for r in rules if r["holds"]), None)
    if first is None:
        return Diagnosis(None, upstream, upstream_deployment_name, None, evidence, rules)
    return Diagnosis(
        first["rule"], upstream, upstream_deployment_name, first["deployment"], {**evidence, **first["detail"]}, rules
    )


def assess(log: GatewayLog, diagnosis: Diagnosis) -> list[Finding]:
    return [_counts_finding(log), _cause_finding(diagnosis)]


# --- resolution


def check_resolution(resolution: str) -> None:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}, not {resolution!r}")


def resolve(cluster: Cluster, diagnosis: Diagnosis, resolution: str, upstream: str, apply: bool) -> list[Change]:
    """Restart or roll back the deployment the diagnosis names, or the one behind `upstream` when given."""
    check_resolution(resolution)
    action = {"restart": "rollout-restart", "rollback": "rollback"}[resolution]
    deployment = upstream_deployment(cluster, upstream) if upstream else diagnosis.deployment
    if deployment is None:
        named = f"upstream {upstream}" if upstream else "no deployment"
        why = (
            f"no deployment named {upstream}, nor behind a service of that name"
            if upstream
            else "the diagnosis names no deployment: set the upstream parameter"
        )
        mode = "applied" if apply else "dry-run"
        return [
            Change(
                Action(action, mode, f"{named} in {cluster.namespace}", f"not done: {why}"),
                pd.DataFrame(columns=["field", "before", "after"]),
            )
        ]
    if resolution == "rollback":
        return [mitigate.rollback(cluster, deployment, apply)]
    return [mitigate.restart(cluster, deployment, apply)]


# --- rules: each returns (deployment, detail) when it holds, (None, None) otherwise; detail["because"] says why


def _rule(rule: str, deployment: str | None, detail: dict | None) -> dict:
    return {"rule": rule, "holds": detail is not None, "deployment": deployment, "detail": detail}


def _memory(health: pd.DataFrame):
    for row in health.itertuples():
        if row.oomkilled or row.near_limit:
            because = (
                f"last terminated OOMKilled: {', '.join(row.oomkilled) or 'none'}; "
                f"at {usage.NEAR_LIMIT_PCT:g}% of the memory limit or more: {', '.join(row.near_limit) or 'none'}"
            )
            return row.deployment, {
                "role": row.role,
                "oomkilled": row.oomkilled,
                "near_limit": row.near_limit,
                "max_memory_pct": row.max_memory_pct,
                "because": because,
            }
    return None, None


def _down(health: pd.DataFrame):
    for row in health.itertuples():
        short = row.desired is None or row.desired == 0 or (row.ready or 0) < row.desired
        if row.not_ready or short:
            because = (
                f"{row.ready} of {row.desired} replicas ready; pods not ready: {', '.join(row.not_ready) or 'none'}"
            )
            return row.deployment, {
                "role": row.role,
                "not_ready": row.not_ready,
                "desired": row.desired,
                "ready": row.ready,
                "because": because,
            }
    return None, None


def _rollout(health: pd.DataFrame, rollouts: pd.DataFrame, first_5xx: dt.datetime | None):
    if first_5xx is None or rollouts.empty:
        return None, None
    before = rollouts[rollouts["deployment"].isin(set(health["deployment"])) & (rollouts["created"] <= first_5xx)]
    if before.empty:
        return None, None
    latest = before.sort_values("created", ascending=False).iloc[0]
    minutes = round((first_5xx - latest["created"]).total_seconds() / 60, 1)
    because = (
        f"revision {latest['revision']} ({latest['change_cause'] or latest['images']}) rolled out "
        f"{minutes:g} min before the first 5xx"
    )
    listed = before[["deployment", "revision", "created", "change_cause", "images"]].to_dict(orient="records")
    return latest["deployment"], {"rollouts": listed, "minutes_before_first_5xx": minutes, "because": because}


def _database(health: pd.DataFrame, database: pd.DataFrame):
    if database.empty:
        return None, None
    per_deployment = (
        database.dropna(subset=["deployment"]).groupby("deployment")["count"].sum().sort_values(ascending=False)
    )
    upstream = health.loc[health["role"] == "upstream", "deployment"]
    if not upstream.empty and upstream.iloc[0] in per_deployment.index:
        deployment = upstream.iloc[0]
    else:
        deployment = per_deployment.index[0] if not per_deployment.empty else None
    total, pods_logging = int(database["count"].sum()), sorted(set(database["pod"]))
    return deployment, {
        "database_errors": total,
        "by_pattern": database.groupby("pattern")["count"].sum().to_dict(),
        "pods": pods_logging,
        "because": f"{total} database connection errors in {', '.join(pods_logging)}",
    }


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
        "lines_read": log.lines_read,
    }
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
        f"{total} 5xx of {data['requests']} logged responses ({statuses}); by upstream: {upstreams}",
        "critical",
        data,
    )


def _cause_finding(diagnosis: Diagnosis) -> Finding:
    data = {
        "cause": diagnosis.cause,
        "deployment": diagnosis.deployment,
        "upstream": diagnosis.upstream,
        "upstream_deployment": diagnosis.upstream_deployment,
        "fix": diagnosis.fix,
        "evidence": diagnosis.evidence,
        "rules": diagnosis.rules,
    }
    if diagnosis.cause is None:
        return Finding("likely-cause", f"no rule of the cause table holds: {diagnosis.fix}", "info", data)
    return Finding(
        "likely-cause",
        f"{diagnosis.cause} in deployment {diagnosis.deployment} "
        f"(5xx upstream: {diagnosis.upstream or 'none named'}): {diagnosis.evidence['because']}. "
        f"Fix: {diagnosis.fix}",
        "critical",
        data,
    )


# --- helpers


def _service_name(upstream: str | None) -> str | None:
    if not upstream:
        return None
    host = re.sub(r"^[a-z]+://", "", upstream.strip()).split("/")[0].split(":")[0]
    return host.split(".")[0] or None


def _replicas(cluster: Cluster, name: str) -> tuple[int | None, int | None]:
    try:
        deployment = cluster.apps.read_namespaced_deployment(name, cluster.namespace, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as e:
        if e.status == 404:
            return None, None
        raise
    return deployment.spec.replicas, deployment.status.ready_replicas or 0

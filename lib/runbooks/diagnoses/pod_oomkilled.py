"""Pods OOMKilled: which containers, how often, when, at which scope, how close to their limit, and what changed.

Runbook section: Memory Issues / Pod OOMKilled. What counts, from kube.pods.containers (containers, init
containers and native sidecars):
- container scope: a container whose last termination (its current state if terminated now, else
  `lastState.terminated`) was OOMKilled: it hit its own memory limit. Ended Completed (an old pod after a
  rolling deploy) or Error is not.
- node scope: a pod the kubelet evicted (`status.reason` Evicted) because the node ran low on memory, and the
  node's own out-of-memory events (kubelet SystemOOM, node-problem-detector OOMKilling), which kill whichever
  process the kernel picks: raising that container's limit does not help.
- unknown scope: exit code 137 (SIGKILL) without OOMKilled: the node's OOM killer, a failed liveness probe
  or a manual kill; the node's events tell which.
Only kills within `window_minutes` are evidence for the incident at hand: a `lastState` keeps an OOMKill for
as long as the container runs, days if need be; older kills are listed as such. Memory near the limit (a JVM
sizes its heap to it) supports a memory finding, it never makes one.

The resolution acts on the workloads of recent container-scope OOMKills: Deployments, StatefulSets and
DaemonSets get more memory and a restart in one patch (kube.mitigate.set_memory, checked against quotas); a
container injected by a mutating webhook (istio-proxy, linkerd-proxy) is set through the injector's annotations
instead; Jobs, CronJobs, Argo Rollouts and bare pods are named as not handled.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
from kubernetes.utils import parse_quantity

from .. import units
from ..evidence import Action, Finding
from ..kube import events, mitigate, rollouts
from ..kube.cluster import Cluster
from ..kube.mitigate import Change
from ..kube.pods import EVICTED, OOMKILLED, mebibytes
from ..kube.usage import NEAR_LIMIT_PCT, UNAVAILABLE

KILL_COLUMNS = [
    "pod",
    "container",
    "container_type",
    "workload_kind",
    "workload",
    "deployment",
    "node",
    "reason",
    "scope",
    "restarts",
    "exit_code",
    "at",
    "minutes_ago",
    "recent",
    "memory_request",
    "memory_limit",
    "message",
]
ROLLOUT_COLUMNS = [
    "deployment",
    "revision",
    "replicaset",
    "created",
    "rolled_out_at",
    "known_from",
    "change_cause",
    "images",
    "minutes_ago",
    "coincides",
]
NODE_OOM_REASONS = ("SystemOOM", "OOMKilling", "EvictionThresholdMet")
SIGKILL = 137
# Sidecars injected at admission, and the pod-template annotations their injector reads the memory from.
INJECTED = {
    "istio-proxy": (
        "Istio",
        "sidecar.istio.io/proxyMemory and sidecar.istio.io/proxyMemoryLimit",
    ),
    "linkerd-proxy": (
        "Linkerd",
        "config.linkerd.io/proxy-memory-request and config.linkerd.io/proxy-memory-limit",
    ),
}
NOT_HANDLED = {
    "CronJob": "change memory in the CronJob's jobTemplate; its next Job runs with it",
    "Job": "a Job's pod template cannot be changed: create the Job again with more memory",
    "Rollout": "an Argo Rollout: change its pod template (kubectl argo rollouts set image / edit)",
    "ReplicaSet": "a ReplicaSet without a Deployment: change its template and delete its pods",
    None: "a bare pod: no controller to change; recreate it with more memory",
}


def memory_kills(containers: pd.DataFrame, window_minutes: float, now: dt.datetime | None = None) -> pd.DataFrame:
    """Every kill that is about memory or may be (see the module docstring), newest first, with its scope and
    whether it falls within the last `window_minutes` (`recent`). An evicted pod is dated by its DisruptionTarget
    condition (its containers report no time); a kill without any time counts as recent."""
    now = now or dt.datetime.now(dt.timezone.utc)
    frame = containers
    oom = frame["last_termination"] == OOMKILLED
    evicted = frame["pod_reason"].eq(EVICTED) & frame["pod_message"].fillna("").str.contains("memory")
    sigkill = (frame["last_termination_exit_code"] == SIGKILL) & ~oom & ~evicted
    rows = frame[oom | evicted | sigkill].copy()
    rows["reason"] = [
        OOMKILLED if o else EVICTED if e else "SIGKILL"
        for o, e in zip(oom[rows.index], evicted[rows.index], strict=True)
    ]
    rows["scope"] = rows["reason"].map({OOMKILLED: "container", EVICTED: "node", "SIGKILL": "unknown"})
    rows["exit_code"] = rows["last_termination_exit_code"]
    rows["at"] = rows["last_termination_at"]
    rows["minutes_ago"] = [
        round((now - at).total_seconds() / 60, 1) if at is not None and not pd.isna(at) else None for at in rows["at"]
    ]
    rows["recent"] = [m is None or m <= window_minutes for m in rows["minutes_ago"]]
    rows["message"] = rows["pod_message"]
    rows = rows.assign(sort_key=rows["minutes_ago"].fillna(-1)).sort_values(["sort_key", "pod"])
    return rows[KILL_COLUMNS].reset_index(drop=True)


def nodes(kills: pd.DataFrame) -> set[str]:
    """The nodes the killed containers ran on, for kube.events.for_nodes."""
    return {n for n in kills["node"].dropna()}


def affected_events(cluster: Cluster, kills: pd.DataFrame) -> pd.DataFrame:
    """`kubectl describe pod ... | grep -A 10 Events` for every pod with a recent kill."""
    return events.for_names(cluster, set(kills.loc[kills["recent"], "pod"]))


def coinciding_rollouts(cluster: Cluster, kills: pd.DataFrame, window_minutes: float) -> pd.DataFrame:
    """When each Deployment owning a recently OOMKilled container was last rolled out (kube.rollouts.latest:
    re-used ReplicaSets and rollbacks included); `coincides`: within the window."""
    recent = kills[kills["recent"] & (kills["reason"] == OOMKILLED)]
    owners = sorted(set(recent["deployment"].dropna()))
    if not owners:
        return pd.DataFrame(columns=ROLLOUT_COLUMNS)
    now = dt.datetime.now(dt.timezone.utc)
    table = rollouts.latest(cluster, owners)
    table["minutes_ago"] = [
        round((now - at).total_seconds() / 60, 1) if at is not None and not pd.isna(at) else None
        for at in table["rolled_out_at"]
    ]
    table["coincides"] = [m is not None and m <= window_minutes for m in table["minutes_ago"]]
    return table[ROLLOUT_COLUMNS]


def assess(
    kills: pd.DataFrame,
    usage: pd.DataFrame,
    rollout_table: pd.DataFrame,
    window_minutes: float,
    node_events: events.NodeEvents | None = None,
) -> list[Finding]:
    return [
        _oomkilled_finding(kills, window_minutes),
        _node_finding(kills, node_events, window_minutes),
        _pressure_finding(usage),
        _rollout_finding(rollout_table, kills, window_minutes),
    ]


def check_memory(memory_request: str, memory_limit: str) -> None:
    """Both are Kubernetes quantities and the request does not exceed the limit, or ValueError."""
    try:
        request, limit = parse_quantity(memory_request), parse_quantity(memory_limit)
    except ValueError as e:
        raise ValueError(f"memory_request and memory_limit must be quantities such as 512Mi: {e}") from None
    if request > limit:
        raise ValueError(f"memory_request {memory_request} is above memory_limit {memory_limit}")


def resolve(cluster: Cluster, kills: pd.DataFrame, memory_request: str, memory_limit: str, apply: bool) -> list[Change]:
    """The runbook's resolution for each workload with a recent container-scope OOMKill: more memory and a restart,
    in one patch. A container whose limit is already at or above `memory_limit` is left alone (never lower a
    limit); when none needs more, the workload is only restarted. Injected sidecars get the injector's
    annotations to set; kinds this runbook does not change are named, with what to do instead."""
    wanted = float(parse_quantity(memory_limit))
    oom = kills[kills["recent"] & (kills["reason"] == OOMKILLED)]
    changes = []
    for (kind, name), group in oom.groupby(["workload_kind", "workload"], sort=True, dropna=False):
        kind, name = _none(kind), _none(name)
        if kind not in mitigate.KINDS or name is None:
            changes.append(
                mitigate.not_handled(
                    cluster,
                    "set-memory",
                    kind,
                    name or group["pod"].iloc[0],
                    apply,
                    NOT_HANDLED.get(kind, f"{kind} is not a kind this runbook changes"),
                )
            )
            continue
        template = mitigate.template_containers(cluster, kind, name)
        raise_memory, notes = {}, []
        for container, limit in group.groupby("container")["memory_limit"].max().items():
            if container not in template:
                changes.append(_injected(cluster, kind, name, container, memory_request, memory_limit, apply))
            elif pd.notna(limit) and limit >= wanted:
                notes.append(
                    f"{container} kept: its memory limit {mebibytes(limit)} is already at least {memory_limit}"
                )
            else:
                raise_memory[container] = (memory_request, memory_limit)
        if raise_memory:
            changes.append(mitigate.set_memory(cluster, name, raise_memory, apply, kind=kind))
        elif notes:
            restarted = mitigate.restart(cluster, name, apply, kind=kind)
            action = restarted.action
            changes.append(
                Change(
                    Action(action.id, action.mode, action.target, f"{action.result} ({'; '.join(notes)})"),
                    restarted.diff,
                )
            )
    return changes


# --- findings


def _oomkilled_finding(kills: pd.DataFrame, window_minutes: float) -> Finding:
    oom = kills[kills["reason"] == OOMKILLED]
    data = [
        {
            "pod": r.pod,
            "container": r.container,
            "container_type": r.container_type,
            "deployment": r.deployment,
            "workload": f"{r.workload_kind.lower()}/{r.workload}" if r.workload_kind else None,
            "restarts": int(r.restarts),
            "limit": mebibytes(r.memory_limit),
            "oomkilled_at": r.at,
            "minutes_ago": r.minutes_ago,
            "recent": bool(r.recent),
        }
        for r in oom.itertuples()
    ]
    recent = [d for d in data if d["recent"]]
    earlier = [d for d in data if not d["recent"]]
    stale = (
        "; earlier, outside the window (not evidence for this incident): "
        + ", ".join(f"{d['pod']}/{d['container']} {_ago(d['minutes_ago'])}" for d in earlier)
        if earlier
        else ""
    )
    if not recent:
        what = (
            f"no container was OOMKilled in the last {window_minutes:g} min"
            if earlier
            else ("no container's last termination was OOMKilled")
        )
        return Finding("oomkilled-containers", what + stale, "info", data)
    listed = ", ".join(
        f"{d['pod']}/{d['container']}{' (' + d['container_type'] + ')' if d['container_type'] != 'container' else ''} "
        f"({units.count(d['restarts'], 'restart')}, limit {d['limit'] or 'none'}, {_ago(d['minutes_ago'])})"
        for d in recent
    )
    return Finding(
        "oomkilled-containers",
        f"{units.count(len(recent), 'container')} OOMKilled at {'its' if len(recent) == 1 else 'their'} own limit "
        f"in the last {window_minutes:g} min: {listed}{stale}",
        "critical",
        data,
    )


def _node_finding(kills: pd.DataFrame, node_events: events.NodeEvents | None, window_minutes: float) -> Finding:
    evicted = kills[(kills["reason"] == EVICTED) & kills["recent"]]
    killed = kills[(kills["reason"] == "SIGKILL") & kills["recent"]]
    table = node_events.frame if node_events is not None else events.frame([])
    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=window_minutes)
    # A kernel "Memory cgroup out of memory" kill is a container's own limit (already an OOMKilled status); the
    # node ran out when the kernel says "Out of memory" (OOMKilling) or the kubelet reports SystemOOM.
    cgroup = table["message"].fillna("").str.contains("Memory cgroup out of memory")
    ooms = table[
        table["reason"].isin(NODE_OOM_REASONS) & ~cgroup & (pd.to_datetime(table["last_seen"], utc=True) >= since)
    ]
    data: dict[str, Any] = {
        "evicted": [
            {"pod": p, "node": n, "message": m}
            for p, n, m in evicted[["pod", "node", "message"]].drop_duplicates("pod").itertuples(index=False)
        ],
        "sigkilled": [f"{r.pod}/{r.container}" for r in killed.itertuples()],
        "node_events": [
            {
                "node": r.object,
                "reason": r.reason,
                "count": int(r.count),
                "last_seen": r.last_seen,
                "message": r.message,
            }
            for r in ooms.itertuples()
        ],
        "not_visible": node_events.note if node_events is not None else None,
    }
    parts = []
    if data["evicted"]:
        parts.append(
            "evicted for node memory (scope node: the kubelet chose them by usage above request): "
            + ", ".join(f"{e['pod']} on {e['node']}" for e in data["evicted"])
        )
    if data["node_events"]:
        parts.append(
            "node out-of-memory events (scope node: the kernel picked the victim): "
            + ", ".join(f"{e['node']} {e['reason']} ×{e['count']}" for e in data["node_events"])
        )
    if data["sigkilled"]:
        parts.append(
            "killed with SIGKILL (exit 137) without OOMKilled (scope unknown: the node's OOM killer, a liveness "
            "probe, or a manual kill; see the events): " + ", ".join(data["sigkilled"])
        )
    note = f" ({data['not_visible']})" if data["not_visible"] else ""
    if not parts:
        return Finding(
            "node-memory-pressure",
            f"no eviction, node out-of-memory event or unexplained SIGKILL in the last {window_minutes:g} min{note}",
            "info",
            data,
        )
    return Finding(
        "node-memory-pressure",
        "; ".join(parts) + ". Node memory: a higher container limit does not help; lower the node's load, "
        "raise requests to match usage, or add nodes" + note,
        "critical" if data["evicted"] or data["node_events"] else "warning",
        data,
    )


def _pressure_finding(usage: pd.DataFrame) -> Finding:
    unavailable = usage.attrs.get(UNAVAILABLE)
    if unavailable or usage["memory_usage"].isna().all():
        why = unavailable or "the metrics API (metrics-server) gave no usage"
        return Finding("memory-pressure", f"no memory usage: {why}", "info", [])
    near = usage[usage["near_limit"]]
    data = [
        {
            "pod": r.pod,
            "container": r.container,
            "usage": mebibytes(r.memory_usage),
            "limit": mebibytes(r.memory_limit),
            "pct_of_limit": round(float(r.memory_pct_of_limit), 1),
            "oomkilled": bool(r.oomkilled),
        }
        for r in near.itertuples()
    ]
    if near.empty:
        return Finding(
            "memory-pressure", f"no container uses {NEAR_LIMIT_PCT:g}% or more of its memory limit", "info", data
        )
    listed = ", ".join(
        f"{d['pod']}/{d['container']} {d['usage']} of {d['limit']} ({units.percent(d['pct_of_limit'] / 100)})"
        for d in data
    )
    return Finding(
        "memory-pressure",
        f"{units.count(len(data), 'container')} at {NEAR_LIMIT_PCT:g} % or more of "
        f"{'its' if len(data) == 1 else 'their'} memory limit: {listed}. Near the limit supports an OOMKill finding, "
        "it is none by itself: runtimes such as the JVM size their heap to the limit",
        "warning",
        data,
    )


def _rollout_finding(table: pd.DataFrame, kills: pd.DataFrame, window_minutes: float) -> Finding:
    coinciding = table[table["coincides"].astype(bool)]
    recent = kills[kills["recent"] & (kills["reason"] == OOMKILLED)]
    others = sorted(
        {
            f"{k.lower()}/{n}"
            for k, n in zip(recent["workload_kind"], recent["workload"], strict=True)
            if k and k != "Deployment"
        }
    )
    data = {
        "window_minutes": window_minutes,
        "deployments": sorted(set(table["deployment"])),
        "rollouts": coinciding[
            ["deployment", "revision", "rolled_out_at", "known_from", "change_cause", "images"]
        ].to_dict(orient="records"),
        "unknown": {
            r.deployment: r.known_from
            for r in table.itertuples()
            if r.rolled_out_at is None or pd.isna(r.rolled_out_at)
        },
        "not_read": others,
    }
    if recent.empty:
        return Finding("coinciding-rollout", "no recent OOMKilled container: no rollout to look at", "info", data)
    not_read = f"; rollouts of {', '.join(others)} not read (not Deployments)" if others else ""
    if coinciding.empty:
        owners = ", ".join(data["deployments"]) or "no deployment"
        return Finding(
            "coinciding-rollout",
            f"no rollout of {owners} recorded in the last {window_minutes:g} min{not_read}. That does not rule out "
            "a change: ConfigMap or Secret edits, and rollouts whose events have expired, leave no record here",
            "info",
            data,
        )
    listed = ", ".join(
        f"{r['deployment']} revision {r['revision']} ({r['change_cause'] or r['images']}; {r['known_from']})"
        for r in data["rollouts"]
    )
    return Finding(
        "coinciding-rollout",
        f"rolled out in the last {window_minutes:g} min: {listed}; the new release may need more memory or leak"
        + not_read,
        "warning",
        data,
    )


# --- helpers


def _injected(cluster: Cluster, kind: str, name: str, container: str, request: str, limit: str, apply: bool) -> Change:
    injector, annotations = INJECTED.get(
        container, ("a mutating admission webhook", "the injector's own configuration")
    )
    why = (
        f"container {container} is not in the pod template: {injector} injects it at admission, and a patch "
        f"naming it would be refused; set its memory with {annotations} on the pod template "
        f"(request {request}, limit {limit}), then restart"
    )
    return mitigate.not_handled(cluster, "set-memory", kind, name, apply, why)


def _ago(minutes: float | None) -> str:
    if minutes is None:
        return "time unknown"
    if minutes < 120:
        return f"{minutes:.0f} min ago"
    return f"{minutes / 60:.0f} h ago" if minutes < 2880 else f"{units.count(round(minutes / 1440), 'day')} ago"


def _none(value):
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else value

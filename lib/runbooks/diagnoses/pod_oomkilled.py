"""Pods OOMKilled: which containers, how often, how close to their limit, and what changed.

Runbook section: Memory Issues / Pod OOMKilled. A container counts as OOMKilled when its last
termination (kube.pods.containers) was: the current state if the container is terminated now, else
`lastState.terminated`. A container that finished with Completed (an old pod after a rolling deploy) or
with Error is not.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
from kubernetes.utils import parse_quantity

from ..evidence import Action, Finding
from ..kube import events, mitigate, rollouts
from ..kube.cluster import Cluster
from ..kube.mitigate import Change
from ..kube.pods import mebibytes
from ..kube.usage import NEAR_LIMIT_PCT

ROLLOUT_COLUMNS = [
    "deployment",
    "revision",
    "replicaset",
    "created",
    "change_cause",
    "images",
    "minutes_ago",
    "coincides",
]


def affected_events(cluster: Cluster, oom: pd.DataFrame) -> pd.DataFrame:
    """`kubectl describe pod ... | grep -A 10 Events` for every pod with an OOMKilled container."""
    return events.for_names(cluster, set(oom["pod"]))


def coinciding_rollouts(cluster: Cluster, oom: pd.DataFrame, window_minutes: float) -> pd.DataFrame:
    """The live revision of each deployment owning an OOMKilled container; `coincides`: rolled out within the window."""
    now = dt.datetime.now(dt.timezone.utc)
    rows = []
    for deployment in sorted(set(oom["deployment"].dropna())):
        revisions = rollouts.history(cluster, deployment)
        for live in revisions[revisions["current"]].itertuples():
            minutes_ago = (now - live.created).total_seconds() / 60 if live.created is not None else None
            rows.append(
                {
                    "deployment": deployment,
                    "revision": live.revision,
                    "replicaset": live.replicaset,
                    "created": live.created,
                    "change_cause": live.change_cause,
                    "images": live.images,
                    "minutes_ago": round(minutes_ago, 1) if minutes_ago is not None else None,
                    "coincides": minutes_ago is not None and minutes_ago <= window_minutes,
                }
            )
    return pd.DataFrame(rows, columns=ROLLOUT_COLUMNS)


def assess(oom: pd.DataFrame, usage: pd.DataFrame, rollout_table: pd.DataFrame, window_minutes: float) -> list[Finding]:
    return [
        _oomkilled_finding(oom),
        _pressure_finding(usage, oom),
        _rollout_finding(rollout_table, oom, window_minutes),
    ]


def check_memory(memory_request: str, memory_limit: str) -> None:
    """Both are Kubernetes quantities and the request does not exceed the limit, or ValueError."""
    try:
        request, limit = parse_quantity(memory_request), parse_quantity(memory_limit)
    except ValueError as e:
        raise ValueError(f"memory_request and memory_limit must be quantities such as 512Mi: {e}") from None
    if request > limit:
        raise ValueError(f"memory_request {memory_request} is above memory_limit {memory_limit}")


def resolve(cluster: Cluster, oom: pd.DataFrame, memory_request: str, memory_limit: str, apply: bool) -> list[Change]:
    """The runbook's resolution for each deployment owning an OOMKilled container: set memory, then restart.

    A container whose limit is already at or above `memory_limit` is left alone (never lower a limit).
    """
    wanted = float(parse_quantity(memory_limit))
    changes = []
    for deployment, group in oom.dropna(subset=["deployment"]).groupby("deployment", sort=True):
        for container, limit in group.groupby("container")["memory_limit"].max().items():
            if pd.notna(limit) and limit >= wanted:
                changes.append(_unchanged(cluster, deployment, container, limit, memory_limit, apply))
            else:
                changes.append(mitigate.set_memory(cluster, deployment, container, memory_request, memory_limit, apply))
        changes.append(mitigate.restart(cluster, deployment, apply))
    return changes


# --- findings


def _oomkilled_finding(oom: pd.DataFrame) -> Finding:
    data = [
        {
            "pod": r.pod,
            "container": r.container,
            "deployment": r.deployment,
            "restarts": int(r.restarts),
            "limit": mebibytes(r.memory_limit),
            "oomkilled_at": r.oomkilled_at,
        }
        for r in oom.itertuples()
    ]
    if oom.empty:
        return Finding("oomkilled-containers", "no container's last termination was OOMKilled", "info", data)
    listed = ", ".join(
        f"{d['pod']}/{d['container']} ({d['restarts']} restarts, limit {d['limit'] or 'none'})" for d in data
    )
    return Finding(
        "oomkilled-containers", f"{len(data)} container(s) last terminated OOMKilled: {listed}", "critical", data
    )


def _pressure_finding(usage: pd.DataFrame, oom: pd.DataFrame) -> Finding:
    if usage["memory_usage"].isna().all():
        return Finding(
            "memory-pressure", "no memory usage: the metrics API (metrics-server) did not answer", "info", []
        )
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
        f"{d['pod']}/{d['container']} {d['usage']} of {d['limit']} ({d['pct_of_limit']:g}%)" for d in data
    )
    return Finding(
        "memory-pressure",
        f"{len(data)} container(s) at {NEAR_LIMIT_PCT:g}% or more of their memory limit: {listed}",
        "warning",
        data,
    )


def _rollout_finding(table: pd.DataFrame, oom: pd.DataFrame, window_minutes: float) -> Finding:
    coinciding = table[table["coincides"].astype(bool)]
    data = {
        "window_minutes": window_minutes,
        "deployments": sorted(set(table["deployment"])),
        "rollouts": coinciding[["deployment", "revision", "created", "change_cause", "images"]].to_dict(
            orient="records"
        ),
    }
    if oom.empty:
        return Finding("coinciding-rollout", "no OOMKilled container: no rollout to look at", "info", data)
    if coinciding.empty:
        owners = ", ".join(data["deployments"]) or "no deployment (the pods are not owned by one)"
        return Finding(
            "coinciding-rollout",
            f"no rollout of {owners} in the last {window_minutes:g} min: the memory growth is not a new release",
            "info",
            data,
        )
    listed = ", ".join(
        f"{r['deployment']} revision {r['revision']} ({r['change_cause'] or r['images']})" for r in data["rollouts"]
    )
    return Finding(
        "coinciding-rollout",
        f"rolled out in the last {window_minutes:g} min: {listed}; the new release may need more memory or leak",
        "warning",
        data,
    )


# --- helpers


def _unchanged(cluster: Cluster, deployment: str, container: str, limit: float, wanted: str, apply: bool) -> Change:
    target = f"deployment/{deployment} in {cluster.namespace}"
    result = f"container {container} not changed: its memory limit {mebibytes(limit)} is already at least {wanted}"
    return Change(
        Action("set-memory", "applied" if apply else "dry-run", target, result),
        pd.DataFrame(columns=["field", "before", "after"]),
    )

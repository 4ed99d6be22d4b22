"""Pods OOMKilled: which containers, how often, how close to their limit, and what changed.

Runbook section: Memory Issues / Pod OOMKilled. A container counts as OOMKilled when its LAST
termination was: the current state if the container is terminated now, else `lastState.terminated`.
A container that finished with Completed (an old pod after a rolling deploy) or with Error is not.
Pods are traced to their Deployment through their owner references: pod -> ReplicaSet -> Deployment.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
from kubernetes.utils import parse_quantity

from ..evidence import Action, Finding
from . import events, metrics, mitigate, pods, rollouts
from .cluster import Cluster
from .mitigate import Change

OOMKILLED = "OOMKilled"
NEAR_LIMIT_PCT = 90.0  # memory used, in % of the limit, from which a container is under memory pressure

OOM_COLUMNS = ["pod", "container", "deployment", "restarts", "exit_code", "oomkilled_at", "memory_request", "memory_limit"]
ROLLOUT_COLUMNS = ["deployment", "revision", "replicaset", "created", "change_cause", "images", "minutes_ago", "coincides"]


def containers(cluster: Cluster, selector: str = "") -> pd.DataFrame:
    """One row per container (as kube.pods.containers) with its `deployment` and its last termination.

    `last_termination`, `last_termination_exit_code`, `last_termination_at`: the current state when the
    container is terminated now, else its previous instance's (`lastState.terminated`).
    """
    pod_list = pods.list_pods(cluster, selector)
    frame = pods.containers(cluster, pods=pod_list)
    owners = pods.owning_deployments(cluster, pod_list)
    last = pd.DataFrame([
        {"pod": pod.metadata.name, "container": status.name, **_last_termination(status)}
        for pod in pod_list for status in pod.status.container_statuses or []
    ], columns=["pod", "container", "last_termination", "last_termination_exit_code", "last_termination_at"])
    frame = frame.merge(last, on=["pod", "container"], how="left")
    frame.insert(2, "deployment", pd.Series([owners.get(pod) for pod in frame["pod"]], index=frame.index, dtype=object))
    return frame


def oomkilled(frame: pd.DataFrame) -> pd.DataFrame:
    """The containers of `frame` (from containers()) whose last termination was OOMKilled, most restarts first."""
    hits = frame[frame["last_termination"] == OOMKILLED]
    hits = hits.rename(columns={"last_termination_exit_code": "exit_code", "last_termination_at": "oomkilled_at"})
    return hits[OOM_COLUMNS].sort_values(["restarts", "pod"], ascending=[False, True], ignore_index=True)


def memory_usage(cluster: Cluster, selector: str, oom: pd.DataFrame) -> pd.DataFrame:
    """`kubectl top pods` next to the limits: usage, limit, % of limit, and whether the container was OOMKilled."""
    usage = metrics.pod_usage(cluster, selector)
    killed = set(zip(oom["pod"], oom["container"]))
    usage["oomkilled"] = [(p, c) in killed for p, c in zip(usage["pod"], usage["container"])]
    usage["near_limit"] = usage["memory_pct_of_limit"] >= NEAR_LIMIT_PCT
    columns = ["pod", "container", "memory_usage", "memory_request", "memory_limit", "memory_pct_of_limit",
               "near_limit", "oomkilled", "cpu_usage"]
    return usage[columns].sort_values("memory_pct_of_limit", ascending=False, ignore_index=True)


def affected_events(cluster: Cluster, oom: pd.DataFrame) -> pd.DataFrame:
    """`kubectl describe pod ... | grep -A 10 Events` for every pod with an OOMKilled container."""
    return events.for_names(cluster, set(oom["pod"]))


def coinciding_rollouts(cluster: Cluster, oom: pd.DataFrame, window_minutes: float) -> pd.DataFrame:
    """The live revision of each deployment owning an OOMKilled container; `coincides` when rolled out within the window."""
    now = dt.datetime.now(dt.timezone.utc)
    rows = []
    for deployment in sorted(set(oom["deployment"].dropna())):
        revisions = rollouts.history(cluster, deployment)
        for live in revisions[revisions["current"]].itertuples():
            minutes_ago = (now - live.created).total_seconds() / 60 if live.created is not None else None
            rows.append({
                "deployment": deployment, "revision": live.revision, "replicaset": live.replicaset,
                "created": live.created, "change_cause": live.change_cause, "images": live.images,
                "minutes_ago": round(minutes_ago, 1) if minutes_ago is not None else None,
                "coincides": minutes_ago is not None and minutes_ago <= window_minutes,
            })
    return pd.DataFrame(rows, columns=ROLLOUT_COLUMNS)


def assess(oom: pd.DataFrame, usage: pd.DataFrame, rollout_table: pd.DataFrame, window_minutes: float) -> list[Finding]:
    return [_oomkilled_finding(oom), _pressure_finding(usage, oom), _rollout_finding(rollout_table, oom, window_minutes)]


def check_memory(memory_request: str, memory_limit: str) -> None:
    """Both are Kubernetes quantities and the request does not exceed the limit, or ValueError."""
    try:
        request, limit = parse_quantity(memory_request), parse_quantity(memory_limit)
    except ValueError as e:
        raise ValueError(f"memory_request and memory_limit must be quantities such as 512Mi: {e}") from None
    if request > limit:
        raise ValueError(f"memory_request {memory_request} is above memory_limit {memory_limit}")


def resolve(cluster: Cluster, oom: pd.DataFrame, memory_request: str, memory_limit: str, apply: bool) -> list[Change]:
    """The seed's resolution for each deployment owning an OOMKilled container: set memory, then restart.

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


def mebibytes(value: float | None) -> str | None:
    """Bytes as Kubernetes writes memory: 268435456 -> '256Mi'."""
    if value is None or pd.isna(value):
        return None
    for unit, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if value >= size and value % size == 0:
            return f"{int(value // size)}{unit}"
    return f"{value / 2**20:.0f}Mi" if value >= 2**20 else f"{int(value)}"


# --- findings

def _oomkilled_finding(oom: pd.DataFrame) -> Finding:
    data = [{
        "pod": r.pod, "container": r.container, "deployment": r.deployment, "restarts": int(r.restarts),
        "limit": mebibytes(r.memory_limit), "oomkilled_at": r.oomkilled_at,
    } for r in oom.itertuples()]
    if oom.empty:
        return Finding("oomkilled-containers", "no container's last termination was OOMKilled", "info", data)
    listed = ", ".join(f"{d['pod']}/{d['container']} ({d['restarts']} restarts, limit {d['limit'] or 'none'})" for d in data)
    return Finding("oomkilled-containers", f"{len(data)} container(s) last terminated OOMKilled: {listed}", "critical", data)


def _pressure_finding(usage: pd.DataFrame, oom: pd.DataFrame) -> Finding:
    if usage["memory_usage"].isna().all():
        return Finding("memory-pressure", "no memory usage: the metrics API (metrics-server) did not answer", "info", [])
    near = usage[usage["near_limit"]]
    data = [{
        "pod": r.pod, "container": r.container, "usage": mebibytes(r.memory_usage), "limit": mebibytes(r.memory_limit),
        "pct_of_limit": round(float(r.memory_pct_of_limit), 1), "oomkilled": bool(r.oomkilled),
    } for r in near.itertuples()]
    if near.empty:
        return Finding("memory-pressure", f"no container uses {NEAR_LIMIT_PCT:g}% or more of its memory limit", "info", data)
    listed = ", ".join(f"{d['pod']}/{d['container']} {d['usage']} of {d['limit']} ({d['pct_of_limit']:g}%)" for d in data)
    return Finding("memory-pressure", f"{len(data)} container(s) at {NEAR_LIMIT_PCT:g}% or more of their memory limit: {listed}",
                   "warning", data)


def _rollout_finding(table: pd.DataFrame, oom: pd.DataFrame, window_minutes: float) -> Finding:
    coinciding = table[table["coincides"].astype(bool)]
    data = {
        "window_minutes": window_minutes,
        "deployments": sorted(set(table["deployment"])),
        "rollouts": coinciding[["deployment", "revision", "created", "change_cause", "images"]].to_dict(orient="records"),
    }
    if oom.empty:
        return Finding("coinciding-rollout", "no OOMKilled container: no rollout to look at", "info", data)
    if coinciding.empty:
        owners = ", ".join(data["deployments"]) or "no deployment (the pods are not owned by one)"
        return Finding("coinciding-rollout",
                       f"no rollout of {owners} in the last {window_minutes:g} min: the memory growth is not a new release",
                       "info", data)
    listed = ", ".join(f"{r['deployment']} revision {r['revision']} ({r['change_cause'] or r['images']})" for r in data["rollouts"])
    return Finding("coinciding-rollout",
                   f"rolled out in the last {window_minutes:g} min: {listed}; the new release may need more memory or leak",
                   "warning", data)


# --- helpers

def _last_termination(status) -> dict:
    terminated = status.state.terminated if status.state and status.state.terminated else None
    if terminated is None and status.last_state and status.last_state.terminated:
        terminated = status.last_state.terminated
    return {
        "last_termination": terminated.reason if terminated else None,
        "last_termination_exit_code": terminated.exit_code if terminated else None,
        "last_termination_at": terminated.finished_at if terminated else None,
    }


def _unchanged(cluster: Cluster, deployment: str, container: str, limit: float, wanted: str, apply: bool) -> Change:
    target = f"deployment/{deployment} in {cluster.namespace}"
    result = f"container {container} not changed: its memory limit {mebibytes(limit)} is already at least {wanted}"
    return Change(Action("set-memory", "applied" if apply else "dry-run", target, result),
                  pd.DataFrame(columns=["field", "before", "after"]))

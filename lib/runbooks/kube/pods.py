"""Pods and their containers: owner, state, restarts, last termination, requests and limits.

What `kubectl get pods` and `kubectl describe pod` show, as one row per container. A container's last
termination is its current state if it is terminated now, else its previous instance's
(`lastState.terminated`). Pods are traced to their Deployment through their owner references:
pod -> ReplicaSet -> Deployment.
"""

from __future__ import annotations

import pandas as pd
from kubernetes.utils import parse_quantity

from .cluster import REQUEST_TIMEOUT, Cluster

CONTAINER_COLUMNS = [
    "pod",
    "container",
    "deployment",
    "node",
    "phase",
    "ready",
    "restarts",
    "state",
    "reason",
    "started_at",
    "last_termination_reason",
    "last_exit_code",
    "last_started_at",
    "last_finished_at",
    "memory_request",
    "memory_limit",
    "cpu_request",
    "cpu_limit",
    "last_termination",
    "last_termination_exit_code",
    "last_termination_at",
]
OOMKILLED = "OOMKilled"
OOM_COLUMNS = [
    "pod",
    "container",
    "deployment",
    "restarts",
    "exit_code",
    "oomkilled_at",
    "memory_request",
    "memory_limit",
]
NOT_RUNNING_COLUMNS = [
    "pod",
    "container",
    "deployment",
    "phase",
    "ready",
    "state",
    "reason",
    "restarts",
    "last_termination",
]


def list_pods(cluster: Cluster, selector: str = "") -> list:
    return cluster.core.list_namespaced_pod(
        cluster.namespace, label_selector=selector or None, _request_timeout=REQUEST_TIMEOUT
    ).items


def containers(cluster: Cluster, selector: str = "") -> pd.DataFrame:
    """One row per container of the pods matching `selector`, with the Deployment owning its pod. Memory in
    bytes, CPU in millicores.

    `last_termination_reason`/`last_exit_code`/...: the previous instance's (`lastState.terminated`);
    `last_termination`, `last_termination_exit_code`, `last_termination_at`: the current state when the
    container is terminated now, else the previous instance's.
    """
    pod_list = list_pods(cluster, selector)
    owners = owning_deployments(cluster, pod_list)
    rows = []
    for pod in pod_list:
        statuses = {s.name: s for s in pod.status.container_statuses or []}
        for spec in pod.spec.containers:
            status = statuses.get(spec.name)
            state, reason, started = _state(status)
            last = status.last_state.terminated if status and status.last_state else None
            resources = spec.resources
            rows.append(
                {
                    "pod": pod.metadata.name,
                    "container": spec.name,
                    "deployment": owners.get(pod.metadata.name),
                    "node": pod.spec.node_name,
                    "phase": pod.status.phase,
                    "ready": bool(status and status.ready),
                    "restarts": status.restart_count if status else 0,
                    "state": state,
                    "reason": reason,
                    "started_at": started,
                    "last_termination_reason": last.reason if last else None,
                    "last_exit_code": last.exit_code if last else None,
                    "last_started_at": last.started_at if last else None,
                    "last_finished_at": last.finished_at if last else None,
                    "memory_request": _quantity(resources, "requests", "memory"),
                    "memory_limit": _quantity(resources, "limits", "memory"),
                    "cpu_request": _quantity(resources, "requests", "cpu", scale=1000),
                    "cpu_limit": _quantity(resources, "limits", "cpu", scale=1000),
                    **_last_termination(status),
                }
            )
    frame = pd.DataFrame(rows, columns=CONTAINER_COLUMNS)
    frame["deployment"] = pd.Series(
        [row["deployment"] for row in rows], index=frame.index, dtype=object
    )  # None stays None
    return frame


def owning_deployments(cluster: Cluster, pod_list: list) -> dict[str, str | None]:
    """Pod name -> the Deployment that owns it through its ReplicaSet; None for a bare pod, a StatefulSet's,
    a Job's, or one whose ReplicaSet is gone. One list of ReplicaSets, however many pods."""
    sets = cluster.apps.list_namespaced_replica_set(cluster.namespace, _request_timeout=REQUEST_TIMEOUT).items
    deployment_of = {rs.metadata.name: _controller(rs.metadata.owner_references, "Deployment") for rs in sets}
    return {
        pod.metadata.name: deployment_of.get(_controller(pod.metadata.owner_references, "ReplicaSet"))
        for pod in pod_list
    }


def not_running(containers: pd.DataFrame) -> pd.DataFrame:
    """`kubectl get pods | grep -v Running`: containers (of `containers()`) of pods not Running or not Ready.

    Pods that Succeeded (e.g. the old pod after a rolling deploy, its container Completed) are not a fault.
    """
    running = (containers["phase"] == "Running") & containers["ready"].astype(bool)
    down = containers[~running & (containers["phase"] != "Succeeded")]
    return down[NOT_RUNNING_COLUMNS].reset_index(drop=True)


def oomkilled(frame: pd.DataFrame) -> pd.DataFrame:
    """The containers of `frame` (from containers()) whose last termination was OOMKilled, most restarts first."""
    hits = frame[frame["last_termination"] == OOMKILLED]
    hits = hits.rename(columns={"last_termination_exit_code": "exit_code", "last_termination_at": "oomkilled_at"})
    return hits[OOM_COLUMNS].sort_values(["restarts", "pod"], ascending=[False, True], ignore_index=True)


def mebibytes(value: float | None) -> str | None:
    """Bytes as Kubernetes writes memory: 268435456 -> '256Mi'."""
    if value is None or pd.isna(value):
        return None
    for unit, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if value >= size and value % size == 0:
            return f"{int(value // size)}{unit}"
    return f"{value / 2**20:.0f}Mi" if value >= 2**20 else f"{int(value)}"


def _controller(references, kind: str) -> str | None:
    """Name of the managing owner (the one marked controller, else the first) when it is of `kind`."""
    references = references or []
    owner = next((r for r in references if r.controller), references[0] if references else None)
    return owner.name if owner is not None and owner.kind == kind else None


def _state(status) -> tuple[str, str | None, object]:
    if status is None or status.state is None:
        return "unknown", None, None
    if status.state.running:
        return "running", None, status.state.running.started_at
    if status.state.waiting:
        return "waiting", status.state.waiting.reason, None
    if status.state.terminated:
        return "terminated", status.state.terminated.reason, status.state.terminated.started_at
    return "unknown", None, None


def _last_termination(status) -> dict:
    terminated = None
    if status is not None:
        terminated = status.state.terminated if status.state and status.state.terminated else None
        if terminated is None and status.last_state and status.last_state.terminated:
            terminated = status.last_state.terminated
    return {
        "last_termination": terminated.reason if terminated else None,
        "last_termination_exit_code": terminated.exit_code if terminated else None,
        "last_termination_at": terminated.finished_at if terminated else None,
    }


def _quantity(resources, kind: str, name: str, scale: int = 1) -> float | None:
    values = getattr(resources, kind, None) if resources else None
    if not values or name not in values:
        return None
    return float(parse_quantity(values[name]) * scale)

"""Pods and their containers: state, restarts, last termination, requests and limits.

What `kubectl get pods` and `kubectl describe pod` show, as one row per container.
"""

from __future__ import annotations

import pandas as pd
from kubernetes.utils import parse_quantity

from .cluster import REQUEST_TIMEOUT, Cluster

CONTAINER_COLUMNS = [
    "pod", "container", "node", "phase", "ready", "restarts", "state", "reason", "started_at",
    "last_termination_reason", "last_exit_code", "last_started_at", "last_finished_at",
    "memory_request", "memory_limit", "cpu_request", "cpu_limit",
]


def list_pods(cluster: Cluster, selector: str = "") -> list:
    return cluster.core.list_namespaced_pod(cluster.namespace, label_selector=selector or None,
                                            _request_timeout=REQUEST_TIMEOUT).items


def containers(cluster: Cluster, selector: str = "", pods: list | None = None) -> pd.DataFrame:
    """One row per container of the pods matching `selector`. Memory in bytes, CPU in millicores."""
    rows = []
    for pod in pods if pods is not None else list_pods(cluster, selector):
        statuses = {s.name: s for s in pod.status.container_statuses or []}
        for spec in pod.spec.containers:
            status = statuses.get(spec.name)
            state, reason, started = _state(status)
            last = status.last_state.terminated if status and status.last_state else None
            resources = spec.resources
            rows.append({
                "pod": pod.metadata.name,
                "container": spec.name,
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
            })
    return pd.DataFrame(rows, columns=CONTAINER_COLUMNS)


def owning_deployments(cluster: Cluster, pod_list: list) -> dict[str, str | None]:
    """Pod name -> the Deployment that owns it through its ReplicaSet; None for a bare pod, a StatefulSet's,
    a Job's, or one whose ReplicaSet is gone. One list of ReplicaSets, however many pods."""
    sets = cluster.apps.list_namespaced_replica_set(cluster.namespace, _request_timeout=REQUEST_TIMEOUT).items
    deployment_of = {rs.metadata.name: _controller(rs.metadata.owner_references, "Deployment") for rs in sets}
    return {pod.metadata.name: deployment_of.get(_controller(pod.metadata.owner_references, "ReplicaSet"))
            for pod in pod_list}


def unhealthy(cluster: Cluster, selector: str = "") -> pd.DataFrame:
    """Containers of pods that are not Running, or not Ready (the seed's `get pods | grep -v Running`)."""
    frame = containers(cluster, selector)
    return frame[(frame["phase"] != "Running") | ~frame["ready"]].reset_index(drop=True)


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


def _quantity(resources, kind: str, name: str, scale: int = 1) -> float | None:
    values = getattr(resources, kind, None) if resources else None
    if not values or name not in values:
        return None
    return float(parse_quantity(values[name]) * scale)

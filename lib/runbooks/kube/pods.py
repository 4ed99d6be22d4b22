"""Pods and their containers: owning workload, state, restarts, last termination, requests and limits.

What `kubectl get pods` and `kubectl describe pod` show, as one row per container: the containers, and the
init containers too (`container_type` "init"), among them native sidecars (`initContainers` with
`restartPolicy: Always`, e.g. istio-proxy or a log shipper since Kubernetes 1.29: "sidecar"), which run beside
the containers and can be OOMKilled like them. A container's last termination is its current state if it is
terminated now, else its previous instance's (`lastState.terminated`).

Each pod is traced to the workload at the top of its owner references (`workload_kind`, `workload`): a
ReplicaSet's Deployment (or an Argo Rollout), a Job's CronJob, a StatefulSet, a DaemonSet; a ReplicaSet or Job
without an owner is the workload itself; a bare pod has none. `deployment` is the workload's name when it is a
Deployment. A pod evicted by the kubelet keeps `pod_reason` Evicted and the kubelet's message in `pod_message`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from .. import display
from .cluster import REQUEST_TIMEOUT, Cluster

CONTAINER_COLUMNS = [
    "pod",
    "container",
    "container_type",
    "workload_kind",
    "workload",
    "deployment",
    "node",
    "phase",
    "pod_reason",
    "pod_message",
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
EVICTED = "Evicted"
OOM_COLUMNS = [
    "pod",
    "container",
    "container_type",
    "workload_kind",
    "workload",
    "deployment",
    "node",
    "restarts",
    "exit_code",
    "oomkilled_at",
    "memory_request",
    "memory_limit",
]
NOT_RUNNING_COLUMNS = [
    "pod",
    "container",
    "workload_kind",
    "workload",
    "deployment",
    "phase",
    "pod_reason",
    "ready",
    "state",
    "reason",
    "restarts",
    "last_termination",
]
WORKLOAD_COLUMNS = ["workload_kind", "workload"]


def list_pods(cluster: Cluster, selector: str = "") -> list:
    return cluster.core.list_namespaced_pod(
        cluster.namespace, label_selector=selector or None, _request_timeout=REQUEST_TIMEOUT
    ).items


def containers(cluster: Cluster, selector: str = "") -> pd.DataFrame:
    """One row per container and init container of the pods matching `selector`, with the workload owning its pod.
    Memory in bytes, CPU in millicores.

    `last_termination_reason`/`last_exit_code`/...: the previous instance's (`lastState.terminated`);
    `last_termination`, `last_termination_exit_code`, `last_termination_at`: the current state when the
    container is terminated now, else the previous instance's.
    """
    pod_list = list_pods(cluster, selector)
    owners = owning_workloads(cluster, pod_list)
    rows = []
    for pod in pod_list:
        kind, workload = owners.get(pod.metadata.name) or (None, None)
        statuses = {
            s.name: s for s in [*(pod.status.init_container_statuses or []), *(pod.status.container_statuses or [])]
        }
        for spec, container_type in _specs(pod):
            status = statuses.get(spec.name)
            state, reason, started = _state(status)
            last = status.last_state.terminated if status and status.last_state else None
            resources = spec.resources
            rows.append(
                {
                    "pod": pod.metadata.name,
                    "container": spec.name,
                    "container_type": container_type,
                    "workload_kind": kind,
                    "workload": workload,
                    "deployment": workload if kind == "Deployment" else None,
                    "node": pod.spec.node_name,
                    "phase": pod.status.phase,
                    "pod_reason": pod.status.reason,
                    "pod_message": pod.status.message,
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
                    **_last_termination(status, _ended(pod)),
                }
            )
    frame = pd.DataFrame(rows, columns=CONTAINER_COLUMNS)
    for column in ("workload_kind", "workload", "deployment", "pod_reason", "pod_message"):  # None stays None
        frame[column] = pd.Series([row[column] for row in rows], index=frame.index, dtype=object)
    return frame


def owning_workloads(cluster: Cluster, pod_list: list) -> dict[str, tuple[str, str] | None]:
    """Pod name -> (kind, name) of the workload at the top of its owner chain, None for a bare pod.

    A ReplicaSet's owner (a Deployment, or an Argo Rollout) and a Job's (a CronJob) are read from one list of
    ReplicaSets and one of Jobs, however many pods; a ReplicaSet or Job gone, or not readable, stands for itself.
    """
    refs = {pod.metadata.name: _controller(pod.metadata.owner_references) for pod in pod_list}
    kinds = {ref[0] for ref in refs.values() if ref}
    parents = {}
    if "ReplicaSet" in kinds:
        parents.update(_owners(cluster.apps.list_namespaced_replica_set, cluster.namespace, "ReplicaSet"))
    if "Job" in kinds:
        parents.update(_owners(cluster.batch.list_namespaced_job, cluster.namespace, "Job"))
    return {name: (parents.get(ref) or ref) if ref else None for name, ref in refs.items()}


def owning_deployments(cluster: Cluster, pod_list: list) -> dict[str, str | None]:
    """Pod name -> the Deployment owning it through its ReplicaSet; None for any other owner or none."""
    return {
        name: owner[1] if owner and owner[0] == "Deployment" else None
        for name, owner in owning_workloads(cluster, pod_list).items()
    }


def not_running(containers: pd.DataFrame) -> pd.DataFrame:
    """`kubectl get pods | grep -v Running`: containers (of `containers()`) of pods not Running or not Ready.

    Pods that Succeeded (e.g. the old pod after a rolling deploy, its container Completed) are not a fault; an
    init container that finished (Completed, ready) is not either.
    """
    running = (containers["phase"] == "Running") & containers["ready"].astype(bool)
    down = containers[~running & (containers["phase"] != "Succeeded")]
    return display.table(
        down[NOT_RUNNING_COLUMNS].reset_index(drop=True), empty="Every pod is Running and Ready: nothing to do here."
    )


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


def _specs(pod) -> list[tuple[Any, str]]:
    """(container spec, type) for the init containers ("init", or "sidecar" with restartPolicy Always), then
    the containers ("container")."""
    init = [
        (c, "sidecar" if getattr(c, "restart_policy", None) == "Always" else "init")
        for c in pod.spec.init_containers or []
    ]
    return [*init, *((c, "container") for c in pod.spec.containers)]


def _owners(list_call, namespace: str, kind: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(kind, name) -> (owner kind, owner name) of every object of a kind in the namespace that has an owner."""
    try:
        items = list_call(namespace, _request_timeout=REQUEST_TIMEOUT).items
    except ApiException as e:
        if e.status in (403, 404):  # not allowed or not served: the object stands for itself
            return {}
        raise
    owners = {(kind, item.metadata.name): _controller(item.metadata.owner_references) for item in items}
    return {key: owner for key, owner in owners.items() if owner}


def _controller(references) -> tuple[str, str] | None:
    """(kind, name) of the managing owner: the one marked controller, else the first; None without any."""
    references = references or []
    owner = next((r for r in references if r.controller), references[0] if references else None)
    return (owner.kind, owner.name) if owner is not None else None


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


def _last_termination(status, pod_ended) -> dict:
    """The current termination, else the previous one. A container the kubelet could no longer find when its
    pod was terminated (evicted, deleted: ContainerStatusUnknown) has no times: its pod's end stands in."""
    terminated = None
    if status is not None:
        terminated = status.state.terminated if status.state and status.state.terminated else None
        if terminated is None and status.last_state and status.last_state.terminated:
            terminated = status.last_state.terminated
    return {
        "last_termination": terminated.reason if terminated else None,
        "last_termination_exit_code": terminated.exit_code if terminated else None,
        "last_termination_at": (terminated.finished_at or pod_ended) if terminated else None,
    }


def _ended(pod):
    """When a pod that ended did: its DisruptionTarget condition (eviction, preemption), else its Ready one."""
    if pod.status.phase not in ("Failed", "Succeeded"):
        return None
    conditions = {c.type: c for c in pod.status.conditions or []}
    ended = conditions.get("DisruptionTarget") or conditions.get("Ready")
    return ended.last_transition_time if ended else None


def _quantity(resources, kind: str, name: str, scale: int = 1) -> float | None:
    values = getattr(resources, kind, None) if resources else None
    if not values or name not in values:
        return None
    return float(parse_quantity(values[name]) * scale)

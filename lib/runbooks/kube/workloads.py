"""Workloads: the controllers that own pods (Deployments, StatefulSets, DaemonSets, CronJobs), read alike.

One place knows how each kind is listed and read through the client, where its pod template is (a CronJob's
under its jobTemplate) and how many pods it wants and has ready (a DaemonSet's from its status).
"""

from __future__ import annotations

from typing import Any

from .cluster import REQUEST_TIMEOUT, Cluster

SERVING = ("Deployment", "StatefulSet", "DaemonSet")  # workloads that keep pods running: services
WITH_TEMPLATES = (*SERVING, "CronJob")


def list_all(cluster: Cluster, kinds: tuple[str, ...] = SERVING) -> list[tuple[str, Any]]:
    """(kind, object) of every workload of these kinds in the namespace, by name then kind."""
    found = [
        (kind, item)
        for kind in kinds
        for item in _listing(cluster, kind)(cluster.namespace, _request_timeout=REQUEST_TIMEOUT).items
    ]
    return sorted(found, key=lambda pair: (pair[1].metadata.name, pair[0]))


def read(cluster: Cluster, kind: str, name: str) -> Any:
    """The workload object; ApiException (404) when there is none."""
    reader = {
        "Deployment": cluster.apps.read_namespaced_deployment,
        "StatefulSet": cluster.apps.read_namespaced_stateful_set,
        "DaemonSet": cluster.apps.read_namespaced_daemon_set,
        "CronJob": cluster.batch.read_namespaced_cron_job,
    }[kind]
    return reader(name, cluster.namespace, _request_timeout=REQUEST_TIMEOUT)


def pod_spec(kind: str, workload: Any) -> Any:
    """The pod spec of its template."""
    template = workload.spec.job_template.spec.template if kind == "CronJob" else workload.spec.template
    return template.spec


def template_labels(kind: str, workload: Any) -> dict[str, str]:
    template = workload.spec.job_template.spec.template if kind == "CronJob" else workload.spec.template
    return (template.metadata.labels if template.metadata else None) or {}


def desired(kind: str, workload: Any) -> int:
    """Pods it wants: spec.replicas (unset: 1), a DaemonSet's desiredNumberScheduled."""
    if kind == "DaemonSet":
        return int((workload.status.desired_number_scheduled if workload.status else 0) or 0)
    return 1 if workload.spec.replicas is None else int(workload.spec.replicas)


def ready(kind: str, workload: Any) -> int:
    """Pods ready as its controller reports them: status.readyReplicas, a DaemonSet's numberReady."""
    if workload.status is None:
        return 0
    return int((workload.status.number_ready if kind == "DaemonSet" else workload.status.ready_replicas) or 0)


def _listing(cluster: Cluster, kind: str):
    return {
        "Deployment": cluster.apps.list_namespaced_deployment,
        "StatefulSet": cluster.apps.list_namespaced_stateful_set,
        "DaemonSet": cluster.apps.list_namespaced_daemon_set,
        "CronJob": cluster.batch.list_namespaced_cron_job,
    }[kind]

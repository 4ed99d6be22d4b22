"""Server-side printing: the meta.k8s.io/v1 Table that `kubectl get` asks for.

Pods and Deployments get kubectl's usual columns; everything else gets NAME and AGE.
"""

from .scenario import parse_time, utcnow


def wants_table(accept):
    return "as=Table" in (accept or "")


def table(resource, items, resource_version):
    columns, cells = COLUMNS.get(resource["kind"], (["Name", "Age"], _default_cells))
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {
                "name": name,
                "type": "string",
                "format": "name" if name == "Name" else "",
                "description": "",
                "priority": 0,
            }
            for name in columns
        ],
        "rows": [
            {
                "cells": cells(obj),
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"],
                },
            }
            for obj in items
        ],
    }


def age(timestamp):
    """kubectl's short human duration: 45s, 5m30s, 20m, 5h30m, 36h, 3d5h, 40d."""
    if not timestamp:
        return "<unknown>"
    s = int((utcnow() - parse_time(timestamp)).total_seconds())
    if s < 120:
        return f"{s}s"
    m, h, d = s // 60, s // 3600, s // 86400
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if h < 3:
        return f"{m}m"
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if d < 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    return f"{d}d" if d < 730 else f"{d // 365}y"


def _default_cells(obj):
    return [obj["metadata"]["name"], age(obj["metadata"].get("creationTimestamp"))]


def _pod_cells(pod):
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for container in statuses:
        state = container.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif state.get("terminated"):
            reason = state["terminated"].get("reason") or f"ExitCode:{state['terminated'].get('exitCode')}"
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    restarts = sum(c.get("restartCount", 0) for c in statuses)
    finished = [
        c["lastState"]["terminated"].get("finishedAt") for c in statuses if (c.get("lastState") or {}).get("terminated")
    ]
    restarts_text = f"{restarts} ({age(max(finished))} ago)" if restarts and finished else str(restarts)
    ready = sum(1 for c in statuses if c.get("ready"))
    total = len((pod.get("spec") or {}).get("containers") or [])
    return [
        pod["metadata"]["name"],
        f"{ready}/{total}",
        reason,
        restarts_text,
        age(pod["metadata"].get("creationTimestamp")),
    ]


def _deployment_cells(deployment):
    status = deployment.get("status") or {}
    return [
        deployment["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{deployment['spec'].get('replicas', 1)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        age(deployment["metadata"].get("creationTimestamp")),
    ]


COLUMNS = {
    "Pod": (["Name", "Ready", "Status", "Restarts", "Age"], _pod_cells),
    "Deployment": (["Name", "Ready", "Up-to-date", "Available", "Age"], _deployment_cells),
}

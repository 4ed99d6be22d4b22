"""Events for a pod or a workload: what `kubectl describe ... | grep -A 10 Events` shows."""

from __future__ import annotations

import pandas as pd

from .cluster import REQUEST_TIMEOUT, Cluster

COLUMNS = ["last_seen", "type", "reason", "kind", "object", "count", "message", "source"]


def for_object(cluster: Cluster, kind: str, name: str) -> pd.DataFrame:
    """Events about one object (e.g. kind "Pod"), newest first."""
    selector = f"involvedObject.kind={kind},involvedObject.name={name}"
    items = cluster.core.list_namespaced_event(
        cluster.namespace, field_selector=selector, _request_timeout=REQUEST_TIMEOUT
    ).items
    return frame(items)


def for_names(cluster: Cluster, names: set[str]) -> pd.DataFrame:
    """Events in the namespace about any object named in `names` (a deployment, its ReplicaSets, its pods)."""
    items = cluster.core.list_namespaced_event(cluster.namespace, _request_timeout=REQUEST_TIMEOUT).items
    return frame([e for e in items if e.involved_object.name in names])


def frame(items: list) -> pd.DataFrame:
    """Event objects as a table, newest first."""
    rows = [
        {
            "last_seen": e.last_timestamp or e.event_time or e.first_timestamp or e.metadata.creation_timestamp,
            "type": e.type,
            "reason": e.reason,
            "kind": e.involved_object.kind,
            "object": e.involved_object.name,
            "count": e.count or 1,
            "message": e.message,
            "source": (e.source.component if e.source else None) or e.reporting_component,
        }
        for e in items
    ]
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.sort_values("last_seen", ascending=False, ignore_index=True) if rows else table

"""Events for a pod, a workload or a node: what `kubectl describe ... | grep -A 10 Events` shows.

Events come in two shapes. Those recorded through the core/v1 API (the kubelet's) carry firstTimestamp,
lastTimestamp and count. Those recorded through events.k8s.io/v1 (the scheduler, most controllers) carry
eventTime, and repeats go into `series` (count, lastObservedTime): read through core/v1 their count and
lastTimestamp are null. `frame` reads both: `last_seen` is series.lastObservedTime, else lastTimestamp, else
eventTime; `count` is series.count, else count, else 1.

Events about cluster-scoped objects (a Node's SystemOOM, OOMKilling, EvictionThresholdMet) are stored in the
`default` namespace: `for_nodes` reads them there.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from kubernetes.client.exceptions import ApiException

from .. import display, escape
from .cluster import REQUEST_TIMEOUT, Cluster

COLUMNS = ["last_seen", "first_seen", "type", "reason", "kind", "object", "count", "message", "source"]
NODE_EVENTS_NAMESPACE = "default"  # where the API server keeps events about cluster-scoped objects


@dataclass(frozen=True)
class NodeEvents:
    frame: pd.DataFrame  # COLUMNS; empty when `note` says why none could be read
    note: str | None = None

    def _repr_html_(self) -> str:
        note = f'<p class="{escape.NO_MATH}"><b>Note:</b> {escape.html(self.note)}</p>' if self.note else ""
        return note + display.frame_html(self.frame)


def for_object(cluster: Cluster, kind: str, name: str) -> pd.DataFrame:
    """Events about one object (e.g. kind "Pod"), newest first."""
    selector = f"involvedObject.kind={kind},involvedObject.name={name}"
    items = cluster.core.list_namespaced_event(
        cluster.namespace, field_selector=selector, _request_timeout=REQUEST_TIMEOUT
    ).items
    return frame(items)


def for_kind(cluster: Cluster, kind: str) -> pd.DataFrame:
    """Events in the namespace about objects of one kind (e.g. "Deployment"), newest first."""
    items = cluster.core.list_namespaced_event(
        cluster.namespace, field_selector=f"involvedObject.kind={kind}", _request_timeout=REQUEST_TIMEOUT
    ).items
    return frame(items)


def for_names(cluster: Cluster, names: set[str]) -> pd.DataFrame:
    """Events in the namespace about any object named in `names` (a deployment, its ReplicaSets, its pods)."""
    items = cluster.core.list_namespaced_event(cluster.namespace, _request_timeout=REQUEST_TIMEOUT).items
    return frame([e for e in items if e.involved_object.name in names])


def for_nodes(cluster: Cluster, nodes: set[str]) -> NodeEvents:
    """Events about these nodes (kubelet, kernel monitor), newest first; a note instead when they cannot be read."""
    if not nodes:
        return NodeEvents(frame([]))
    try:
        items = cluster.core.list_namespaced_event(
            NODE_EVENTS_NAMESPACE, field_selector="involvedObject.kind=Node", _request_timeout=REQUEST_TIMEOUT
        ).items
    except ApiException as e:
        if e.status not in (401, 403):
            raise
        return NodeEvents(
            frame([]),
            f"node events not read: listing events in namespace {NODE_EVENTS_NAMESPACE} is not allowed "
            f"(HTTP {e.status}): node memory pressure (SystemOOM, OOMKilling) is not visible here",
        )
    return NodeEvents(frame([e for e in items if e.involved_object.name in nodes]))


def frame(items: list) -> pd.DataFrame:
    """Event objects as a table, newest first."""
    rows = [
        {
            "last_seen": _last_seen(e),
            "first_seen": e.first_timestamp or e.event_time or e.metadata.creation_timestamp,
            "type": e.type,
            "reason": e.reason,
            "kind": e.involved_object.kind,
            "object": e.involved_object.name,
            "count": (e.series.count if e.series and e.series.count else None) or e.count or 1,
            "message": e.message,
            "source": (e.source.component if e.source else None) or e.reporting_component,
        }
        for e in items
    ]
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.sort_values("last_seen", ascending=False, ignore_index=True) if rows else table


def _last_seen(event):
    series_last = event.series.last_observed_time if event.series else None
    return series_last or event.last_timestamp or event.event_time or event.metadata.creation_timestamp

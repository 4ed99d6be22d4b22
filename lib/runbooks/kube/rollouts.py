"""Rollout history: a deployment's ReplicaSets by revision, as `kubectl rollout history` lists them."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from .cluster import REQUEST_TIMEOUT, Cluster

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
COLUMNS = ["deployment", "revision", "replicaset", "created", "change_cause", "images", "replicas", "current"]


def history(cluster: Cluster, deployment: str) -> pd.DataFrame:
    """One row per revision of `deployment`, newest first; `current` marks the live one."""
    live = cluster.apps.read_namespaced_deployment(deployment, cluster.namespace, _request_timeout=REQUEST_TIMEOUT)
    selector = ",".join(f"{k}={v}" for k, v in (live.spec.selector.match_labels or {}).items())
    sets = cluster.apps.list_namespaced_replica_set(
        cluster.namespace, label_selector=selector or None, _request_timeout=REQUEST_TIMEOUT
    ).items
    current = (live.metadata.annotations or {}).get(REVISION)
    rows = []
    for rs in sets:
        if not any(o.kind == "Deployment" and o.name == deployment for o in rs.metadata.owner_references or []):
            continue
        annotations = rs.metadata.annotations or {}
        rows.append(
            {
                "deployment": deployment,
                "revision": int(annotations.get(REVISION, 0)),
                "replicaset": rs.metadata.name,
                "created": rs.metadata.creation_timestamp,
                "change_cause": annotations.get(CHANGE_CAUSE),
                "images": ", ".join(c.image for c in rs.spec.template.spec.containers),
                "replicas": rs.spec.replicas,
                "current": annotations.get(REVISION) == current,
            }
        )
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.sort_values("revision", ascending=False, ignore_index=True)


def recent(cluster: Cluster, within_minutes: float, selector: str = "") -> pd.DataFrame:
    """The live revision of each deployment (matching `selector`) rolled out in the last `within_minutes`."""
    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=within_minutes)
    deployments = cluster.apps.list_namespaced_deployment(
        cluster.namespace, label_selector=selector or None, _request_timeout=REQUEST_TIMEOUT
    ).items
    frames = [history(cluster, d.metadata.name) for d in deployments]
    rows = pd.concat(
        [f[f["current"]] for f in frames if not f.empty] or [pd.DataFrame(columns=COLUMNS)], ignore_index=True
    )
    return rows[rows["created"].apply(lambda t: t is not None and t >= since)].reset_index(drop=True)

"""Rollout history: a deployment's ReplicaSets by revision, as `kubectl rollout history` lists them, and when
each deployment's live revision was last rolled out.

A ReplicaSet's creationTimestamp is when its pod template first appeared, not when it last went live:
`kubectl rollout undo` re-uses the old ReplicaSet (its revision annotation moves to the new number, the old one
goes to `deployment.kubernetes.io/revision-history`), so a rollback made five minutes ago looks days old. What
the deployment controller leaves behind tells the time instead:
- its `ScalingReplicaSet` events on the Deployment ("Scaled up replica set X to 2 from 0"; kept about an hour);
- the Deployment's `Progressing` condition, which names the live ReplicaSet and was last updated when the rollout
  last progressed (NewReplicaSetCreated, FoundNewReplicaSet, ReplicaSetUpdated) or completed
  (NewReplicaSetAvailable): a time at or after the rollout's start. Once complete the controller leaves it alone,
  so pods crashing later do not move it.
Some changes leave no rollout at all: a ConfigMap or Secret edited under running pods, a mounted file swapped.
`latest` says which record it found; finding none is not evidence that nothing changed.
"""

from __future__ import annotations

import datetime as dt
import re

import pandas as pd

from . import events
from .cluster import REQUEST_TIMEOUT, Cluster

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
CHANGE_CAUSE = "kubernetes.io/change-cause"
COLUMNS = ["deployment", "revision", "replicaset", "created", "change_cause", "images", "replicas", "current"]
LATEST_COLUMNS = [
    "deployment",
    "revision",
    "replicaset",
    "created",
    "rolled_out_at",
    "known_from",
    "reused",
    "change_cause",
    "images",
]
SCALED = re.compile(r"Scaled (up|down) replica set (\S+) (?:from (\d+) )?to (\d+)(?: from (\d+))?")
ROLLING_REASONS = ("NewReplicaSetCreated", "FoundNewReplicaSet", "ReplicaSetUpdated", "NewReplicaSetAvailable")
NO_RECORD = (
    "no rollout record (new ReplicaSet, ScalingReplicaSet event, Progressing condition); events are kept about "
    "an hour, and ConfigMap/Secret changes leave none"
)


def history(cluster: Cluster, deployment: str) -> pd.DataFrame:
    """One row per revision of `deployment`, newest first; `current` marks the live one."""
    live = cluster.apps.read_namespaced_deployment(deployment, cluster.namespace, _request_timeout=REQUEST_TIMEOUT)
    return _history(cluster, live)


def latest(cluster: Cluster, deployments: list[str] | None = None, selector: str = "") -> pd.DataFrame:
    """The live revision of each deployment (those named, else those matching `selector`) and when it was last
    rolled out, from the best record there is (`known_from`); `rolled_out_at` None when there is none."""
    listed = cluster.apps.list_namespaced_deployment(
        cluster.namespace, label_selector=selector or None, _request_timeout=REQUEST_TIMEOUT
    ).items
    wanted = [d for d in listed if deployments is None or d.metadata.name in deployments]
    scaled = _scaling_events(cluster)
    rows = [_latest(live, _history(cluster, live), scaled) for live in sorted(wanted, key=lambda d: d.metadata.name)]
    return pd.DataFrame([row for row in rows if row], columns=LATEST_COLUMNS)


def recent(cluster: Cluster, within_minutes: float, selector: str = "") -> pd.DataFrame:
    """The live revision of each deployment (matching `selector`) rolled out in the last `within_minutes`."""
    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=within_minutes)
    rows = latest(cluster, selector=selector)
    at = rows["rolled_out_at"]
    return rows[at.apply(lambda t: t is not None and not pd.isna(t) and t >= since)].reset_index(drop=True)


def _history(cluster: Cluster, live) -> pd.DataFrame:
    deployment = live.metadata.name
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
                "reused": bool(annotations.get(REVISION_HISTORY)),
            }
        )
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "reused"])
    return frame.sort_values("revision", ascending=False, ignore_index=True)


def _latest(live, revisions: pd.DataFrame, scaled: pd.DataFrame) -> dict | None:
    """The live revision and when it went live: its ReplicaSet's creation when new; when re-used, the last time it
    was scaled up from zero, else the Progressing condition's last update, else its earliest scale-up kept."""
    current = revisions[revisions["current"]]
    if current.empty:
        return None
    row = current.iloc[0]
    name, replicaset = live.metadata.name, row["replicaset"]
    at, known_from = row["created"], "new ReplicaSet created"
    if row["reused"]:
        ups = scaled[(scaled["deployment"] == name) & (scaled["replicaset"] == replicaset) & scaled["up"]]
        from_zero = ups[ups["from_zero"]]
        progressing = next((c for c in live.status.conditions or [] if c.type == "Progressing"), None)
        if not from_zero.empty:
            at, known_from = (
                _time(from_zero["at"].max()),
                "ScalingReplicaSet event: re-used ReplicaSet scaled up from 0",
            )
        elif (
            progressing is not None
            and progressing.reason in ROLLING_REASONS
            and f'"{replicaset}"' in (progressing.message or "")
            and progressing.last_update_time is not None
        ):
            at = progressing.last_update_time
            known_from = f"Progressing condition ({progressing.reason}): the rollout began at or before this"
        elif not ups.empty:
            at, known_from = _time(ups["at"].min()), "ScalingReplicaSet events: earliest kept"
        else:
            at, known_from = None, f"re-used ReplicaSet (rollout undo), {NO_RECORD}"
    return {
        "deployment": name,
        "revision": int(row["revision"]),
        "replicaset": replicaset,
        "created": row["created"],
        "rolled_out_at": at,
        "known_from": known_from,
        "reused": bool(row["reused"]),
        "change_cause": row["change_cause"],
        "images": row["images"],
    }


def _time(value) -> dt.datetime:
    return value.to_pydatetime() if isinstance(value, pd.Timestamp) else value


def _scaling_events(cluster: Cluster) -> pd.DataFrame:
    """The deployment controller's ScalingReplicaSet events: deployment, replicaset, at (last seen: a message
    repeated by a later rollout is one event counted twice), up, from_zero (False when the message has no
    "from N", as before Kubernetes 1.26)."""
    table = events.for_kind(cluster, "Deployment")
    table = table[table["reason"] == "ScalingReplicaSet"]
    rows = []
    for event in table.itertuples():
        match = SCALED.search(event.message or "")
        if match:
            before = match.group(3) or match.group(5)
            rows.append(
                {
                    "deployment": event.object,
                    "replicaset": match.group(2),
                    "at": event.last_seen,
                    "up": match.group(1) == "up",
                    "from_zero": before == "0",
                }
            )
    columns = ["deployment", "replicaset", "at", "up", "from_zero"]
    return pd.DataFrame(rows, columns=columns).astype({"up": bool, "from_zero": bool})

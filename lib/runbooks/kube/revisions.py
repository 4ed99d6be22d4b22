"""What changed between a deployment's live revision and the one before: what `kubectl rollout history
deployment/NAME --revision=N` shows for two revisions, compared.

Each revision's pod template is read from its ReplicaSet; when the live revision went live is kube.rollouts'
answer (a rollback re-uses an old ReplicaSet, whose creation says nothing of it). Compared per container: the
image, the environment (by name: added, removed, a literal value changed, a reference to a ConfigMap or Secret key
changed), `envFrom` ConfigMaps and Secrets, resource requests and limits; per pod: the ConfigMaps and Secrets
mounted as volumes, and the template's annotations (`kubectl rollout restart` writes one). Values of environment
variables are never shown, only that they changed: a literal value may be a credential. Names of ConfigMaps,
Secrets and keys are.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
from kubernetes.client.exceptions import ApiException

from ..redact import redact_line
from . import rollouts
from .cluster import REQUEST_TIMEOUT, Cluster

COLUMNS = ["container", "change", "name", "before", "after"]


@dataclass(frozen=True)
class RevisionChange:
    deployment: str
    live_revision: int | None
    live_created: dt.datetime | None  # its ReplicaSet's creation
    change_cause: str | None
    previous_revision: int | None  # None: the live revision is the first one kept
    changes: pd.DataFrame  # COLUMNS, one row per difference
    rolled_out_at: dt.datetime | None = None  # when it went live (kube.rollouts.latest); None: no record
    known_from: str = ""  # how that is known

    def summary(self) -> str:
        """`image gateway: api-gateway:1.14.1 -> api-gateway:1.14.2; env gateway: LOG_LEVEL (value changed)`."""
        if self.previous_revision is None:
            return "no earlier revision kept to compare with"
        if self.changes.empty:
            return "pod templates identical (a rollout with no template change)"
        parts = []
        for row in self.changes.itertuples():
            where = f" {row.container}" if row.container else ""
            name = "" if row.name == row.change else f" {row.name}"
            if row.before is None and row.after is None:
                parts.append(f"{row.change}{where}:{name}")
            else:
                parts.append(f"{row.change}{where}:{name} {row.before or '(none)'} -> {row.after or '(none)'}")
        return "; ".join(parts)


def last_change(cluster: Cluster, deployment: str) -> RevisionChange:
    """The live revision of `deployment` against the revision before it."""
    history = rollouts.history(cluster, deployment)
    live = history[history["current"]]
    if live.empty:
        return RevisionChange(deployment, None, None, None, None, pd.DataFrame(columns=COLUMNS))
    current = live.iloc[0]
    went_live = rollouts.latest(cluster, [deployment])
    at, known_from = (
        (_time(went_live["rolled_out_at"].iloc[0]), went_live["known_from"].iloc[0])
        if not went_live.empty
        else (None, rollouts.NO_RECORD)
    )
    earlier = history[history["revision"] < current["revision"]]
    if earlier.empty:
        return RevisionChange(
            deployment,
            int(current["revision"]),
            current["created"],
            current["change_cause"],
            None,
            pd.DataFrame(columns=COLUMNS),
            at,
            known_from,
        )
    previous = earlier.iloc[0]  # history is newest first
    before, after = (_template(cluster, name) for name in (previous["replicaset"], current["replicaset"]))
    return RevisionChange(
        deployment,
        int(current["revision"]),
        current["created"],
        current["change_cause"],
        int(previous["revision"]),
        compare(before, after),
        at,
        known_from,
    )


def _time(value) -> dt.datetime | None:
    if value is None or pd.isna(value):
        return None
    return value.to_pydatetime() if isinstance(value, pd.Timestamp) else value


def compare(before: dict, after: dict) -> pd.DataFrame:
    """The differences between two pod templates (as the API serves them), one row per difference (COLUMNS)."""
    rows: list[dict] = []
    old, new = _containers(before), _containers(after)
    for name in sorted(old.keys() | new.keys()):
        if name not in old or name not in new:
            change = "container added" if name in new else "container removed"
            rows.append(_row(name, change, name, None, None))
            continue
        rows += _container_changes(name, old[name], new[name])
    rows += _mounts(before, after)
    rows += _annotations(before, after)
    return pd.DataFrame(rows, columns=COLUMNS, dtype=object)  # None stays None


def _template(cluster: Cluster, replicaset: str) -> dict:
    try:
        rs = cluster.apps.read_namespaced_replica_set(replicaset, cluster.namespace, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as e:
        if e.status == 404:  # gone since the history was read
            return {}
        raise
    return cluster.api.sanitize_for_serialization(rs.spec.template) or {}


def _containers(template: dict) -> dict[str, dict]:
    spec = template.get("spec") or {}
    return {c["name"]: c for c in spec.get("containers") or []}


def _container_changes(name: str, old: dict, new: dict) -> list[dict]:
    rows = []
    if old.get("image") != new.get("image"):
        rows.append(_row(name, "image", "image", old.get("image"), new.get("image")))
    old_env, new_env = _env(old), _env(new)
    for var in sorted(old_env.keys() | new_env.keys()):
        before, after = old_env.get(var), new_env.get(var)
        if before == after:
            continue
        if before is None or after is None:
            rows.append(_row(name, "env added" if before is None else "env removed", var, None, None))
        elif before[0] == after[0] == "value":
            rows.append(_row(name, "env value changed", var, None, None))
        else:
            rows.append(_row(name, "env source changed", var, before[1], after[1]))
    old_from, new_from = _env_from(old), _env_from(new)
    for ref in sorted(old_from ^ new_from):
        rows.append(_row(name, "envFrom added" if ref in new_from else "envFrom removed", ref, None, None))
    for kind in ("requests", "limits"):
        old_res = (old.get("resources") or {}).get(kind) or {}
        new_res = (new.get("resources") or {}).get(kind) or {}
        for resource in sorted(old_res.keys() | new_res.keys()):
            if old_res.get(resource) != new_res.get(resource):
                rows.append(_row(name, "resources", f"{kind}.{resource}", old_res.get(resource), new_res.get(resource)))
    return rows


def _env(container: dict) -> dict[str, tuple[str, str]]:
    """Variable name -> (kind, what it refers to): ("value", "") for a literal (never shown), ("secret",
    "secret NAME/KEY"), ("configmap", "configmap NAME/KEY"), ("field", "field PATH"), ..."""
    found = {}
    for var in container.get("env") or []:
        source = var.get("valueFrom") or {}
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            found[var["name"]] = ("secret", f"secret {ref.get('name')}/{ref.get('key')}")
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            found[var["name"]] = ("configmap", f"configmap {ref.get('name')}/{ref.get('key')}")
        elif "fieldRef" in source:
            found[var["name"]] = ("field", f"field {source['fieldRef'].get('fieldPath')}")
        elif "resourceFieldRef" in source:
            found[var["name"]] = ("resource", f"resource {source['resourceFieldRef'].get('resource')}")
        else:  # a literal: compared by value, shown as "value changed" only
            found[var["name"]] = ("value", str(var.get("value", "")))
    return found


def _env_from(container: dict) -> set[str]:
    refs = set()
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            refs.add(f"configmap {source['configMapRef'].get('name')}")
        if "secretRef" in source:
            refs.add(f"secret {source['secretRef'].get('name')}")
    return refs


def _mounts(before: dict, after: dict) -> list[dict]:
    old, new = _volumes(before), _volumes(after)
    rows = []
    for volume in sorted(old.keys() | new.keys()):
        if old.get(volume) != new.get(volume):
            rows.append(_row(None, "volume", volume, old.get(volume), new.get(volume)))
    return rows


def _volumes(template: dict) -> dict[str, str]:
    """Volume name -> the ConfigMap or Secret it mounts."""
    found = {}
    for volume in (template.get("spec") or {}).get("volumes") or []:
        if "configMap" in volume:
            found[volume["name"]] = f"configmap {volume['configMap'].get('name')}"
        elif "secret" in volume:
            found[volume["name"]] = f"secret {volume['secret'].get('secretName')}"
    return found


def _annotations(before: dict, after: dict) -> list[dict]:
    old = (before.get("metadata") or {}).get("annotations") or {}
    new = (after.get("metadata") or {}).get("annotations") or {}
    return [
        _row(None, "annotation", key, _text(old.get(key)), _text(new.get(key)))
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    ]


def _text(value: str | None) -> str | None:
    return None if value is None else redact_line(str(value))[:200]


def _row(container: str | None, change: str, name: str, before: str | None, after: str | None) -> dict:
    return {"container": container, "change": change, "name": name, "before": before, "after": after}

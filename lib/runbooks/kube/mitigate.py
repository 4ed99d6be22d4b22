"""The incident-response runbook's Phase 3 quick fixes, in one place: rollout restart, scale, rollback, set memory.

Without `apply` each change is sent with server-side dry run (dryRun=All): the API server validates
it and answers with the object as it would be, and nothing is stored. The difference between the
live object and that answer is what the notebook shows. With `apply` the same request is sent
for real. Either way the result is an Action for the evidence file, plus the field-level diff.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import pandas as pd
from kubernetes.client.exceptions import ApiException

from ..evidence import Action
from ..redact import REDACTED, is_credential_name, redact_line
from .cluster import REQUEST_TIMEOUT, Cluster
from .rollouts import CHANGE_CAUSE, REVISION, history

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
# A literal environment value (of a variable named like a credential: never shown, only whether it changes).
ENV_VALUE = re.compile(r"\.env\[(?P<name>[^\]]*)\]\.value$")


@dataclass(frozen=True)
class Change:
    action: Action
    diff: pd.DataFrame  # field, before, after


def changes_table(changes: list[Change]) -> pd.DataFrame:
    """Every field each change would make (dry run) or made (apply), one row per field; credentials masked."""
    rows = [
        {"action": c.action.id, "target": c.action.target, **f}
        for c in changes
        for f in c.diff.to_dict(orient="records")
    ]
    return pd.DataFrame(rows, columns=["action", "target", "field", "before", "after"])


def restart(cluster: Cluster, deployment: str, apply: bool) -> Change:
    """`kubectl rollout restart`: a new pod-template annotation makes the deployment replace its pods."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}
    return _patch(cluster, "rollout-restart", deployment, body, apply)


def scale(cluster: Cluster, deployment: str, replicas: int, apply: bool) -> Change:
    """`kubectl scale --replicas=N`, through the deployment's /scale subresource."""
    target = f"deployment/{deployment} in {cluster.namespace}"
    try:
        before = cluster.apps.read_namespaced_deployment_scale(
            deployment, cluster.namespace, _request_timeout=REQUEST_TIMEOUT
        )
        after = cluster.apps.patch_namespaced_deployment_scale(
            deployment,
            cluster.namespace,
            {"spec": {"replicas": replicas}},
            dry_run=None if apply else "All",
            _request_timeout=REQUEST_TIMEOUT,
        )
    except ApiException as e:
        return _failed("scale", target, apply, e)
    diff = _diff(cluster, before, after, prefix="spec")
    return Change(_action("scale", target, apply, diff), diff)


def rollback(cluster: Cluster, deployment: str, apply: bool) -> Change:
    """`kubectl rollout undo`: the pod template of the previous revision replaces the live one."""
    revisions = history(cluster, deployment)
    live = revisions[revisions["current"]]
    older = revisions[revisions["revision"] < (live["revision"].iloc[0] if not live.empty else 0)]
    target = f"deployment/{deployment} in {cluster.namespace}"
    if older.empty:
        return Change(
            Action("rollback", "applied" if apply else "dry-run", target, "no previous revision to roll back to"),
            pd.DataFrame(columns=["field", "before", "after"]),
        )
    previous = older.iloc[0]
    rs = cluster.apps.read_namespaced_replica_set(
        previous["replicaset"], cluster.namespace, _request_timeout=REQUEST_TIMEOUT
    )
    template = cluster.api.sanitize_for_serialization(rs.spec.template)
    template["metadata"].get("labels", {}).pop("pod-template-hash", None)
    body = [{"op": "replace", "path": "/spec/template", "value": template}]
    if previous["change_cause"]:
        body.append(
            {
                "op": "add",
                "path": "/metadata/annotations/" + CHANGE_CAUSE.replace("/", "~1"),
                "value": previous["change_cause"],
            }
        )
    return _patch(cluster, "rollback", deployment, body, apply, note=f"to revision {previous['revision']}")


def set_memory(cluster: Cluster, deployment: str, container: str, request: str, limit: str, apply: bool) -> Change:
    """`kubectl set resources --requests=memory=R --limits=memory=L` for one container."""
    resources = {"requests": {"memory": request}, "limits": {"memory": limit}}
    body = {"spec": {"template": {"spec": {"containers": [{"name": container, "resources": resources}]}}}}
    return _patch(cluster, "set-memory", deployment, body, apply)


def _patch(cluster: Cluster, action: str, deployment: str, body, apply: bool, note: str = "") -> Change:
    target = f"deployment/{deployment} in {cluster.namespace}" + (f" ({note})" if note else "")
    try:
        before = cluster.apps.read_namespaced_deployment(
            deployment, cluster.namespace, _request_timeout=REQUEST_TIMEOUT
        )
        after = cluster.apps.patch_namespaced_deployment(
            deployment, cluster.namespace, body, dry_run=None if apply else "All", _request_timeout=REQUEST_TIMEOUT
        )
    except ApiException as e:
        return _failed(action, target, apply, e)
    diff = _diff(cluster, before, after, prefix="spec", also=("metadata.annotations",))
    return Change(_action(action, target, apply, diff), diff)


def _action(action: str, target: str, apply: bool, diff: pd.DataFrame) -> Action:
    changes = "; ".join(f"{r.field}: {r.before} -> {r.after}" for r in diff.itertuples()) or "no field changes"
    if apply:
        return Action(action, "applied", target, f"changed {changes}")
    return Action(action, "dry-run", target, f"accepted by server-side dry run; would change {changes}")


def _failed(action: str, target: str, apply: bool, error: ApiException) -> Change:
    verb = "failed" if apply else "dry run refused"
    reason = f"{verb}: HTTP {error.status} {error.reason}"
    return Change(
        Action(action, "applied" if apply else "dry-run", target, reason),
        pd.DataFrame(columns=["field", "before", "after"]),
    )


def _diff(cluster: Cluster, before, after, prefix: str, also: tuple[str, ...] = ()) -> pd.DataFrame:
    """Leaf fields under `prefix` (and `also`) whose value differs between the two objects."""
    old, new = (_flatten(cluster.api.sanitize_for_serialization(o)) for o in (before, after))
    keep = (prefix, *also)
    fields = sorted(
        k
        for k in old.keys() | new.keys()
        if k.startswith(keep) and old.get(k) != new.get(k) and not k.endswith(REVISION)
    )
    return pd.DataFrame(
        [{"field": k, "before": _shown(k, old.get(k)), "after": _shown(k, new.get(k))} for k in fields],
        columns=["field", "before", "after"],
    )


def _shown(field: str, value):
    """A value fit for a notebook and the evidence: credentials replaced (the diff still says it changed)."""
    if not isinstance(value, str):
        return value
    named = ENV_VALUE.search(field)
    return REDACTED if named and is_credential_name(named.group("name")) else redact_line(value)


def _flatten(value, path: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{path}.{key}" if path else key))
        return out
    if isinstance(value, list):
        out = {}
        for index, item in enumerate(value):
            name = item.get("name") if isinstance(item, dict) else None
            out.update(_flatten(item, f"{path}[{name if name is not None else index}]"))
        return out
    return {path: value}

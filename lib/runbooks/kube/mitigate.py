"""The incident-response runbook's Phase 3 quick fixes, in one place: rollout restart, scale, rollback, set memory.

Without `apply` each change is sent with server-side dry run (dryRun=All): the API server validates
it and answers with the object as it would be, and nothing is stored. The difference between the
live object and that answer is what the notebook shows. With `apply` the same request is sent
for real. Either way the result is an Action for the evidence file, plus the field-level diff.

Restart and memory work on Deployments, StatefulSets and DaemonSets (as `kubectl rollout restart` and
`kubectl set resources` do); scale on Deployments and StatefulSets; rollback on Deployments only. A memory
change is one patch (the resources and the restart annotation together: one rollout, not two), checked first
against the namespace's LimitRanges and ResourceQuotas (kube.admission): a dry run cannot see them, and pods
they refuse would leave the rollout stuck, so such a change is reported and not applied.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from dataclasses import dataclass

import pandas as pd
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from ..evidence import Action, Finding
from ..redact import REDACTED, is_credential_name, redact_line
from . import admission, workloads
from .cluster import REQUEST_TIMEOUT, Cluster
from .rollouts import CHANGE_CAUSE, REVISION, history

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
# A literal environment value (of a variable named like a credential: never shown, only whether it changes).
ENV_VALUE = re.compile(r"\.env\[(?P<name>[^\]]*)\]\.value$")
KINDS = workloads.SERVING  # what restart and memory changes know how to patch
WORKED_OUT = "not allowed to dry-run here; worked out client-side"  # how a preview the server refused begins
UNCHECKED = "preview-unchecked"  # the finding that says so


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


def restart(cluster: Cluster, name: str, apply: bool, kind: str = "Deployment") -> Change:
    """`kubectl rollout restart`: a new pod-template annotation makes the workload replace its pods."""
    body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: _now()}}}}}
    return _patch(cluster, "rollout-restart", name, body, apply, kind=kind)


def outcomes(changes: list[Change]) -> list[Action | Finding]:
    """What a notebook records of its changes: each one's action, and a finding when a preview was worked out
    client-side because the API server refused the dry run (HTTP 403: the identity may not patch)."""
    actions = [c.action for c in changes]
    unchecked = [a.target for a in actions if a.result.startswith(WORKED_OUT)]
    if not unchecked:
        return list(actions)
    summary = (
        f"{len(unchecked)} change(s) previewed client-side, not by the API server ({'; '.join(unchecked)}): this "
        "identity may not patch (runs started by alerts hold no mutating verb), so validation and admission did not "
        "see them; a dry run by someone holding runbook-mitigate checks them"
    )
    return [*actions, Finding(UNCHECKED, summary, "info")]


def not_handled(cluster: Cluster, action: str, kind: str | None, name: str | None, apply: bool, why: str) -> Change:
    """An Action saying a change was not made, and why (an unsupported kind, no workload, nothing to change)."""
    target = f"{(kind or 'pod').lower()}/{name} in {cluster.namespace}" if name else f"nothing in {cluster.namespace}"
    return Change(Action(action, "applied" if apply else "dry-run", target, f"not done: {why}"), _no_diff())


def scale(cluster: Cluster, deployment: str, replicas: int, apply: bool) -> Change:
    """`kubectl scale --replicas=N`, through the deployment's /scale subresource."""
    target = f"deployment/{deployment} in {cluster.namespace}"
    body = {"spec": {"replicas": replicas}}
    try:
        before = cluster.apps.read_namespaced_deployment_scale(
            deployment, cluster.namespace, _request_timeout=REQUEST_TIMEOUT
        )
    except ApiException as e:
        return _failed("scale", target, apply, e)
    try:
        after = cluster.apps.patch_namespaced_deployment_scale(
            deployment, cluster.namespace, body, dry_run=None if apply else "All", _request_timeout=REQUEST_TIMEOUT
        )
    except ApiException as e:
        if e.status == 403 and not apply:
            return _worked_out(cluster, "scale", target, before, body)
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
            _no_diff(),
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


def set_memory(
    cluster: Cluster, name: str, memory: dict[str, tuple[str, str]], apply: bool, kind: str = "Deployment"
) -> Change:
    """`kubectl set resources --requests=memory=R --limits=memory=L` for each container of `memory`
    (container -> (request, limit)) and `kubectl rollout restart`, in one patch: one rollout.

    A container among the template's initContainers (a native sidecar) is changed there. A container the
    template does not have (injected at admission, e.g. istio-proxy) is refused before anything is sent: a
    patch would add it without an image and the server would refuse it. Pods the namespace's LimitRanges or
    ResourceQuotas would refuse are reported and the change is not applied.
    """
    target = f"{kind.lower()}/{name} in {cluster.namespace}"
    try:
        live = workloads.read(cluster, kind, name)
    except ApiException as e:
        return _failed("set-memory", target, apply, e)
    pod_spec = live.spec.template.spec
    init = {c.name: c for c in pod_spec.init_containers or []}
    main = {c.name: c for c in pod_spec.containers}
    missing = sorted(set(memory) - set(init) - set(main))
    if missing:
        return not_handled(
            cluster,
            "set-memory",
            kind,
            name,
            apply,
            f"{', '.join(missing)} not in the pod template (added at admission)",
        )
    check = admission.memory_change(
        cluster,
        before=_template_memory(pod_spec),
        after={**_template_memory(pod_spec), **{c: _bytes(r, lim) for c, (r, lim) in memory.items()}},
        replicas=workloads.desired(kind, live),
        surge=kind == "Deployment" and _surges(live),
    )
    resources = {c: {"requests": {"memory": r}, "limits": {"memory": lim}} for c, (r, lim) in memory.items()}
    spec = {
        field: [{"name": c, "resources": resources[c]} for c in memory if c in names]
        for field, names in (("initContainers", init), ("containers", main))
        if any(c in names for c in memory)
    }
    body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: _now()}}, "spec": spec}}}
    if not check.admitted:
        refused = "; ".join(check.refusals)
        if apply:
            return not_handled(
                cluster, "set-memory", kind, name, apply, f"new pods would be refused at creation: {refused}"
            )
        change = _patch(cluster, "set-memory", name, body, apply, kind=kind)
        result = f"{change.action.result}; but the new pods would be refused at creation ({refused}): not applicable"
        return Change(Action(change.action.id, change.action.mode, change.action.target, result), change.diff)
    change = _patch(cluster, "set-memory", name, body, apply, kind=kind)
    if check.notes:
        note = "; ".join(check.notes)
        return Change(
            Action(change.action.id, change.action.mode, change.action.target, f"{change.action.result} ({note})"),
            change.diff,
        )
    return change


def template_containers(cluster: Cluster, kind: str, name: str) -> set[str]:
    """The names of the containers and init containers in a workload's pod template (injected ones are not)."""
    spec = workloads.read(cluster, kind, name).spec.template.spec
    return {c.name for c in [*(spec.init_containers or []), *spec.containers]}


def _patch(
    cluster: Cluster, action: str, name: str, body, apply: bool, note: str = "", kind: str = "Deployment"
) -> Change:
    target = f"{kind.lower()}/{name} in {cluster.namespace}" + (f" ({note})" if note else "")
    if kind not in KINDS:
        return not_handled(cluster, action, kind, name, apply, f"{kind} is not one this runbook changes")
    try:
        before = workloads.read(cluster, kind, name)
    except ApiException as e:
        return _failed(action, target, apply, e)
    try:
        after = _patcher(cluster, kind)(
            name, cluster.namespace, body, dry_run=None if apply else "All", _request_timeout=REQUEST_TIMEOUT
        )
    except ApiException as e:
        if e.status == 403 and not apply:
            return _worked_out(cluster, action, target, before, body)
        return _failed(action, target, apply, e)
    diff = _diff(cluster, before, after, prefix="spec", also=("metadata.annotations",))
    return Change(_action(action, target, apply, diff), diff)


def _patcher(cluster: Cluster, kind: str):
    return {
        "Deployment": cluster.apps.patch_namespaced_deployment,
        "StatefulSet": cluster.apps.patch_namespaced_stateful_set,
        "DaemonSet": cluster.apps.patch_namespaced_daemon_set,
    }[kind]


def _template_memory(pod_spec) -> admission.Memory:
    """Container -> (request, limit) in bytes of the template's containers and native sidecars."""
    running = [c for c in pod_spec.init_containers or [] if c.restart_policy == "Always"] + list(pod_spec.containers)
    return {
        c.name: _bytes(
            ((c.resources.requests or {}) if c.resources else {}).get("memory"),
            ((c.resources.limits or {}) if c.resources else {}).get("memory"),
        )
        for c in running
    }


def _bytes(request: str | None, limit: str | None) -> tuple[float | None, float | None]:
    return (
        float(parse_quantity(request)) if request else None,
        float(parse_quantity(limit)) if limit else None,
    )


def _surges(live) -> bool:
    """Whether a rolling update adds a new pod before removing an old one (maxSurge above 0)."""
    strategy = live.spec.strategy
    if strategy is None or strategy.type == "Recreate":
        return False
    surge = strategy.rolling_update.max_surge if strategy.rolling_update else "25%"
    return str(surge) not in ("0", "0%")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _no_diff() -> pd.DataFrame:
    return pd.DataFrame(columns=["field", "before", "after"])


def _action(action: str, target: str, apply: bool, diff: pd.DataFrame) -> Action:
    changes = (
        "; ".join(f"{r.field}: {_said(r.before)} -> {_said(r.after)}" for r in diff.itertuples()) or "no field changes"
    )
    if apply:
        return Action(action, "applied", target, f"changed {changes}")
    return Action(action, "dry-run", target, f"accepted by server-side dry run; would change {changes}")


def _said(value) -> str:
    """A field's value in words: `(none)` where the field was or is unset (None or pandas' NaN)."""
    return "(none)" if value is None or (isinstance(value, float) and value != value) else str(value)


def _failed(action: str, target: str, apply: bool, error: ApiException) -> Change:
    verb = "failed" if apply else "dry run refused"
    reason = f"{verb}: HTTP {error.status} {error.reason}"
    return Change(Action(action, "applied" if apply else "dry-run", target, reason), _no_diff())


def _worked_out(cluster: Cluster, action: str, target: str, before, body) -> Change:
    """A dry run the API server refused with 403: the identity may not patch (as the one alert runs use, which
    holds no mutating verb: Kubernetes authorises a dry run like the change itself). The preview is then worked out
    here, from the live object and the patch, and says it was not checked by the server (validation, admission)."""
    live = cluster.api.sanitize_for_serialization(before)
    diff = _diff(cluster, live, _patched(live, body), prefix="spec", also=("metadata.annotations",))
    changes = "; ".join(f"{r.field}: {r.before} -> {r.after}" for r in diff.itertuples()) or "no field changes"
    result = (
        f"{WORKED_OUT} (HTTP 403: this identity may not patch), not checked by the API server: would change {changes}"
    )
    return Change(Action(action, "dry-run", target, result), diff)


def _patched(live: dict, body) -> dict:
    """`live` (a serialised object) with `body` applied: a JSON patch (a list of add/replace/remove operations) or a
    strategic merge patch."""
    if not isinstance(body, list):
        return _merged(live, body)
    result = copy.deepcopy(live)
    for op in body:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        target = result
        for part in parents:
            target = target.setdefault(part, {})
        if op["op"] == "remove":
            target.pop(last, None)
        else:
            target[last] = copy.deepcopy(op["value"])
    return result


def _merged(live, body):
    """A strategic merge: mappings merged, lists of named items (containers) merged by name, the rest replaced."""
    if isinstance(body, dict) and isinstance(live, dict):
        return {**live, **{k: _merged(live.get(k), v) for k, v in body.items()}}
    if _named(body) and _named(live):
        merged = {item["name"]: item for item in live}
        merged |= {item["name"]: _merged(merged.get(item["name"], {}), item) for item in body}
        return list(merged.values())
    return copy.deepcopy(body)


def _named(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) and "name" in item for item in value)


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

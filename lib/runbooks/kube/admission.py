"""Would the pods of a changed workload be admitted? The namespace's ResourceQuotas and LimitRanges, checked ahead.

The API server validates a Deployment (StatefulSet, DaemonSet) patch against the workload's own schema only: it
accepts a memory limit no pod of the namespace may have, and a server-side dry run says nothing either.
ResourceQuota and LimitRange are enforced by admission when the controller creates each pod: the rollout then
stalls (FailedCreate events, ProgressDeadlineExceeded) while the old pods go on. `memory_change` reads both and
says, before anything is sent, what would refuse the new pods:
- LimitRange items of type Container (max, min, maxLimitRequestRatio of memory) and Pod (max: the pod's sum);
- ResourceQuota `limits.memory`, `requests.memory` (and `memory`, the same): the first new pod must fit beside
  the old ones (a rolling update adds it before removing one; with no surge, as StatefulSets do, one old pod goes
  first), and all of them at the end. Quotas with scopes are not checked (said so).
"""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from .cluster import REQUEST_TIMEOUT, Cluster

Memory = dict[str, tuple[float | None, float | None]]  # container -> (request, limit) in bytes


@dataclass(frozen=True)
class Admission:
    refusals: tuple[str, ...]  # what would refuse the new pods; empty: admitted as far as checked
    notes: tuple[str, ...] = ()  # what was not checked

    @property
    def admitted(self) -> bool:
        return not self.refusals


def memory_change(cluster: Cluster, before: Memory, after: Memory, replicas: int, surge: bool = True) -> Admission:
    """Check pods whose containers' memory goes from `before` to `after` (`replicas` of them) against the
    namespace's LimitRanges and ResourceQuotas."""
    refusals, notes = [], []
    try:
        ranges = cluster.core.list_namespaced_limit_range(cluster.namespace, _request_timeout=REQUEST_TIMEOUT).items
        quotas = cluster.core.list_namespaced_resource_quota(cluster.namespace, _request_timeout=REQUEST_TIMEOUT).items
    except ApiException as e:
        if e.status not in (403, 404):
            raise
        return Admission((), (f"ResourceQuotas and LimitRanges not readable (HTTP {e.status}): not checked",))
    for limit_range in ranges:
        refusals += _limit_range(limit_range, after)
    old_pod, new_pod = _pod_totals(before), _pod_totals(after)
    for quota in quotas:
        if quota.spec and (quota.spec.scopes or quota.spec.scope_selector):
            notes.append(f"ResourceQuota {quota.metadata.name} has scopes: not checked")
            continue
        refusals += _quota(quota, old_pod, new_pod, replicas, surge)
    return Admission(tuple(refusals), tuple(notes))


def _limit_range(limit_range, after: Memory) -> list[str]:
    name, found = limit_range.metadata.name, []
    for item in limit_range.spec.limits or []:
        high, low = _memory(item.max), _memory(item.min)
        ratio = _memory(item.max_limit_request_ratio)
        if item.type == "Container":
            for container, (request, limit) in after.items():
                if high is not None and limit is not None and limit > high:
                    found.append(f"LimitRange {name}: container {container} limit {_mi(limit)} above max {_mi(high)}")
                if low is not None and request is not None and request < low:
                    found.append(
                        f"LimitRange {name}: container {container} request {_mi(request)} below min {_mi(low)}"
                    )
                if ratio is not None and request and limit and limit / request > ratio:
                    found.append(
                        f"LimitRange {name}: container {container} limit/request {limit / request:g} above "
                        f"maxLimitRequestRatio {ratio:g}"
                    )
        elif item.type == "Pod" and high is not None:
            total = sum(limit or 0 for _, limit in after.values())
            if total > high:
                found.append(f"LimitRange {name}: pod limit {_mi(total)} above max {_mi(high)}")
    return found


def _quota(quota, old_pod: dict[str, float], new_pod: dict[str, float], replicas: int, surge: bool) -> list[str]:
    hard, used = (quota.status.hard or {}) if quota.status else {}, (quota.status.used or {}) if quota.status else {}
    found = []
    for key, which in (("limits.memory", "limits"), ("requests.memory", "requests"), ("memory", "requests")):
        if key not in hard:
            continue
        cap, now = float(parse_quantity(hard[key])), float(parse_quantity(used.get(key, "0")))
        first = now + new_pod[which] - (0 if surge else old_pod[which])
        final = now + replicas * (new_pod[which] - old_pod[which])
        if first > cap:
            found.append(
                f"ResourceQuota {quota.metadata.name}: {key} used {_mi(now)} of {_mi(cap)}; the first new pod "
                f"({_mi(new_pod[which])}) would need {_mi(first)}"
            )
        elif final > cap:
            found.append(
                f"ResourceQuota {quota.metadata.name}: {key} used {_mi(now)} of {_mi(cap)}; {replicas} pods at "
                f"{_mi(new_pod[which])} would need {_mi(final)}: the last ones would be refused"
            )
    return found


def _pod_totals(memory: Memory) -> dict[str, float]:
    """A pod's memory requests and limits as quota counts them: the sum over its running containers (a container
    without a request counts its limit, as the server defaults the request to it)."""
    return {
        "requests": sum((request if request is not None else limit) or 0 for request, limit in memory.values()),
        "limits": sum(limit or 0 for _, limit in memory.values()),
    }


def _memory(values) -> float | None:
    return float(parse_quantity(values["memory"])) if values and "memory" in values else None


def _mi(value: float) -> str:
    return f"{value / 2**30:g}Gi" if value >= 2**30 and value % 2**30 == 0 else f"{value / 2**20:.0f}Mi"

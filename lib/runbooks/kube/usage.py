"""Pod CPU and memory usage from the metrics API (what `kubectl top pods` shows) next to requests and limits.

The metrics API is an aggregated API served by metrics-server: not installed, the cluster answers 404; installed
but down or not ready, the aggregator answers 503 "service unavailable"; not allowed, RBAC answers 403. In each
case the usage columns stay empty and `frame.attrs["metrics_unavailable"]` says why, so a runbook degrades
instead of failing.
"""

from __future__ import annotations

import pandas as pd
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from .cluster import REQUEST_TIMEOUT, Cluster
from .pods import containers

NEAR_LIMIT_PCT = 90.0  # memory used, in % of the limit, from which a container is under memory pressure
USAGE_COLUMNS = ["pod", "container", "cpu_usage", "memory_usage"]
UNAVAILABLE = "metrics_unavailable"  # frame.attrs key: why there is no usage
WHY = {
    404: "the metrics API is not served (metrics-server not installed)",
    503: "the metrics API answered 503 service unavailable (metrics-server down or not ready)",
    403: "not allowed to read the metrics API (RBAC: get/list pods.metrics.k8s.io)",
    401: "not allowed to read the metrics API (HTTP 401)",
}


def pod_usage(cluster: Cluster, selector: str = "") -> pd.DataFrame:
    """Per container: usage (millicores, bytes), requests and limits, and memory used as a share of the limit.

    Usage columns are empty, and attrs["metrics_unavailable"] says why, when the metrics API does not answer.
    """
    unavailable = None
    try:
        listing = cluster.custom.list_namespaced_custom_object(
            "metrics.k8s.io",
            "v1beta1",
            cluster.namespace,
            "pods",
            label_selector=selector or None,
            _request_timeout=REQUEST_TIMEOUT,
        )
        items = listing["items"]
    except ApiException as e:
        if e.status not in WHY:
            raise
        items, unavailable = [], WHY[e.status]
    usage = pd.DataFrame(
        [
            {
                "pod": item["metadata"]["name"],
                "container": c["name"],
                "cpu_usage": float(parse_quantity(c["usage"]["cpu"]) * 1000),
                "memory_usage": float(parse_quantity(c["usage"]["memory"])),
            }
            for item in items
            for c in item["containers"]
        ],
        columns=USAGE_COLUMNS,
    )
    spec = containers(cluster, selector)[
        ["pod", "container", "memory_request", "memory_limit", "cpu_request", "cpu_limit"]
    ]
    frame = spec.merge(usage, on=["pod", "container"], how="left")
    frame["memory_pct_of_limit"] = 100 * frame["memory_usage"] / frame["memory_limit"]
    frame.attrs[UNAVAILABLE] = unavailable
    return frame


def memory_usage(cluster: Cluster, selector: str, oom: pd.DataFrame) -> pd.DataFrame:
    """`kubectl top pods` next to the limits: usage, limit, % of limit, whether at NEAR_LIMIT_PCT or more, and whether
    the container is one of `oom` (pods.oomkilled)."""
    usage = pod_usage(cluster, selector)
    killed = set(zip(oom["pod"], oom["container"], strict=True))
    usage["oomkilled"] = [(p, c) in killed for p, c in zip(usage["pod"], usage["container"], strict=True)]
    usage["near_limit"] = usage["memory_pct_of_limit"] >= NEAR_LIMIT_PCT
    columns = [
        "pod",
        "container",
        "memory_usage",
        "memory_request",
        "memory_limit",
        "memory_pct_of_limit",
        "near_limit",
        "oomkilled",
        "cpu_usage",
    ]
    table = usage[columns].sort_values("memory_pct_of_limit", ascending=False, ignore_index=True)
    table.attrs[UNAVAILABLE] = usage.attrs.get(UNAVAILABLE)
    return table

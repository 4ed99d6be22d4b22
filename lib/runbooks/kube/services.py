"""Services: which Service an address belongs to, and which workload a Service sends its traffic to.

Gateways log the address they connected to (`10.244.1.5:8080`: a pod's). Addresses are mapped to Services
through the EndpointSlices the EndpointSlice controller keeps for each Service (label kubernetes.io/service-name),
else through the older Endpoints objects; an address no slice lists any more (its pod is gone) stays unmapped.
"""

from __future__ import annotations

import pandas as pd
from kubernetes.client.exceptions import ApiException

from . import workloads
from .cluster import REQUEST_TIMEOUT, Cluster

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
ADDRESS_COLUMNS = ["address", "port", "service", "pod", "ready"]


def addresses(cluster: Cluster) -> pd.DataFrame:
    """Every endpoint address in the namespace: address, port, service, pod (targetRef), ready."""
    try:
        slices = cluster.discovery.list_namespaced_endpoint_slice(
            cluster.namespace, _request_timeout=REQUEST_TIMEOUT
        ).items
    except ApiException as e:
        if e.status not in (403, 404):
            raise
        return _from_endpoints(cluster)
    rows: list[dict] = []
    for endpoint_slice in slices:
        service = (endpoint_slice.metadata.labels or {}).get(SERVICE_NAME_LABEL)
        ports = [p.port for p in endpoint_slice.ports or [] if p.port] or [None]
        for endpoint in endpoint_slice.endpoints or []:
            pod = endpoint.target_ref.name if endpoint.target_ref and endpoint.target_ref.kind == "Pod" else None
            ready = endpoint.conditions.ready if endpoint.conditions else None
            for address in endpoint.addresses:
                rows.extend(
                    {"address": address, "port": port, "service": service, "pod": pod, "ready": ready} for port in ports
                )
    return pd.DataFrame(rows, columns=ADDRESS_COLUMNS)


def service_of(table: pd.DataFrame, address: str) -> str | None:
    """The Service behind `10.244.1.5:8080` (or a bare address) in `addresses()`'s table, None when unlisted."""
    host, _, port = address.rpartition(":") if address.count(":") == 1 else (address, "", "")
    mine = table[table["address"] == host]
    if port.isdigit():
        exact = mine[mine["port"] == int(port)]
        mine = exact if not exact.empty else mine
    services = sorted(set(mine["service"].dropna()))
    return services[0] if services else None


def workload_behind(cluster: Cluster, name: str | None) -> tuple[str, str] | None:
    """(kind, name) of the workload behind an upstream name: a Deployment of that name, else the Deployment,
    StatefulSet or DaemonSet whose pod template the Service of that name selects."""
    if not name:
        return None
    try:
        cluster.apps.read_namespaced_deployment(name, cluster.namespace, _request_timeout=REQUEST_TIMEOUT)
        return ("Deployment", name)
    except ApiException as e:
        if e.status != 404:
            raise
    try:
        service = cluster.core.read_namespaced_service(name, cluster.namespace, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    selector = service.spec.selector or {}
    if not selector:
        return None
    for kind in workloads.SERVING:  # a Deployment first, as before StatefulSets and DaemonSets existed here
        for _, workload in workloads.list_all(cluster, (kind,)):
            labels = workloads.template_labels(kind, workload)
            if all(labels.get(k) == v for k, v in selector.items()):
                return (kind, workload.metadata.name)
    return None


def _from_endpoints(cluster: Cluster) -> pd.DataFrame:
    """The same table from core/v1 Endpoints (deprecated since 1.33, still served)."""
    items = cluster.core.list_namespaced_endpoints(cluster.namespace, _request_timeout=REQUEST_TIMEOUT).items
    rows: list[dict] = []
    for endpoints in items:
        for subset in endpoints.subsets or []:
            ports = [p.port for p in subset.ports or []] or [None]
            for ready, listed in ((True, subset.addresses or []), (False, subset.not_ready_addresses or [])):
                for address in listed:
                    pod = address.target_ref.name if address.target_ref else None
                    rows.extend(
                        {
                            "address": address.ip,
                            "port": port,
                            "service": endpoints.metadata.name,
                            "pod": pod,
                            "ready": ready,
                        }
                        for port in ports
                    )
    return pd.DataFrame(rows, columns=ADDRESS_COLUMNS)

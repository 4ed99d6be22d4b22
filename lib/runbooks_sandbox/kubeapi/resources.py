"""The resources the test API server knows, as data, and the discovery documents built from them.

Adding a resource is one more row in RESOURCES. Keys of a row:
  group, version, plural, kind   -- as in the real API ("" is the core group)
  namespaced                     -- False for cluster-scoped resources
  verbs                          -- READ_WRITE or READ_ONLY
  short                          -- kubectl short names
  subresources                   -- any of "status", "scale", "log"
  fields                         -- field selectors besides metadata.name / metadata.namespace
  custom                         -- True for CustomResourceDefinition-backed resources
"""

from typing import Any

READ_WRITE = ["create", "delete", "get", "list", "patch", "update"]
READ_ONLY = ["get", "list"]

RESOURCES: list[dict[str, Any]] = [
    {
        "group": "",
        "version": "v1",
        "plural": "pods",
        "kind": "Pod",
        "namespaced": True,
        "verbs": READ_WRITE,
        "short": ["po"],
        "subresources": ["status", "log"],
        "fields": [
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
        ],
    },
    {
        "group": "",
        "version": "v1",
        "plural": "events",
        "kind": "Event",
        "namespaced": True,
        "verbs": READ_WRITE,
        "short": ["ev"],
        "fields": [
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "type",
        ],
    },
    {
        "group": "",
        "version": "v1",
        "plural": "secrets",
        "kind": "Secret",
        "namespaced": True,
        "verbs": READ_WRITE,
        "fields": ["type"],
    },
    {
        "group": "",
        "version": "v1",
        "plural": "configmaps",
        "kind": "ConfigMap",
        "namespaced": True,
        "verbs": READ_WRITE,
        "short": ["cm"],
    },
    {
        "group": "",
        "version": "v1",
        "plural": "services",
        "kind": "Service",
        "namespaced": True,
        "verbs": READ_WRITE,
        "short": ["svc"],
        "subresources": ["status"],
    },
    {
        "group": "",
        "version": "v1",
        "plural": "nodes",
        "kind": "Node",
        "namespaced": False,
        "verbs": READ_WRITE,
        "short": ["no"],
        "subresources": ["status"],
        "fields": ["spec.unschedulable"],
    },
    {
        "group": "",
        "version": "v1",
        "plural": "namespaces",
        "kind": "Namespace",
        "namespaced": False,
        "verbs": READ_WRITE,
        "short": ["ns"],
        "subresources": ["status"],
        "fields": ["status.phase"],
    },
    {
        "group": "apps",
        "version": "v1",
        "plural": "deployments",
        "kind": "Deployment",
        "namespaced": True,
        "verbs": READ_WRITE,
        "short": ["deploy"],
        "subresources": ["status", "scale"],
    },
    {
        "group": "apps",
        "version": "v1",
        "plural": "replicasets",
        "kind": "ReplicaSet",
        "namespaced": True,
        "verbs": READ_WRITE,
        "short": ["rs"],
        "subresources": ["status", "scale"],
        "fields": ["status.replicas"],
    },
    {
        "group": "apps",
        "version": "v1",
        "plural": "statefulsets",
        "kind": "StatefulSet",
        "namespaced": True,
        "verbs": READ_WRITE,
        "short": ["sts"],
        "subresources": ["status", "scale"],
    },
    {
        "group": "apps",
        "version": "v1",
        "plural": "daemonsets",
        "kind": "DaemonSet",
        "namespaced": True,
        "verbs": READ_WRITE,
        "short": ["ds"],
        "subresources": ["status"],
    },
    {
        "group": "batch",
        "version": "v1",
        "plural": "jobs",
        "kind": "Job",
        "namespaced": True,
        "verbs": READ_WRITE,
        "subresources": ["status"],
        "fields": ["status.successful"],
    },
    {
        "group": "batch",
        "version": "v1",
        "plural": "cronjobs",
        "kind": "CronJob",
        "namespaced": True,
        "verbs": READ_WRITE,
        "short": ["cj"],
        "subresources": ["status"],
    },
    {
        "group": "",
        "version": "v1",
        "plural": "endpoints",
        "kind": "Endpoints",
        "namespaced": True,
        "verbs": READ_WRITE,
        "short": ["ep"],
    },
    {
        "group": "discovery.k8s.io",
        "version": "v1",
        "plural": "endpointslices",
        "kind": "EndpointSlice",
        "namespaced": True,
        "verbs": READ_WRITE,
        "fields": ["addressType"],
    },
    {
        "group": "",
        "version": "v1",
        "plural": "resourcequotas",
        "kind": "ResourceQuota",
        "namespaced": True,
        "verbs": READ_WRITE,
        "short": ["quota"],
        "subresources": ["status"],
    },
    {
        "group": "",
        "version": "v1",
        "plural": "limitranges",
        "kind": "LimitRange",
        "namespaced": True,
        "verbs": READ_WRITE,
        "short": ["limits"],
    },
    {
        "group": "metrics.k8s.io",
        "version": "v1beta1",
        "plural": "pods",
        "kind": "PodMetrics",
        "namespaced": True,
        "verbs": READ_ONLY,
    },
    {
        "group": "metrics.k8s.io",
        "version": "v1beta1",
        "plural": "nodes",
        "kind": "NodeMetrics",
        "namespaced": False,
        "verbs": READ_ONLY,
    },
    {
        "group": "cert-manager.io",
        "version": "v1",
        "plural": "certificates",
        "kind": "Certificate",
        "namespaced": True,
        "verbs": READ_WRITE,
        "short": ["cert", "certs"],
        "subresources": ["status"],
        "custom": True,
    },
]

SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0",
    "gitCommit": "test",
    "gitTreeState": "clean",
    "buildDate": "2024-12-11T00:00:00Z",
    "goVersion": "go1.23.3",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def api_version(resource):
    """'v1' for the core group, 'group/version' otherwise."""
    if resource["group"]:
        return f"{resource['group']}/{resource['version']}"
    return resource["version"]


def find(group, version, plural):
    for resource in RESOURCES:
        if (resource["group"], resource["version"], resource["plural"]) == (group, version, plural):
            return resource
    return None


def find_kind(apiversion, kind):
    """The resource for an object's apiVersion and kind; apiVersion may be None."""
    for resource in RESOURCES:
        if resource["kind"] == kind and apiversion in (None, api_version(resource)):
            return resource
    return None


def group_versions():
    """[(group, version)] of the named groups, in table order."""
    seen = []
    for resource in RESOURCES:
        key = (resource["group"], resource["version"])
        if resource["group"] and key not in seen:
            seen.append(key)
    return seen


def api_versions_doc(server_address):
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group(group):
    versions = [{"groupVersion": f"{g}/{v}", "version": v} for g, v in group_versions() if g == group]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def api_group_list_doc():
    groups: list[dict] = []
    for group, _ in group_versions():
        if group not in [g["name"] for g in groups]:
            groups.append(api_group(group))
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_resource_list_doc(group, version):
    """APIResourceList for one group version, or None when the server does not serve it."""
    items = []
    for resource in RESOURCES:
        resource = dict(resource)
        if (resource["group"], resource["version"]) != (group, version):
            continue
        items.append(
            {
                "name": resource["plural"],
                "singularName": resource["kind"].lower(),
                "namespaced": resource["namespaced"],
                "kind": resource["kind"],
                "verbs": resource["verbs"],
                "shortNames": resource.get("short", []),
            }
        )
        for sub in resource.get("subresources", []):
            entry = {
                "name": f"{resource['plural']}/{sub}",
                "singularName": "",
                "namespaced": resource["namespaced"],
                "kind": resource["kind"],
                "verbs": ["get", "patch", "update"],
            }
            if sub == "scale":
                entry.update(kind="Scale", group="autoscaling", version="v1")
            if sub == "log":
                entry.update(verbs=["get"])
            items.append(entry)
    if not items:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": items,
    }

"""Access to a Kubernetes cluster through the official client: kubeconfig (with a context) or in-cluster."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from ..errors import ClusterUnreachable

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
REQUEST_TIMEOUT = (5, 30)  # seconds: connect, read


@dataclass
class Cluster:
    """An API client and the namespace a runbook works in."""

    api: client.ApiClient
    namespace: str

    @cached_property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @cached_property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    @cached_property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api)

    @cached_property
    def discovery(self) -> client.DiscoveryV1Api:
        return client.DiscoveryV1Api(self.api)

    @cached_property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def in_namespace(self, namespace: str) -> Cluster:
        """The same API client working in another namespace (empty: this one)."""
        return self if not namespace or namespace == self.namespace else Cluster(self.api, namespace)


def connect(kubeconfig: str = "", context: str = "", namespace: str = "") -> Cluster:
    """A client from `kubeconfig` (else $KUBECONFIG or ~/.kube/config), or in-cluster config.

    `namespace` defaults to the context's namespace (in-cluster: the pod's own), else "default".
    Fails with ClusterUnreachable, saying why, when the API server does not answer.
    """
    path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or str(Path.home() / ".kube/config")
    try:
        if Path(path).expanduser().is_file():
            api = config.new_client_from_config(config_file=path, context=context or None)
            contexts, active = config.list_kube_config_contexts(config_file=path)
            chosen = next((c for c in contexts if c["name"] == context), active)
            namespace = namespace or chosen["context"].get("namespace", "")
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            api = client.ApiClient(configuration)
            namespace = namespace or SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
        else:
            raise ClusterUnreachable(
                f"no kubeconfig at {path} and not running in a cluster: set the kubeconfig parameter"
            )
    except (config.ConfigException, OSError, ValueError) as e:
        raise ClusterUnreachable(f"cannot load Kubernetes configuration from {path}: {e}") from None
    try:
        client.VersionApi(api).get_code(_request_timeout=REQUEST_TIMEOUT)
    except (ApiException, HTTPError, OSError) as e:
        host = api.configuration.host
        raise ClusterUnreachable(f"the Kubernetes API at {host} does not answer: {_reason(e)}") from None
    return Cluster(api, namespace or "default")


def _reason(error: Exception) -> str:
    if isinstance(error, ApiException):
        return f"HTTP {error.status} {error.reason}"
    return " ".join(str(error).split())[:300]

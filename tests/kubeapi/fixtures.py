"""The kube_api pytest fixture: a running test API server and a kubeconfig that points at it.

Import it where it is needed (a conftest.py or a test module):
    from tests.kubeapi.fixtures import kube_api  # noqa: F401
"""
import pytest

from .kubeconfig import write_kubeconfig
from .server import KubeApiServer


class KubeApi:
    """What kube_api yields. State changes made through it are not recorded as requests."""

    def __init__(self, server, kubeconfig, context):
        self.server = server
        self.url = server.url
        self.kubeconfig = kubeconfig  # pathlib.Path
        self.context = context

    @property
    def requests(self):
        """Every HTTP request the server has answered: RecordedRequest(method, path, query, body)."""
        return self.server.requests

    def load(self, scenario):
        """Add a scenario's objects and logs: a name under scenarios/, a YAML path or a dict."""
        return self.server.load(scenario)

    def reset(self):
        self.server.reset()

    def add(self, obj):
        return self.server.add(obj)

    def get(self, plural, name, namespace=None, group=""):
        return self.server.get(plural, name, namespace, group)

    def list(self, plural, namespace=None, group=""):
        return self.server.list(plural, namespace, group)

    def set_logs(self, namespace, pod, container, current=(), previous=()):
        self.server.set_logs(namespace, pod, container, current, previous)

    def client(self):
        """An official kubernetes ApiClient configured from the kubeconfig, as a runbook would build it."""
        from kubernetes import config
        return config.new_client_from_config(config_file=str(self.kubeconfig), context=self.context)


@pytest.fixture
def kube_api(tmp_path):
    with KubeApiServer() as server:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server.url, context="test")
        yield KubeApi(server, kubeconfig, "test")

"""A stateful Kubernetes API test server, scenarios as data, and a pytest fixture."""

from .kubeconfig import write_kubeconfig
from .scenario import Scenario, complete, load_scenario
from .server import KubeApiServer, RecordedRequest

__all__ = ["KubeApiServer", "RecordedRequest", "Scenario", "complete", "load_scenario", "write_kubeconfig"]

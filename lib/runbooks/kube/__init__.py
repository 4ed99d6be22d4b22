"""Kubernetes diagnostics through the official client: data in DataFrames, changes in mitigate."""

from . import events, logs, metrics, mitigate, pods, rollouts
from .cluster import Cluster, connect

__all__ = ["Cluster", "connect", "events", "logs", "metrics", "mitigate", "pods", "rollouts"]
from . import gateway, oomkilled  # noqa: E402  (runbook diagnosis modules, built on the ones above)

__all__ += ["gateway", "oomkilled"]

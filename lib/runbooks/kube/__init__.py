"""Kubernetes diagnostics through the official client: data in DataFrames, changes in mitigate."""

from . import certificates, events, logs, metrics, mitigate, pods, rollouts
from .cluster import Cluster, connect

__all__ = ["Cluster", "certificates", "connect", "events", "logs", "metrics", "mitigate", "pods", "rollouts"]

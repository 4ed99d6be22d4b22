"""Kubernetes diagnostics through the official client: data in DataFrames, changes in mitigate."""

from . import certificates, events, jwt_validation, logs, metrics, mitigate, pods, rollouts
from .cluster import Cluster, connect

__all__ = ["Cluster", "certificates", "connect", "events", "jwt_validation", "logs", "metrics", "mitigate", "pods", "rollouts"]

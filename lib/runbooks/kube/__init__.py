"""Kubernetes diagnostics through the official client: data in DataFrames, changes in mitigate.

Access: cluster, pods, events, logs, rollouts, metrics; changes: mitigate. One module per runbook
builds on them: oomkilled, gateway, jwt_validation, certificates.
"""

from . import events, logs, metrics, mitigate, pods, rollouts
from . import certificates, gateway, jwt_validation, oomkilled
from .cluster import Cluster, connect

__all__ = [
    "Cluster", "connect", "events", "logs", "metrics", "mitigate", "pods", "rollouts",
    "certificates", "gateway", "jwt_validation", "oomkilled",
]

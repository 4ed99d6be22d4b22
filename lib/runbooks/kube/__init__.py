"""Kubernetes through the official client, with no knowledge of any runbook: data in DataFrames.

Looking: cluster (connect), pods (and the workloads owning them), workloads (Deployments, StatefulSets, DaemonSets,
CronJobs read alike), events, logs (streamed scans), rollouts, revisions (what a rollout changed), usage (the
metrics API), services (addresses to Services, Services to workloads), admission (ResourceQuota and LimitRange
ahead of a change), certmanager (cert-manager Certificates). Changing: mitigate (rollout restart, scale, rollback,
memory) and certmanager.renew; each a server-side dry run unless asked to apply.
"""

from . import admission, certmanager, events, logs, mitigate, pods, revisions, rollouts, services, usage, workloads
from .cluster import Cluster, connect

__all__ = [
    "Cluster",
    "admission",
    "certmanager",
    "connect",
    "events",
    "logs",
    "mitigate",
    "pods",
    "revisions",
    "rollouts",
    "services",
    "usage",
    "workloads",
]

"""Kubernetes through the official client, with no knowledge of any runbook: data in DataFrames.

Looking: cluster (connect), pods, events, logs (streamed scans), rollouts, revisions (what a rollout changed),
usage (the metrics API), certmanager (cert-manager Certificates). Changing: mitigate (rollout restart, scale,
rollback, memory) and certmanager.renew; each a server-side dry run unless asked to apply.
"""

from . import certmanager, events, logs, mitigate, pods, revisions, rollouts, usage
from .cluster import Cluster, connect

__all__ = ["Cluster", "certmanager", "connect", "events", "logs", "mitigate", "pods", "revisions", "rollouts", "usage"]

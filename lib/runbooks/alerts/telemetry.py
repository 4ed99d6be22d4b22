"""What `GET /metrics` shows, in a registry of the service's own (prometheus_client)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .intake import Outcome


class Telemetry:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.received = Counter(
            "runbook_alerts_received", "Alerts received, by Alertmanager status", ["status"], registry=self.registry
        )
        self.deduplicated = Counter(
            "runbook_alerts_deduplicated",
            "Alerts received again (same fingerprint, startsAt and status): nothing done",
            registry=self.registry,
        )
        self.not_run = Counter(
            "runbook_alerts_not_run", "Firing alerts that start no run, by reason", ["reason"], registry=self.registry
        )  # unrouted | rejected
        self.runs = Counter(
            "runbook_runs", "Runs finished, by runbook and status", ["runbook", "status"], registry=self.registry
        )
        self.duration = Histogram(
            "runbook_run_duration_seconds",
            "Wall time of a run, kernel start to evidence",
            ["runbook"],
            buckets=(1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600),
            registry=self.registry,
        )
        self.queue = Gauge(
            "runbook_queue_depth",
            "Alerts waiting for a worker (queued) or being run (running)",
            ["state"],
            registry=self.registry,
        )

    def count(self, outcome: Outcome) -> None:
        """An alert received, and what became of it."""
        self.received.labels(outcome.status).inc()
        if outcome.outcome == "duplicate":
            self.deduplicated.inc()
        elif outcome.outcome in ("unrouted", "rejected"):
            self.not_run.labels(outcome.outcome).inc()

    def text(self, depth: dict[str, int]) -> bytes:
        """The exposition text, with the queue depth as the queue has it now."""
        for state, count in depth.items():
            self.queue.labels(state).set(count)
        return generate_latest(self.registry)

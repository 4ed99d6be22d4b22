"""Every runbook there is, and what belongs to it: the one list the rest derives from.

A runbook named `pod-oomkilled` has
- its notebook      `notebooks/pod-oomkilled.ipynb` (title and parameters are read from it: runbooks.catalog)
- its diagnosis     `runbooks.diagnoses.pod_oomkilled`, which the notebook imports as `diagnosis`
- its access layers the packages of `runbooks` it reads the world through (`kube`, `postgres`, ...)
- its alert routes  the entries of `parameters/alerts.yaml` whose `runbook` is its name (runbooks.alerts.routing)
- its tests         `tests/test_pod_oomkilled.py`

Adding a runbook: write the notebook and the diagnosis, add an Entry here, route its alerts, test it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError

ACCESS_LAYERS = ("postgres", "kube", "prometheus", "tls", "health", "gateway_log", "jwks", "alertmanager")


@dataclass(frozen=True)
class Entry:
    name: str  # the notebook's file stem
    access: tuple[str, ...]  # of ACCESS_LAYERS
    changes: str = ""  # what it changes with apply=True; empty: nothing (it takes no `apply`)

    @property
    def diagnosis(self) -> str:
        """The module holding this runbook's diagnosis."""
        return f"runbooks.diagnoses.{self.name.replace('-', '_')}"


RUNBOOKS = (
    Entry(
        "api-gateway-high-error-rate",
        ("kube", "gateway_log"),
        "restarts or rolls back the upstream the likely cause names (or `upstream`)",
    ),
    Entry("db-connection-pool-exhausted", ("postgres",), "terminates sessions idle longer than `idle_minutes`"),
    Entry("db-slow-queries", ("postgres",), "cancels active queries running longer than `cancel_longer_than_seconds`"),
    Entry(
        "jwt-validation-failures",
        ("kube", "jwks"),
        "restarts the workloads whose pods started before the secret changed",
    ),
    Entry("oncall-handoff", ("kube", "postgres", "tls", "alertmanager")),
    Entry(
        "pod-oomkilled",
        ("kube",),
        "raises the memory of the workloads owning recently OOMKilled containers, restarting them in one patch",
    ),
    Entry("ssl-certificate-expired", ("kube", "tls"), "asks cert-manager to renew (as `cmctl renew`); never deletes"),
    Entry("service-investigation", ("kube", "prometheus", "health")),
    Entry("third-party-api-down", ("kube", "health")),
    Entry("triage", ("kube", "prometheus", "gateway_log")),
    Entry("verify-recovery", ("prometheus",)),
)


def names() -> tuple[str, ...]:
    return tuple(entry.name for entry in RUNBOOKS)


def get(name: str) -> Entry:
    for entry in RUNBOOKS:
        if entry.name == name:
            return entry
    raise UsageError(f"unknown runbook {name!r} (known: {', '.join(names())})")


def warm_up_modules(name: str | None = None) -> tuple[str, ...]:
    """What a kernel imports before its run: the facade, the charts, every access layer and every diagnosis (those
    of runbook `name` only, when given)."""
    entries = [get(name)] if name else RUNBOOKS
    layers = dict.fromkeys(f"runbooks.{layer}" for entry in entries for layer in entry.access)
    return ("runbooks", "runbooks.charts", *layers, *(entry.diagnosis for entry in entries))

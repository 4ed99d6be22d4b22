"""The errors a runbook user can meet, each with the exit code the `runbook` command gives it."""


class UsageError(Exception):
    """Bad input caught before any kernel starts: unknown runbook or parameter, wrong type. Exit 2."""

    exit_code = 2


class DatabaseUnreachable(Exception):
    """The diagnostic session could not connect; the message says why and how to get in."""


class ClusterUnreachable(Exception):
    """No Kubernetes configuration, or the API server does not answer; the message says which."""


class PrometheusUnreachable(Exception):
    """Prometheus does not answer, or what answers is not its HTTP API; the message says which."""


class PrometheusQueryError(Exception):
    """Prometheus refused a PromQL query (bad syntax, unknown function); the message quotes its reason."""


class AlertmanagerUnreachable(Exception):
    """Alertmanager does not answer, or what answers is not its API v2; the message says which."""

"""`parameters/alerts.yaml`: which runbook an alert starts, which of its labels become parameters, and
which incident folder its runs land in.

A label or annotation becomes a parameter only after its value passes the check its route names
(CHECKS, matched against the whole value); the runbook's own type checks then apply as for
`runbook run`, on top of the same layers: the notebook's defaults < `--env` < `-f` files < the alert.
An alert can never set `apply`: runs started by alerts look and preview, they change nothing.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from .. import catalog, redact
from ..errors import UsageError
from .webhook import Alert, Notification

ROUTES = catalog.PARAMETERS / "alerts.yaml"


@dataclass(frozen=True)
class Check:
    pattern: re.Pattern
    meaning: str
    convert: type = str
    max_length: int = 63


# Kubernetes names and label values as the API server defines them (DNS-1123; label values),
# host[:port] as a hostname, and plain decimal numbers. None of them admits a quote, a space,
# a comma, a parenthesis, `=`, `!` or a newline, so no value can reach past its place in a
# label selector, a notebook's parameters cell or an SQL statement.
CHECKS = {
    "dns-label": Check(
        re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"),
        "a Kubernetes name (DNS-1123 label: a-z, 0-9 and '-', at most 63 characters)",
    ),
    "dns-subdomain": Check(
        re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"),
        "a Kubernetes object name (DNS-1123 subdomain, at most 253 characters)",
        max_length=253,
    ),
    "label-value": Check(
        re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"),
        "a Kubernetes label value (letters, digits, '-', '_' and '.', at most 63 characters)",
    ),
    "host-port": Check(
        re.compile(r"[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?"),
        "a host name with an optional :port",
        max_length=253,
    ),
    "integer": Check(re.compile(r"-?[0-9]+"), "an integer", int, max_length=12),
    "number": Check(re.compile(r"-?[0-9]+(\.[0-9]+)?"), "a decimal number", float, max_length=20),
}
# An `incident` label names the incident folder when it is a plain name; otherwise the group does.
INCIDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

_SOURCE = {
    "type": "object",
    "additionalProperties": False,
    "oneOf": [{"required": ["label"]}, {"required": ["annotation"]}],
    "required": ["check"],
    "properties": {
        "label": {"type": "string"},
        "annotation": {"type": "string"},
        "check": {"enum": list(CHECKS)},
        "template": {"type": "string", "pattern": r"^[^{}]*\{\}[^{}]*$"},
        "list": {"type": "boolean"},
        "min": {"type": "number"},
        "max": {"type": "number"},
    },
}
_LIMITS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "incident": {"type": "string", "minLength": 1},
        "endpoints": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
        "queued": {"type": "integer", "minimum": 1},
        "alerts_per_notification": {"type": "integer", "minimum": 1},
        "incidents": {"type": "integer", "minimum": 1},
    },
}
SCHEMA = {
    "type": "object",
    "required": ["routes"],
    "additionalProperties": False,
    "properties": {
        "limits": _LIMITS,
        "routes": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["runbook"],
                "additionalProperties": False,
                "properties": {
                    "runbook": {"type": "string"},
                    "parameters": {"type": "object", "additionalProperties": _SOURCE},
                },
            },
        },
    },
}


CLUSTERS = "clusters"  # in a `-f` file: which kubeconfig context serves the cluster an alert names
_CLUSTERS = {
    "type": "object",
    "additionalProperties": False,
    "required": ["contexts"],
    "properties": {
        "label": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
        "contexts": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {"type": "string", "minLength": 1},
        },
    },
}


class Rejected(Exception):
    """A label or annotation the route reads failed its check: the alert starts no run."""


class Unrouted(Exception):
    """The alert's cluster has no kubeconfig context: the alert starts no run."""


@dataclass(frozen=True)
class Policy:
    """What alerts may do (`limits` in the routes file). The defaults take a storm of thousands of distinct alerts;
    only what is clearly abuse is refused: an endless queue, an endless notification, endless incident folders."""

    incident: re.Pattern = INCIDENT  # which `incident` labels name the incident folder; others: the group's name
    endpoints: tuple[str, ...] = ("*",)  # host[:port] patterns (shell-style) a host-port label may name
    queued: int = 10_000  # runs waiting at once; past it POST /alerts answers 503 and Alertmanager sends again
    alerts_per_notification: int = 5_000  # past it the notification is refused (413)
    incidents: int = 10_000  # incident folders under the output folder; an alert for a new one past it is rejected

    @classmethod
    def of(cls, spec: dict[str, Any], where: Path) -> Policy:
        try:
            incident = re.compile(spec["incident"]) if "incident" in spec else INCIDENT
        except re.error as e:
            raise UsageError(f"{where}: limits.incident is no regular expression: {e}") from None
        return cls(
            incident,
            tuple(spec.get("endpoints", cls.endpoints)),
            spec.get("queued", cls.queued),
            spec.get("alerts_per_notification", cls.alerts_per_notification),
            spec.get("incidents", cls.incidents),
        )

    def endpoint(self, text: str) -> bool:
        """Whether alerts may name the endpoint `host[:port]`: a pattern without a port admits any port."""
        host = text.rsplit(":", 1)[0] if ":" in text else text
        return any(
            fnmatch.fnmatchcase(text.lower(), p.lower())
            or (":" not in p and fnmatch.fnmatchcase(host.lower(), p.lower()))
            for p in self.endpoints
        )


DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class Clusters:
    """Alertmanager shared by several clusters: the alert's `label` (default `cluster`) names its cluster, and
    `contexts` maps each cluster to the kubeconfig context of that cluster (`clusters` in a `-f` file)."""

    contexts: dict[str, str]
    label: str = "cluster"

    def context(self, alert: Alert) -> str:
        """The kubeconfig context of the alert's cluster; Unrouted when it names none the mapping has."""
        cluster = alert.labels.get(self.label)
        if cluster is None:
            raise Unrouted(f"no {self.label!r} label: which cluster's kubeconfig context to use is unknown")
        if cluster not in self.contexts:
            raise Unrouted(f"{self.label} {_quoted(cluster)} has no kubeconfig context (clusters.contexts)")
        return self.contexts[cluster]

    @classmethod
    def of(cls, spec: Any, where: Path) -> Clusters:
        error = next(iter(Draft202012Validator(_CLUSTERS).iter_errors(spec)), None)
        if error is not None:
            path = ".".join(str(p) for p in error.absolute_path)
            raise UsageError(f"parameter file {where}: {CLUSTERS}{'.' + path if path else ''}: {error.message}")
        return cls(dict(spec["contexts"]), spec.get("label", "cluster"))


@dataclass(frozen=True)
class Source:
    """Where one parameter comes from: a label or an annotation, its check, and how it is written."""

    parameter: str
    field: str  # labels | annotations
    name: str
    check: str
    template: str = "{}"
    as_list: bool = False
    minimum: float | None = None
    maximum: float | None = None

    def value(self, alert: Alert, policy: Policy = DEFAULT_POLICY) -> Any:
        """The checked value, or None when the alert has no such label (the lower layers then apply)."""
        text = getattr(alert, self.field).get(self.name)
        if text is None:
            return None
        check = CHECKS[self.check]
        where = f"{self.field[:-1]} {self.name!r}"
        if len(text) > check.max_length or not check.pattern.fullmatch(text):
            raise Rejected(f"{where} = {_quoted(text)} is not {check.meaning}")
        if self.check == "host-port" and not policy.endpoint(text):
            raise Rejected(f"{where} = {_quoted(text)} is not an endpoint alerts may name (limits.endpoints)")
        if check.convert is str:
            value = self.template.format(text)
        else:
            value = check.convert(text)
            if (self.minimum is not None and value < self.minimum) or (
                self.maximum is not None and value > self.maximum
            ):
                raise Rejected(f"{where} = {text} is outside [{self.minimum}, {self.maximum}]")
        return [value] if self.as_list else value


@dataclass(frozen=True)
class Route:
    alertname: str
    runbook: str
    sources: tuple[Source, ...]

    def parameters(self, alert: Alert, policy: Policy = DEFAULT_POLICY) -> dict[str, Any]:
        """The parameters this alert sets (checked); Rejected names the first label that failed."""
        values = {s.parameter: s.value(alert, policy) for s in self.sources}
        return {name: value for name, value in values.items() if value is not None}


@dataclass(frozen=True)
class Routing:
    routes: dict[str, Route]
    books: dict[str, catalog.Runbook]
    # runbook -> its parameters from defaults, --env and -f files, as given: each run takes its secrets out
    # (runner.run, through redact.take) and hands them to its own kernel.
    base: dict[str, dict] = field(repr=False)
    policy: Policy = DEFAULT_POLICY
    clusters: Clusters | None = None  # alerts from several clusters: each alert's context from its cluster label

    def parameters(self, runbook: str, from_alert: dict[str, Any]) -> dict[str, Any]:
        """The run's parameters, the alert's values over the base, type-checked as `runbook run` does
        (UsageError if wrong)."""
        return self.books[runbook].resolve(self.base[runbook], from_alert)


def load(path: Path = ROUTES, env: str | None = None, files: tuple[Path, ...] = ()) -> Routing:
    """Routes and the parameter layers under them, checked against the runbooks (UsageError if wrong).

    A `-f` file applies each of its parameters to every routed runbook that takes it; a parameter no
    routed runbook takes is refused, so a misspelt name fails here and not at the first alert.
    """
    routes = read_routes(path)
    books = {name: catalog.find(name) for name in sorted({r.runbook for r in routes.values()})}
    check_sources(path, routes, books)
    layers = read_parameter_files(files, books)
    clusters = [
        Clusters.of(layer.pop(CLUSTERS), f) for f, layer in zip(files, layers, strict=True) if CLUSTERS in layer
    ]
    if len(clusters) > 1:
        raise UsageError(f"'{CLUSTERS}' is given in more than one parameter file: give it once")
    return Routing(routes, books, base_parameters(books, env, layers), read_policy(path), next(iter(clusters), None))


def read_policy(path: Path) -> Policy:
    """The routes file's `limits` (checked with the routes): what alerts may do."""
    return Policy.of(catalog.read_yaml(path).get("limits") or {}, path)


def read_routes(path: Path) -> dict[str, Route]:
    """The routes file, checked against SCHEMA: alert name -> route."""
    data = catalog.read_yaml(path)
    error = next(iter(Draft202012Validator(SCHEMA).iter_errors(data)), None)
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "top level"
        raise UsageError(f"{path}: {where}: {error.message}")
    return {name: _route(path, name, spec) for name, spec in data["routes"].items()}


def check_sources(path: Path, routes: dict[str, Route], books: dict[str, catalog.Runbook]) -> None:
    """Every parameter a route sets is one its runbook takes, and none is `apply`."""
    for route in routes.values():
        for source in route.sources:
            if source.parameter == "apply":
                raise UsageError(f"{path}: {route.alertname}: an alert cannot set 'apply'; alert runs only preview")
            if source.parameter not in books[route.runbook].parameters:
                raise UsageError(
                    f"{path}: {route.alertname}: runbook {route.runbook!r} has no parameter {source.parameter!r}"
                )


def read_parameter_files(files: tuple[Path, ...], books: dict[str, catalog.Runbook]) -> list[dict[str, Any]]:
    """The `-f` files; each of their parameters must be taken by some routed runbook (`clusters` aside)."""
    layers = [catalog.read_yaml(f) for f in files]
    taken = {CLUSTERS, *(name for book in books.values() for name in book.parameters)}
    for f, layer in zip(files, layers, strict=True):
        if unknown := sorted(set(layer) - taken):
            raise UsageError(f"parameter file {f}: no routed runbook takes {', '.join(map(repr, unknown))}")
    return layers


def base_parameters(
    books: dict[str, catalog.Runbook], env: str | None, layers: list[dict[str, Any]]
) -> dict[str, dict]:
    """Each routed runbook's parameters from its defaults, `--env` and the files, type-checked, never `apply`, and
    their secrets checked to be takeable (redact.take) now rather than at the first alert."""
    base = {}
    for name, book in books.items():
        stack = [catalog.environment_layer(env, book)] if env else []
        stack += [{k: v for k, v in layer.items() if k in book.parameters} for layer in layers]
        base[name] = book.resolve(*stack)  # wrong types in the files fail now
        if base[name].get("apply"):
            raise UsageError(f"runbook {name!r}: apply is set by --env or -f; runs started by alerts only preview")
        redact.take(base[name])
    return base


def routes_to(runbook: str, path: Path = ROUTES) -> list[str]:
    """The alert names routed to `runbook` (for `runbook show`); none when the routes file cannot be read."""
    try:
        return sorted(name for name, route in read_routes(path).items() if route.runbook == runbook)
    except UsageError:
        return []


def incident_id(notification: Notification, alert: Alert, policy: Policy = DEFAULT_POLICY) -> str:
    """The alert's `incident` label if it is a plain name the policy admits, else `<group alertname>-<hash of
    groupKey>`: stable for the group across notifications and restarts, and safe as a folder name."""
    label = alert.labels.get("incident", "")
    if INCIDENT.fullmatch(label) and policy.incident.fullmatch(label):
        return label
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", notification.group_labels.get("alertname", ""))[:40].strip("-_")
    return f"{name or 'alerts'}-{hashlib.sha256(notification.group_key.encode()).hexdigest()[:8]}"


def _route(path: Path, alertname: str, spec: dict) -> Route:
    sources = []
    for parameter, source in (spec.get("parameters") or {}).items():
        field_ = "labels" if "label" in source else "annotations"
        if "template" in source and CHECKS[source["check"]].convert is not str:
            raise UsageError(
                f"{path}: {alertname}.{parameter}: a template applies to text checks, not {source['check']!r}"
            )
        sources.append(
            Source(
                parameter,
                field_,
                source.get("label") or source.get("annotation"),
                source["check"],
                source.get("template", "{}"),
                source.get("list", False),
                source.get("min"),
                source.get("max"),
            )
        )
    return Route(alertname, spec["runbook"], tuple(sources))


def _quoted(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:80] + "…")

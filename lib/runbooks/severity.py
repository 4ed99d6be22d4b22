"""Incident severity from measured values: the incident-response runbook's "Incident Severity Levels", as one function.

The runbook's criteria that can be measured, in the order they are checked, and how each boundary is read.
The incident-response runbook says "when in doubt, escalate to higher severity", so every boundary value belongs to the
higher severity:

    P1  error rate >= 99 %          "all requests failing", "API Gateway returning 5xx for all requests".
                                    Read as at least 99 %: in a full outage a few requests (health checks,
                                    cached answers) still succeed, and 100 % to the digit would never be met.
    P1  a critical service down     "Authentication system down", "Database completely unavailable": a
                                    service named critical (the triage parameter `critical_services`) has
                                    no ready pod.
    P2  error rate >= 10 %          incident-response runbook: "Error rate > 10%". Exactly 10 % is P2, not P3.
    P2  latency >= 3x normal        incident-response runbook: "> 3x normal latency". Exactly 3x is P2, not P3.
    P2  a service down              runbook: "One or more services down": a deployment that wants replicas has
                                    no ready pod.
    P2  a feature unavailable       runbook: "Major feature completely unavailable" ("Tax calculation service
                                    unavailable"): a feature whose third-party dependency fails in the
                                    services' own calls (the third-party-api-down runbook).
    P3  error rate >= 1 %           incident-response runbook: "Error rate 1-10%". Exactly 1 % is P3, not P4.
    P3  latency >= 1.5x normal      incident-response runbook: "1.5-3x normal latency". Exactly 1.5x is P3, not P4.
    P3  a feature degraded          runbook: "Issue affects subset of users": a dependency that fails a probe
                                    while the services' calls still succeed.
    P4  none of the above           runbook: "performance slightly below normal", "non-critical alert noise".

Values are compared after rounding to 9 decimal places, so that a ratio float arithmetic puts at
0.09999999999 reads as the 10 % it is. The highest severity with a rule that holds wins; among its rules
the first in the order above is named. A value not measured (None, or NaN as 0/0 without traffic gives)
holds no rule and is listed in `unmeasured`: a P4 with unmeasured values means "nothing measured says
worse", not "all is well". What no measurement here can see (data loss, a security breach, one feature
down) is for the engineer to judge: they raise the severity by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from . import escape, units

LEVELS = ("P1", "P2", "P3", "P4")
ALL_FAILING = 0.99


@dataclass(frozen=True)
class Rule:
    level: str
    measure: str  # the argument of classify() it reads
    threshold: float  # holds when the value (a list: its length) is at least this
    text: str  # names the threshold and the incident-response runbook's words


RULES = (
    Rule(
        "P1",
        "error_rate",
        ALL_FAILING,
        "error rate >= 99 %: all requests failing (P1: 'API Gateway returning 5xx for all requests')",
    ),
    Rule(
        "P1",
        "critical_services_down",
        1,
        "a critical service down (P1: 'Authentication system down', 'Database completely unavailable')",
    ),
    Rule("P2", "error_rate", 0.10, "error rate >= 10 % (P2: 'Error rate > 10%')"),
    Rule(
        "P2",
        "latency_ratio",
        3.0,
        "latency >= 3x normal (P2: 'Significant performance degradation (> 3x normal latency)')",
    ),
    Rule("P2", "services_down", 1, "one or more services down (P2: 'One or more services down')"),
    Rule("P2", "features_down", 1, "a major feature unavailable (P2: 'Major feature completely unavailable')"),
    Rule("P3", "error_rate", 0.01, "error rate >= 1 % (P3: 'Error rate 1-10%')"),
    Rule(
        "P3",
        "latency_ratio",
        1.5,
        "latency >= 1.5x normal (P3: 'Moderate performance degradation (1.5-3x normal latency)')",
    ),
    Rule("P3", "features_degraded", 1, "a feature degraded for some users (P3: 'Issue affects subset of users')"),
)
BELOW_EVERY_RULE = (
    "below every P1-P3 threshold: error rate < 1 %, latency < 1.5x normal, no service down "
    "(P4: 'Minor issue with minimal user impact')"
)


@dataclass(frozen=True)
class Severity:
    level: str  # P1 | P2 | P3 | P4
    rule: str  # the rule that fired, naming its threshold
    measured: dict[str, Any]  # the measured value(s) the rule fired on; for P4 every measured value
    unmeasured: tuple[str, ...] = field(default_factory=tuple)  # measures given as None/NaN

    def _repr_markdown_(self) -> str:
        not_measured = (
            f"; not measured: {', '.join(m.replace('_', ' ') for m in self.unmeasured)}" if self.unmeasured else ""
        )
        said = f"{self.rule}; measured {measured_words(self.measured)}{not_measured}"
        return f"**{self.level}**: {escape.markdown(said)}"


def measured_words(measured: dict[str, Any]) -> str:
    """`error rate 12.0 %, latency 2.0x normal, services down: auth-service`."""
    words = []
    for name, value in measured.items():
        if name == "error_rate" and isinstance(value, (int, float)):
            words.append(f"error rate {units.percent(value)}")
        elif name == "latency_ratio" and isinstance(value, (int, float)):
            words.append(f"latency {value:.1f}x normal")
        elif isinstance(value, (list, tuple)):
            words.append(f"{name.replace('_', ' ')}: {', '.join(map(str, value)) or 'none'}")
        else:
            words.append(f"{name.replace('_', ' ')} {value}")
    return ", ".join(words) or "nothing"


def classify(
    error_rate: float | None = None,
    latency_ratio: float | None = None,
    services_down: tuple[str, ...] | list[str] = (),
    critical_services_down: tuple[str, ...] | list[str] = (),
    features_down: tuple[str, ...] | list[str] | None = None,
    features_degraded: tuple[str, ...] | list[str] | None = None,
) -> Severity:
    """The incident-response runbook's severity for these measurements (see the module docstring for every boundary).

    error_rate: fraction of requests failing, 0..1 (not a percentage); latency_ratio: latency divided by
    normal latency; services_down: deployments with no ready pod; critical_services_down: those of them
    whose loss is P1; features_down: features users cannot use (their dependency fails); features_degraded:
    features that may fail for some (both None: features were not looked at, they are neither measured nor
    unmeasured). None (or NaN) means not measured.
    """
    values = {
        "error_rate": _fraction(error_rate),
        "latency_ratio": _ratio(latency_ratio),
        "services_down": tuple(services_down),
        "critical_services_down": tuple(critical_services_down),
    }
    if features_down is not None or features_degraded is not None:  # only the runbooks that look at features
        values |= {"features_down": tuple(features_down or ()), "features_degraded": tuple(features_degraded or ())}
    unmeasured = tuple(name for name, value in values.items() if value is None)
    for rule in RULES:
        value = values.get(rule.measure)
        if value is None:
            continue
        size = len(value) if isinstance(value, tuple) else value
        if round(size, 9) >= rule.threshold:
            return Severity(rule.level, rule.text, {rule.measure: _plain(value)}, unmeasured)
    measured = {name: _plain(value) for name, value in values.items() if value is not None}
    return Severity("P4", BELOW_EVERY_RULE, measured, unmeasured)


def lowest_threshold(measure: str) -> float:
    """The lowest value of `measure` any rule counts (error_rate: 0.01, latency_ratio: 1.5): an incident from there."""
    return min(rule.threshold for rule in RULES if rule.measure == measure)


def _fraction(value: float | None) -> float | None:
    value = _ratio(value)
    if value is not None and value > 1 + 1e-9:
        raise ValueError(
            f"error rate must be a fraction of requests between 0 and 1, got {value:g} "
            "(is the query giving a percentage?)"
        )
    return value


def _ratio(value: float | None) -> float | None:
    if value is None or math.isnan(value):
        return None
    if value < 0 or math.isinf(value):
        raise ValueError(f"a measured rate or ratio must be finite and >= 0, got {value}")
    return float(value)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value

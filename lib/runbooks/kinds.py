"""Kinds of parameter values beyond their Python type: a time, a Prometheus duration, a memory quantity.

A notebook declares a parameter's kind once, as its annotation in the `parameters` cell:

    from runbooks.kinds import Time
    incident_start: Time = ""  # when it began, ISO 8601 (no zone: UTC); empty: ...

For the kernel a kind is just `str`; runbooks.catalog reads the annotation and checks every value given against
the kind before any kernel starts (`runbook run` exits 2 on a bad one), and `runbook show` names it in words.
An empty value always passes: it means "not given" (the parameter's help says what happens then).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass

Time = str  # an ISO 8601 time: 2026-11-30T10:45:00Z (no zone: UTC)
PromDuration = str  # a Prometheus duration: 30s, 5m, 1h30m, 1d, 1w
Memory = str  # a Kubernetes memory quantity: 512Mi, 1Gi, 1.5Gi, 268435456

_PROM_DURATION = re.compile(r"(\d+(ms|s|m|h|d|w|y))+")
_MEMORY = re.compile(r"\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?")


@dataclass(frozen=True)
class Kind:
    name: str  # the annotation naming it in a parameters cell
    words: str  # what `runbook show` says it takes
    accepts: Callable[[str], bool]
    example: Callable[[str], str]  # a value of this kind, from what was given


def _is_time(text: str) -> bool:
    """As the notebooks read it (e.g. runbooks.diagnoses.triage.parse_start): ISO 8601, `Z` for UTC."""
    try:
        dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _time_example(text: str) -> str:
    """Today's date with the clock time given (`10:45` -> `2026-11-30T10:45:00Z`), else a plain example."""
    today = dt.datetime.now(dt.timezone.utc).date()
    match = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", text.strip())
    if match and int(match.group(1)) < 24 and int(match.group(2)) < 60:
        hour, minute, second = int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)
        return f"{today}T{hour:02d}:{minute:02d}:{second:02d}Z"
    return f"{today}T10:45:00Z"


KINDS = {
    kind.name: kind
    for kind in (
        Kind("Time", "a time, ISO 8601 (e.g. 2026-11-30T10:45:00Z; no zone: UTC)", _is_time, _time_example),
        Kind(
            "PromDuration",
            "a Prometheus duration (30s, 5m, 1h30m, 1d, 1w)",
            lambda text: bool(_PROM_DURATION.fullmatch(text.strip())),
            lambda text: "1w",
        ),
        Kind(
            "Memory",
            "a memory quantity (512Mi, 1Gi, 1.5Gi)",
            lambda text: bool(_MEMORY.fullmatch(text.strip())),
            lambda text: f"{text.strip()}Mi" if text.strip().isdigit() and int(text) < 65536 else "512Mi",
        ),
    )
}


def problem(kind: str, value: object) -> str | None:
    """Why `value` is not of `kind` (with an example of one that is); None when it is, or is empty."""
    of = KINDS[kind]
    if value in ("", None):
        return None
    if not isinstance(value, str):
        hint = " (YAML read it as a number: quote it)" if isinstance(value, (int, float)) else ""
        return f"takes {of.words}, got {value!r}{hint}"
    if of.accepts(value):
        return None
    return f"takes {of.words}, got {value!r}: e.g. {of.example(value)}"

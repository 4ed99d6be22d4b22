"""Findings and actions: recorded from inside a notebook, collected from the executed notebook.

A record is a display output carrying a JSON payload under our own MIME type next to a
readable markdown line. Run interactively, the engineer sees the line; run by `runbook run`,
the runner reads the payloads back from the executed notebook, so the notebook stays the log
and no side channel can drift from it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any, Iterable

MIMETYPE = "application/vnd.runbooks.evidence+json"
SEVERITIES = ("critical", "warning", "info")
_BADGES = {"critical": "🔴 critical", "warning": "🟠 warning", "info": "🔵 info", None: "⚪"}


@dataclass(frozen=True)
class Finding:
    id: str
    summary: str
    severity: str | None = None  # critical | warning | info | None
    data: Any = None

    def markdown(self) -> str:
        return f"**{_BADGES[self.severity]}** `{self.id}`: {self.summary}"


@dataclass(frozen=True)
class Action:
    id: str
    mode: str  # dry-run | applied
    target: str
    result: str

    def markdown(self) -> str:
        return f"**{self.mode}** `{self.id}` on {self.target}: {self.result}"


def record(*items: Finding | Action | Iterable[Finding | Action]) -> None:
    """Show each finding/action in the notebook and mark it for the evidence file."""
    from IPython.display import display

    for item in _flatten(items):
        kind = "finding" if isinstance(item, Finding) else "action"
        payload = {"kind": kind, **jsonable(asdict(item))}
        display({MIMETYPE: payload, "text/markdown": item.markdown()}, raw=True)


def collect(notebook: dict) -> tuple[list[dict], list[dict]]:
    """The findings and actions recorded in an executed notebook, in order."""
    findings, actions = [], []
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            payload = output.get("data", {}).get(MIMETYPE)
            if payload:
                item = {k: v for k, v in payload.items() if k != "kind"}
                (findings if payload["kind"] == "finding" else actions).append(item)
    return findings, actions


def schema() -> dict:
    return json.loads(resources.files(__package__).joinpath("evidence.schema.json").read_text())


def jsonable(value: Any) -> Any:
    """Plain JSON values from what diagnostics return (numpy scalars, timestamps, durations, frames)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if hasattr(value, "columns"):  # DataFrame
        return jsonable(value.to_dict(orient="records"))
    if hasattr(value, "to_dict"):  # Series
        return jsonable(value.to_dict())
    if hasattr(value, "item"):  # numpy / pandas scalars
        return jsonable(value.item())
    return str(value)


def _flatten(items: Iterable) -> Iterable[Finding | Action]:
    for item in items:
        if isinstance(item, (Finding, Action)):
            yield item
        else:
            yield from _flatten(item)

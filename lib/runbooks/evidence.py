"""Evidence: findings and actions recorded from inside a notebook, and the evidence file of a run.

A finding or action is a display output carrying a JSON payload under our own MIME type next to a
readable line (HTML, Markdown and text, its words from outside escaped: runbooks.escape). Run interactively,
the engineer sees the line; run by `runbook run`, the runner reads the payloads back from the executed
notebook (`collect`), so the notebook stays the log and no side channel can drift from it.

`Record` is the evidence file of one run, as written by runbooks.runner (headless and alert runs) and
runbooks.sessions (interactive sessions, with a `Session`) and read by runbooks.incident and runbooks.alerts;
`evidence.schema.json` is its contract on disk.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from . import escape

MIMETYPE = "application/vnd.runbooks.evidence+json"
_ISO_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}(?::\d{2})?)(?:[.,](\d+))?([Zz]|[+-]\d{2}:?\d{2})?")
SEVERITIES = ("critical", "warning", "info")
_BADGES = {"critical": "🔴 critical", "warning": "🟠 warning", "info": "🔵 info", None: "⚪"}


@dataclass(frozen=True)
class Finding:
    id: str
    summary: str
    severity: str | None = None  # critical | warning | info | None
    data: Any = None

    def markdown(self) -> str:
        return f"**{_BADGES[self.severity]}** {escape.code(self.id)}: {escape.markdown(self.summary)}"

    def html(self) -> str:
        e = escape.html
        return _paragraph(f"<strong>{e(_BADGES[self.severity])}</strong> <code>{e(self.id)}</code>: {e(self.summary)}")

    def text(self) -> str:
        return f"{_BADGES[self.severity]} {escape.line(self.id)}: {escape.line(self.summary)}"


@dataclass(frozen=True)
class Action:
    id: str
    mode: str  # dry-run | applied
    target: str
    result: str

    def markdown(self) -> str:
        return (
            f"**{escape.markdown(self.mode)}** {escape.code(self.id)} on {escape.markdown(self.target)}: "
            f"{escape.markdown(self.result)}"
        )

    def html(self) -> str:
        e = escape.html
        return _paragraph(
            f"<strong>{e(self.mode)}</strong> <code>{e(self.id)}</code> on {e(self.target)}: {e(self.result)}"
        )

    def text(self) -> str:
        return (
            f"{escape.line(self.mode)} {escape.line(self.id)} on {escape.line(self.target)}: {escape.line(self.result)}"
        )


@dataclass(frozen=True)
class RunError:
    """Why a run failed: the failing cell (None when it failed outside any cell), the exception's name and text."""

    cell: int | None
    ename: str
    evalue: str

    def line(self) -> str:
        where = f"at cell {self.cell}" if self.cell is not None else "outside any cell"
        return f"{where}: {self.ename}: {self.evalue}"


@dataclass(frozen=True)
class Artifact:
    path: str  # a file name in the incident folder
    sha256: str


@dataclass(frozen=True)
class CellRun:
    """A code cell of an interactive session that was executed: its index and execution count."""

    cell: int
    execution_count: int


@dataclass(frozen=True)
class EditedCell:
    """A code cell whose source differs from the runbook's as `runbook open` wrote it: `cell` is its index in the
    sealed notebook (None: removed), `runbook_cell` its index in the notebook as opened (None: added)."""

    cell: int | None
    runbook_cell: int | None
    diff: str  # unified diff, runbook -> session


@dataclass(frozen=True)
class RaisedCell:
    cell: int
    ename: str
    evalue: str


@dataclass(frozen=True)
class Session:
    """What an auditor needs to trust a notebook an engineer drove by hand (runbooks.cells reads it off the cells)."""

    working_copy: str  # file name of the working copy in the incident folder
    working_copy_sha256: str  # its bytes when sealed
    runbook_sha256: str  # the runbook notebook the edits are diffed against
    seal: int  # 1 for the first seal of this working copy, 2 for the next...
    supersedes: str | None  # the evidence file of the previous seal of this working copy
    reason: str | None  # why the status is not completed; None when it is
    executed: tuple[CellRun, ...]  # by execution count
    never_executed: tuple[int, ...]
    out_of_order: tuple[int, ...]
    edited: tuple[EditedCell, ...]
    raised: tuple[RaisedCell, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Session:
        return cls(
            working_copy=data["working_copy"],
            working_copy_sha256=data["working_copy_sha256"],
            runbook_sha256=data["runbook_sha256"],
            seal=data["seal"],
            supersedes=data["supersedes"],
            reason=data["reason"],
            executed=tuple(CellRun(**c) for c in data["executed"]),
            never_executed=tuple(data["never_executed"]),
            out_of_order=tuple(data["out_of_order"]),
            edited=tuple(EditedCell(**c) for c in data["edited"]),
            raised=tuple(RaisedCell(**c) for c in data["raised"]),
        )


@dataclass(frozen=True)
class Record:
    """One evidence file (evidence.schema.json). Times are UTC; `chain` is added by runbooks.chain when written."""

    runbook: str
    incident: str
    started_at: dt.datetime
    finished_at: dt.datetime
    status: str  # completed | partial (interactive: some code cell not run once, in order) | failed
    error: RunError | None
    parameters: dict[str, Any]  # as run: passwords taken out
    findings: tuple[dict, ...]  # {id, summary, severity, data}
    actions: tuple[dict, ...]  # {id, mode, target, result}
    artifacts: tuple[Artifact, ...]
    environment: dict[str, Any]
    alert: dict[str, Any] | None  # the alert that started the run; None when run by hand
    operator: str | None = None  # who drove an interactive session (the OS user, or `runbook open --operator`)
    session: Session | None = None  # an interactive session's cells; None for headless and alert runs
    chain: dict[str, Any] | None = None  # {sequence, previous, seal}

    @property
    def mode(self) -> str:
        """`interactive` (an engineer in JupyterLab, sealed), `alert` (started by `runbook serve`) or `headless`."""
        return "interactive" if self.session else "alert" if self.alert else "headless"

    def to_json(self) -> dict[str, Any]:
        """The record as the schema has it, key order included (`chain` last, where runbooks.chain expects it)."""
        data = {
            "runbook": self.runbook,
            "incident": self.incident,
            "started_at": utc_text(self.started_at),
            "finished_at": utc_text(self.finished_at),
            "status": self.status,
            "error": asdict(self.error) if self.error else None,
            "parameters": jsonable(self.parameters),
            "findings": jsonable(list(self.findings)),
            "actions": jsonable(list(self.actions)),
            "artifacts": [asdict(a) for a in self.artifacts],
            "environment": self.environment,
            "alert": self.alert,
            "mode": self.mode,
            "operator": self.operator,
            "session": self.session.to_json() if self.session else None,
        }
        return data if self.chain is None else {**data, "chain": self.chain}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        """The record of a parsed evidence file; KeyError, TypeError or ValueError when it is not one."""
        error = data["error"]
        return cls(
            runbook=data["runbook"],
            incident=data["incident"],
            started_at=parse_time(data["started_at"]),
            finished_at=parse_time(data["finished_at"]),
            status=data["status"],
            error=RunError(error["cell"], error["ename"], error["evalue"]) if error else None,
            parameters=data["parameters"],
            findings=tuple(data["findings"]),
            actions=tuple(data["actions"]),
            artifacts=tuple(Artifact(a["path"], a["sha256"]) for a in data["artifacts"]),
            environment=data["environment"],
            alert=data.get("alert"),
            operator=data.get("operator"),
            session=Session.from_json(data["session"]) if data.get("session") else None,
            chain=data.get("chain"),
        )


def read(path: Path) -> Record:
    """The evidence file at `path`; ValueError (or KeyError, TypeError) when it is not one."""
    return Record.from_json(json.loads(path.read_bytes()))


def utc_text(when: dt.datetime) -> str:
    """`2026-11-26T03:15:00Z`."""
    return when.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 / RFC 3339 time (`Z` or an offset; none: UTC), aware, alike on every Python the package runs on
    (3.10's `fromisoformat` takes 3 or 6 digits of fraction only): a fraction of any length, as Alertmanager and
    Kubernetes send them (nanoseconds, trailing zeros trimmed), is cut to microseconds. ValueError otherwise."""
    match = _ISO_TIME.fullmatch(text.strip())
    if not match:
        raise ValueError(f"not an ISO 8601 time: {text!r}")
    day, clock, fraction, zone = match.groups()
    micro = f".{fraction[:6].ljust(6, '0')}" if fraction else ""
    offset = "" if zone is None else "+00:00" if zone in "Zz" else f"{zone[:3]}:{zone[-2:]}"
    when = dt.datetime.fromisoformat(f"{day}T{clock}{micro}{offset}")
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def record(*items: Finding | Action | Iterable[Finding | Action]) -> None:
    """Show each finding/action in the notebook and mark it for the evidence file."""
    from IPython.display import display

    for item in _flatten(items):
        kind = "finding" if isinstance(item, Finding) else "action"
        payload = {"kind": kind, **jsonable(asdict(item))}
        shown = {"text/html": item.html(), "text/markdown": item.markdown(), "text/plain": item.text()}
        display({MIMETYPE: payload, **shown}, raw=True)


def collect(notebook: dict) -> tuple[list[dict], list[dict]]:
    """The findings and actions recorded in an executed notebook, in order."""
    findings: list[dict] = []
    actions: list[dict] = []
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


def _paragraph(inner: str) -> str:
    """A paragraph of escaped HTML that math typesetting leaves alone."""
    return f'<p class="{escape.NO_MATH}">{inner}</p>'


def _flatten(items: Iterable) -> Iterable[Finding | Action]:
    for item in items:
        if isinstance(item, (Finding, Action)):
            yield item
        else:
            yield from _flatten(item)

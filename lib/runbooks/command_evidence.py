"""Evidence of what a command did to an incident: `runbook close`, `runbook comms --post`, and the escalations
`runbook serve` drafts and posts.

Such a record is an evidence file like a run's (evidence.Record, evidence.schema.json) whose `runbook` is the
command's name (COMMANDS) and which lists no artifacts: there is no notebook, its findings and actions are the
whole of it. It is named `<UTC time>-<command>.evidence.json` (runfiles.record_path) and joins the incident's
chain like a run's evidence (runbooks.chain), so `runbook verify` covers it and `runbook report` shows it.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import chain, provenance, redact
from .evidence import Action, Finding, Record, RunError, jsonable
from .runfiles import make_incident_folder, record_path

COMMANDS = ("close", "comms", "escalate")  # never a runbook's name (registry)


def write(
    output_dir: Path,
    incident: str,
    command: str,
    parameters: dict[str, Any],
    findings: Iterable[Finding],
    actions: Iterable[Action],
    started: dt.datetime,
    error: RunError | None = None,
    secrets: Iterable[str] = (),
) -> Path:
    """Write the command's record into the incident's folder and chain; its path. `secrets` are scrubbed from it."""
    if command not in COMMANDS:
        raise ValueError(f"not a command that leaves evidence: {command!r}")
    folder = make_incident_folder(output_dir, incident)
    record = Record(
        runbook=command,
        incident=incident,
        started_at=started,
        finished_at=now(),
        status="failed" if error else "completed",
        error=error,
        parameters=parameters,
        findings=tuple(jsonable(asdict(f)) for f in findings),
        actions=tuple(jsonable(asdict(a)) for a in actions),
        artifacts=(),
        environment=provenance.environment(),
        alert=None,
    )
    text = json.dumps(redact.scrub(record.to_json(), secrets))  # over the parsed record, never its JSON text
    while True:  # two commands in one second: the later takes the next second's name
        path = record_path(folder, command)
        try:
            chain.write(path, text)  # exclusive: a name taken, or a link planted there, is never written over
            return path
        except FileExistsError:
            time.sleep(0.2)


def is_command(record: Record) -> bool:
    """Whether an evidence record is a command's (no notebook) rather than a runbook run's."""
    return record.runbook in COMMANDS and not record.artifacts


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)

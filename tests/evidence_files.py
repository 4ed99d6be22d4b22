"""Evidence files of runbook runs written directly, chained as the runner chains them: for incidents whose evidence a
test needs at a time no real run can have (ten days ago), or with a finding no real run gives (a hostile summary)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from runbooks import chain


def add_run(folder: Path, runbook: str, started: dt.datetime, findings: list[dict]) -> Path:
    """An evidence file of `runbook` started at `started` in `folder`, with its (placeholder) notebook and HTML."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{started:%Y%m%dT%H%M%SZ}-{runbook}"
    artifacts = []
    for suffix in (".ipynb", ".html"):
        (folder / f"{stem}{suffix}").write_text("{}\n")
        artifacts.append({"path": f"{stem}{suffix}", "sha256": chain.sha256(folder / f"{stem}{suffix}")})
    record = {
        "runbook": runbook,
        "incident": folder.name,
        "started_at": started.isoformat(),
        "finished_at": started.isoformat(),
        "status": "completed",
        "error": None,
        "parameters": {},
        "findings": findings,
        "actions": [],
        "artifacts": artifacts,
        "environment": {"package_version": "0", "git_commit": None, "host": "test"},
    }
    path = folder / f"{stem}.evidence.json"
    chain.write(path, json.dumps(record))
    return path

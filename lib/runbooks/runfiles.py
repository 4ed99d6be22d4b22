"""Where a run's files go and what they are called: the one place that spells it.

output/<incident>/                      an incident's folder (`incident_folder`)
  <UTC start YYYYMMDDTHHMMSSZ>-<runbook>.ipynb          the executed notebook
  <UTC start YYYYMMDDTHHMMSSZ>-<runbook>.html           its HTML rendering
  <UTC start YYYYMMDDTHHMMSSZ>-<runbook>.evidence.json  the evidence file (runbooks.evidence.Record)
  <UTC time YYYYMMDDTHHMMSSZ>-<command>.evidence.json   what a command did (close, comms, escalate): no notebook
  alerts.jsonl                          the incident log `runbook serve` keeps (ALERT_LOG)
  <UTC open YYYYMMDDTHHMMSSZ>-<runbook>.ipynb           a working copy `runbook open` wrote (`is_working_copy`):
                                        named like a run's notebook, never listed in evidence; `runbook seal`
                                        copies it into the three files of a run
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError

STAMP = "%Y%m%dT%H%M%SZ"
NOTEBOOK, HTML, EVIDENCE = ".ipynb", ".html", ".evidence.json"
ALERT_LOG = "alerts.jsonl"
SESSION = "runbooks-session"  # the notebook metadata key that marks a working copy (runbooks.sessions)
_STEM = re.compile(r"(?P<stamp>\d{8}T\d{6}Z)-(?P<runbook>[A-Za-z0-9][A-Za-z0-9_.-]*)")
_INCIDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class RunFiles:
    """The three files of one run, named by its stem `<start>-<runbook>` in its incident's folder."""

    folder: Path
    stem: str

    @classmethod
    def claim(cls, folder: Path, runbook: str) -> RunFiles:
        """The files of a run starting now: its notebook is created here, exclusively, so two runs of one runbook
        starting in the same second (alert workers) never share names; the later waits for the next second."""
        while True:
            files = cls(folder, f"{_now():{STAMP}}-{runbook}")
            try:
                files.notebook.open("x").close()
                return files
            except FileExistsError:
                time.sleep(0.2)

    @classmethod
    def of(cls, path: Path) -> RunFiles | None:
        """The run a file belongs to, from its name; None for a file no run writes."""
        name = path.name
        for suffix in (EVIDENCE, NOTEBOOK, HTML):
            if name.endswith(suffix) and _STEM.fullmatch(name.removesuffix(suffix)):
                return cls(path.parent, name.removesuffix(suffix))
        return None

    @property
    def notebook(self) -> Path:
        return self.folder / f"{self.stem}{NOTEBOOK}"

    @property
    def html(self) -> Path:
        return self.folder / f"{self.stem}{HTML}"

    @property
    def evidence(self) -> Path:
        return self.folder / f"{self.stem}{EVIDENCE}"

    @property
    def artifacts(self) -> tuple[Path, Path]:
        """What the evidence file lists and hashes."""
        return self.notebook, self.html

    @property
    def runbook(self) -> str:
        return self.stem.split("-", 1)[1]

    @property
    def started(self) -> dt.datetime:
        return dt.datetime.strptime(self.stem.split("-", 1)[0], STAMP).replace(tzinfo=dt.timezone.utc)


def record_path(folder: Path, command: str) -> Path:
    """The evidence file of a command acting now (runbooks.command_evidence writes it exclusively)."""
    return folder / f"{_now():{STAMP}}-{command}{EVIDENCE}"


def evidence_files(folder: Path) -> list[Path]:
    """The incident's evidence files, by name."""
    return sorted(folder.glob(f"*{EVIDENCE}"))


def without_evidence(folder: Path, runbook: str) -> list[RunFiles]:
    """Runs of `runbook` in `folder` whose notebook stands without an evidence file: runs cut short, oldest first."""
    runs = (RunFiles.of(path) for path in sorted(folder.glob(f"*-{runbook}{NOTEBOOK}")))
    return [
        run
        for run in runs
        if run is not None
        and run.runbook == runbook
        and not run.evidence.exists()
        and not is_working_copy(run.notebook)
    ]


def is_working_copy(path: Path) -> bool:
    """A notebook `runbook open` wrote for an engineer to step through (its metadata holds SESSION)."""
    if path.suffix != NOTEBOOK or RunFiles.of(path) is None:
        return False
    try:
        metadata = json.loads(path.read_bytes()).get("metadata")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(metadata, dict) and isinstance(metadata.get(SESSION), dict)


def working_copies(folder: Path) -> list[Path]:
    """The incident's working copies, by name (the time they were opened)."""
    return [path for path in sorted(folder.glob(f"*{NOTEBOOK}")) if is_working_copy(path)]


def incident_folder(output_dir: Path, incident: str) -> Path:
    """`output_dir/incident`; a usage error unless the id is a plain name (letters, digits, `.`, `_`, `-`)."""
    if not _INCIDENT.fullmatch(incident or ""):
        raise UsageError(f"incident id {incident!r} must be a plain name (letters, digits, dashes)")
    return output_dir / incident


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)

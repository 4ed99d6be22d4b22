"""Run one runbook headlessly and leave its evidence: executed notebook, HTML, evidence file.

The three files are written whatever happens in the notebook; a failed run is evidence too.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import nbformat
import papermill

from . import chain, evidence, kernels, provenance, redact, rendering
from .catalog import Runbook
from .evidence import Record, RunError
from .runfiles import RunFiles, incident_folder

# Parameters are checked before papermill sees them (catalog.Runbook.resolve); its own, looser reading
# of the parameters cell only adds misleading warnings (e.g. for `selector = "app=x"`).
logging.getLogger("papermill").setLevel(logging.ERROR)
INTERRUPTED = "Interrupted"  # the error name of a run whose process was killed (finish_interrupted)


@dataclass(frozen=True)
class RunResult:
    status: str  # completed | failed
    evidence_path: Path
    error: RunError | None


@dataclass(frozen=True)
class Launch:
    """What a run was started with: all its evidence needs besides how it ended."""

    runbook: Runbook
    incident: str
    files: RunFiles
    started: dt.datetime
    parameters: dict[str, Any]  # as run: passwords taken out
    secrets: tuple[str, ...]  # the passwords taken out, scrubbed from every file written
    alert: dict | None

    @classmethod
    def of(
        cls, runbook: Runbook, parameters: dict[str, Any], incident: str, files: RunFiles, alert: dict | None
    ) -> Launch:
        clean, secrets = _without_passwords(parameters)
        return cls(runbook, incident, files, files.started, clean, tuple(secrets), alert)


def run(
    runbook: Runbook,
    parameters: dict[str, Any],
    incident: str,
    output_dir: Path,
    progress: bool = False,
    alert: dict | None = None,
    kernel: kernels.Kernel | None = None,
) -> RunResult:
    """Execute `runbook` with `parameters` (already resolved) into `output_dir/incident/`, on a new kernel or on
    the started `kernel` (e.g. from kernels.KernelPool), which serves this run only and is shut down after it.

    `alert`: the alert that started this run (labels, annotations, startsAt, generatorURL, fingerprint,
    groupKey), recorded in the evidence; None when run by hand.
    """
    folder = incident_folder(output_dir, incident)
    folder.mkdir(parents=True, exist_ok=True)
    launch = Launch.of(runbook, parameters, incident, RunFiles.claim(folder, runbook.name), alert)
    error = None
    try:
        _execute(launch, progress, kernel)
    except papermill.PapermillExecutionError as e:
        error = RunError(e.cell_index, e.ename, e.evalue)
    except Exception as e:  # the kernel died or never started: still leave evidence
        error = RunError(None, type(e).__name__, str(e))
    return _leave_evidence(launch, _now(), error)


def finish_interrupted(
    runbook: Runbook, parameters: dict[str, Any], incident: str, files: RunFiles, alert: dict | None = None
) -> RunResult:
    """Evidence for a run whose process was killed before it wrote its own: the partial notebook as far as it got,
    its HTML and a failed evidence file (ename INTERRUPTED), so the incident's chain stays whole."""
    finished = dt.datetime.fromtimestamp(int(files.notebook.stat().st_mtime), dt.timezone.utc)  # its last write
    error = RunError(
        None, INTERRUPTED, "the process running it stopped before the run finished; the notebook is as far as it got"
    )
    return _leave_evidence(Launch.of(runbook, parameters, incident, files, alert), finished, error)


def _leave_evidence(launch: Launch, finished: dt.datetime, error: RunError | None) -> RunResult:
    """The executed notebook scrubbed, its HTML and the evidence file, chained to the incident's last one."""
    secrets = every_form(launch.secrets)
    notebook = _scrub_notebook(launch, secrets)
    if error:
        error = RunError(_failing_cell(notebook, error.cell), error.ename, error.evalue)
    findings, actions = evidence.collect(notebook)
    record = Record(
        runbook=launch.runbook.name,
        incident=launch.incident,
        started_at=launch.started,
        finished_at=finished,
        status="failed" if error else "completed",
        error=error,
        parameters=launch.parameters,
        findings=tuple(findings),
        actions=tuple(actions),
        artifacts=(),
        environment=environment(),
        alert=launch.alert,
    )
    launch.files.html.write_text(redact.scrub(html(notebook, record, launch.runbook.title), secrets))
    write_evidence(launch.files, record, secrets)
    return RunResult(record.status, launch.files.evidence, error)


def write_evidence(files: RunFiles, record: Record, secrets: list[str]) -> None:
    """The evidence file of `record` with every secret scrubbed, listing the run's notebook and HTML as written,
    chained to the incident's last evidence file."""
    # Artifact hashes are added after scrubbing: a short password must not be "redacted" out of a hash.
    scrubbed = json.loads(redact.scrub(json.dumps(record.to_json()), secrets))
    scrubbed["artifacts"] = [{"path": p.name, "sha256": chain.sha256(p)} for p in files.artifacts]
    chain.write(files.evidence, json.dumps(scrubbed))


def _scrub_notebook(launch: Launch, secrets: list[str]) -> nbformat.NotebookNode:
    """The executed notebook (the input one if it was never written) with every secret replaced, written back."""
    notebook = _executed_or_input(launch.files.notebook, launch.runbook)
    text = redact.scrub(nbformat.writes(notebook), secrets)
    launch.files.notebook.write_text(text)
    return nbformat.reads(text, as_version=4)


def every_form(secrets: tuple[str, ...]) -> list[str]:
    """The secrets as given and URL-quoted, and the PGPASSWORD of this process (a run may print libpq's view)."""
    return [*secrets, *(quote(s, safe="") for s in secrets), os.environ.get("PGPASSWORD", "")]


def _execute(launch: Launch, progress: bool, kernel: kernels.Kernel | None) -> None:
    """Papermill on the started `kernel`, given the run's working directory and password by a silent execute
    first, or on a new kernel started in the incident folder with the password in its environment; shut down
    after. Both leave this process's working directory and environment alone, so runs may share a process."""
    folder, password = launch.files.folder, launch.secrets[0] if launch.secrets else None
    try:
        if kernel is None:
            kernel = kernels.start(
                {**os.environ, **({"PGPASSWORD": password} if password else {})}, cwd=str(folder), warm=False
            )
        else:
            setup = f"__import__('os').chdir({str(folder.resolve())!r})"
            if password is not None:
                setup += f"\n__import__('os').environ['PGPASSWORD'] = {password!r}"
            kernels.execute_silently(kernel, setup)
        papermill.execute_notebook(
            str(launch.runbook.path),
            str(launch.files.notebook),
            parameters=launch.parameters,
            progress_bar=progress,
            km=kernel,
        )
    finally:
        if kernel is not None:  # its notebook is written; a graceful shutdown would take ~0.7 s more
            kernel.shutdown_kernel(now=True)


def _without_passwords(parameters: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Parameters with any password taken out of connection strings, and the passwords taken."""
    clean, secrets = {}, []
    for name, value in parameters.items():
        if name == "dsn" and isinstance(value, str):
            value, password = redact.split_password(value)
            secrets += [password] if password else []
        clean[name] = value
    return clean, secrets


def _executed_or_input(path: Path, runbook: Runbook) -> nbformat.NotebookNode:
    """The notebook as executed; the input one when it was never written (claimed, empty) or cut off mid-write."""
    try:
        return nbformat.read(path, as_version=4)
    except (OSError, ValueError):  # nbformat's NotJSONError is a ValueError
        return nbformat.read(runbook.path, as_version=4)


def _failing_cell(notebook: nbformat.NotebookNode, fallback: int | None) -> int | None:
    """Index, in the written notebook, of the first cell with an error output."""
    for index, cell in enumerate(notebook.cells):
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return index
    return fallback


def html(notebook: nbformat.NotebookNode, record: Record, title: str) -> str:
    """The executed notebook as the HTML people open: its summary on top (runbooks.rendering)."""
    return rendering.html(notebook, record, title)


def environment() -> dict[str, Any]:
    return {**provenance.environment(), "papermill_version": papermill.__version__}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)

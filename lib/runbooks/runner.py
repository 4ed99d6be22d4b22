"""Run one runbook headlessly and leave its evidence: executed notebook, HTML, evidence file.

The three files are written whatever happens in the notebook; a failed run is evidence too.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import nbformat
import papermill
from nbconvert import HTMLExporter

from . import __version__, chain, evidence, kernels, redact
from .catalog import ROOT, Runbook
from .errors import UsageError

# Parameters are checked before papermill sees them (catalog.Runbook.resolve); its own, looser reading
# of the parameters cell only adds misleading warnings (e.g. for `selector = "app=x"`).
logging.getLogger("papermill").setLevel(logging.ERROR)
INTERRUPTED = "Interrupted"  # the error name of a run whose process was killed (finish_interrupted)
_exporters = threading.local()


@dataclass(frozen=True)
class Run:
    status: str  # completed | failed
    evidence_path: Path
    error: dict | None


def run(runbook: Runbook, parameters: dict[str, Any], incident: str, output_dir: Path, progress: bool = False,
        alert: dict | None = None, kernel: kernels.Kernel | None = None) -> Run:
    """Execute `runbook` with `parameters` (already resolved) into `output_dir/incident/`, on a new kernel or on
    the started `kernel` (e.g. from kernels.KernelPool), which serves this run only and is shut down after it.

    `alert`: the alert that started this run (labels, annotations, startsAt, generatorURL, fingerprint,
    groupKey), recorded in the evidence; None when run by hand.
    """
    if not incident or "/" in incident or incident.startswith("."):
        raise UsageError(f"incident id {incident!r} must be a plain name (letters, digits, dashes)")
    folder = output_dir / incident
    folder.mkdir(parents=True, exist_ok=True)
    started, stem = _claim_stem(folder, runbook.name)
    notebook_path = folder / f"{stem}.ipynb"

    parameters, secrets = _without_passwords(parameters)
    error = None
    try:
        _execute(runbook, notebook_path, parameters, progress, folder, secrets[0] if secrets else None, kernel)
    except papermill.PapermillExecutionError as e:
        error = {"cell": e.cell_index, "ename": e.ename, "evalue": e.evalue}
    except Exception as e:  # the kernel died or never started: still leave evidence
        error = {"cell": None, "ename": type(e).__name__, "evalue": str(e)}
    return _leave_evidence(runbook, incident, notebook_path, started, _now(), parameters, secrets, error, alert)


def finish_interrupted(runbook: Runbook, parameters: dict[str, Any], incident: str, notebook_path: Path,
                       alert: dict | None = None) -> Run:
    """Evidence for a run whose process was killed before it wrote its own: the partial notebook as far as it got,
    its HTML and a failed evidence file (ename INTERRUPTED), so the incident's chain stays whole."""
    started = dt.datetime.strptime(notebook_path.name[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    finished = dt.datetime.fromtimestamp(int(notebook_path.stat().st_mtime), dt.timezone.utc)  # its last write
    parameters, secrets = _without_passwords(parameters)
    error = {"cell": None, "ename": INTERRUPTED,
             "evalue": "the process running it stopped before the run finished; the notebook is as far as it got"}
    return _leave_evidence(runbook, incident, notebook_path, started, finished, parameters, secrets, error, alert)


def _leave_evidence(runbook: Runbook, incident: str, notebook_path: Path, started: dt.datetime, finished: dt.datetime,
                    parameters: dict[str, Any], secrets: list[str], error: dict | None, alert: dict | None) -> Run:
    """The executed notebook scrubbed, its HTML and the evidence file, chained to the incident's last one."""
    stem = notebook_path.name.removesuffix(".ipynb")
    html_path, evidence_path = (notebook_path.parent / f"{stem}{suffix}" for suffix in (".html", ".evidence.json"))
    notebook = _executed_or_input(notebook_path, runbook)
    if error:
        error["cell"] = _failing_cell(notebook, error["cell"])
    secrets += [quote(s, safe="") for s in secrets]
    secrets += [os.environ.get("PGPASSWORD", "")]
    text = redact.scrub(nbformat.writes(notebook), secrets)
    notebook_path.write_text(text)
    html_path.write_text(_html(nbformat.reads(text, as_version=4)))

    findings, actions = evidence.collect(json.loads(text))
    record = {
        "runbook": runbook.name,
        "incident": incident,
        "started_at": started.isoformat().replace("+00:00", "Z"),
        "finished_at": finished.isoformat().replace("+00:00", "Z"),
        "status": "failed" if error else "completed",
        "error": error,
        "parameters": parameters,
        "findings": findings,
        "actions": actions,
        "artifacts": None,  # added after scrubbing: a short password must not be "redacted" out of a hash
        "environment": _environment(),
        "alert": alert,
    }
    record = json.loads(redact.scrub(json.dumps(evidence.jsonable(record)), secrets))
    record["artifacts"] = [{"path": p.name, "sha256": chain.sha256(p)} for p in (notebook_path, html_path)]
    chain.write(evidence_path, json.dumps(record))
    return Run(record["status"], evidence_path, error)


def _claim_stem(folder: Path, name: str) -> tuple[dt.datetime, str]:
    """The start time and file stem of a run: its notebook file is created here, exclusively, so two runs of
    one runbook starting in the same second (alert workers) never share names; the later waits a second."""
    while True:
        started = _now()
        stem = f"{started:%Y%m%dT%H%M%SZ}-{name}"
        try:
            (folder / f"{stem}.ipynb").open("x").close()
            return started, stem
        except FileExistsError:
            time.sleep(0.2)


def _execute(runbook: Runbook, notebook_path: Path, parameters: dict[str, Any], progress: bool, folder: Path,
             password: str | None, kernel: kernels.Kernel | None) -> None:
    """Papermill on the started `kernel`, given the run's working directory and password by a silent execute
    first, or on a new kernel started in `folder` with the password in its environment; shut down after. Both
    leave this process's working directory and environment alone, so runs may share a process."""
    try:
        if kernel is None:
            kernel = kernels.start({**os.environ, **({"PGPASSWORD": password} if password else {})},
                                   cwd=str(folder), warm=False)
        else:
            setup = f"__import__('os').chdir({str(folder.resolve())!r})"
            if password is not None:
                setup += f"\n__import__('os').environ['PGPASSWORD'] = {password!r}"
            kernels.execute_silently(kernel, setup)
        papermill.execute_notebook(
            str(runbook.path), str(notebook_path), parameters=parameters, progress_bar=progress, km=kernel,
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


def _html(notebook: nbformat.NotebookNode) -> str:
    """The notebook as HTML, by one exporter per thread: its templates compile once (~50 ms a run saved), and
    runs in parallel threads never share one (it registers filters on each call)."""
    if not hasattr(_exporters, "html"):
        _exporters.html = HTMLExporter()
    return _exporters.html.from_notebook_node(notebook)[0]


def _environment() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        git_commit = commit.stdout.strip() if commit.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        git_commit = None
    return {
        "package_version": __version__,
        "git_commit": git_commit,
        "host": socket.gethostname(),
        "papermill_version": papermill.__version__,
    }


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)

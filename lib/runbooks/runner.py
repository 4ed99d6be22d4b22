"""Run one runbook headlessly and leave its evidence: executed notebook, HTML, evidence file.

The three files are written whatever happens in the notebook; a failed run is evidence too.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import papermill
from nbclient.exceptions import CellTimeoutError
from papermill.iorw import papermill_io

from . import chain, evidence, kernels, provenance, redact, rendering, runfiles
from .catalog import Runbook
from .evidence import Record, RunError
from .limits import Limits, Watch
from .runfiles import RunFiles, incident_folder, make_incident_folder

# Parameters are checked before papermill sees them (catalog.Runbook.resolve); its own, looser reading
# of the parameters cell only adds misleading warnings (e.g. for `selector = "app=x"`).
logging.getLogger("papermill").setLevel(logging.ERROR)
papermill_io.register("/", runfiles.PapermillFiles())  # absolute paths: written whole, never through a link
INTERRUPTED = "Interrupted"  # the error name of a run stopped before it finished: killed, Ctrl-C, serve stopping
TIMEOUT = "Timeout"  # the error name of a run that passed its time limit
CELL_TIMEOUT = "CellTimeout"  # ... of a run one of whose cells passed the cell limit


@dataclass(frozen=True)
class RunResult:
    status: str  # completed | failed
    evidence_path: Path
    error: RunError | None
    head: chain.Head | None = None  # the incident's chain head after this run's evidence: to keep elsewhere


@dataclass(frozen=True)
class Launch:
    """What a run was started with: all its evidence needs besides how it ended."""

    runbook: Runbook
    incident: str
    files: RunFiles
    started: dt.datetime
    parameters: dict[str, Any]  # as run: secrets taken out (redact.take)
    secrets: redact.Secrets  # scrubbed from every file written; their kernel alone gets them
    alert: dict | None

    @classmethod
    def of(
        cls,
        runbook: Runbook,
        parameters: dict[str, Any],
        incident: str,
        files: RunFiles,
        alert: dict | None,
        taken: tuple[dict[str, Any], redact.Secrets] | None = None,
    ) -> Launch:
        clean, secrets = taken or redact.take(parameters)
        return cls(runbook, incident, files, files.started, clean, secrets, alert)


def run(
    runbook: Runbook,
    parameters: dict[str, Any],
    incident: str,
    output_dir: Path,
    progress: bool = False,
    alert: dict | None = None,
    kernel: kernels.Kernel | None = None,
    limits: Limits | None = None,
    stop: threading.Event | None = None,
    claimed: Callable[[RunFiles], object] | None = None,
) -> RunResult:
    """Execute `runbook` with `parameters` (already resolved) into `output_dir/incident/`, on a new kernel or on
    the started `kernel` (e.g. from kernels.KernelPool), which serves this run only and is shut down after it.

    `alert`: the alert that started this run (labels, annotations, startsAt, generatorURL, fingerprint,
    groupKey), recorded in the evidence; None when run by hand. `limits`: the run's and each cell's time limit;
    `stop`: set it to end the run early (runbooks.limits.Watch); `claimed` is told the run's files as soon as their
    names are taken (runbook serve records them, to settle the run if it is cut short). A run past its limit,
    stopped, or interrupted by SIGINT in this thread (Ctrl-C) still leaves its evidence, failed.
    """
    limits = limits or Limits()
    deadline = time.monotonic() + limits.run
    try:
        incident_folder(output_dir, incident)  # a plain name, checked before anything is written
        taken = redact.take(parameters)  # a secret that cannot be taken out safely stops the run here (UsageError)
        folder = make_incident_folder(output_dir, incident)
        launch = Launch.of(runbook, parameters, incident, chain.claim(folder, runbook.name), alert, taken)
        if claimed is not None:
            claimed(launch.files)
    except BaseException:
        if kernel is not None:  # it was this run's: no other gets it
            kernel.shutdown_kernel(now=True)
        raise
    error, watch = None, Watch(deadline, stop)
    exporter_ready = rendering.exporter_soon()
    try:
        _execute(launch, progress, kernel, limits, watch)
    except papermill.PapermillExecutionError as e:
        error = RunError(e.cell_index, e.ename, e.evalue)
    except CellTimeoutError:
        error = RunError(None, CELL_TIMEOUT, f"a cell ran longer than its limit of {limits.per_cell:g} s")
    except KeyboardInterrupt:
        error = RunError(None, INTERRUPTED, "stopped (Ctrl-C or SIGTERM) before the run finished")
        # nbclient's tasks, cut off mid-cell, fail as the kernel goes: no traceback for them on the way out.
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    except Exception as e:  # the kernel died or never started: still leave evidence
        error = RunError(None, type(e).__name__, str(e))
    why = watch.done()
    if why == "timeout":
        error = RunError(None, TIMEOUT, f"the run passed its time limit of {limits.run:g} s and was ended")
    elif why == "stopped":
        error = RunError(None, INTERRUPTED, "runbook serve stopped before the run finished")
    exporter_ready()
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
    """The executed notebook scrubbed, its HTML and the evidence file, chained to the incident's last one. The
    error returned is scrubbed too: it is printed, queued and listed."""
    notebook = _scrub_notebook(launch)
    if error:
        # A time limit names the cell it ended; a kernel that died, a process stopped, is "outside any cell".
        cell = _last_started(notebook) if error.ename in (TIMEOUT, CELL_TIMEOUT) else error.cell
        error = RunError(_failing_cell(notebook, cell), error.ename, redact.text(error.evalue, launch.secrets))
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
    page = html(notebook, record, launch.runbook.title)
    runfiles.replace(launch.files.html, redact.text(page, launch.secrets).encode())
    head = write_evidence(launch.files, record, launch.secrets)
    return RunResult(record.status, launch.files.evidence, error, head)


def write_evidence(files: RunFiles, record: Record, secrets: redact.Secrets | Iterable[str]) -> chain.Head:
    """The evidence file of `record` with every secret scrubbed (in the parsed record, every form), listing the
    run's notebook and HTML as written, chained to the incident's last record; the new chain head."""
    scrubbed = redact.scrub(record.to_json(), secrets)
    # Artifact hashes are added after scrubbing: a hash is no text to scrub.
    scrubbed["artifacts"] = [{"path": p.name, "sha256": chain.sha256(p)} for p in files.artifacts]
    return chain.write(files.evidence, json.dumps(scrubbed))


def _scrub_notebook(launch: Launch) -> nbformat.NotebookNode:
    """The executed notebook (the input one if it was never written) with every secret replaced, written back."""
    notebook = nbformat.from_dict(
        redact.scrub(_executed_or_input(launch.files.notebook, launch.runbook), launch.secrets)
    )
    runfiles.replace(launch.files.notebook, nbformat.writes(notebook).encode())
    return notebook


def _execute(
    launch: Launch,
    progress: bool,
    kernel: kernels.Kernel | None,
    limits: Limits,
    watch: Watch,
) -> None:
    """Papermill on the started `kernel`, given the run's working directory and secrets by a silent execute
    first, or on a new kernel started in the incident folder with the secrets in its environment; under `watch`
    and shut down after. Both leave this process's working directory and environment alone, so runs may share a
    process, and no secret is ever on a command line."""
    folder, environment = launch.files.folder, launch.secrets.environment
    try:
        if kernel is None:
            kernel = kernels.start(
                {**redact.kernel_environment(os.environ), **environment}, cwd=str(folder), warm=False
            )
        else:
            setup = [f"__import__('os').chdir({str(folder.resolve())!r})"]
            setup += [f"__import__('os').environ[{name!r}] = {value!r}" for name, value in environment.items()]
            kernels.execute_silently(kernel, "\n".join(setup))
        watch.attach(kernel.pid)
        papermill.execute_notebook(
            str(launch.runbook.path),
            os.path.abspath(launch.files.notebook),  # absolute: papermill writes it through runfiles (below)
            parameters=launch.parameters,
            progress_bar=progress,
            km=kernel,
            execution_timeout=limits.per_cell,
        )
    finally:
        if kernel is not None:  # its notebook is written; a graceful shutdown would take ~0.7 s more
            kernel.shutdown_kernel(now=True)


def _executed_or_input(path: Path, runbook: Runbook) -> nbformat.NotebookNode:
    """The notebook as executed; the input one when it was never written (claimed, empty) or cut off mid-write."""
    try:
        return nbformat.reads(runfiles.read(path).decode(), as_version=4)
    except (OSError, ValueError):  # nbformat's NotJSONError is a ValueError
        return nbformat.read(runbook.path, as_version=4)


def _failing_cell(notebook: nbformat.NotebookNode, fallback: int | None) -> int | None:
    """Index, in the written notebook, of the first cell with an error output."""
    for index, cell in enumerate(notebook.cells):
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return index
    return fallback


def _last_started(notebook: nbformat.NotebookNode) -> int | None:
    """Index of the last cell papermill started: where a run ended by its time limit was."""
    started = [i for i, c in enumerate(notebook.cells) if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    return started[-1] if started else None


def html(notebook: nbformat.NotebookNode, record: Record, title: str) -> str:
    """The executed notebook as the HTML people open: the run's summary on top (runbooks.rendering)."""
    return rendering.html(notebook, record, title)


def environment() -> dict[str, Any]:
    return {**provenance.environment(), "papermill_version": papermill.__version__}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)

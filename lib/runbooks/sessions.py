"""Interactive sessions: a runbook opened for an incident as a working copy that an engineer steps through in
JupyterLab, sealed into evidence like any run.

`open_copy` writes the working copy `<incident folder>/<UTC open>-<runbook>.ipynb`: the runbook with its
parameters injected as papermill injects them (a cell tagged `injected-parameters` after the `parameters`
cell), a password in `dsn` taken out (it goes to the kernel's environment only: runbooks.lab), and under the
notebook metadata key runfiles.SESSION the runbook, incident, operator and opening time. The engineer edits and
runs it in place; it is never listed in evidence itself.

`seal` copies it as last saved into the three files of a run (`<UTC seal>-<runbook>.ipynb`, `.html`,
`.evidence.json`), scrubbed as headless runs are and chained like any run, with what runbooks.cells reads off
its cells. A later seal of the same working copy names the one it supersedes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import getpass
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from . import catalog, cells, chain, evidence, redact, runfiles, runner
from .catalog import Runbook
from .errors import UsageError
from .evidence import Finding, Record, Session, parse_time, utc_text
from .runfiles import (
    SESSION,
    evidence_files,
    incident_folder,
    is_working_copy,
    make_incident_folder,
    working_copies,
)

CREDENTIAL_FINDING = "credential-in-notebook"
_OPERATOR = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


@dataclass(frozen=True)
class WorkingCopy:
    path: Path
    secrets: tuple[str, ...]  # passwords taken out of the parameters: for its kernel's environment, never a file


@dataclass(frozen=True)
class Sealed:
    copy: Path
    evidence_path: Path
    status: str  # completed | partial | failed
    reason: str | None


def operator(name: str | None = None) -> str:
    """`name`, or the OS user; a usage error unless it is a plain name (letters, digits, `.`, `_`, `@`, `-`)."""
    name = name or getpass.getuser()
    if not _OPERATOR.fullmatch(name):
        raise UsageError(f"operator {name!r} must be a plain name (letters, digits, '.', '_', '@', '-')")
    return name


def open_copy(runbook: Runbook, parameters: dict[str, Any], incident: str, output_dir: Path, by: str) -> WorkingCopy:
    """Write the working copy of `runbook` with `parameters` (already resolved) for `incident`, opened by `by`."""
    folder = incident_folder(output_dir, incident)
    if folder.resolve().is_relative_to(catalog.NOTEBOOKS.resolve()):
        raise UsageError(f"{folder} is under {catalog.NOTEBOOKS}: the runbooks themselves are never written")
    taken = redact.take(parameters)  # the secrets taken out: a dsn that cannot be read safely stops here
    folder = make_incident_folder(output_dir, incident)
    files = chain.claim(folder, runbook.name)
    files.html.unlink()  # claimed with the notebook's name; a working copy has no HTML of its own
    launch = runner.Launch.of(runbook, parameters, incident, files, alert=None, taken=taken)
    notebook = opened(runbook, launch.parameters)
    notebook.metadata[SESSION] = {
        "runbook": runbook.name,
        "incident": incident,
        "opened_at": utc_text(files.started),
        "operator": by,
    }
    runfiles.replace(files.notebook, nbformat.writes(notebook).encode())
    password = launch.secrets.environment.get("PGPASSWORD")
    return WorkingCopy(files.notebook, (password,) if password else ())


def opened(runbook: Runbook, parameters: dict[str, Any]) -> nbformat.NotebookNode:
    """The runbook with `parameters` injected as papermill injects them: the notebook as `runbook open` writes it.

    The working copy's metadata keeps the parameters as JSON with sorted keys, and a seal rebuilds this notebook
    from them: so the parameters go in the order of the runbook's parameters cell, their values as that JSON has
    them (mappings sorted), and the injected cell reads the same at opening and at every seal."""
    values = json.loads(json.dumps(parameters, sort_keys=True))
    ordered = {name: values[name] for name in runbook.parameters if name in values} | values
    return parameterize_notebook(load_notebook_node(str(runbook.path)), ordered)


def seal(copy: Path, secrets: Iterable[str] = ()) -> Sealed:
    """Seal the working copy `copy` as it is on disk now. `secrets` (e.g. the password of its dsn) are scrubbed
    from everything written, with PGPASSWORD and whatever the notebook's own source holds shaped like a
    credential (reported as a warning finding)."""
    with _one_seal_at_a_time(copy):
        data = copy.read_bytes()
        notebook = _read_working_copy(copy, data)
        meta = notebook.metadata[SESSION]
        runbook = catalog.find(meta["runbook"])
        parameters = dict(notebook.metadata.get("papermill", {}).get("parameters", {}))
        baseline = opened(runbook, parameters)
        found = cells.credentials(notebook, baseline)
        scrubbed = redact.Secrets((*secrets, *found.values))
        sealed = nbformat.from_dict(redact.scrub(notebook, scrubbed))  # the parsed notebook, every form
        del sealed.metadata[SESSION]  # a sealed copy is evidence, not a working copy
        audit = cells.audit(sealed, baseline)
        earlier = seals(copy)

        files = chain.claim(copy.parent, runbook.name)
        runfiles.replace(files.notebook, nbformat.writes(sealed).encode())
        findings, actions = evidence.collect(sealed)
        if found.cells:
            findings.append(dataclasses.asdict(_credential_finding(found.cells)))
        record = Record(
            runbook=runbook.name,
            incident=copy.parent.name,
            started_at=parse_time(meta["opened_at"]),
            finished_at=dt.datetime.fromtimestamp(int(copy.stat().st_mtime), dt.timezone.utc),  # its last save
            status=audit.status,
            error=audit.error,
            parameters=parameters,
            findings=tuple(findings),
            actions=tuple(actions),
            artifacts=(),
            environment=runner.environment(),
            alert=None,
            operator=meta["operator"],
            session=Session(
                working_copy=copy.name,
                working_copy_sha256=hashlib.sha256(data).hexdigest(),
                runbook_sha256=chain.sha256(runbook.path),
                seal=len(earlier) + 1,
                supersedes=earlier[-1][0] if earlier else None,
                reason=audit.reason,
                executed=audit.executed,
                never_executed=audit.never_executed,
                out_of_order=audit.out_of_order,
                edited=audit.edited,
                raised=audit.raised,
            ),
        )
        runfiles.replace(files.html, redact.text(runner.html(sealed, record, runbook.title), scrubbed).encode())
        runner.write_evidence(files, record, scrubbed)
        return Sealed(copy, files.evidence, audit.status, audit.reason)


def seals(copy: Path) -> list[tuple[str, Record]]:
    """The evidence files (name, record) sealed from the working copy `copy`, in chain order."""
    found = []
    for path in evidence_files(copy.parent):
        try:
            record = evidence.read(path)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # `runbook verify` reports it
        if record.session and record.session.working_copy == copy.name:
            found.append((path.name, record))
    return sorted(found, key=lambda pair: (pair[1].chain or {}).get("sequence", 0))


def unsealed(folder: Path) -> list[Path]:
    """The incident's working copies never sealed, or changed since their last seal."""
    changed = []
    for copy in working_copies(folder):
        earlier = seals(copy)
        last = earlier[-1][1].session if earlier else None
        if last is None or last.working_copy_sha256 != chain.sha256(copy):
            changed.append(copy)
    return changed


def to_seal(output_dir: Path, incident: str, notebooks: Iterable[Path]) -> list[Path]:
    """The working copies `runbook seal` names (paths, or file names in the incident folder), else every one of
    the incident changed since its last seal; a usage error for anything that is not a working copy of it."""
    folder = incident_folder(output_dir, incident)
    if not folder.is_dir() or not working_copies(folder):
        raise UsageError(f"incident {incident!r} has no working copy in {output_dir} (`runbook open` writes them)")
    chosen = []
    for given in notebooks:
        path = given if given.exists() else folder / given.name
        if path.resolve().parent != folder.resolve() or not is_working_copy(path):
            raise UsageError(f"{given} is not a working copy of incident {incident!r}")
        chosen.append(path)
    return chosen if chosen else unsealed(folder)


def _read_working_copy(copy: Path, data: bytes) -> nbformat.NotebookNode:
    """The working copy's notebook; a usage error when it is none or its session metadata was changed."""
    try:
        notebook = nbformat.reads(data.decode(), as_version=4)
        meta = notebook.metadata[SESSION]
        parse_time(meta["opened_at"])
        operator(meta["operator"])
        catalog.find(meta["runbook"])
    except (ValueError, KeyError, TypeError, AttributeError, UsageError) as e:
        raise UsageError(f"{copy} is not a working copy `runbook open` wrote, or its metadata changed: {e}") from None
    return notebook


def _credential_finding(found: tuple[int, ...]) -> Finding:
    where = f"cell {found[0]}" if len(found) == 1 else f"cells {', '.join(map(str, found))}"
    return Finding(
        CREDENTIAL_FINDING,
        f"the notebook's source holds something shaped like a credential ({where}): it is redacted in what was "
        "sealed, but the working copy still holds it. Take it out; passwords go in PGPASSWORD or ~/.pgpass",
        "warning",
        {"cells": list(found)},
    )


@contextmanager
def _one_seal_at_a_time(copy: Path) -> Iterator[None]:
    """One seal at a time in the output folder, across processes (the lab's sealer, `runbook seal`), so that each
    seal names the one before it: an exclusive flock on the incident folder's parent. (The copy itself is replaced
    on every save; the incident folder's own lock is the chain's, taken inside.) A seal takes a tenth of a second."""
    fd = os.open(copy.resolve().parent.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)

"""The HTML of an executed runbook, as people open it in the review: a summary on top (status, what was looked at,
findings by severity, actions applied or previewed, a link to each step), then the steps with their code folded
away under a "code" disclosure.

nbconvert's HTMLExporter with our template (templates/nbconvert/runbook: JupyterLab's, the summary put first and
each cell's input in a <details>); the summary is rendered from the run's evidence record by Jinja2 with
autoescaping, so no finding, target or parameter value becomes markup.
"""

from __future__ import annotations

import threading
from importlib import resources

import jinja2
import nbformat
from nbconvert import HTMLExporter

from . import escape, summary, targets, units
from .evidence import Record

_exporters = threading.local()

SUMMARY = jinja2.Environment(
    loader=jinja2.PackageLoader("runbooks", "templates"), autoescape=True, trim_blocks=True, lstrip_blocks=True
)


def html(notebook: nbformat.NotebookNode, record: Record, title: str) -> str:
    """The executed `notebook` as HTML with the summary of `record` on top. One exporter per thread: its templates
    compile once, and runs in parallel threads never share one (it registers filters on each call)."""
    if not hasattr(_exporters, "html"):
        base = resources.files(__package__) / "templates" / "nbconvert"
        _exporters.html = HTMLExporter(template_name="runbook", extra_template_basedirs=[str(base)])
    body, _ = _exporters.html.from_notebook_node(
        notebook, resources={"runbook_summary": summary_html(notebook, record, title)}
    )
    return body


def summary_html(notebook: nbformat.NotebookNode, record: Record, title: str) -> str:
    actions = record.actions
    applied = sum(a["mode"] == "applied" for a in actions)
    if not actions:
        heading = "Actions: none"
    elif applied:
        heading = f"Actions: {applied} applied, {len(actions) - applied} previewed"
    else:
        heading = f"Actions: {len(actions)} previewed, nothing changed"
    cells = notebook.cells
    failing = record.error.cell if record.error and record.error.cell is not None else None
    return SUMMARY.get_template("run-summary.html.j2").render(
        title=title,
        record=record,
        started=units.when(record.started_at, seconds=True),
        took=units.duration(record.finished_at - record.started_at),
        failing=_anchor(cells[failing]) if failing is not None and failing < len(cells) else None,
        looked_at=targets.looked_at(record.parameters),
        counts=summary.counts(record.findings),
        findings=summary.by_severity(record.findings),
        actions_heading=heading,
        actions=actions,
        modes={"dry-run": "previewed", "applied": "applied"},
        steps=steps(notebook),
        no_math=escape.NO_MATH,
        zone=f"{units.zone().key} ({units.zone_name(record.started_at)})",
    )


def steps(notebook: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """(anchor, heading) of each markdown cell opening with a `## ` heading: the notebook's steps."""
    found = []
    for cell in notebook.cells:
        first = cell.source.lstrip().split("\n", 1)[0] if cell.cell_type == "markdown" else ""
        if first.startswith("## ") and cell.get("id"):
            found.append((_anchor(cell), first[3:].replace("`", "").strip()))
    return found


def _anchor(cell: nbformat.NotebookNode) -> str:
    """The id nbconvert gives a cell's element (its cell_id_anchor macro)."""
    return f"cell-id={cell.get('id', '')}"

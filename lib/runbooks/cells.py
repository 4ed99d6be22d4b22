"""What the cells of a notebook an engineer drove by hand show: which code cells ran and in what order, which
differ from the runbook as `runbook open` wrote it, which raised, and which hold something shaped like a
credential. Functions of two notebooks (the session as saved, the runbook as opened); runbooks.sessions seals
what they find.

Jupyter keeps one execution count per cell, the last. A pass from top to bottom on a fresh kernel numbers the
code cells 1, 2, ... n in notebook order. So a cell is out of order when it falls outside the longest run of
cells whose counts rise in notebook order, and a count no cell shows means that some cell ran again (or that
code ran on the kernel from elsewhere, e.g. a console). Empty code cells are left out: running one counts
nothing.
"""

from __future__ import annotations

import ast
import difflib
import re
from dataclasses import dataclass

from IPython.core.inputtransformer2 import TransformerManager

from . import redact
from .evidence import CellRun, EditedCell, RaisedCell, RunError

INJECTED = "injected-parameters"  # the tag of the cell papermill (and `runbook open`) inject
# Names whose string value is a credential: `password = "..."`, `connect(token="...")`, `{"api_key": "..."}`.
_CREDENTIAL_NAME = re.compile(r"(?i)passw(or)?d|secret|token|api[_-]?key")
_SHORTEST_SCRUBBED = 4  # a shorter credential is reported, not replaced everywhere it occurs


@dataclass(frozen=True)
class Audit:
    executed: tuple[CellRun, ...]  # by execution count
    never_executed: tuple[int, ...]
    out_of_order: tuple[int, ...]
    missing_counts: tuple[int, ...]  # execution counts below the highest that no cell shows
    edited: tuple[EditedCell, ...]
    raised: tuple[RaisedCell, ...]

    @property
    def error(self) -> RunError | None:
        """The first cell (in notebook order) that raised."""
        first = self.raised[0] if self.raised else None
        return RunError(first.cell, first.ename, first.evalue) if first else None

    @property
    def status(self) -> str:
        """`completed` only when every code cell ran once, in order, without error; `failed` when one raised."""
        if self.raised:
            return "failed"
        return "partial" if self.never_executed or self.out_of_order or self.missing_counts else "completed"

    @property
    def reason(self) -> str | None:
        """Why the status is not completed, in words; None when it is."""
        reasons = [f"cell {r.cell} raised {r.ename}: {r.evalue}" for r in self.raised]
        if self.never_executed:
            total = len(self.executed) + len(self.never_executed)
            reasons.append(
                f"{len(self.never_executed)} of {total} code cells never executed ({_cells(self.never_executed)})"
            )
        if self.out_of_order:
            reasons.append(f"{_cells(self.out_of_order)} executed out of order")
        if self.missing_counts:
            counts = ", ".join(map(str, self.missing_counts))
            reasons.append(
                f"execution counts {counts} appear in no cell: a cell ran more than once, or code ran outside the "
                "notebook"
            )
        return "; ".join(reasons) or None


@dataclass(frozen=True)
class Credentials:
    cells: tuple[int, ...]  # cells whose source holds something shaped like a credential
    values: tuple[str, ...]  # those values, to scrub from everything written (the shortest left out)


def audit(session: dict, opened: dict) -> Audit:
    """The cells of `session` (a notebook as saved) against `opened` (the notebook `runbook open` wrote)."""
    counts = [
        (index, cell.get("execution_count"))
        for index, cell in enumerate(session["cells"])
        if cell["cell_type"] == "code" and cell["source"].strip()
    ]
    executed = sorted(((i, n) for i, n in counts if n is not None), key=lambda pair: pair[1])
    in_order = _longest_rising([(i, n) for i, n in counts if n is not None])
    shown = {n for _, n in executed}
    return Audit(
        executed=tuple(CellRun(i, n) for i, n in executed),
        never_executed=tuple(i for i, n in counts if n is None),
        out_of_order=tuple(sorted(i for i, _ in executed if i not in in_order)),
        missing_counts=tuple(n for n in range(1, max(shown, default=0)) if n not in shown),
        edited=tuple(edits(session, opened)),
        raised=tuple(
            RaisedCell(index, output.get("ename", ""), output.get("evalue", ""))
            for index, cell in enumerate(session["cells"])
            for output in cell.get("outputs", [])
            if output.get("output_type") == "error"
        ),
    )


def edits(session: dict, opened: dict) -> list[EditedCell]:
    """Code cells whose source differs from the opened notebook's, matched by cell id (the injected parameters by
    their tag), each with a unified diff; cells added and removed too, diffed against nothing."""
    opened_code = {
        _key(cell): (index, cell["source"])
        for index, cell in enumerate(opened["cells"])
        if cell["cell_type"] == "code" and _key(cell)
    }
    found, matched = [], set()
    for index, cell in enumerate(session["cells"]):
        if cell["cell_type"] != "code":
            continue
        key = _key(cell)
        if key in opened_code and key not in matched:
            matched.add(key)
            opened_index, source = opened_code[key]
            if source != cell["source"]:
                found.append(EditedCell(index, opened_index, _diff(source, cell["source"], opened_index, index)))
        else:
            found.append(EditedCell(index, None, _diff("", cell["source"], None, index)))
    for key, (opened_index, source) in opened_code.items():
        if key not in matched:
            found.append(EditedCell(None, opened_index, _diff(source, "", opened_index, None)))
    return found


def credentials(session: dict, opened: dict) -> Credentials:
    """What in the session's sources (lines the opened notebook does not have) is shaped like a credential: a
    string that redact.redact_line would redact (a URL with a password, `password=...`, a bearer token, a JWT),
    or a string given to a name like password, secret, token or api_key. Code is read as Python (after IPython's
    own transformation of magics), so names and calls are never taken for secrets; other cells line by line."""
    known = {line for cell in opened["cells"] for line in cell["source"].splitlines()}
    cells, values = [], []
    for index, cell in enumerate(session["cells"]):
        new = {number for number, line in enumerate(cell["source"].splitlines(), 1) if line not in known}
        found = _in_code(cell["source"], new) if cell["cell_type"] == "code" else None
        if found is None:  # markdown, or code that is not Python
            found = [v for n, line in enumerate(cell["source"].splitlines(), 1) if n in new for v in _redacted(line)]
        if found:
            cells.append(index)
            values += found
    return Credentials(tuple(cells), tuple(dict.fromkeys(v for v in values if len(v) >= _SHORTEST_SCRUBBED)))


def _in_code(source: str, new_lines: set[int]) -> list[str] | None:
    """Credentials in string literals on `new_lines` of a code cell; None when it does not parse."""
    try:
        tree = ast.parse(TransformerManager().transform_cell(source))
    except (SyntaxError, ValueError):
        return None
    found: list[str] = []
    for node in ast.walk(tree):
        for name, value in _named_values(node):
            if _CREDENTIAL_NAME.search(name) and value.lineno in new_lines and value.value:
                found.append(str(value.value))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.lineno in new_lines:
            found += [v for line in node.value.splitlines() for v in _redacted(line)]
    return found


def _named_values(node: ast.AST) -> list[tuple[str, ast.Constant]]:
    """(name, string literal) pairs a node gives a value to: assignments, keyword arguments, dict items."""
    pairs: list[tuple[str, ast.AST | None]] = []
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        pairs += [(_name(target), node.value) for target in targets]
    elif isinstance(node, ast.keyword) and node.arg:
        pairs.append((node.arg, node.value))
    elif isinstance(node, ast.Dict):
        pairs += [(_name(key) if key else "", value) for key, value in zip(node.keys, node.values, strict=True)]
    return [
        (name, value)
        for name, value in pairs
        if isinstance(value, ast.Constant) and isinstance(value.value, str) and name
    ]


def _name(node: ast.AST) -> str:
    """`password` of `password`, `self.password`, `env["PGPASSWORD"]` and of the dict key `"password"`."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript):
        return _name(node.slice)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return ""


def _redacted(text: str) -> list[str]:
    """The pieces redact.redact_line takes out of `text`."""
    redacted = redact.redact_line(text)
    if redacted == text:
        return []
    *middle, last = redacted.split(redact.REDACTED)[1:]
    start, pieces = len(redacted.split(redact.REDACTED)[0]), []
    for part in middle:
        end = text.find(part, start) if part else start
        pieces.append(text[start:end])
        start = end + len(part)
    pieces.append(text[start : len(text) - len(last)])
    return [piece for piece in pieces if piece]


def _longest_rising(counts: list[tuple[int, int]]) -> set[int]:
    """The cells of the longest run whose execution counts rise strictly in notebook order (the earliest such)."""
    best: list[list[int]] = []
    for position, (_, count) in enumerate(counts):
        before = [best[j] for j in range(position) if counts[j][1] < count]
        best.append([*max(before, key=len, default=[]), position])
    return {counts[p][0] for p in max(best, key=len, default=[])}


def _key(cell: dict) -> str | None:
    return INJECTED if INJECTED in cell.get("metadata", {}).get("tags", []) else cell.get("id")


def _diff(before: str, after: str, before_index: int | None, after_index: int | None) -> str:
    lines = difflib.unified_diff(
        before.splitlines(),
        after.splitlines(),
        "runbook" if before_index is None else f"runbook cell {before_index}",
        "session" if after_index is None else f"session cell {after_index}",
        lineterm="",
    )
    return "\n".join(lines)


def _cells(indices: tuple[int, ...]) -> str:
    return f"cell {indices[0]}" if len(indices) == 1 else f"cells {', '.join(map(str, indices))}"

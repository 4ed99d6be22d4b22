"""How a table shows in a notebook (and so in its HTML): in units a person reads, never cut.

A diagnosis returns plain DataFrames (numbers in bytes, fractions, seconds; times in UTC) and may say, with
`table(frame, empty=..., column=unit)`, what unit a column holds and what to say when the frame is empty. When a
notebook shows a frame, `frame_html` renders a copy: memory `247Mi`, shares `96.5 %`, durations `5 min`, times in
the reading zone with it (runbooks.units), whole numbers as integers, columns with nothing in them dropped, an
empty cell as `none`, and for an empty frame the line it was given ("No session idle: nothing to do"). The data
itself (what tests and the evidence read) is never changed.

`install()` registers `frame_html` with the running IPython kernel; `import runbooks` calls it, and it does nothing
outside a kernel.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import escape, units

if TYPE_CHECKING:
    import pandas as pd

UNITS: dict[str, Callable[[Any], str]] = {
    "memory": units.memory,  # bytes
    "percent": units.percent,  # a fraction 0..1
    "pct": lambda value: units.percent(value / 100),  # already a percentage 0..100
    "seconds": units.duration,
    "due": units.due,  # a duration from now: `in 12 min`, `5 min overdue`
    "count": units.number,
}
EMPTY = "Nothing found here: nothing to do."
# Columns named alike across the access layers and diagnoses, whatever frame holds them (a frame's own marks win).
COLUMN_UNITS = {
    "memory_usage": "memory",
    "memory_request": "memory",
    "memory_limit": "memory",
    "memory_pct_of_limit": "pct",
    "max_memory_pct": "pct",
    "5xx_pct": "pct",
    "error_rate": "percent",
    "baseline_error_rate": "percent",
    "exit_code": "count",
}


def table(frame: pd.DataFrame, empty: str | None = None, **columns: str) -> pd.DataFrame:
    """`frame`, marked with the unit of some columns (of UNITS) and the line to show when it is empty."""
    frame.attrs["units"] = {**frame.attrs.get("units", {}), **columns}
    if empty:
        frame.attrs["empty"] = empty
    return frame


class Lines(list):
    """Lines of outside text (log lines, what was handed over) shown as they are: a code block, never markup."""

    def __init__(self, lines=(), heading: str = "") -> None:
        super().__init__(lines)
        self.heading = heading

    def _repr_markdown_(self) -> str:
        if not self:
            return f"*{escape.markdown(self.heading or 'No line')}: none.*"
        heading = f"*{escape.markdown(self.heading)}:*\n\n" if self.heading else ""
        return heading + escape.code_block("\n".join(str(line) for line in self))


def readable(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` as text a person reads: units, zone, integers, `none`; columns without values dropped."""
    import pandas as pd

    marked = {**COLUMN_UNITS, **frame.attrs.get("units", {})}
    shown = frame.copy()
    shown = shown[[c for c in shown.columns if not _all_missing(shown[c])]]
    for column in shown.columns:
        unit = marked.get(column)
        shown[column] = [_cell(value, unit) for value in shown[column]]
    if isinstance(shown.index, pd.RangeIndex):
        shown = shown.reset_index(drop=True)
    return shown


def frame_html(frame: pd.DataFrame) -> str:
    """The frame as an HTML table of `readable` text (escaped, never cut), or its empty line."""
    if frame.empty:
        return f'<p class="{escape.NO_MATH}"><em>{escape.html(frame.attrs.get("empty") or EMPTY)}</em></p>'
    import pandas as pd

    shown = readable(frame)
    with pd.option_context("display.max_colwidth", None):
        table = shown.to_html(index=not isinstance(frame.index, pd.RangeIndex), escape=True, border=0, na_rep="none")
    return f'<div class="{escape.NO_MATH}">{table}</div>'


def install() -> None:
    """Show DataFrames with `frame_html` in the running IPython kernel; nothing outside one."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return
    import pandas as pd

    shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, frame_html)


def _cell(value: Any, unit: str | None) -> str:
    if isinstance(value, (list, tuple, set)):
        return ", ".join(_cell(v, None) for v in value) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_cell(v, None)}" for k, v in value.items()) or "none"
    if units.missing(value):
        return "none"
    if unit in UNITS:
        return UNITS[unit](value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.timedelta):  # pandas' Timedelta is one
        return units.duration(value)
    if isinstance(value, dt.datetime):  # and its Timestamp
        return units.when(value, seconds=True)
    if isinstance(value, float):
        return units.number(value)
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        return _cell(value.item(), unit)
    return escape.plain(value)


def _all_missing(column: pd.Series) -> bool:
    """Nothing but NaN, NaT or None (an empty list says something: none)."""
    return bool(len(column)) and all(not isinstance(v, (list, tuple, set, dict)) and units.missing(v) for v in column)
